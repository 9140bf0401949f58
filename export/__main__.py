"""Export a trained lipstream model to ONNX, and refuse to ship it unless it matches Keras.

    python -m export --model PATH.keras --out PATH.onnx [--cache FILE.h5] [--opset N] [--int8] [--fp16]

Writes PATH.onnx (the full model) and PATH.step.onnx / PATH.back.onnx (the streaming parts: the
convolutional front end one frame at a time, and the recurrent back end), all with the model's
ModelSpec and a digest of its weights in their metadata (the runtime refuses parts of another export).
Exits non-zero, writing nothing, when the parity gate fails. --int8 and --fp16 add PATH.int8.* and
PATH.fp16.* families, whose full model must read as PATH.onnx within rounding, and whose streaming parts
as their own full model, before anything is replaced (compare the variants' figures with the model's with
python -m training.evaluate); those of an earlier export that are not made again are removed, since they
no longer match.
"""

from __future__ import annotations

import argparse
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export import A_CACHE, CACHE, MAX_OPSET, OPSET, missing
from realtime.backend import model_path
from realtime.cli import Parser, named_path, summary
from realtime.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import make_folder_for, outputs_problem, run_command, training_packages_missing
from realtime.interrupts import held_interrupts, stops_like_ctrl_c

if TYPE_CHECKING:
    from export.parity import ParityResult

