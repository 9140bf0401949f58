"""training.concat: real GRID clips joined into one video and one align file, the stand-in for a person
who keeps talking that the streaming figures are measured on."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

import training.concat
from realtime.grid import read_align
from training.concat import main as concat_main
from training.video import Mp4Writer, read_video


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


def test_a_clip_cut_short_or_with_a_broken_align_file_is_left_out_whole(grid_subset, grid_s1: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture):
    """A video ending before its last word (21 of 75 frames kept) would put words on no frames, a
    garbled align file has no words to give, and a video at another rate than the first (50 fps) would
    play at the joined video's, slowed, its words where its frames are not: each is skipped, said in a
    line, and the rest is joined."""
    from tests.test_capture import ffmpeg

    grid = grid_subset(("bbaf2n", "bbaf4p"))
    speaker = grid / "s1"
    ffmpeg("-i", str(grid_s1 / "video" / "bbaf3s.mp4"), "-frames:v", "21", str(speaker / "video" / "bbaf3s.mp4"))
    shutil.copy(grid_s1 / "align" / "bbaf3s.align", speaker / "align" / "bbaf3s.align")
    (speaker / "align" / "bbaf4p.align").unlink()
    (speaker / "align" / "bbaf4p.align").write_text("0 not a line\n")
    ffmpeg("-i", str(grid_s1 / "video" / "bbaf5a.mp4"), "-vf", "fps=50", str(speaker / "video" / "bbaf5a.mp4"))
    shutil.copy(grid_s1 / "align" / "bbaf5a.align", speaker / "align" / "bbaf5a.align")
    out = tmp_path / "stream.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 0
    skipped = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3, skipped
    assert skipped[0].startswith("skipped s1/bbaf3s: its video ends at 0.84 s, before its last word")
    assert skipped[1].startswith("skipped s1/bbaf4p: ")
    assert skipped[2] == "skipped s1/bbaf5a: its video is 50 fps, the joined one 25 (the first clip's)"
    joined = read_align(out.with_suffix(".align"))
    assert joined == read_align(grid_s1 / "align" / "bbaf2n.align")
    video = cv2.VideoCapture(str(out))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 75


def test_clips_of_another_size_are_fitted_into_the_first_one_s_frame(grid_subset, grid_s1: Path, tmp_path: Path):
    """A clip filmed larger (here bbaf3s at twice the size) is scaled into the joined video's frame, not
    dropped frame by frame by OpenCV's writer, which would leave the align file's times ahead of it."""
    from tests.test_capture import ffmpeg

    grid = grid_subset(("bbaf2n",))
    speaker = grid / "s1"
    ffmpeg("-i", str(grid_s1 / "video" / "bbaf3s.mp4"), "-vf", "scale=720:576", str(speaker / "video" / "bbaf3s.mp4"))
    shutil.copy(grid_s1 / "align" / "bbaf3s.align", speaker / "align" / "bbaf3s.align")
    out = tmp_path / "stream.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 0
    video = cv2.VideoCapture(str(out))
    frames = []
    while (read := video.read())[0]:
        frames.append(read[1])
    assert len(frames) == 150 and {f.shape for f in frames} == {(288, 360, 3)}
    last = cv2.VideoCapture(str(grid_s1 / "video" / "bbaf3s.mp4"))
    originals = [last.read()[1] for _ in range(75)]
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(frames[75:], originals)]) < 6


def test_an_interrupted_run_leaves_the_earlier_video_whole(grid_subset, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture):
    """A real Ctrl-C (SIGINT) once a second run has written 100 of its 150 frames, its partial video on
    disk: one line says so, and the first run's video and align file are untouched, nothing else left."""
    grid, out = grid_subset(("bbaf2n", "bbaf3s")), tmp_path / "stream.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    write, written, partial_on_disk = Mp4Writer.write, [], []

    def pressing_ctrl_c(self: Mp4Writer, image) -> None:
        write(self, image)
        written.append(1)
        if len(written) == 100:
            partial_on_disk.append(self.partial.is_file())
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Mp4Writer, "write", pressing_ctrl_c)
    capsys.readouterr()
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 130
    assert len(written) == 100 and partial_on_disk == [True]  # the second clip was being written
    assert capsys.readouterr().err == f"interrupted: {out} is as it was\n"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_video_written_in_a_with_block_is_finished_as_the_block_ends(grid_s1: Path, tmp_path: Path):
    """Leaving the block normally finishes the file and moves it into place, as `close` does; no partial
    file is left, and its frames read back."""
    images = read_video(grid_s1 / "video" / "bbaf2n.mp4")[:10]
    out = tmp_path / "ten.mp4"
    with Mp4Writer(out, 25.0) as writer:
        for image in images:
            writer.write(image)
    assert [p.name for p in tmp_path.iterdir()] == ["ten.mp4"]
    assert len(read_video(out)) == 10 and writer.writer is None


