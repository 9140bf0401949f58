"""Export a trained lipstream model to ONNX, and refuse to ship it unless it matches Keras.

    python -m export --model PATH.keras --out PATH.onnx [--cache FILE.h5] [--int8] [--fp16]

Writes PATH.onnx (the full model) and PATH.step.onnx / PATH.back.onnx (the streaming parts: the
convolutional front end one frame at a time, and the recurrent back end), all with the model's
ModelSpec and a digest of its weights in their metadata (the runtime refuses parts of another export).
Exits non-zero, writing nothing, when the parity gate fails. --int8 and --fp16 add PATH.int8.* and
PATH.fp16.* families, each loaded by the runtime and run on a real clip before anything is replaced
(compare them with python -m training.evaluate); those of an earlier export that are not made again are
removed, since they no longer match.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from export import MAX_OPSET, OPSET
from realtime.cli import Parser, held_interrupts, summary


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export", description=summary(__doc__))
    parser.add_argument("--model", type=Path, required=True, help="a lipstream .keras model")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--cache", type=Path, default=Path("cache/s1.h5"),
                        help="mouth-crop cache with real windows for the parity gate")
    parser.add_argument("--opset", type=int, choices=range(13, MAX_OPSET + 1), default=OPSET, metavar="N",
                        help=f"ONNX opset, 13 to {MAX_OPSET} (default {OPSET})")
    parser.add_argument("--int8", action="store_true", help="also write an int8 variant (CPU)")
    parser.add_argument("--fp16", action="store_true", help="also write an fp16 variant (GPU)")
    args = parser.parse_args(argv)
    if args.out.suffix != ".onnx":
        print("error: --out must end in .onnx", file=sys.stderr)
        return 2
    if args.model.suffix != ".keras":
        print(f"error: --model must be a .keras model (the one to convert), not {args.model.name}", file=sys.stderr)
        return 2
    for path, what in ((args.model, "model"), (args.cache, "cache (make one with python -m training.prepare)")):
        if not path.is_file():
            print(f"error: no {what} at {path}", file=sys.stderr)
            return 2

    try:
        return run(args)
    except KeyboardInterrupt:  # what was there before stays: the export is moved over it only at the end
        print(f"interrupted: nothing written to {args.out}", file=sys.stderr)
        return 130


def enough_frames(clips: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The first clips, as many as the longest sliding window the parity gate reads needs."""
    from export.parity import WINDOW_LENGTHS

    taken: list[np.ndarray] = []
    for clip in clips:
        if sum(len(c) for c in taken) >= 2 * max(WINDOW_LENGTHS):
            break
        taken.append(clip)
    return taken


def run(args: argparse.Namespace) -> int:
    try:
        from export.convert import convert, save
        from export.parity import MAX_PROB_DIFF, WINDOW_LENGTHS, gate
        from export.variants import family, fp16, int8
        from training.dataset import check_crop, held_out_first, load_clips
        from training.model import inference_model, load
    except ModuleNotFoundError as e:  # the runtime alone is installed
        print(f"error: export needs the training packages ({e.name} is missing): pip install 'lipstream[train]'",
              file=sys.stderr)
        return 2
    from realtime.backend import OnnxModel
    from realtime.files import make_folder_for, output_problem

    targets = [p for tag in ("", "int8", "fp16") for p in family(args.out, tag)]
    problem = next(filter(None, map(output_problem, targets)), None)
    try:
        if problem:  # a folder where a file goes is told before the conversion, not after it
            raise ValueError(problem)
        model, spec = load(args.model)
        check_crop(args.cache, spec.crop, args.model, "name a cache of its crop with --cache")
        cached = load_clips(args.cache)  # read before anything is written: a bad cache costs no file
        make_folder_for(args.out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = inference_model(model) if isinstance(model.output, dict) else model
    # Real windows of every length, slid by their length: held-out clips first, then as many others as
    # that needs (a person's own recordings are short). Parity asks for real pixels, not unseen ones.
    # int8's activation ranges come from as many frames of training clips first, so that its figures
    # on the validation clips stay held out.
    ordered = held_out_first(cached)
    clips, calibration = (enough_frames(c.mouth for c in order) for order in (ordered, ordered[::-1]))
    # Written and gated under a temporary folder beside --out, and moved over an earlier export only
    # once everything asked for is made: a failed export leaves what was there before.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=args.out.parent) as staging:
        try:
            staged = list(save(convert(model, spec, args.opset), Path(staging) / args.out.name))
        except Exception as e:  # the converter's failure: one line, and nothing written
            print(f"error: conversion failed ({type(e).__name__}: {e}); nothing written to {args.out}",
                  file=sys.stderr)
            return 1
        try:
            results = gate(model, OnnxModel(staged[0], "cpu"), clips)
        except Exception as e:  # ONNX Runtime refusing the converted model
            print(f"error: the parity gate could not run the export ({type(e).__name__}: {e}); nothing written "
                  f"to {args.out}", file=sys.stderr)
            return 1
        print(f"{'form':<11} {'frames':>6} {'max |dp|':>10}  transcripts")
        for r in results:
            print(f"{r.form:<11} {r.length:>6} {r.max_prob_diff:>10.2e}  {'equal' if r.transcripts_equal else 'DIFFER'}")
        if not results:
            print(f"error: the parity gate needs windows of at least {min(WINDOW_LENGTHS)} frames and {args.cache}'s "
                  f"clips hold {sum(len(c) for c in clips)}; nothing written to {args.out}", file=sys.stderr)
            return 1
        if not all(r.ok for r in results):
            print(f"error: parity gate failed (limit {MAX_PROB_DIFF:g} and equal transcripts); nothing written to "
                  f"{args.out}", file=sys.stderr)
            return 1
        checked = {r.length for r in results if r.form == "sliding"}
        unchecked = [n for n in WINDOW_LENGTHS if n not in checked]
        if unchecked:
            print(f"not checked: windows of {', '.join(map(str, unchecked))} frames sliding "
                  f"({args.cache} holds {sum(len(c) for c in clips)} frames)")
        print("parity gate passed")
        try:
            for tag, make in (("int8", lambda: int8(staged[0], calibration)), ("fp16", lambda: fp16(staged[0]))):
                if getattr(args, tag):
                    variant = make()
                    OnnxModel(variant[0], "cpu").window_logp(clips[0])  # it loads, and reads a clip
                    staged += variant
        except Exception as e:
            print(f"error: a variant failed ({type(e).__name__}: {e}); nothing written to {args.out}",
                  file=sys.stderr)
            return 1
        # Variants of the model this export replaces, not made again, would no longer match it.
        stale = [p for tag, asked in (("int8", args.int8), ("fp16", args.fp16)) if not asked
                 for p in family(args.out, tag) if p.exists()]
        try:
            with held_interrupts():  # all of the new export, or none of it
                written = [p.replace(args.out.with_name(p.name)) for p in staged]
                for p in stale:
                    p.unlink()
        except KeyboardInterrupt:  # pressed while the files were moved: they all were
            print(f"interrupted: the export was written to {args.out} in full", file=sys.stderr)
            return 130
    for p in written:
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    for p in stale:
        print(f"removed {p}: a variant of the model replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