CALIBRATION_FRAMES = 300  # int8's activation ranges: four GRID sentences


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export", description=summary(__doc__))
    parser.add_argument("--model", type=model_path, required=True,
                        help="a lipstream .keras model (a bare name such as lipstream-lite.keras names a bundled one)")
    parser.add_argument("--out", type=named_path, required=True, help="the .onnx file to write")
    parser.add_argument("--cache", type=named_path, default=CACHE,
                        help="mouth-crop cache with real windows for the parity gate")
    parser.add_argument("--opset", type=int, choices=range(13, MAX_OPSET + 1), default=OPSET, metavar="N",
                        help=f"ONNX opset, 13 to {MAX_OPSET}")
    parser.add_argument("--int8", action="store_true", help="also write an int8 variant (CPU)")
    parser.add_argument("--fp16", action="store_true", help="also write an fp16 variant (GPU)")
    args = parser.parse_args(argv)
    if args.out.suffix != ".onnx":
        print("error: --out must end in .onnx", file=sys.stderr)
        return EXIT_USAGE
    part = Path(args.out.stem).suffix[1:]  # NAME.int8.step.onnx: step
    if part in ("step", "back", "int8", "fp16"):  # this export would overwrite a file of another
        print(f"error: --out must name a model, not the {part} file of one ({args.out.name} belongs to "
              f"{args.out.with_suffix('').with_suffix('.onnx').name})", file=sys.stderr)
        return EXIT_USAGE
    if args.model.suffix != ".keras":
        print(f"error: --model must be a .keras model (the one to convert), not {args.model.name}", file=sys.stderr)
        return EXIT_USAGE
    if problem := missing(((args.model, "model"), (args.cache, A_CACHE))):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE

    try:
        return run(args)
    except KeyboardInterrupt:  # what was there before stays: the export is moved over it only at the end
        print(f"interrupted: nothing written to {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED


def enough_frames(clips: Iterable[np.ndarray], frames: int) -> list[np.ndarray]:
    """The first clips, as many as hold `frames` frames (all of them, when they hold fewer)."""
    taken: list[np.ndarray] = []
    for clip in clips:
        if sum(len(c) for c in taken) >= frames:
            break
        taken.append(clip)
    return taken


def run(args: argparse.Namespace) -> int:
    try:
        from export.convert import convert, save
        from export.parity import (FRAMES_NEEDED, MAX_PROB_DIFF, ROUNDED_MAX_PROB_DIFF, VARIANT_MAX_PROB_DIFF, gate,
                                   variant_gate)
        from export.variants import family, fp16, int8
        from training.cache import check_crop, load_clips
        from training.split import held_out_first
        from training.model import inference_model, load
    except ModuleNotFoundError as e:  # the runtime alone is installed
        print(f"error: {training_packages_missing(e) or e}", file=sys.stderr)
        return EXIT_USAGE
    from realtime.backend import OnnxModel

    targets = [p for tag in ("", "int8", "fp16") for p in family(args.out, tag)]
    problem = outputs_problem(targets)
    try:
        if problem:  # a folder where a file goes is told before the conversion, not after it
            raise ValueError(problem)
        model, spec = load(args.model)
        check_crop(args.cache, spec.crop, args.model, "name a cache of its crop with --cache")
        cached = load_clips(args.cache)  # read before anything is written: a bad cache costs no file
        # Real windows of every length, slid by their length: held-out clips first, then as many others
        # as that needs (a person's own recordings are short: the gate reads them again if they are too
        # few). Parity asks for real pixels, not unseen ones. int8's activation ranges come from
        # training clips first, so that its figures on the validation clips stay held out.
        ordered = held_out_first(cached, args.model, spec)
        clips = enough_frames((c.mouth for c in ordered), FRAMES_NEEDED)
        calibration = enough_frames((c.mouth for c in ordered[::-1]), CALIBRATION_FRAMES)
        if not any(map(len, clips)):  # told before the conversion, not after it
            raise ValueError(f"{args.cache}'s clips hold no frames: the parity gate has nothing to read")
        model = inference_model(model)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    # Written and gated under a temporary folder in --out's nearest existing folder (its file system),
    # and moved over an earlier export only once everything asked for is made: a failed export leaves
    # what was there before, and no folder made for --out.
    existing = next(p for p in args.out.parents if p.is_dir())
    with tempfile.TemporaryDirectory(prefix=".export-", dir=existing) as staging:
        try:
            exported = convert(model, spec, args.opset)
        except Exception as e:  # the converter's failure: one line, and nothing written
            print(f"error: conversion failed ({type(e).__name__}: {e}); nothing written to {args.out}",
                  file=sys.stderr)
            return EXIT_FAILED
        try:
            staged = save(exported, Path(staging) / args.out.name)
        except OSError as e:  # a full disk: the output's, not lipstream's failure
            print(f"error: cannot write the export ({e.strerror or e}); nothing written to {args.out}", file=sys.stderr)
            return EXIT_USAGE
        try:
            results = gate(model, OnnxModel(staged[0], "cpu"), clips)
        except Exception as e:  # ONNX Runtime refusing the converted model
            print(f"error: the parity gate could not run the export ({type(e).__name__}: {e}); nothing written "
                  f"to {args.out}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{'form':<16} {'frames':>6} {'max |dp|':>10}  best classes")
        table(results)
        if not all(r.ok for r in results):
            print(f"error: parity gate failed (limit {MAX_PROB_DIFF:g}, best classes apart only at near ties); nothing "
                  f"written to {args.out}", file=sys.stderr)
            return EXIT_FAILED
        print("parity gate passed")
        for tag, make in (("int8", lambda: int8(staged[0], calibration)), ("fp16", lambda: fp16(staged[0]))):
            if not getattr(args, tag):
                continue
            try:  # against the model it was rounded from; its streaming parts against its own full model
                variant = make()
                results = variant_gate(OnnxModel(variant[0], "cpu"), OnnxModel(staged[0], "cpu"), clips,
                                       VARIANT_MAX_PROB_DIFF[tag], ROUNDED_MAX_PROB_DIFF[tag])
            except OSError as e:
                print(f"error: cannot write the {tag} variant ({e.strerror or e}); nothing written to {args.out}",
                      file=sys.stderr)
                return EXIT_USAGE
            except Exception as e:
                print(f"error: the {tag} variant failed ({type(e).__name__}: {e}); nothing written to {args.out}",
                      file=sys.stderr)
                return EXIT_FAILED
            table(results, tag)
            if not all(r.ok for r in results):
                print(f"error: the {tag} variant reads apart from the model (limit {ROUNDED_MAX_PROB_DIFF[tag]:g}) "
                      f"or its streaming parts from its full model (limit {VARIANT_MAX_PROB_DIFF[tag]:g}; best "
                      f"classes apart only at near ties); nothing written to {args.out}", file=sys.stderr)
                return EXIT_FAILED
            staged += variant
        # Variants of the model this export replaces, not made again, would no longer match it.
        stale = [p for tag, asked in (("int8", args.int8), ("fp16", args.fp16)) if not asked
                 for p in family(args.out, tag) if p.exists()]
        written: list[Path] = []
        try:
            with held_interrupts():  # all of the new export, or none of it
                make_folder_for(args.out)
                for p in staged:
                    target = args.out.with_name(p.name)
                    if target.is_file():  # a model kept private stays private
                        p.chmod(stat.S_IMODE(target.stat().st_mode))
                    written.append(p.replace(target))
                for p in stale:
                    p.unlink()
        except KeyboardInterrupt:  # pressed while the files were moved: they all were
            print(f"interrupted: the export was written to {args.out} in full", file=sys.stderr)
            return EXIT_INTERRUPTED
        except OSError as e:  # a partial move: the runtime refuses a model beside another export's parts
            moved = f": {args.out} may be incomplete" if written else ""
            why = f"cannot write the export ({e.strerror})" if e.strerror else str(e)  # make_folder_for's names it
            print(f"error: {why}{moved}", file=sys.stderr)
            return EXIT_USAGE
    for p in written:
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    for p in stale:
        print(f"removed {p}: a variant of the model replaced")
    return EXIT_OK


def table(results: list[ParityResult], variant: str = "") -> None:
    """The parity gate's rows, a variant's forms named with its tag; frames whose best class differs are
    counted, near ties apart from the rest."""
    for r in results:
        form = f"{variant} {r.form}".strip()
        classes = f"DIFFER, clear: {r.flips}" if r.flips else f"near ties: {r.ties}" if r.ties else "equal"
        print(f"{form:<16} {r.length:>6} {r.max_prob_diff:>10.2e}  {classes}")


if __name__ == "__main__":
    sys.exit(run_command(main))
