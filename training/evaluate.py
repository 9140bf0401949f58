"""Character and word error rates of a model on GRID clips or a cache.

    python -m training.evaluate --model PATH.keras|PATH.onnx --data DIR_OR_CACHE
        [--decoder greedy|beam|grammar] [--beam-width N] [--split all|val|train] [--val-fraction F]
        [--workers N] [--json]

A GRID folder is prepared with the same crop as training and live captioning; a cache is read as is,
and only when it was cut with the model's crop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from realtime.backend import model_path
from realtime.cli import Parser, add_decoder, at_least, fraction_below_one, named_path, summary
from realtime.decode import Grammar, decode
from realtime.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from realtime.files import run_command, training_packages_missing
from realtime.interrupts import interruptible
from realtime.spec import ModelSpec
from training.augment import CachedClip
from training.cache import check_crop, check_fps, load_clips, same_rate
from training.dataset import predict_clips
from training.split import VAL_FRACTION, split_of


@dataclass(frozen=True)
class Evaluation:
    cer: float
    wer: float
    names: tuple[str, ...]
    refs: tuple[str, ...]
    hyps: tuple[str, ...]

    def as_json(self) -> dict:
        return {"cer": self.cer, "wer": self.wer, "n": len(self.refs),
                "clips": [{"name": n, "ref": r, "hyp": h} for n, r, h in zip(self.names, self.refs, self.hyps)]}


def clips_from_folder(folder: Path, spec: ModelSpec, workers: int,
                      wanted: Callable[[str], bool] = lambda key: True) -> tuple[list[CachedClip], list[str]]:
    """Prepare crops for the clips under a GRID folder whose key is `wanted`; returns the clips and the
    skipped reasons."""
    from realtime.grid import find_clips
    from training.prepare import try_prepare, worker_pool
    from realtime.tracker import TrackerOptions

    options = TrackerOptions(crop=spec.crop)
    found = find_clips(folder)
    if not found:
        raise FileNotFoundError(f"no videos under {folder}")
    jobs = [(c, options, False) for c in found if wanted(c.key)]  # the sound is training's alone
    if not jobs:
        return [], []
    with worker_pool(workers, len(jobs)) as pool:
        results = pool.map(try_prepare, jobs)
    clips, skipped = [], []
    for c, p, why in results:
        if p is not None and not same_rate(p.fps, spec.fps):  # motion the model never saw at its rate
            why = f"filmed at {p.fps:g} fps, and the model reads {spec.fps:g}"
            p = None
        if p is None:
            skipped.append(f"{c.key}: {why}")
        else:
            clips.append(CachedClip(c.key, p.mouth, p.text, p.words, p.spans))
    return clips, skipped


class Predictor:
    """Log-probabilities per clip from a .keras or an .onnx model."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.forward: Callable[[np.ndarray], np.ndarray]
        if self.path.suffix == ".onnx":
            from realtime.backend import OnnxModel

            model = OnnxModel(self.path, "cpu")
            self.spec, self.forward = model.spec, model.batch_logp
        elif self.path.suffix == ".keras":
            from training.model import forward, load

            keras_model, self.spec = load(self.path)
            self.forward = forward(keras_model)
        else:
            raise ValueError(f"{path}: the model must be a .keras or an .onnx file")

    def logp(self, clips: list[CachedClip]) -> list[np.ndarray]:
        return predict_clips(self.forward, clips)


def error_rates(refs: list[str], hyps: list[str]) -> tuple[float, float]:
    """Character and word error rates over all the clips together (edits over reference length)."""
    return float(jiwer.cer(refs, hyps)), float(jiwer.wer(refs, hyps))


def evaluate(predictor: Predictor, clips: list[CachedClip], decoder: str = "greedy",
             width: int | None = None) -> Evaluation:
    """Error rates over whole clips; the grammar decoder reads each clip as one whole GRID sentence.
    `width`: the beam's, None for the decoder's default."""
    refs = [c.text for c in clips]
    sentence = Grammar(cyclic=False)
    hyps = [decode(lp, decoder, predictor.spec.vocabulary, width, sentence).text for lp in predictor.logp(clips)]
    return Evaluation(*error_rates(refs, hyps), tuple(c.key for c in clips), tuple(refs), tuple(hyps))


def _val_fraction_problem(args: argparse.Namespace) -> str | None:
    if args.val_fraction is None or args.split != "all":
        return None
    return "--val-fraction has no effect with --split all, which takes every clip: choose --split val or train, " \
           "or leave it out"


def _workers_problem(args: argparse.Namespace) -> str | None:
    if args.workers is None or not args.data.is_file():
        return None
    return f"--workers has no effect with a cache: {args.data}'s crops are cut already"


@interruptible
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.evaluate", description=summary(__doc__))
    parser.add_argument("--model", type=model_path, required=True,
                        help="a .keras or .onnx model (a bare name such as lipstream-lite.onnx names a bundled one)")
    parser.add_argument("--data", type=named_path, required=True, help="a GRID folder or an HDF5 cache")
    add_decoder(parser)
    parser.add_argument("--split", choices=("all", "val", "train"), default="all",
                        help="every clip, training ones too (all); or the clips the training run validated or "
                             "trained on: those split.json beside the model records, else those the model records "
                             "as held out, else the deterministic split's")
    parser.add_argument("--val-fraction", type=fraction_below_one,
                        help="take the deterministic split with this validation share instead (default: "
                             f"the records', else training's default share, {VAL_FRACTION:g})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workers", type=at_least(1),
                        help="processes cutting the crops of a GRID folder, at most one a clip (default: one per core)")
    parser.checks += [_val_fraction_problem, _workers_problem]
    args = parser.parse_args(argv)
    try:
        if args.model.is_dir():
            raise IsADirectoryError(f"{args.model} is a folder: name the .keras or .onnx model in it")
        if not args.model.is_file():
            raise FileNotFoundError(f"no model at {args.model}")
        predictor = Predictor(args.model)
        choice = split_of(args.model, predictor.spec, args.split, args.val_fraction)
        wanted = choice.takes
        skipped: list[str] = []
        if args.data.is_dir():  # only the clips of the split are prepared
            clips, skipped = clips_from_folder(args.data, predictor.spec, args.workers or os.cpu_count() or 1,
                                                 wanted)
            for s in skipped:  # before any error: they may be why no clip is left
                print(f"skipped {s}", file=sys.stderr)
        elif args.data.is_file():
            check_crop(args.data, predictor.spec.crop, "the model",
                       "evaluate on the GRID folder or a cache of its crop")
            check_fps(args.data, predictor.spec.fps, "the model")
            clips = load_clips(args.data, wanted)
        else:
            raise FileNotFoundError(f"no GRID folder or cache at {args.data}")
        if not clips:
            raise ValueError("no clips to evaluate" if args.split == "all" or skipped else
                             f"no clip of {args.data} is in --split {args.split} ({choice.source}; a clip's key "
                             "is its speaker folder's name and its own): --split all takes every clip")
    except Exception as e:  # one line for the user, whatever failed to load (Ctrl-C: interruptible)
        print(f"error: {training_packages_missing(e) or e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = evaluate(predictor, clips, args.decoder, args.beam_width)
    except Exception as e:  # the inputs were read: a failure of the reading itself is lipstream's own
        print(f"error: reading the clips failed: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        return EXIT_FAILED
    print(f"--split {args.split}: {choice.source}", file=sys.stderr)  # held-out and training clips read alike
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print(f"{len(clips)} clip{'' if len(clips) == 1 else 's'}, decoder {args.decoder}: "
              f"CER {result.cer:.4f}  WER {result.wer:.4f}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
