"""transcribe(): a whole video read from Python, as run_live reads it headless, on real GRID clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import run_live
from realtime.captions import PolicyOptions
from realtime.grid import GRID_FPS, read_align
from realtime.transcribe import TranscribeError, transcribe
from tests.test_live import CLIPS, GRID, clip, write_video
from tests.test_tracker import read_frames


def test_a_video_reads_as_the_command_reads_it_each_word_timed_near_its_speech(
        capsys: pytest.CaptureFixture) -> None:
    """The text run_live prints, each word with the time it was said: within half a second of where the
    clip's align file has it (a word is timed from its lips' movement, which begins before its sound)."""
    name = CLIPS[1]
    read = transcribe(clip(name))
    assert run_live.main(["--source", str(clip(name)), "--headless", "--fast"]) == 0
    assert read.text + "\n" == capsys.readouterr().out and read.error is None
    assert " ".join(w.text for w in read.words) == " ".join(read.text.split()) and read.phrases[:1] == (0,)
    said = {token.word: (token.start / GRID_FPS, token.end / GRID_FPS)
            for token in read_align(GRID / "align" / f"{name}.align") if token.is_word}
    assert len(said) == 6 and len(read.words) >= 5  # the model may miss a word; then it is not timed
    for word in read.words:
        if word.text in said:
            start, end = said[word.text]
            assert start - 0.6 < word.start <= word.end < end + 0.5, (word, start, end)
    # The policy's decoder, and a bundled model by name (as --model takes it).
    grammar = transcribe(clip(name), model="lipstream-lite.int8.onnx", policy=PolicyOptions(decoder="grammar"))
    assert len(grammar.text.split()) == 6


def test_what_cannot_be_read_raises_the_line_the_command_prints(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    empty_room = write_video(tmp_path / "room.avi", [np.full((288, 360, 3), 90, np.uint8)] * 25, 25.0, "MJPG")
    (tmp_path / "notes.mp4").write_text("not a video\n")
    for source in (tmp_path / "missing.mp4", tmp_path / "notes.mp4", empty_room):
        with pytest.raises(TranscribeError) as raised:
            transcribe(source)
        assert run_live.main(["--source", str(source), "--headless", "--fast"]) == run_live.EXIT_USAGE
        assert capsys.readouterr().err.splitlines()[-1] == f"lipstream: error: {raised.value}"
    with pytest.raises(TranscribeError, match="^no model at "):
        transcribe(clip(CLIPS[0]), model=tmp_path / "none.onnx")


def test_a_video_cut_off_keeps_the_words_before_the_cut_and_says_why(tmp_path: Path) -> None:
    frames = read_frames(clip(CLIPS[0]))
    path = write_video(tmp_path / "clip.avi", frames + frames, 25.0, "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])  # the first copy survives whole
    whole, cut = transcribe(clip(CLIPS[0])), transcribe(path)
    assert cut.error is not None and cut.error.startswith("video ended early")
    assert (cut.text + "\n").startswith(whole.text + "\n")
