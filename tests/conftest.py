"""Shared fixtures: the real GRID clips next to the repo, and one real cache prepared from a few of them."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.prepare import main as prepare_main

GRID_S1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid" / "s1"

# bbizzn starts with 12 corrupt frames (no face), so preparing it trims them.
PREPARED_CLIPS = ("bbaf2n", "bbaf3s", "bbizzn")


@pytest.fixture(scope="session")
def grid_s1() -> Path:
    """GRID speaker 1 (video/*.mp4, align/*.align); a missing folder is an error, not a reason to skip."""
    if not (GRID_S1 / "video").is_dir() or not (GRID_S1 / "align").is_dir():
        pytest.fail(f"real GRID clips not found: expected {GRID_S1}/video and {GRID_S1}/align "
                    "(the shared data folder next to the repo, see ../shared/data/README.md)", pytrace=False)
    return GRID_S1


def link_clip(grid_s1: Path, name: str, speaker_dir: Path) -> None:
    """Make clip `name` appear in `speaker_dir` (shared layout) without copying the data."""
    (speaker_dir / "video").mkdir(parents=True, exist_ok=True)
    (speaker_dir / "align").mkdir(parents=True, exist_ok=True)
    (speaker_dir / "video" / f"{name}.mp4").symlink_to(grid_s1 / "video" / f"{name}.mp4")
    (speaker_dir / "align" / f"{name}.align").symlink_to(grid_s1 / "align" / f"{name}.align")


@dataclass(frozen=True)
class PreparedRun:
    grid: Path  # a GRID folder: s1/ with the real clips and one unreadable x.mp4
    out: Path  # the finished cache
    exit_code: int
    log: str  # what the run wrote to stderr


@pytest.fixture(scope="session")
def prepared(grid_s1: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedRun:
    """`python -m training.prepare` run once over three real clips plus a text file named x.mp4."""
    root = tmp_path_factory.mktemp("prepared")
    speaker = root / "grid" / "s1"
    for name in PREPARED_CLIPS:
        link_clip(grid_s1, name, speaker)
    (speaker / "video" / "x.mp4").write_text("not a video\n")
    (speaker / "align" / "x.align").write_text("0 20000 sil\n20000 30000 bin\n30000 74500 sil\n")
    out = root / "s1.h5"
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        code = prepare_main(["--grid", str(root / "grid"), "--out", str(out), "--workers", "2"])
    return PreparedRun(root / "grid", out, code, log.getvalue())
