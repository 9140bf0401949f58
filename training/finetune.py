"""Fine-tune a model to one person's recorded clips (python -m realtime.record makes them).

    python -m training.finetune --data DIR --out runs/NAME [--base MODEL.keras (default: the bundled model)]
        [--epochs 8] [--lr 1e-3] [--batch-size 8] [--steps 20] [--freeze-front-end] [--val-fraction 0.2]
        [--workers 2]

Prepares the clips with the same crop as training and live captioning, holds some out (a
deterministic split by clip), trains from the base weights, exports ONNX through `python -m export`,
and prints the held-out CER/WER before and after. An interrupted run continues when the same command
is run again; the fine-tuned model is `--out`/finetuned.onnx (run_live.py --model it), a model of
this person.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from realtime.backend import BUNDLED_MODEL, model_path
from realtime.cli import Parser, at_least, fraction_below_one, named_path, positive, summary
from realtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import make_folder_for, run_command, write_text
from realtime.interrupts import stops_like_ctrl_c
from realtime.vocab import Vocabulary
from training.dataset import MOST_BATCH, unwritable_texts

if TYPE_CHECKING:  # loaded with the training packages, once the command runs
    from training.evaluate import Evaluation


def request_of(args: argparse.Namespace) -> dict:
    """What a fine-tune is of: its base (by content), its recordings (by name and by their files' stamps,
    so a clip re-recorded or re-aligned since is another request) and its settings. A run folder holds
    one request; the same command continues it, any other is refused."""
    from realtime.grid import find_clips
    from training.prepare import clip_stamp

    stamps = json.dumps(sorted((c.key, clip_stamp(c)) for c in find_clips(args.data)))
    clips = hashlib.sha256(stamps.encode()).hexdigest()
    return {"base": str(args.base.resolve()), "base_sha256": hashlib.sha256(args.base.read_bytes()).hexdigest(),
            "data": str(args.data.resolve()), "clips": clips, "epochs": args.epochs, "lr": args.lr,
            "batch_size": args.batch_size, "steps": args.steps, "freeze_front_end": args.freeze_front_end,
            "val_fraction": args.val_fraction}


def claim(out: Path, request: dict) -> None:
    """Make `out` this request's run folder, or continue it when it already is; raise ValueError when it
    holds anything else (another fine-tune, a training run, other files), which would be trained on or
    reported as if it were this one."""
    from training.records import read_json

    recorded = out / "request.json"
    if recorded.exists():
        earlier = read_json(recorded, "a fine-tune's request")
        differs = [f"--{key.replace('_', '-')}" for key in request
                   if key not in ("base_sha256", "clips") and earlier.get(key) != request[key]]
        if earlier.get("clips") != request["clips"] and "--data" not in differs:
            differs.append("the clips in --data")  # recorded, removed, re-recorded or re-aligned since
        if earlier.get("base_sha256") != request["base_sha256"] and "--base" not in differs:
            differs.append("--base (its weights changed; the bundled model when not given)")
        if differs:
            raise ValueError(f"{out} holds a fine-tune of another command ({', '.join(differs)} differ): run "
                             "that command to continue it, or choose another --out")
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: --out is a run folder")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already holds other files: choose a new or empty folder for --out")
    make_folder_for(recorded)
    write_text(recorded, json.dumps(request, indent=1))


def check_folder_texts(data: Path, charset: str, base: Path) -> None:
    """Refuse clips whose text has a character the base model cannot write, naming them, before anything
    is written: training would stop at the first such clip without naming it. A clip whose text cannot
    be read is left to training.prepare, which skips it and says why."""
    from realtime.grid import AlignError, find_clips
    from training.prepare import ClipError, clip_text

    texts = []
    for clip in find_clips(data):
        try:
            texts.append((clip.key, clip_text(clip)[0]))
        except (AlignError, ClipError):
            continue
    if bad := unwritable_texts(texts, Vocabulary(charset)):
        raise ValueError(f"{base} cannot write the text of {bad} (it writes {charset!r}): correct their align "
                         "files, or move the clips out of --data")


def check_folder_rates(data: Path, fps: float, base: Path) -> None:
    """Refuse clips filmed at another frame rate than the base model reads, naming them, before minutes of
    preparing: training would refuse their cache only once it is made. An unreadable video is left to
    training.prepare, which skips it and says why."""
    from realtime.capture import Video, capture_fps
    from realtime.grid import GRID_FPS, find_clips
    from training.cache import same_rate

    other = {}
    for clip in find_clips(data):
        video = Video(str(clip.video))
        if video.isOpened() and not same_rate(rate := capture_fps(video, GRID_FPS), fps):
            other[clip.key] = rate
        video.release()
    if other:
        named = ", ".join(f"{key} ({rate:g} fps)" for key, rate in list(other.items())[:3])
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        verb = "is" if len(other) == 1 else "are"
        raise ValueError(f"{base} reads {fps:g} fps, and {named}{more} {verb} filmed at another rate: record with "
                         "python -m realtime.record (25 fps), or re-encode them at the model's rate")


FEW_HELD_OUT = 5  # held-out clips below which the before and after figures are a sentence or two's luck


def enough_to_split(train: int, held: int) -> None:
    if train + held < 2:
        raise ValueError(f"need clips to train on and to hold out; have {train + held} (record more)")
    if not train or not held:
        raise ValueError(f"need clips to train on and to hold out; have {train} and {held} (the takes of one "
                         "sentence stay on one side: record more sentences, or change --val-fraction)")


def caveats(before: Evaluation, after: Evaluation, held_out: int, base: str) -> list[str]:
    """What the user should know of a fine-tune's figures: a model that reads worse than its base (it is
    written all the same, for the user to judge), and figures that rest on too few clips to go by."""
    notes = []
    if (after.cer, after.wer) > (before.cer, before.wer):  # as training chooses its best epoch
        notes.append(f"the fine-tuned model reads the held-out clips worse than {base} did: keep reading with "
                     "that model, or record more clips and fine-tune again")
    if held_out < FEW_HELD_OUT:
        notes.append(f"these figures rest on {held_out} held-out clip{'s' * (held_out != 1)}: record more, or "
                     "raise --val-fraction, for figures to go by")
    return notes


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.finetune", description=summary(__doc__))
    parser.add_argument("--base", type=model_path, default=BUNDLED_MODEL.with_suffix(".keras"),
                        help="the .keras model to start from (a bare name such as lipstream-lite.keras names a bundled "
                             "one; default: the bundled model)")
    parser.add_argument("--data", type=named_path, required=True, help="a folder of recorded clips (GRID layout)")
    parser.add_argument("--out", type=named_path, required=True, help="run folder (new or empty)")
    parser.add_argument("--epochs", type=at_least(1), default=8, help="epochs of training")
    parser.add_argument("--lr", type=positive, default=1e-3,
                        help="learning rate after warm-up, then cosine decay")
    parser.add_argument("--batch-size", type=at_least(1, MOST_BATCH), default=8,
                        help=f"clips a step, up to {MOST_BATCH}")
    parser.add_argument("--steps", type=at_least(1), default=20,
                        help="steps per epoch; a person records few clips")
    parser.add_argument("--freeze-front-end", action="store_true", help="train the recurrent back end only")
    parser.add_argument("--val-fraction", type=fraction_below_one, default=0.2,
                        help="share of the clips held out to choose the best epoch and report on")
    parser.add_argument("--workers", type=at_least(1), default=2, help="processes preparing the clips")
    args = parser.parse_args(argv)

    # The first folder of --out's that this run makes, if any, and the files it makes: gone again if refused.
    created = next((folder for folder in reversed((args.out, *args.out.parents)) if not folder.exists()), None)
    cache = args.out / "clips.h5"
    new = [path for path in (args.out / "request.json", cache) if not path.exists()]
    try:
        from export.__main__ import main as export_main  # TensorFlow loads for seconds: Ctrl-C meanwhile is told too
        from training import train
        from realtime.grid import find_clips
        from training.cache import load_clips
        from training.split import SplitRecord, is_validation, split
        from training.evaluate import Predictor, evaluate
        from training.model import read_spec
        from training.prepare import prepare
        from training.recipe import PER_FRAME_TARGET

        spec = read_spec(args.base)
        if (args.out / "finetune.json").exists():  # before the clips are prepared
            raise ValueError(f"{args.out} already holds a fine-tuned model: choose another --out")
        if not args.data.is_dir():
            raise FileNotFoundError(f"no folder of recorded clips at {args.data}")
        check_folder_texts(args.data, spec.vocabulary.charset, args.base)
        check_folder_rates(args.data, spec.fps, args.base)
        claim(args.out, request_of(args))
        resuming = (args.out / "state.json").exists()  # interrupted: the same command goes on
        try:
            # The split goes by the clips' names: too few on either side is said before minutes of preparing.
            keys = [c.key for c in find_clips(args.data)]
            held = sum(is_validation(key, args.val_fraction) for key in keys)
            if keys and not resuming:  # none: training.prepare says there are no videos
                enough_to_split(len(keys) - held, held)
            skipped = prepare(args.data, cache, args.workers, spec.crop)
            for clip, why in skipped:
                print(f"skipped {clip.speaker}/{clip.name}: {why}", file=sys.stderr)
            record = args.out / "split.json"  # a resumed run's clips are those it began with, as training's are
            train_clips, held_out = SplitRecord.read(record).clips(load_clips(cache), 0, cache) \
                if resuming and record.is_file() else split(load_clips(cache), args.val_fraction)
            enough_to_split(len(train_clips), len(held_out))  # a skipped clip can leave a side empty
        except (FileNotFoundError, ValueError):  # a refused run leaves --out as it found it
            for path in new:
                path.unlink(missing_ok=True)
            if created:
                shutil.rmtree(created, ignore_errors=True)
            raise
        before = evaluate(Predictor(args.base), held_out)
        code = train.main(["--cache", str(cache), "--out", str(args.out), "--config", spec.config,
                           "--init", str(args.base), "--epochs", str(args.epochs), "--lr", str(args.lr),
                           "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                           "--val-fraction", str(args.val_fraction),
                           "--curriculum-epochs", "0", "--patience", str(args.epochs), *PER_FRAME_TARGET]
                          + (["--freeze-front-end"] if args.freeze_front_end else [])
                          + (["--resume"] if resuming else []), to_continue="run the same command again",
                          beside=(cache.name, "request.json"), result=False)
        if code:
            return code
        tuned = args.out / "best.keras"
        after = evaluate(Predictor(tuned), held_out)
        code = export_main(["--model", str(tuned), "--out", str(args.out / "finetuned.onnx"), "--cache", str(cache)])
        if code:  # no finetune.json: the same command exports again
            return code
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # while the clips are prepared or read (training says so itself)
        print(f"interrupted: run the same command again to continue {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    report = {"held_out": len(held_out), "trained_on": len(train_clips),
              "before": {"cer": before.cer, "wer": before.wer}, "after": {"cer": after.cer, "wer": after.wer}}
    write_text(args.out / "finetune.json", json.dumps(report, indent=1))
    print(f"held-out clips: {len(held_out)}; CER {before.cer:.4f} -> {after.cer:.4f}, "
          f"WER {before.wer:.4f} -> {after.wer:.4f}")
    for note in caveats(before, after, len(held_out), args.base.name):
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
