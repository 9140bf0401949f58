"""transcribe(): a whole video read from Python, as run_live reads it headless, on real GRID clips."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import run_live
from realtime.captions import PolicyOptions
from realtime.capture import Frame
from realtime.grid import GRID_FPS, read_align
from realtime.live import LivePipeline, StepResult
from realtime.transcribe import TranscribeError, transcribe
from tests.test_live import CLIPS, GRID, clip, stopped_while_opening, write_video
from tests.test_tracker import read_frames


def test_a_video_reads_as_the_command_reads_it_each_word_timed_near_its_speech(
        capsys: pytest.CaptureFixture) -> None:
    """The text run_live prints, with its decoder and model too, each word timed by the frames read as it:
    from 0.6 s before to 0.5 s after where the clip's align file has it (the lips move before the sound)."""
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
    # The policy, its decoder, the window and hop, and a bundled model by name (as --model takes it): the command's.
    options = PolicyOptions(policy="local-agreement", decoder="grammar")
    grammar = transcribe(clip(name), model="lipstream-lite.int8.onnx", policy=options, window=100, hop=2)
    assert run_live.main(["--source", str(clip(name)), "--headless", "--fast", "--model", "lipstream-lite.int8.onnx",
                          "--policy", "local-agreement", "--decoder", "grammar", "--window", "100", "--hop", "2"]) == 0
    assert grammar.text + "\n" == capsys.readouterr().out


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
    # Options run_live refuses, refused as it refuses them: before anything loads.
    for options, says in ((dict(provider="gpu"), "unknown provider 'gpu'"),
                          (dict(policy=PolicyOptions(decoder="beam-search")), "unknown decoder 'beam-search'"),
                          (dict(threads=-1), "threads must be from 0"),
                          (dict(window=50), "the window must be from 100 to 750 frames"),
                          (dict(hop=0), "the hop must be 1 frame or more"),
                          (dict(hop=76), "--hop must not exceed half the window"),
                          (dict(policy=PolicyOptions(decoder="beam", beam_width=0)), "the beam width must be from 1"),
                          (dict(policy=PolicyOptions("right-context", right_context=150)),
                           "--right-context must be less than the window")):
        with pytest.raises(TranscribeError, match=f"^{says}"):
            transcribe(clip(CLIPS[0]), **options)
    for source, says in (("0", "0 is a camera, which never ends"), ("", "an empty name names no file")):
        with pytest.raises(TranscribeError, match=f"^{says}"):
            transcribe(source)


def test_a_video_cut_off_keeps_the_words_before_the_cut_and_says_why(tmp_path: Path) -> None:
    frames = read_frames(clip(CLIPS[0]))
    path = write_video(tmp_path / "clip.avi", frames + frames, 25.0, "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])  # the first copy survives whole
    whole, cut = transcribe(clip(CLIPS[0])), transcribe(path)
    assert cut.error is not None and cut.error.startswith("video ended early")
    assert (cut.text + "\n").startswith(whole.text + "\n")


def test_a_stop_mid_video_ends_the_reading_between_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (a real SIGINT, as frame 40 is read): Python's own handler raises KeyboardInterrupt once the
    frame is read, no reading thread left behind; a script's handler that only notes the stop gets the words
    read until then, and where it stopped, not a cut-short transcript passed off as whole."""
    step = LivePipeline.step

    def pressing_ctrl_c(pipeline: LivePipeline, frame: Frame) -> StepResult:
        if frame.index == 40:
            signal.raise_signal(signal.SIGINT)
        return step(pipeline, frame)

    monkeypatch.setattr(LivePipeline, "step", pressing_ctrl_c)
    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        transcribe(clip(CLIPS[1]))
    assert threading.active_count() == threads
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: noted.append(number))
    try:
        read = transcribe(clip(CLIPS[1]))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert noted == [signal.SIGINT] and read.error == "stopped at 1.6 s"
    assert read.words and all(w.end <= 1.6 for w in read.words)


@pytest.mark.parametrize("handler", ["python's", "noting"])
def test_a_stop_while_a_url_that_does_not_answer_opens_ends_the_call_at_once(handler: str) -> None:
    """A real SIGINT sent as the open of a URL that does not answer is under way ends the call well before
    OpenCV would give up on it (30 s), as KeyboardInterrupt, or, for a script's handler that notes the stop,
    with nothing read and the reason."""
    def script(url: str) -> list[str]:
        return [sys.executable, "-c", f"""if True:
            import signal
            from realtime.transcribe import transcribe
            if {handler == "noting"}:
                signal.signal(signal.SIGINT, lambda number, frame: None)
            try:
                print(repr(transcribe({url!r})))
            except KeyboardInterrupt:
                print("KeyboardInterrupt")"""]

    result, _ = stopped_while_opening(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("KeyboardInterrupt\n" if handler == "python's" else
                             "Transcript(text='', words=(), phrases=(), error='stopped before the first frame')\n")
