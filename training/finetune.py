"""Fine-tune a model to one person's recorded clips (python -m realtime.record makes them).

    python -m training.finetune --base MODEL.keras --data DIR --out runs/NAME
        [--epochs 8] [--lr 1e-3] [--freeze-front-end] [--val-fraction 0.2]

Prepares the clips with the same crop as training and live captioning, holds some out (a
deterministic split by clip), trains from the base weights, exports ONNX through `python -m export`,
and prints the held-out CER/WER before and after. An interrupted run continues when the same command
is run again; the fine-tuned model is `--out`/finetuned.onnx (run_live.py --model it), a model of
this person.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from realtime.cli import at_least, fraction_below_one, positive, summary
from realtime.files import make_folder_for, write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=summary(__doc__))
    parser.add_argument("--base", type=Path, required=True, help="the model to start from (.keras)")
    parser.add_argument("--data", type=Path, required=True, help="a folder of recorded clips (GRID layout)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--epochs", type=at_least(1), default=8)
    parser.add_argument("--lr", type=positive, default=1e-3)
    parser.add_argument("--batch-size", type=at_least(1), default=8)
    parser.add_argument("--steps", type=at_least(1), default=20, help="steps per epoch (a person records few clips)")
    parser.add_argument("--freeze-front-end", action="store_true")
    parser.add_argument("--val-fraction", type=fraction_below_one, default=0.2)
    parser.add_argument("--workers", type=at_least(1), default=2)
    args = parser.parse_args(argv)

    from export.__main__ import main as export_main
    from training import train
    from training.dataset import load_clips, split
    from training.evaluate import Predictor, evaluate
    from training.model import read_spec
    from training.prepare import prepare

    try:
        spec = read_spec(args.base)
        if (args.out / "finetune.json").exists():  # before the clips are prepared
            raise ValueError(f"{args.out} already holds a fine-tuned model: choose another --out")
        resuming = (args.out / "state.json").exists()  # interrupted: the same command goes on
        cache = args.out / "clips.h5"
        make_folder_for(cache)
        skipped = prepare(args.data, cache, args.workers, spec.crop)
        for clip, why in skipped:
            print(f"skipped {clip.speaker}/{clip.name}: {why}", file=sys.stderr)
        train_clips, held_out = split(load_clips(cache), args.val_fraction)
        if not held_out or not train_clips:
            raise ValueError(f"need clips to train on and to hold out; have {len(train_clips)} and {len(held_out)}"
                             " (record more, or change --val-fraction)")
        before = evaluate(Predictor(args.base), held_out)
        code = train.main(["--cache", str(cache), "--out", str(args.out), "--config", spec.config,
                           "--init", str(args.base), "--epochs", str(args.epochs), "--lr", str(args.lr),
                           "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                           "--val-fraction", str(args.val_fraction),
                           "--curriculum-epochs", "0", "--patience", str(args.epochs)]
                          + (["--freeze-front-end"] if args.freeze_front_end else [])
                          + (["--resume"] if resuming else []), to_continue="run the same command again")
        if code:
            return code
        tuned = args.out / "best.keras"
        after = evaluate(Predictor(tuned), held_out)
        code = export_main(["--model", str(tuned), "--out", str(args.out / "finetuned.onnx"), "--cache", str(cache)])
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the clips are prepared or read (training says so itself)
        print(f"interrupted: run the same command again to continue {args.out}", file=sys.stderr)
        return 130
    report = {"held_out": len(held_out), "trained_on": len(train_clips),
              "before": {"cer": before.cer, "wer": before.wer}, "after": {"cer": after.cer, "wer": after.wer}}
    write_text(args.out / "finetune.json", json.dumps(report, indent=1))
    print(f"held-out clips: {len(held_out)}; CER {before.cer:.4f} -> {after.cer:.4f}, "
          f"WER {before.wer:.4f} -> {after.wer:.4f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
