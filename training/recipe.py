"""The bundled model's recipe, from scratch in one resumable command: two runs of training.train.

    python -m training.recipe --cache FILE.h5 --out runs/NAME [--epochs 100 60] [training.train options]

Stage 1 trains `lite` from random weights (cosine schedule from lr 2e-3, 100 epochs); stage 2 starts
again from stage 1's best weights at lr 1e-3 with weight decay for 60 epochs (a warm restart, measured
better than stage 1 alone: docs/experiments.md). Each stage is a run folder of its own (OUT/stage1, OUT/stage2);
run the same command again to resume where it stopped. A stage is not touched once the next one has
begun, so stage 2 always starts from the weights it began with. The model to keep is OUT/stage2/best.keras.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from realtime.cli import Parser, at_least, named_path, summary
from realtime.exits import EXIT_OK, EXIT_USAGE
from realtime.files import run_command
from training import train


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    flags: tuple[str, ...]


# The per-frame target the bundled model learnt with; training.finetune keeps it, so a fine-tune does not
# push the model towards letter positions guessed from its recordings' word timings.
PER_FRAME_TARGET = ("--char-target", "silence", "--char-weight", "0.5")
COMMON = ("--config", "lite", *PER_FRAME_TARGET, "--patience", "100")
STAGES = (
    Stage("stage1", 100, ()),
    Stage("stage2", 60, ("--lr", "1e-3", "--weight-decay", "0.05", "--seed", "1")),
)


def stage_argv(stage: Stage, previous: Path | None, cache: Path, out: Path, epochs: int,
               extra: list[str]) -> list[str]:
    """training.train's arguments for one stage: it resumes when its folder holds a run."""
    folder = out / stage.name
    argv = ["--cache", str(cache), "--out", str(folder), "--epochs", str(epochs), *COMMON, *stage.flags, *extra]
    if started(folder):
        argv.append("--resume")
    elif previous is not None:
        argv += ["--init", str(previous / "best.keras")]
    return argv


def started(folder: Path) -> bool:
    return (folder / "state.json").exists()


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m training.recipe", description=summary(__doc__),
        epilog="Other options go to training.train in both stages, after the recipe's own flags, so they "
               "override them (e.g. --config tiny --limit 8 for a quick run).")
    parser.add_argument("--cache", type=named_path, required=True)
    parser.add_argument("--out", type=named_path, required=True, help="folder of the two stage runs")
    parser.add_argument("--epochs", type=at_least(1), nargs=len(STAGES), metavar="N",
                        default=[stage.epochs for stage in STAGES], help="epochs of each stage")
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)  # the recipe resumes
    parser.add_argument("--init", help=argparse.SUPPRESS)  # and chains its stages itself
    parser.add_argument("--freeze-front-end", action="store_true", help=argparse.SUPPRESS)  # from the first
    args, extra = parser.parse_known_args(argv)
    if args.resume or args.init:
        parser.error("the recipe resumes and chains its stages itself: run the same command again to resume")
    if args.freeze_front_end:
        parser.error("the recipe trains every layer from the first: --freeze-front-end is a fine-tune's "
                     "(training.finetune, or training.train --init MODEL)")
    previous = None
    for i, (stage, epochs) in enumerate(zip(STAGES, args.epochs)):
        if i + 1 == len(STAGES) or not started(args.out / STAGES[i + 1].name):
            code = train.main(stage_argv(stage, previous, args.cache, args.out, epochs, extra),
                              to_continue="run the same command again", result=False, prog=parser.prog)
            if code:
                return code
        previous = args.out / stage.name
    previous = args.out / STAGES[-1].name
    try:  # a state whose run was already trained, unread until now: one line, not a KeyError
        state = train.read_state(previous / "state.json")
        if state["best_cer"] is None:
            raise ValueError(f"{previous / 'state.json'} records no validated epoch")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"the model: {previous / 'best.keras'} (epoch {state['best_epoch']} of {previous.name}, "
          f"val CER {state['best_cer']:.4f} WER {state['best_wer']:.4f})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