def test_a_failed_align_file_leaves_the_earlier_video_and_its_words(grid_subset, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture):
    """A run whose align file cannot be written (here a folder stands at the temporary name it is written
    through) fails in one line, its video written and dropped: the earlier video and word times stay as
    they were, not a new video beside the old words."""
    grid, out = grid_subset(("bbaf2n", "bbaf3s")), tmp_path / "stream.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all", "--count", "1"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    blocker = tmp_path / ".stream.partial.align.tmp"
    blocker.mkdir()
    capsys.readouterr()
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: [Errno 21] Is a directory: '{blocker.resolve()}'\n", err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, blocker.name, "grid"])  # no partial file


def test_an_unwritable_output_is_one_line_and_exit_2(grid_subset, tmp_path: Path, capsys: pytest.CaptureFixture):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    assert concat_main(["--grid", str(grid_subset(("bbaf2n",))), "--out", str(blocker / "v.mp4"),
                        "--split", "all"]) == 2
    assert capsys.readouterr().err == f"error: cannot write {blocker / 'v.mp4'}: {blocker} is not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "grid"]  # refused before anything was made


def test_an_out_that_is_no_mp4_or_joins_nothing_is_one_line_and_makes_no_folder(grid_subset, grid_s1: Path,
                                                                                 tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture):
    """--out without .mp4 (or naming the .align the video's word times would go to) is refused before the
    clips are read; a run that joins no clip (its one video cut off before its words) says so in one line,
    and leaves no folder made for its output."""
    from tests.test_capture import ffmpeg

    grid = grid_subset(("bbaf2n",))
    for out in ("stream", "stream.align"):
        assert concat_main(["--grid", str(grid), "--out", str(tmp_path / "new" / out), "--split", "all"]) == 2
        assert capsys.readouterr().err == \
            "error: --out must name an .mp4 (its word times go beside it, in stream.align)\n"
    video = grid / "s1" / "video" / "bbaf2n.mp4"
    video.unlink()
    ffmpeg("-i", str(grid_s1 / "video" / "bbaf2n.mp4"), "-frames:v", "21", str(video))
    assert concat_main(["--grid", str(grid), "--out", str(tmp_path / "new" / "stream.mp4"), "--split", "all"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"error: the clip under {grid} could not be joined (it said why above)"
    assert not (tmp_path / "new").exists()


def copied_grid(grid_s1: Path, root: Path, names: tuple[str, ...]) -> Path:
    """A GRID folder of copies (not links) of the named real clips: files a wrong --out could replace."""
    for name in names:
        for kind, suffix in (("video", ".mp4"), ("align", ".align")):
            (root / "s1" / kind).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(grid_s1 / kind / f"{name}{suffix}", root / "s1" / kind / f"{name}{suffix}")
    return root


@pytest.mark.parametrize("out, says", [("video/bbaf3s.mp4", "video"), ("align/bbaf3s.mp4", "align file")],
                         ids=["video", "align"])
def test_an_output_that_is_a_clip_s_own_file_is_refused(out: str, says: str, grid_s1: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture):
    """--out naming a clip's video, or a name whose .align is a clip's align file: one line, exit 2, and
    the clips and their folders as they were (the joined video or word times would replace them)."""
    grid = copied_grid(grid_s1, tmp_path / "grid", ("bbaf2n", "bbaf3s"))
    before = {p: p.read_bytes() for p in grid.rglob("*") if p.is_file()}
    assert concat_main(["--grid", str(grid), "--out", str(grid / "s1" / out), "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and f"it is clip s1/bbaf3s's {says}," in err, err
    assert err.count("\n") == 1
    assert {p: p.read_bytes() for p in grid.rglob("*") if p.is_file()} == before


def test_a_folder_at_the_align_file_s_name_is_told_before_the_video_is_replaced(grid_subset, tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture):
    grid, out = grid_subset(("bbaf2n", "bbaf3s")), tmp_path / "stream.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all", "--count", "1"]) == 0
    video = out.read_bytes()
    out.with_suffix(".align").unlink()
    out.with_suffix(".align").mkdir()
    capsys.readouterr()
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 2
    assert capsys.readouterr().err == f"error: cannot write {out.with_suffix('.align')}: it is a folder\n"
    assert out.read_bytes() == video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid", "stream.align", "stream.mp4"]  # no partial file


def test_the_clips_are_looked_for_once(grid_subset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The clips joined and those an --out must not replace are found in one walk of the corpus (a full
    one is tens of thousands of clips), with an output already there to check against them."""
    grid, out, walks = grid_subset(("bbaf2n", "bbaf3s")), tmp_path / "stream.mp4", []
    out.write_bytes(b"an earlier video")
    find_clips = training.concat.find_clips
    monkeypatch.setattr(training.concat, "find_clips", lambda root: walks.append(root) or find_clips(root))
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all", "--count", "1"]) == 0
    assert walks == [grid]


def test_no_held_out_clip_is_told_with_the_way_on(grid_subset, tmp_path: Path, capsys: pytest.CaptureFixture):
    """Clips that all trained the bundled model, and --split val (the default): told as that, not as no clips."""
    grid = grid_subset(("bbaf2n", "bbaf3s"))
    assert concat_main(["--grid", str(grid), "--out", str(tmp_path / "v.mp4")]) == 2
    assert capsys.readouterr().err == (f"error: none of the 2 aligned clips under {grid} is held out for "
                                       "validation: --split all takes them all\n")
    assert not (tmp_path / "v.mp4").exists()
