"""training.concat: real GRID clips joined into one video and one align file, the stand-in for a person
who keeps talking that the streaming figures are measured on."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from training.concat import main as concat_main
from training.grid import read_align


def test_clips_join_into_one_video_with_shifted_word_times(grid_subset, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture):
    grid = grid_subset(("bbaf2n", "bbaf3s"))
    out = tmp_path / "out" / "new" / "stream.mp4"  # a fresh clone has no out/ yet
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 0
    assert "wrote" in capsys.readouterr().out
    video = cv2.VideoCapture(str(out))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 150 and video.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    first = read_align(grid / "s1" / "align" / "bbaf2n.align")
    second = read_align(grid / "s1" / "align" / "bbaf3s.align")
    joined = read_align(out.with_suffix(".align"))
    assert [t.word for t in joined] == [t.word for t in first + second]
    assert [t.start for t in joined[len(first):]] == pytest.approx([t.start + 75 for t in second])
    assert sorted(p.name for p in out.parent.iterdir()) == ["stream.align", "stream.mp4"]  # no partial file left


def test_an_interrupted_run_leaves_the_earlier_video_whole(grid_subset, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture):
    """Ctrl-C after the first clip of a second run: one line says so, and the first run's video is untouched."""
    import training.concat

    grid, out = grid_subset(("bbaf2n", "bbaf3s")), tmp_path / "stream.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    real, calls = training.concat.append_video, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training.concat, "append_video", interrupted)
    capsys.readouterr()
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 130
    assert capsys.readouterr().err == f"interrupted: {out} is as it was\n"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_an_unwritable_output_is_one_line_and_exit_2(grid_subset, tmp_path: Path, capsys: pytest.CaptureFixture):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    assert concat_main(["--grid", str(grid_subset(("bbaf2n",))), "--out", str(blocker / "v.mp4"),
                        "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
