"""The bundled model's recipe, from scratch in one resumable command: two runs of training.train.

    python -m training.recipe --cache FILE.h5 --out runs/NAME [training.train options for both stages]

Stage 1 trains `lite` from random weights (cosine schedule from lr 2e-3, 100 epochs); stage 2 starts
again from stage 1's best weights at lr 1e-3 with weight decay for 60 epochs (a warm restart, measured
better than stage 1 alone: README). Each stage is a run folder of its own (OUT/stage1, OUT/stage2); run the same command again to resume where it stopped.
The model to keep is OUT/stage2/best.keras.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from training import train


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    flags: tuple[str, ...]


COMMON = ("--config", "lite", "--char-target", "silence", "--char-weight", "0.5", "--patience", "100")
STAGES = (
    Stage("stage1", 100, ()),
    Stage("stage2", 60, ("--lr", "1e-3", "--weight-decay", "0.05", "--seed", "1")),
)


def stage_argv(stage: Stage, previous: Path | None, cache: Path, out: Path, epochs: int,
               extra: list[str]) -> list[str]:
    """training.train's arguments for one stage: it resumes when its folder holds a run."""
    folder = out / stage.name
    argv = ["--cache", str(cache), "--out", str(folder), "--epochs", str(epochs), *COMMON, *stage.flags, *extra]
    if (folder / "state.json").exists():
        argv.append("--resume")
    elif previous is not None:
        argv += ["--init", str(previous / "best.keras")]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recipe", description=__doc__.split("\n")[0],
                                     epilog="Other options are passed to training.train in both stages.")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of the two stage runs")
    parser.add_argument("--epochs", type=int, nargs=len(STAGES), metavar="N",
                        default=[stage.epochs for stage in STAGES], help="epochs of each stage")
    args, extra = parser.parse_known_args(argv)
    previous = None
    for stage, epochs in zip(STAGES, args.epochs):
        code = train.main(stage_argv(stage, previous, args.cache, args.out, epochs, extra))
        if code:
            return code
        previous = args.out / stage.name
    state = json.loads((previous / "state.json").read_text())
    print(f"the model: {previous / 'best.keras'} (epoch {state['best_epoch']} of {previous.name}, "
          f"val CER {state['best_cer']:.4f} WER {state['best_wer']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
