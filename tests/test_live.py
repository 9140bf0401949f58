"""The live loop end to end, headless, on real GRID clips and honest stand-ins for a camera."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import jiwer
import numpy as np
import pytest

import run_live
from realtime.backend import OnnxModel, streaming_paths
from realtime.captions import TimedWord
from realtime.capture import Frame, FrameSource, Resampler, SourceOptions
from realtime.decode import greedy
from realtime.grid import read_align, sentence_from_code
from realtime.live import LiveOptions, LivePipeline
from realtime.outputs import CUE_GAP, READING_RATE, SHORTEST_CUE, WORDS_PER_CUE, cues
from realtime.tracker import MouthTracker, TrackerOptions
from tests.conftest import made_once, maps, transcript, writes_as_read
from tests.test_tracker import at_x, read_frames
from training.concat import concat

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "lipstream-lite.onnx"
GRID = ROOT.parent / "shared" / "data" / "grid" / "s1"
CLIPS = ("bbaf5a", "bgwb6p", "bram2n")  # from the validation split: clips the model never trained on


@functools.cache
def bundled_model() -> OnnxModel:
    """The bundled model on the CPU, loaded once per process."""
    assert MODEL.is_file(), f"the bundled model is missing: {MODEL}"
    return OnnxModel(MODEL, "cpu")


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return bundled_model()


def clip(name: str) -> Path:
    path = GRID / "video" / f"{name}.mp4"
    assert path.is_file(), f"GRID clip missing: {path} (see ../shared/data/README.md)"
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float, fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def offline_text(model: OnnxModel, path: Path, frames: int | None = None) -> str:
    """The offline reading: every crop of the clip (of its first `frames` frames, when given) through the
    full model at once, greedy."""
    with MouthTracker(TrackerOptions(crop=model.spec.crop)) as tracker:
        crops = [tracker.process(f, i / 25).crop for i, f in enumerate(read_frames(path)[:frames])]
    return greedy(model.window_logp(np.stack([c for c in crops if c is not None])), model.spec.vocabulary).text


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """The bundled model's offline_text of a GRID clip, by name: read once per test run."""
    @functools.cache
    def text(name: str) -> str:
        read = made_once(tmp_path_factory, f"offline_{name}",
                         lambda _: {"text": offline_text(bundled_model(), clip(name))})
        return read["text"]
    return text


def cue_words(subtitles: Path) -> list[str]:
    """The words of an SRT or WebVTT file's cues, in order (a WebVTT file's header is no cue)."""
    lines = subtitles.read_text().splitlines()
    if lines[:1] == ["WEBVTT"]:
        lines = lines[1:]
    return [w for line in lines if line and "-->" not in line and not line.isdigit() for w in line.split()]


def run_headless(tmp_path: Path, source: Path, *extra: str) -> tuple[int, list[dict]]:
    out = tmp_path / "captions.jsonl"
    code = run_live.main(["--source", str(source), "--model", str(MODEL), "--headless", "--fast",
                          "--jsonl", str(out), *extra])
    return code, [json.loads(line) for line in out.read_text().splitlines()]


def test_streaming_transcript_matches_offline_decode(offline: Callable[[str], str], tmp_path: Path) -> None:
    refs, streamed = [], []
    for name in CLIPS:
        code, lines = run_headless(tmp_path, clip(name))
        assert code == 0
        assert lines[-1]["final"] is True
        changes = lines[:-1]
        assert changes, "no caption changes"
        for before, after in zip(changes, changes[1:]):
            assert after["t"] >= before["t"]
            assert (after["commit"], after["tentative"]) != ("", before["tentative"]), "a line that changes nothing"
        assert lines[-1]["text"] == transcript(changes)
        refs.append(offline(name))
        streamed.append(lines[-1]["text"])
    assert all(refs), "the bundled model read nothing offline"
    # The pause policy reads each phrase from rest to rest, as the offline decode reads the whole clip,
    # and both read at least five of each held-out sentence's six words.
    assert streamed == refs
    assert all(jiwer.wer(sentence_from_code(name), text) <= 1 / 6 for name, text in zip(CLIPS, streamed)), streamed


def test_every_provider_choice_reads_on_the_cpu_here_and_says_why(offline: Callable[[str], str], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """--provider cpu, auto and cuda on this machine without a GPU: the run goes to the CPU and its first
    line says why (as choose_provider finds with the ONNX Runtime build installed), and reads the clip as
    the offline decode does."""
    import onnxruntime as ort

    listed = "CUDAExecutionProvider" in ort.get_available_providers()
    no_cuda = "no usable CUDA device or libraries" if listed else "this ONNX Runtime build has no CUDA provider"
    for provider, reason in (("cpu", "CPU requested"), ("auto", no_cuda), ("cuda", no_cuda)):
        code, lines = run_headless(tmp_path, clip(CLIPS[2]), "--provider", provider)
        said = capsys.readouterr().err.splitlines()
        assert code == 0 and said[0] == f"lipstream: running on CPU ({reason}); model {MODEL.name}, 25 fps, " \
                                        "decoder greedy", said
        assert lines[-1]["text"] == offline(CLIPS[2]), provider


def srt_cues(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue of an SRT file."""
    def seconds(stamp: str) -> float:
        h, m, s = stamp.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    out = []
    for block in path.read_text().strip().split("\n\n"):
        _, times, text = block.splitlines()
        start, end = times.split(" --> ")
        out.append((seconds(start), seconds(end), text))
    return out


def test_subtitle_cues_follow_the_speech_and_never_overlap(tmp_path: Path) -> None:
    """Three held-out sentences in a row: a cue for each, starting near where its sentence's speech starts
    (the align file), up until the speech ends, and gone before the next one starts."""
    video = tmp_path / "three.mp4"
    concat(GRID, video, "val", 3, 0)
    srt = tmp_path / "three.srt"
    code, lines = run_headless(tmp_path, video, "--srt", str(srt))
    assert code == 0
    found = srt_cues(srt)
    assert "\n".join(text for _, _, text in found) == lines[-1]["text"]  # a cue for each phrase, a line
    assert all(start < end for start, end, _ in found)
    assert all(next_start - end >= CUE_GAP - 0.001 for (_, end, _), (next_start, _, _) in zip(found, found[1:]))
    words = [t for t in read_align(video.with_suffix(".align")) if t.is_word]
    spoken = [(words[i].start / 25, words[i + 5].end / 25) for i in range(0, len(words), 6)]  # GRID: 6 words
    assert len(found) == len(spoken) == 3
    for (start, end, _), (speech_start, speech_end) in zip(found, spoken):
        assert speech_start - 0.6 < start < speech_start + 0.2, (start, speech_start)
        assert end > speech_end - 0.2, (end, speech_end)


def test_no_cue_outlasts_the_video(tmp_path: Path) -> None:
    """A clip cut off in its last word: its cue, up LINGER after the word and long enough to read, ends with
    the video, as subtitling checks ask (it ran 0.4 s past a video's end); the cue keeps every word read. The
    same clip followed by 2 s without a face is not cut there: the video goes on."""
    from tests.test_capture import ffmpeg

    cut, faceless, srt = tmp_path / "cut.mp4", tmp_path / "faceless.mp4", tmp_path / "cut.srt"
    ffmpeg("-i", str(clip(CLIPS[0])), "-t", "2.0", "-an", str(cut))
    ffmpeg("-i", str(cut), "-vf", "tpad=stop=50:color=black", str(faceless))
    capture = cv2.VideoCapture(str(cut))
    length = capture.get(cv2.CAP_PROP_FRAME_COUNT) / capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    ends = []
    for video in (cut, faceless):
        code, lines = run_headless(tmp_path, video, "--srt", str(srt))
        assert code == 0 and lines[-1]["text"]
        found = srt_cues(srt)
        assert cue_words(srt) == lines[-1]["text"].split()
        ends.append(found[-1][1])
    assert found[-1][0] < ends[0] <= length + 0.0005, (found, length)
    assert ends[1] > ends[0], ends  # past the cut: up LINGER after the last word said


def test_cues_group_phrases_and_stay_up_long_enough_to_read() -> None:
    def word(text: str, start: float, committed_at: float) -> TimedWord:
        return TimedWord(text, start, start + 0.2, committed_at)

    phrase = [word(w, 0.5 + 0.05 * i, 3.0) for i, w in enumerate("set red at a nine again please".split())]
    late = [word("now", 1.4, 4.0), word("bin", 2.0, 4.5), word("blue", 9.0, 9.5)]
    made = cues(phrase + late)
    # Committed together (the pause policy's phrase): one cue, of WORDS_PER_CUE words at most; words
    # committed apart share a cue only without a pause between them.
    assert [c.text for c in made] == ["set red at a nine again", "please now bin", "blue"]
    assert len(made[0].text.split()) == WORDS_PER_CUE
    # "please" waits until the first cue has been up long enough to read (23 characters: 1.53 s; it was cut
    # at SHORTEST_CUE, 27 characters a second), and the first goes CUE_GAP before it comes.
    assert made[1].start == pytest.approx(made[0].start + len(made[0].text) / READING_RATE + CUE_GAP)
    assert made[0].end == pytest.approx(made[1].start - CUE_GAP)
    assert made[1].end == pytest.approx(made[1].start + len("please now bin") / READING_RATE)  # reading time
    # Said sooner (the first cue from 1 s, "please now bin" by 2.1 s), the second phrase would come up only after
    # its words were said: it is the first cue's second line, up long enough to read both (it came at 5/6 s).
    sooner = cues([replace(w, start=w.start + 0.5, end=w.end + 0.5) for w in phrase] +
                  [word("now", 1.6, 4.0), word("bin", 1.9, 4.5)])
    assert [(c.text, c.start) for c in sooner] == [("set red at a nine again\nplease now bin", 1.0)]
    assert sooner[0].end == pytest.approx(1.0 + len(sooner[0].text) / READING_RATE)
    # A two-line cue is up long enough to read its first line before the next comes (it was 5/6 s alone).
    two = cues([replace(w, start=w.start + 0.5, end=w.end + 0.5) for w in phrase[:6]] +
               [word("bin", 2.3, 4.0), word("now", 2.6, 5.0)], phrase_starts=[0, 6, 7])
    assert [c.text for c in two] == ["set red at a nine again\nbin", "now"]
    assert two[1].start == pytest.approx(1.0 + len("set red at a nine again") / READING_RATE + CUE_GAP)
    assert made[2].end - made[2].start == pytest.approx(SHORTEST_CUE)  # a short word stays up long enough
    # Words the lips could not tell apart in time (all at one instant) still give a cue one can read: what
    # would wait past its words is the cue's second line.
    same = cues([TimedWord(w, 1.0, 1.0, 2.0) for w in "bin blue at f two now please".split()])
    assert [c.text for c in same] == ["bin blue at f two now\nplease"]
    assert same[0].end - same[0].start == pytest.approx(len(same[0].text) / READING_RATE)
    # Two phrases committed by one read (reads --hop frames apart; a new stream begun at once): a cue each.
    both = [word(w, 1.0 + 0.3 * i, 5.0) for i, w in enumerate(["set", "red"])] + \
        [word(w, 2.0 + 0.3 * i, 5.0) for i, w in enumerate(["bin", "blue"])]
    assert [c.text for c in cues(both)] == ["set red bin blue"]
    assert [(c.text, c.start) for c in cues(both, phrase_starts=[0, 2])] == [("set red", 1.0), ("bin blue", 2.0)]


def test_cues_of_phrases_said_faster_than_they_can_be_read_keep_pace() -> None:
    """Twenty one-word phrases 0.75 s apart, faster than a cue a SHORTEST_CUE: each cue waits for the one before
    to have been up that long, but none comes up after its words were said (the code before fell 0.08 s further
    behind with each, and its last cues came up after their words). Each cue is up SHORTEST_CUE at least, and
    gone CUE_GAP before the next comes (a line replaced by another is seen to change), and every word is in one,
    in order."""
    said = [TimedWord(f"w{i}", 0.75 * i, 0.75 * i + 0.2, 0.75 * i + 0.7) for i in range(20)]
    made = cues(said, phrase_starts=range(20))
    assert " ".join(c.text for c in made).split() == [w.text for w in said]
    shown_at = [c.start for c in made for _ in c.text.split()]
    assert all(start <= w.end for start, w in zip(shown_at, said)), list(zip(shown_at, said))
    assert all(c.end - c.start >= SHORTEST_CUE - 1e-9 for c in made)
    assert all(b.start - a.end >= CUE_GAP - 1e-9 for a, b in zip(made, made[1:]))


def test_frames_after_the_last_update_are_read_before_the_end(tmp_path: Path) -> None:
    """With --hop 40 the captions of a 75-frame clip update at frame 40 only; the frames after it (the
    end of the sentence) are still read before the final flush."""
    sparse = run_headless(tmp_path, clip(CLIPS[0]), "--hop", "40")
    every_frame = run_headless(tmp_path, clip(CLIPS[0]))
    assert sparse[0] == every_frame[0] == 0
    assert sparse[1][-1]["text"] == every_frame[1][-1]["text"] != ""


def test_subtitles_hold_the_committed_words(tmp_path: Path) -> None:
    srt, vtt = tmp_path / "out.srt", tmp_path / "out.vtt"
    code, lines = run_headless(tmp_path, clip(CLIPS[0]), "--srt", str(srt), "--vtt", str(vtt))
    assert code == 0
    assert cue_words(srt) == lines[-1]["text"].split()
    assert vtt.read_text().startswith("WEBVTT\n\n")
    assert cue_words(vtt) == lines[-1]["text"].split()


def test_subtitles_named_dash_go_to_stdout_at_the_end(offline: Callable[[str], str], tmp_path: Path) -> None:
    """`--srt -`, as `--jsonl -`: the subtitles on stdout, once, and no file named "-"."""
    result = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])),
                             "--headless", "--fast", "--srt", "-"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    numbers = [int(line) for line in result.stdout.splitlines() if line.isdigit()]
    assert numbers == list(range(1, result.stdout.count("-->") + 1)) and numbers  # whole, and once
    subtitles = tmp_path / "stdout.srt"
    subtitles.write_text(result.stdout)
    assert cue_words(subtitles) == offline(CLIPS[0]).split()
    assert list(tmp_path.iterdir()) == [subtitles]


def test_outputs_go_into_folders_made_for_them(tmp_path: Path) -> None:
    srt, jsonl = tmp_path / "new" / "out.srt", tmp_path / "other" / "deeper" / "captions.jsonl"
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(MODEL), "--headless", "--fast",
                          "--srt", str(srt), "--jsonl", str(jsonl)])
    assert code == 0
    final = json.loads(jsonl.read_text().splitlines()[-1])
    assert final["text"] and cue_words(srt) == final["text"].split()


def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(MODEL), "--headless", "--fast",
                          "--vtt", str(blocker / "out.vtt")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: cannot write {blocker / 'out.vtt'}: {blocker} is not a folder" in err
    assert "first frame processed" not in err and "Traceback" not in err


@pytest.mark.parametrize("option, name, says", [
    ("--srt", "out.vtt", "--srt writes SRT subtitles, and {path} is named as VTT: use --vtt for it, or another name"),
    ("--vtt", "out.SRT", "--vtt writes VTT subtitles, and {path} is named as SRT: use --srt for it, or another name"),
    ("--jsonl", "out.srt",
     "--jsonl writes JSON lines, and {path} is named as SRT subtitles: use --srt for it, or another name")])
def test_subtitles_named_as_the_other_format_are_refused(option: str, name: str, says: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A player goes by the name: SRT text in a .vtt file would not play."""
    with pytest.raises(SystemExit) as exit_:
        run_live.main(["--source", str(clip(CLIPS[0])), "--headless", option, str(tmp_path / name)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and says.format(path=tmp_path / name) in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("outputs", [("--jsonl", "VIDEO"), ("--srt", "VIDEO"), ("--srt", "x.txt", "--vtt", "x.txt"),
                                     ("--jsonl", "x.txt", "--srt", "x.txt"), ("--jsonl", "LINK")])
def test_outputs_that_would_overwrite_the_video_or_each_other_are_refused(
        outputs: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The video named as an output, or through a hard link to it (LINK: the JSON lines, written into the
    file, would empty it), or one output named twice."""
    video = tmp_path / "talk.mp4"
    video.write_bytes(clip(CLIPS[0]).read_bytes())
    os.link(video, tmp_path / "link.mp4")
    names = {"VIDEO": str(video), "LINK": str(tmp_path / "link.mp4")}
    args = [names.get(a) or (str(tmp_path / a) if "." in a else a) for a in outputs]
    for source in (str(video), video.as_uri()):  # a file:// URL names the same file
        code = run_live.main(["--source", source, "--model", str(MODEL), "--headless", "--fast", *args])
        err = capsys.readouterr().err
        assert code == 2 and "choose another file" in err and err.count("\n") == 1
        assert video.read_bytes() == clip(CLIPS[0]).read_bytes()


@pytest.mark.parametrize("output, part", [("--srt", ""), ("--vtt", ".step"), ("--jsonl", ".back")])
def test_outputs_that_would_overwrite_the_model_or_its_streaming_parts_are_refused(
        output: str, part: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The model and its two streaming parts are read too: an output named like one of them would leave a
    model that no longer loads."""
    model = tmp_path / "m.onnx"
    for source, target in zip((MODEL, *streaming_paths(MODEL)), (model, *streaming_paths(model))):
        shutil.copy(source, target)
    target = tmp_path / f"m{part}.onnx"
    before = target.read_bytes()
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(model), "--headless", "--fast",
                          output, str(target)])
    what = "the model read" if not part else "a part of the model read"
    assert code == 2 and capsys.readouterr().err == f"lipstream: error: {target} is {what}: choose another file\n"
    assert target.read_bytes() == before


def test_a_model_missing_or_with_broken_streaming_parts_is_refused_in_one_line(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(MODEL.read_bytes())
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(MODEL.read_bytes())
    broken.with_suffix(".step.onnx").write_text("not a model\n")
    broken.with_suffix(".back.onnx").write_bytes(MODEL.with_suffix(".back.onnx").read_bytes())
    swapped = tmp_path / "swapped.onnx"
    swapped.write_bytes(MODEL.read_bytes())
    swapped.with_suffix(".step.onnx").write_bytes(MODEL.with_suffix(".back.onnx").read_bytes())
    swapped.with_suffix(".back.onnx").write_bytes(MODEL.with_suffix(".back.onnx").read_bytes())
    for model, message in ((alone, "has no alone.step.onnx or alone.back.onnx beside it: copy the export's three "
                                    "files together"), (broken, "is not a readable ONNX model"),
                           (swapped, "is not this model's streaming part")):
        code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(model), "--headless", "--fast"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err


def test_a_bundled_variant_is_found_by_its_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """`--model lipstream-lite.int8.onnx` outside the checkout (as an installed package is used): the
    bundled int8 model, not "no model"; a file of that name in the folder comes first."""
    monkeypatch.chdir(tmp_path)
    assert run_live.main(["--source", str(clip(CLIPS[0])), "--headless", "--fast", "--model",
                          "lipstream-lite.int8.onnx"]) == 0
    assert "model lipstream-lite.int8.onnx" in capsys.readouterr().err
    (tmp_path / "lipstream-lite.int8.onnx").write_text("a file of the user's\n")
    assert run_live.main(["--source", str(clip(CLIPS[0])), "--headless", "--fast", "--model",
                          "lipstream-lite.int8.onnx"]) == 2
    assert "is not a readable ONNX model" in capsys.readouterr().err


def test_a_model_whose_charset_cannot_spell_words_is_refused_in_one_line(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """Captions are words: a charset without a space (as many classes, so the graph agrees) is refused
    as the model loads, not at the first caption."""
    import onnx

    model = tmp_path / "nospace.onnx"
    for source, target in ((MODEL, model), *zip(streaming_paths(MODEL), streaming_paths(model))):
        proto = onnx.load(str(source))
        for entry in proto.metadata_props:
            if entry.key == "lipstream.charset":
                entry.value = entry.value.replace(" ", "-")
        onnx.save(proto, str(target))
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(model), "--headless", "--fast"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "must hold a space" in err, err


@pytest.mark.parametrize("display, says", [(None, "no display to open a window on"),
                                           (":4242", "cannot reach the display :4242 to open a window on")],
                         ids=["none", "stale"])
def test_no_display_is_one_line_not_an_abort(display: str | None, says: str, tmp_path: Path) -> None:
    """No X server named, or one named that is gone (an ended SSH session's DISPLAY): OpenCV's Qt would
    abort the process (exit 134, no word); the run says so in one line instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0]))],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**env, "DISPLAY": display} if display else env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"lipstream: error: {says}; use --headless, which prints the transcript"]


def test_a_subtitle_file_that_fails_at_the_end_leaves_the_transcript_on_stdout(
        offline: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    srt = tmp_path / "out.srt"
    (tmp_path / "out.srt.tmp").mkdir()  # the temporary file it is written through cannot be made
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(MODEL), "--headless", "--fast",
                          "--srt", str(srt)])
    captured = capsys.readouterr()
    assert code == 2 and not srt.exists()
    assert f"could not write {srt}" in captured.err and "Traceback" not in captured.err
    assert captured.out.strip() == offline(CLIPS[0])


@pytest.mark.skipif(not Path("/dev/full").exists(),
                    reason="needs /dev/full, a file whose writes fail as on a full disk")
def test_json_lines_that_cannot_be_written_leave_the_subtitles_and_the_transcript_on_stdout(
        offline: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    srt = tmp_path / "out.srt"
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(MODEL), "--headless", "--fast",
                          "--jsonl", "/dev/full", "--srt", str(srt)])
    captured = capsys.readouterr()
    assert code == 2 and "could not write /dev/full" in captured.err and "Traceback" not in captured.err
    text = offline(CLIPS[0])
    assert captured.out.strip() == text and cue_words(srt) == text.split()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, whose writes fail as on a full disk")
def test_a_file_output_that_fails_beside_subtitles_on_stdout_leaves_them_alone_there() -> None:
    """Stdout already holds the words (SRT subtitles): a failing VTT file is told, and the transcript is not
    printed after the subtitles, nor said to be."""
    run = _run("--source", str(clip(CLIPS[0])), "--headless", "--fast", "--srt", "-", "--vtt", "/dev/full")
    assert run.returncode == 2
    assert [line for line in run.stderr.splitlines() if "error" in line] == [
        "lipstream: error: could not write /dev/full (No space left on device)"]
    cue = run.stdout.splitlines()
    assert len(cue) == 3 and cue[0] == "1" and " --> " in cue[1] and len(cue[2].split()) == 6  # the SRT alone


@pytest.mark.parametrize("stdout", ["-", "/dev/stdout"])
def test_a_reader_that_leaves_stops_the_run_and_the_subtitles_are_kept(stdout: str, tmp_path: Path) -> None:
    """`--jsonl - | head -1`: the pipe closes after the first caption, and no one is left to caption for;
    stdout named by its path is stdout as `-` is."""
    srt = tmp_path / "out.srt"
    run = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless",
                            "--jsonl", stdout, "--srt", str(srt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT)
    assert json.loads(run.stdout.readline())["commit"] == ""
    run.stdout.close()
    err = run.stderr.read()
    assert run.wait(timeout=60) == 2 and "Traceback" not in err, err
    assert "error: stdout was closed" in err and srt.exists()


@pytest.mark.parametrize("output, lost, when", [
    (["--jsonl", "-"], "; stopped", "reading"),  # (its first caption waits on the pipe: a stop comes while reading)
    (["--srt", "-"], ": the SRT subtitles were not written", "reading"),
    (["--srt", "-"], ": the SRT subtitles were not written", "written"),
    ([], "", "reading"),  # the transcript, printed at the end
    ([], "", "written"),
])
def test_a_stop_ends_a_run_whose_stdout_reader_stopped_reading(output: list[str], lost: str, when: str,
                                                               tmp_path: Path) -> None:
    """`--jsonl - | a reader that stops reading`: once the pipe is full (here from the start) a line waits for
    the reader, and the run with it. A SIGTERM still ends the run, which says what was not written; before,
    it waited on the pipe for as long as the reader did. Subtitles and the transcript, written to stdout
    at the end, give way to it too: the stop comes while the clip is read, or once it was read (--fast)
    and they wait on the pipe."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 4096)
    os.set_blocking(write_end, True)
    fast = ["--fast"] if when == "written" else []
    run = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless",
                            *fast, *output], stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    os.close(write_end)
    try:
        lines = []
        while not any("first frame processed" in line for line in lines) and run.poll() is None:
            lines.append(run.stderr.readline())
        if when == "reading":  # into the clip, its first words read (their captions wait on the pipe)
            time.sleep(2.0)
        else:  # the clip read, what is written at the end waits on the pipe
            deadline = time.monotonic() + 120
            while not writes_as_read(run.pid):
                assert time.monotonic() < deadline and run.poll() is None, "the run never waited on the pipe"
                time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        err = "".join(lines) + run.communicate(timeout=30)[1]
    finally:
        run.kill()
        os.close(read_end)
    assert run.returncode == run_live.EXIT_INTERRUPTED and "Traceback" not in err, err
    what = "to stdout" if output else "the transcript to stdout"
    assert f"error: could not write {what} (its reader stopped reading){lost}" in err, err
    # The words read reach a file instead.
    saved = list(tmp_path.glob("lipstream-transcript-*.txt"))
    assert len(saved) == 1 and saved[0].read_text().strip() and f"lipstream: saved {saved[0].name}" in err, err


@pytest.mark.parametrize("subtitles", [[], ["--srt", "/dev/stderr"]])
def test_a_stop_ends_a_run_whose_stdout_and_stderr_share_a_pipe_its_reader_stopped_reading(subtitles: list[str],
                                                                                           tmp_path: Path) -> None:
    """`lipstream live --jsonl - |& a reader that stops reading`: lipstream's own lines on stderr wait on the full
    pipe as its captions do, and give way to a stop as they do (a line there had held the run for as long as
    the reader did, stop and all). The words read reach a file, also when the subtitles were to go to stderr,
    given up on by then (they had been written into the /dev/null put in its place)."""
    read_end, write_end = os.pipe()
    run = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless",
                            "--jsonl", "-", *subtitles], stdout=write_end, stderr=write_end, cwd=tmp_path)
    # The pipe, filled to the byte through an open of its own (the run's stays blocking, as a shell's pipe is),
    # which stays when the run's end closes.
    filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
    os.close(write_end)
    read = b""
    try:
        while b"after start\n" not in read:  # the first frame processed: the reader stops reading
            assert run.poll() is None, read.decode(errors="replace")
            if select.select([read_end], [], [], 0.5)[0]:
                read += os.read(read_end, 4096)
        for size in (4096, 1):
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.write(filler, b"x" * size)
        time.sleep(1.0)  # its next caption, or line, waits on the pipe
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=30)
    finally:
        run.kill()
        os.close(read_end)
        os.close(filler)
    assert code == run_live.EXIT_INTERRUPTED
    saved = list(tmp_path.glob("lipstream-transcript-*.txt"))
    assert len(saved) == 1 and saved[0].read_text().strip()


@pytest.mark.parametrize("stderr", ["closed", "broken"])
def test_a_closed_or_broken_stderr_costs_no_output(stderr: str, offline: Callable[[str], str], tmp_path: Path) -> None:
    """Started with stderr closed (`2>&-`), or with its reader gone before the first line (`2>&1 >x |
    head -0`): the lines on stderr are lost, the run and its outputs are not."""
    out, srt = tmp_path / "captions.jsonl", tmp_path / "out.srt"
    run = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless",
                            "--fast", "--jsonl", str(out), "--srt", str(srt)], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE if stderr == "broken" else None,
                           preexec_fn=(lambda: os.close(2)) if stderr == "closed" else None)
    if run.stderr:
        run.stderr.close()
    assert run.wait(timeout=120) == 0
    text = offline(CLIPS[0])
    assert json.loads(out.read_text().splitlines()[-1]) == {"final": True, "text": text}
    assert cue_words(srt) == text.split()


def test_outputs_written_over_keep_their_permissions_and_group(offline: Callable[[str], str], tmp_path: Path) -> None:
    """Subtitle files kept for a group (mode 640, in a group other than the user's own) keep mode and group
    after the run rewrote them through a temporary file; a user who may not give the file that group (a
    root without the power to, here) gets it back in their own group, readable by no group at all rather
    than by theirs."""
    other = 65534 if os.geteuid() == 0 else next((g for g in os.getgroups() if g != os.getegid()), None)
    if other is None:
        pytest.skip("the user belongs to no second group to give a file")
    command = [sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless", "--fast"]
    powerless = ["setpriv", "--inh-caps=-chown", "--bounding-set=-chown"] if os.geteuid() == 0 else None
    for run_as, expected in (([], (0o640, other)), (powerless, (0o600, os.getegid()))):
        if run_as is None:
            continue
        subtitles = [tmp_path / "shared.srt", tmp_path / "shared.vtt"]
        for path in subtitles:
            path.write_text("the group's own\n")
            path.chmod(0o640)
            os.chown(path, -1, other)
        result = subprocess.run([*run_as, *command, "--srt", str(subtitles[0]), "--vtt", str(subtitles[1])],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        for path in subtitles:
            assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_gid) == expected, (run_as, path.name)
        assert cue_words(subtitles[0]) == cue_words(subtitles[1]) == offline(CLIPS[0]).split()
        assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("option", ["--jsonl", "--srt"])
def test_an_existing_read_only_output_is_refused_and_kept(option: str, tmp_path: Path) -> None:
    """A file made read-only is not written, nor replaced: one line before the run (tried as the user
    runs it; root is run without its power to write anywhere)."""
    kept = tmp_path / "kept.txt"
    kept.write_text("the user's own\n")
    kept.chmod(0o444)
    command = [sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless", "--fast",
               option, str(kept)]
    if os.geteuid() == 0:
        command = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"lipstream: error: cannot write {kept}: Permission denied"]
    assert kept.read_text() == "the user's own\n"


def test_ctrl_c_stops_a_run_whose_json_lines_go_to_a_pipe_no_one_reads(tmp_path: Path) -> None:
    """A named pipe with no reader blocks the opening of the JSON lines; Ctrl-C still stops the run."""
    fifo = tmp_path / "captions.fifo"
    os.mkfifo(fifo)
    run = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless",
                            "--jsonl", str(fifo)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert "running on" in run.stderr.readline()  # the model has loaded; the pipe's opening blocks next
        time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == run_live.EXIT_INTERRUPTED
        assert "Traceback" not in run.stderr.read()
    finally:
        run.kill()


def test_a_stop_ends_a_run_whose_json_lines_pipe_reader_stopped_reading(tmp_path: Path) -> None:
    """`--jsonl FIFO` read by a process that has stopped reading (the pipe full): a caption line waits on it,
    and a SIGTERM ends the run, which says so, the transcript on stdout instead; before, the write held the
    run, stop requests and all, until it was killed (`--jsonl -` into the same pipe gave way)."""
    fifo = tmp_path / "captions.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that takes nothing
    filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(filler, b"x" * 4096)
    run = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless",
                            "--jsonl", str(fifo)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("first frame processed" in line for line in lines) and run.poll() is None:
            lines.append(run.stderr.readline())
        time.sleep(2.0)  # into the clip, its first words read: their caption line waits on the pipe
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        os.close(filler)
        os.close(reader)
    assert run.returncode == run_live.EXIT_INTERRUPTED and "Traceback" not in err, err
    assert f"lipstream: error: could not write {fifo} (its reader stopped reading); the transcript follows on " \
           "stdout" in err, err
    assert out.strip(), "the words read by the stop"


def open_files() -> list[str]:
    """What this process' file descriptors point to now."""
    links = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:  # closed since it was listed (the listing's own descriptor among them)
            pass
    return links


def test_the_json_lines_file_is_closed_when_the_run_ends(tmp_path: Path) -> None:
    """Closed by the run itself, as it ends: no descriptor of this process points to the file once the
    run has returned (a handle still referenced anywhere would keep one), and none is left for the
    garbage collector to find (it would warn)."""
    jsonl = os.path.realpath(tmp_path / "captions.jsonl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        code, lines = run_headless(tmp_path, clip(CLIPS[0]))
        assert jsonl not in open_files()
        gc.collect()
    assert code == 0 and lines[-1]["final"] is True
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and "captions.jsonl" in str(w.message)]
    assert jsonl not in open_files()


@pytest.mark.parametrize("on_stdout, says", [
    ((), "could not write the transcript to stdout (No space left on device)"),
    (("--srt", "-"), "could not write to stdout (No space left on device): the SRT subtitles were not written"),
])
def test_a_transcript_stdout_cannot_take_is_saved_to_a_file(on_stdout: tuple[str, ...], says: str,
                                                            offline: Callable[[str], str], tmp_path: Path) -> None:
    """Stdout on a full disk, taking the transcript (no output named) or the subtitles: one line says so,
    as stdout, and the words reach a file."""
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])),
                              "--headless", "--fast", *on_stdout], stdout=full, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, timeout=120)
    said = run.stderr.splitlines()
    assert run.returncode == 2 and all(line.startswith("lipstream: ") for line in said), run.stderr
    assert [line for line in said if "error" in line] == [f"lipstream: error: {says}"], run.stderr
    saved = list(tmp_path.glob("lipstream-transcript-*.txt"))
    assert len(saved) == 1 and f"lipstream: saved {saved[0].name}" in said
    assert saved[0].read_text() == offline(CLIPS[0]) + "\n"


def test_json_lines_stdout_cannot_take_stop_the_run_and_say_why(tmp_path: Path) -> None:
    """`--jsonl -` with stdout on a full disk: the run stops, as when its reader leaves, and says that
    stdout could not take the lines, not that it was closed."""
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])),
                              "--headless", "--fast", "--jsonl", "-"], stdout=full, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2 and [line for line in run.stderr.splitlines() if "error" in line] == [
        "lipstream: error: could not write to stdout (No space left on device); stopped"], run.stderr


def test_fake_camera_at_30_fps_is_resampled_to_the_model_rate(model: OnnxModel, tmp_path: Path) -> None:
    frames = read_frames(clip(CLIPS[0]))
    at_30 = [frames[min(len(frames) - 1, k * 25 // 30)] for k in range(90)]  # 3 s at 30 fps
    path = write_video(tmp_path / "cam30.mp4", at_30, 30.0)
    source = FrameSource(SourceOptions(source=str(path)))  # paced: served at 30 fps like a camera
    assert source.fps == pytest.approx(30.0)
    resampler = Resampler(model.spec.fps)
    out: list[Frame] = []
    source.start()
    try:
        for frame in source:
            out.extend(resampler.push(frame))
    finally:
        source.stop()
    assert source.read == 90
    assert len(out) == pytest.approx(75, abs=1)
    assert np.allclose(np.diff([f.t for f in out]), 1 / 25)
    # Every output frame is the source frame nearest its due time.
    assert all(abs(f.index / 30 - f.t) <= 1 / 60 + 1e-6 for f in out)
    assert len({f.index for f in out}) == len(out)  # 30 -> 25 fps drops frames, never repeats one


def test_black_frames_mid_stream_commit_and_restart(model: OnnxModel) -> None:
    a, b = read_frames(clip(CLIPS[0])), read_frames(clip(CLIPS[1]))
    black = [np.zeros_like(a[0])] * 25
    pipeline = LivePipeline(model, LiveOptions())
    results = [pipeline.step(Frame(f, i / 25, i, 0.0)) for i, f in enumerate(a + black + b)]
    gap = results[len(a):len(a) + 25]
    assert all(r.track.crop is None for r in gap[6:])  # after the tracker's 0.2 s hold
    assert any(r.no_face for r in gap)
    assert pipeline.backend.count == len(b)  # the stream restarted cleanly at the new face
    committed_at_gap = gap[-1].caption.committed
    assert committed_at_gap and gap[-1].caption.tentative == ""
    final = pipeline.finish()
    assert final.committed.startswith(committed_at_gap)
    assert len(final.committed) > len(committed_at_gap)
    pipeline.close()


def read_through(model: OnnxModel, frames: list[np.ndarray]) -> str:
    """The live pipeline's transcript of `frames`."""
    pipeline = LivePipeline(model, LiveOptions())
    for i, f in enumerate(frames):
        pipeline.step(Frame(f, i / 25, i, 0.0))
    text = pipeline.finish().committed
    pipeline.close()
    return text


def test_a_cut_to_another_place_ends_the_phrase_as_the_end_of_the_video_would(model: OnnxModel) -> None:
    """Two sentences cut to their speech and joined with no pause, the second with the face elsewhere in
    the frame (an edit, or another person): the first reads as it does alone, not run into the second."""
    said = []
    for name in CLIPS[:2]:
        words = [t for t in read_align(GRID / "align" / f"{name}.align") if t.word not in ("sil", "sp")]
        said.append(read_frames(clip(name))[int(words[0].start):int(words[-1].end) + 1])
    first = [at_x(f, 0, (288, 720)) for f in said[0]]
    second = [at_x(f, 360, (288, 720)) for f in said[1]]
    alone = read_through(model, first)
    assert alone and read_through(model, first + second).startswith(alone + " ")


@pytest.mark.parametrize("speed", [40, 1000], ids=["sliding_in", "there_at_once"])
def test_a_face_that_slides_out_and_back_reads_as_if_it_had_stayed(model: OnnxModel, speed: int) -> None:
    """Two sentences in a 1280x720 frame; between them the speaker slides out of the frame to the right
    and back in, still. That reads as the same sentences with an empty frame between them: not a
    letter more (FaceMesh reads a face half out of the frame with its mouth open, and its tracked
    landmarks lag and stretch a face that moves fast)."""
    a, b = (read_frames(clip(name)) for name in CLIPS[:2])
    home, out = 280, 1280

    def at(frame: np.ndarray, x: int) -> np.ndarray:
        return at_x(cv2.resize(frame, None, fx=2, fy=2), x, (720, 1280))

    leaving = [at(a[-1], home + (out - home) * i // 10) for i in range(1, 11)]  # in 0.4 s
    coming = [at(b[0], x) for x in range(out, home, -speed)]
    gone = [at(a[-1], out)] * 12  # an empty frame
    slid = [at(f, home) for f in a] + leaving + gone + coming + [at(f, home) for f in b]
    stayed = [at(f, home) for f in a] + [gone[0]] * (len(leaving) + len(gone) + len(coming)) + \
        [at(f, home) for f in b]
    text = read_through(model, stayed)
    assert len(text.split()) >= 10  # both six-word sentences are read
    assert read_through(model, slid) == text


def test_truncated_video_keeps_the_transcript_and_fails(offline: Callable[[str], str], tmp_path: Path) -> None:
    """The clip twice over, cut off at 70% of its bytes: the first copy survives whole and is read as the
    clip alone is, whatever is read of the second after it; the run still fails as cut short."""
    frames = read_frames(clip(CLIPS[0]))
    path = write_video(tmp_path / "clip.avi", frames + frames, 25.0, "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    code, lines = run_headless(tmp_path, path)
    assert code == run_live.EXIT_SOURCE_ENDED
    assert lines[-1]["final"] is True and (lines[-1]["text"] + "\n").startswith(offline(CLIPS[0]) + "\n")


def test_stop_request_keeps_the_transcript(tmp_path: Path) -> None:
    """SIGTERM mid-stream (a real signal to a real process reading at the file's own pace): the words
    read so far reach the JSON lines and the subtitles, and the exit code says it was interrupted."""
    frames = [f for name in CLIPS * 2 for f in read_frames(clip(name))]
    video = write_video(tmp_path / "long.avi", frames, 25.0, "MJPG")  # 18 s, paced: still running when stopped
    out, srt = tmp_path / "captions.jsonl", tmp_path / "out.srt"
    process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--headless",
                                "--jsonl", str(out), "--srt", str(srt)], cwd=ROOT, stderr=subprocess.DEVNULL)

    def committed() -> str:
        return transcript(json.loads(line) for line in out.read_text().splitlines()) if out.exists() else ""

    deadline = time.monotonic() + 60
    while not committed() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)  # until the first sentence is read and committed
    before = committed()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == run_live.EXIT_INTERRUPTED
    final = json.loads(out.read_text().splitlines()[-1])
    assert final["final"] is True and before and final["text"].startswith(before)
    assert cue_words(srt) == final["text"].split()


def test_ctrl_c_while_the_model_loads_stops_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Ctrl-C while the model loads (a real SIGINT, sent from inside the load): the run stops before its
    first frame, with no traceback and no misleading error from an interrupted import or load, and having
    read nothing, makes no JSON lines file."""
    import realtime.backend

    class Interrupted(realtime.backend.OnnxModel):
        def __init__(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(realtime.backend, "OnnxModel", Interrupted)
    out = tmp_path / "captions.jsonl"
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--headless", "--jsonl", str(out)])
    assert code == run_live.EXIT_INTERRUPTED
    assert "error" not in capsys.readouterr().err
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back for whoever runs next


def stopped_while_opening(command: Callable[[str], list[str]]) -> tuple[subprocess.CompletedProcess, str]:
    """`command(url)` run on a URL whose server takes the connection and never answers (which holds OpenCV's
    open for 30 s), a real SIGINT sent once it has the connection; what it did, and the URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/live"
    process = subprocess.Popen(command(url), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    connection: socket.socket | None = None
    try:
        server.settimeout(60)
        connection, _ = server.accept()  # the open is under way
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)  # OpenCV alone would hold it 30 s
    finally:
        process.kill()
        server.close()
        if connection is not None:
            connection.close()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), url


@pytest.mark.parametrize("to_stdout", [False, True])
def test_ctrl_c_while_a_url_that_does_not_answer_opens_stops_the_run_at_once(to_stdout: bool,
                                                                            tmp_path: Path) -> None:
    """A real SIGINT sent as the open of a URL that does not answer is under way ends the run well before
    OpenCV would give up on it (exit 130, said in one line); nothing was read, so its output file is not
    made, and JSON lines on stdout end with their final line."""
    out = tmp_path / "captions.jsonl"
    result, url = stopped_while_opening(lambda url: [sys.executable, str(ROOT / "run_live.py"), "--source", url,
                                                     "--headless", "--jsonl", "-" if to_stdout else str(out)])
    assert result.returncode == run_live.EXIT_INTERRUPTED, result.stderr
    assert result.stderr.splitlines() == [f"lipstream: stopped while opening {url}"]
    assert not out.exists() and result.stdout == ('{"final": true, "text": ""}\n' if to_stdout else "")


def test_ctrl_c_mid_frame_keeps_the_transcript(model: OnnxModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    """Ctrl-C (a real SIGINT, sent from inside) just after the back end took a frame and before its time was
    kept, with --hop 4 so the frames since the last update are read at the end: the frame is processed
    whole first, and the run stops as interrupted with the words read so far, not as a failure.

    Sent at the 54th frame (2.12 s), two after the last update: the words are those of the clip's first 54
    frames read offline, and the captions' last update is at that frame. Ended without reading those two
    frames, the run would give the first 52 frames' words (which differ here), last updated at 2.04 s."""
    from realtime.backend import StreamingBackend

    push = StreamingBackend.push

    def interrupted(self: StreamingBackend, crop: np.ndarray) -> None:
        push(self, crop)
        if self.count == 54:  # not a multiple of the hop
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(StreamingBackend, "push", interrupted)
    out = tmp_path / "captions.jsonl"
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(MODEL), "--headless", "--fast",
                          "--hop", "4", "--jsonl", str(out)])
    said = capsys.readouterr().err
    assert code == run_live.EXIT_INTERRUPTED and "error" not in said, said
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    read = offline_text(model, clip(CLIPS[0]), 54)  # every frame of the clip holds its face: 54 crops
    assert read != offline_text(model, clip(CLIPS[0]), 52)  # the criterion tells the two apart
    assert lines[-1] == {"final": True, "text": read}
    assert lines[-2]["t"] == pytest.approx(53 / 25)  # the 54th frame's time


def interrupted_while_loading(*options: str) -> str:
    """A real run_live process sent a real SIGINT while its modules load: as soon as it has loaded NumPy
    (run_live imports it only once its own handler is in place), before ONNX Runtime. It must exit 130,
    quietly; its stdout is returned."""
    process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])),
                                "--headless", *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while not maps(process.pid, "_multiarray_umath"):
            assert time.monotonic() < deadline and process.poll() is None, "NumPy never loaded"
            time.sleep(0.005)
        loading = not maps(process.pid, "onnxruntime_pybind11_state")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert loading  # the signal came while modules loaded
    assert process.returncode == run_live.EXIT_INTERRUPTED, err
    assert all(line.startswith("lipstream: ") and "error" not in line for line in err.splitlines()), err
    return out


def test_ctrl_c_soon_after_launch_stops_cleanly() -> None:
    """The same in a real process, while its modules load: exit 130, quietly, and the JSON lines on stdout
    still end with the final line."""
    out = interrupted_while_loading("--jsonl", "-")
    assert json.loads(out.splitlines()[-1])["final"] is True


def test_ctrl_c_before_the_first_frame_leaves_the_output_files_as_they_were(tmp_path: Path) -> None:
    """The same, its outputs naming files the user has: nothing was read, so they are left as they were,
    not emptied; the run still exits 130, quietly."""
    kept = {tmp_path / name: f"the user's own {name}\n" for name in ("keep.srt", "keep.vtt", "keep.jsonl")}
    for path, text in kept.items():
        path.write_text(text)
    out = interrupted_while_loading(*(a for path in kept for a in (f"--{path.suffix[1:]}", str(path))))
    assert not out and {path: path.read_text() for path in kept} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_a_keras_model_is_pointed_to_the_onnx_model_beside_it(tmp_path: Path) -> None:
    """training.finetune's folder holds best.keras and finetuned.onnx: the hint names that model, not a new
    export to make beside best.keras; a folder with no ONNX model says how to make one."""
    from realtime.backend import ModelLoadError

    keras_model = tmp_path / "best.keras"
    keras_model.write_bytes((ROOT / "models" / "lipstream-lite.keras").read_bytes())
    with pytest.raises(ModelLoadError, match="make it with python -m export --model"):
        OnnxModel(keras_model)
    for name in ("finetuned.onnx", "finetuned.step.onnx", "finetuned.int8.onnx"):
        (tmp_path / name).symlink_to(ROOT / "models" / name.replace("finetuned", "lipstream-lite"))
    with pytest.raises(ModelLoadError) as refused:
        OnnxModel(keras_model)
    assert f"use --model {tmp_path / 'finetuned.onnx'} if that is its export" in str(refused.value)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_live.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_a_video_begun_just_before_the_speech_reads_one_phrase(tmp_path: Path) -> None:
    """bbaf2n cut 0.52 s in, 0.4 s before its speech: a mouth at rest read as moving for a frame, then a
    pause, ended a phrase of the model's guess (`bin`), and the sentence said it again: `bin` / `bin blue
    at f two now`."""
    video = tmp_path / "late.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", "0.52", "-i", str(GRID / "video" / "bbaf2n.mp4"),
                    "-an", "-c:v", "libx264", str(video)], check=True)
    result = _run("--source", str(video), "--headless", "--fast")
    assert result.returncode == 0 and result.stdout == "bin blue at f two now\n", result.stderr


@pytest.mark.parametrize("args, says", [
    (["--source", "7", "--headless"], "--source FILE"),
    (["--source", "missing.mp4", "--headless", "--model", "missing.onnx"], "no video file"),  # told first
    (["--source", "/dev/null", "--headless"], "/dev/null is a device, not a video file"),
    (["--model", "missing.onnx", "--headless", "--source", str(GRID / "video" / f"{CLIPS[0]}.mp4")], "no model"),
    (["--model", "README.md", "--headless", "--source", str(GRID / "video" / f"{CLIPS[0]}.mp4")],
     "README.md is not a readable ONNX model (Protobuf parsing failed.)"),  # ONNX Runtime's reason, not its type
    (["--model", "models/lipstream-lite.keras", "--headless", "--source", str(GRID / "video" / f"{CLIPS[0]}.mp4")],
     "is a Keras model: the runtime reads its ONNX export; use --model models/lipstream-lite.onnx, its export "
     "beside it"),
    (["--model", "models", "--headless", "--source", str(GRID / "video" / f"{CLIPS[0]}.mp4")],
     "models is a folder: name the .onnx model in it"),
    (["--hop", "0", "--headless"], "must be 1 or more, not 0"),
    (["--window", "60", "--headless"], "must be from 100 to 750, not 60"),
    (["--window", "99999999999999999999", "--headless"], "must be from 100 to 750, not 99999999999999999999"),
    (["--source", "2147483648", "--headless"], "no video file at 2147483648"),  # beyond OpenCV's camera indices
    (["--source", "²", "--headless"], "no video file at ²"),  # a digit to Python, no camera index to OpenCV
    (["--source", "9" * 5000, "--headless"], "is 5000 bytes long"),  # more digits than int() takes
    (["--source", "a" * 300 + ".mp4", "--headless"],
     "is 304 bytes long, and a file or folder name holds at most 255"),
    (["--hop", "76", "--headless"], "--hop must not exceed half the window (75 frames with --policy pause)"),
    (["--policy", "right-context", "--hop", "76", "--headless"],
     "--hop must not exceed half the window (75 frames with --policy right-context)"),
    (["--policy", "right-context", "--hop", "75", "--right-context", "80", "--headless"],
     "--hop plus --right-context must not exceed the window (150 frames), or frames leave it before they settle"),
    (["--source", "docs/crops.png", "--headless"], "is a still image, not a video"),
    (["--policy", "right-context", "--right-context", "150", "--headless"],
     "--right-context must be less than the window (150 frames)"),
    (["--threads", "1000000", "--headless"], "must be from 0 to 256, not 1000000"),
    *[([option, "", "--headless", "--fast", "--source", str(GRID / "video" / f"{CLIPS[0]}.mp4")],
       f"argument {option}: an empty name names no file") for option in ("--jsonl", "--srt", "--vtt", "--model")],
    (["--source", "", "--headless"], "argument --source: an empty name names no file"),
    (["--bogus", "--headless"], "lipstream live: error: unrecognized arguments: --bogus"),  # the command typed
    ([str(GRID / "video" / f"{CLIPS[0]}.mp4"), "--headless"],
     f"{CLIPS[0]}.mp4: every value follows the option it is for, as in --source FILE"),
    (["--source", "docs", "--headless"], "docs is a folder, not a video file"),
    (["--srt", "-", "--jsonl", "-", "--headless"], "--jsonl and --srt both name stdout, where they would run into"),
    (["--srt", "-", "--vtt", "/dev/stdout", "--jsonl", "-", "--headless"], "--jsonl, --srt and --vtt all name stdout"),
    # Options the others leave without effect, refused when given, whatever their value (12: the default's).
    *[([*options, "--headless", "--fast", "--source", str(GRID / "video" / f"{CLIPS[0]}.mp4")], says)
      for options, says in (
          (["--decoder", "greedy", "--beam-width", "5"],
           "--beam-width has no effect with --decoder greedy, which keeps no beam: choose --decoder beam or grammar, "
           "or leave it out"),
          (["--policy", "pause", "--right-context", "12"],
           "--right-context has no effect with --policy pause: it is the right-context policy's alone"),
          (["--policy", "local-agreement", "--right-context", "40"],
           "--right-context has no effect with --policy local-agreement"),
          (["--caption-rows", "2"], "--caption-rows has no effect with --headless, which draws no captions"),
          (["--caption-size", "1"], "--caption-size has no effect with --headless, which draws no captions"))],
    (["--caption-rows", "5"], "argument --caption-rows: must be from 1 to 4, not 5"),
    (["--caption-size", "4"], "argument --caption-size: must be from 0.5 to 3, not 4"),
])
def test_faults_give_one_line_and_exit_2(args: list[str], says: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    said = result.stderr.splitlines()
    assert len(said) == 1 and says in said[0], result.stderr  # no usage block, nothing from OpenCV or MediaPipe


def test_a_cut_off_video_is_told_in_lipstream_s_words_only(tmp_path: Path) -> None:
    """A download cut off halfway: FFmpeg's decoding errors stay muted, and one line says what happened."""
    half = tmp_path / "half.mp4"
    data = clip(CLIPS[0]).read_bytes()
    half.write_bytes(data[:len(data) // 2])
    result = _run("--source", str(half), "--headless", "--fast")
    assert result.returncode == run_live.EXIT_SOURCE_ENDED
    said = result.stderr.splitlines()
    assert all(line.startswith("lipstream: ") for line in said), result.stderr
    assert [line for line in said if "error" in line] == [
        next(line for line in said if line.startswith("lipstream: error: video ended early"))]


def test_a_video_of_which_no_frame_decodes_is_bad_input(tmp_path: Path) -> None:
    """Cut off just after its header: it opens and gives its length, but no frame decodes. The one line
    says so before the model loads (nothing about the model before it)."""
    data = clip(CLIPS[0]).read_bytes()
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:data.index(b"mdat") + 64])
    result = _run("--source", str(head), "--headless", "--fast")
    assert result.returncode == 2, result.stderr
    said = result.stderr.splitlines()
    assert said == [f"lipstream: error: cannot decode any frame of {head}: damaged or cut off, or not a video "
                    "this OpenCV build decodes"], result.stderr


def test_a_video_without_a_face_says_so(tmp_path: Path) -> None:
    """Two seconds of an empty room, then a speaker for three, then the room again: said when the face
    is missing, when it is found, and when it left (last seen, at 4.96 s: not the tracker's pose held a
    few frames after it, nor when that was told, half a second later)."""
    frames = read_frames(clip(CLIPS[0]))
    empty = np.full_like(frames[0], 90)
    video = write_video(tmp_path / "late.avi", [empty] * 50 + frames + [empty] * 50, 25.0, "MJPG")
    result = _run("--source", str(video), "--headless", "--fast")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "face" in line]
    assert said == ["lipstream: no face in view at 0.0 s: nothing to read until a face is seen",
                    "lipstream: face found at 2.0 s",
                    "lipstream: no face in view at 5.0 s: nothing to read until a face is seen"], result.stderr
    assert result.stdout.strip()  # the speaker was read once found


def test_a_transcript_that_cannot_be_saved_says_why_in_the_window(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """The s key in a folder where no file can be made: the window's red notice gives the reason, not the
    file's name again cut off before it (`cannot write /proc/lipstream-transcript-2026120...`); stderr has both."""
    monkeypatch.chdir("/proc")
    said = run_live.save_transcript("bin blue at f two now")
    assert said.startswith("error: transcript not saved (no file can be made in /proc (") and said.endswith("))")
    assert "lipstream-transcript" not in said
    assert capsys.readouterr().err.startswith("lipstream: error: could not save lipstream-transcript-")


def test_a_face_found_a_few_frames_in_is_no_missing_face(tmp_path: Path) -> None:
    """A camera's first frames dark for 0.2 s, less than a face must be missing for (0.5 s), as anywhere
    later in the video: nothing is said, and the window asks for no face (it had, from the first frame)."""
    frames = read_frames(clip(CLIPS[0]))
    video = write_video(tmp_path / "dark_start.avi", [np.zeros_like(frames[0])] * 5 + frames, 25.0, "MJPG")
    result = _run("--source", str(video), "--headless", "--fast")
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if "face" in line], result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize("name, holds", [("voice.mp4", "sound"), ("captions.srt", "subtitles")])
def test_a_file_of_sound_or_subtitles_alone_is_said_to_have_no_video(name: str, holds: str, tmp_path: Path) -> None:
    """Said as what it holds, not as a damaged video (nor subtitles as sound)."""
    held = tmp_path / name
    if holds == "sound":
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip(CLIPS[0])), "-vn", "-c:a", "copy",
                        str(held)], check=True)
    else:
        held.write_text("1\n00:00:00,000 --> 00:00:01,000\nbin blue\n")
    result = _run("--source", str(held), "--headless", "--fast")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"lipstream: error: {held} holds {holds} but no video: nothing to lipread"]


def test_a_video_without_any_face_is_an_error(tmp_path: Path) -> None:
    """Read to its end and no face in it: one line says so, and the run fails (exit 2), not a silent
    empty transcript."""
    video = write_video(tmp_path / "room.avi", [np.full((288, 360, 3), 90, np.uint8)] * 50, 25.0, "MJPG")
    result = _run("--source", str(video), "--headless", "--fast", "--jsonl", "-")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"lipstream: error: no face in {video}: nothing was read"], result.stderr
    assert result.stdout.splitlines() == ['{"final": true, "text": ""}']  # no caption line: nothing was shown


def test_a_run_that_reads_nothing_leaves_the_output_files_as_they_were(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A video without a face is refused once read to its end (exit 2): files the outputs name are left as
    they were, not emptied, and none is made where there was none. (A run interrupted or failing midway
    still writes what it read: test_stop_request_keeps_the_transcript and others.)"""
    video = write_video(tmp_path / "room.avi", [np.full((288, 360, 3), 90, np.uint8)] * 50, 25.0, "MJPG")
    kept = {tmp_path / name: f"the user's own {name}\n" for name in ("keep.srt", "keep.vtt", "keep.jsonl")}
    for path, text in kept.items():
        path.write_text(text)
    for names in (("keep.srt", "keep.vtt", "keep.jsonl"), ("new.srt", "new.vtt", "new.jsonl")):
        srt, vtt, jsonl = (str(tmp_path / name) for name in names)
        code = run_live.main(["--source", str(video), "--model", str(MODEL), "--headless", "--fast", "--srt", srt,
                              "--vtt", vtt, "--jsonl", jsonl])
        assert code == 2 and f"lipstream: error: no face in {video}: nothing was read" in capsys.readouterr().err
    assert {path: path.read_text() for path in kept} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl", "keep.srt", "keep.vtt", "room.avi"]


def test_a_run_stopped_before_any_face_leaves_the_output_files_as_they_were(tmp_path: Path) -> None:
    """SIGTERM to a real run that has read only faceless frames (a camera facing an empty room, then
    stopped): nothing was read, so the files its outputs name keep what they held, and it says so."""
    video = write_video(tmp_path / "room.avi", [np.full((288, 360, 3), 90, np.uint8)] * 250, 25.0, "MJPG")
    kept = {tmp_path / name: f"the user's own {name}\n" for name in ("keep.srt", "keep.vtt", "keep.jsonl")}
    for path, text in kept.items():
        path.write_text(text)
    process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--headless",
                                *(arg for path in kept for arg in (f"--{path.suffix[1:]}", str(path)))],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # 10 s at the file's pace: stopped once its first faceless frame is read
        if "no face in view" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == run_live.EXIT_INTERRUPTED, err
    said = [line for line in err.splitlines()  # a busy machine may drop frames of the file's pace, and say so
            if not re.match(r"lipstream: (\d+ frames dropped \(|processing fell behind at )", line)]
    assert said == ["lipstream: no face was seen, so nothing was read: the outputs are left as they were"], err
    assert {path: path.read_text() for path in kept} == kept


def test_a_run_stopped_before_a_word_was_read_leaves_the_subtitle_files_as_they_were(tmp_path: Path) -> None:
    """SIGTERM to a real run that has a face in view whose lips have not moved yet (a GRID clip's first
    frame, held): no word was read, so the subtitle files there before keep what they held, and it says so;
    the JSON lines, to which no caption was written, too."""
    still = write_video(tmp_path / "still.avi", read_frames(clip(CLIPS[0]))[:1] * 250, 25.0, "MJPG")
    kept = {tmp_path / name: f"the user's own {name}\n" for name in ("keep.srt", "keep.vtt", "keep.jsonl")}
    for path, text in kept.items():
        path.write_text(text)
    process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(still), "--headless",
                                *(arg for path in kept for arg in (f"--{path.suffix[1:]}", str(path)))],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # 10 s at the file's pace: stopped once its first frame, with the face, is read
        if "first frame processed" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == run_live.EXIT_INTERRUPTED, err
    assert err.splitlines() == [f"lipstream: stopped before a word was read: {tmp_path / 'keep.srt'} and "
                                f"{tmp_path / 'keep.vtt'} are left as they were"]
    assert {path: path.read_text() for path in kept} == kept
    # Subtitles on stdout, which holds no file of the user's, are told the end as before: an empty WebVTT.
    process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(still), "--headless",
                                "--vtt", "-"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "first frame processed" in line:
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, out, err) == (run_live.EXIT_INTERRUPTED, "WEBVTT\n", ""), (out, err)


def test_lips_that_moved_with_no_word_read_are_told_when_the_run_is_stopped(tmp_path: Path) -> None:
    """A camera's run ends only when it is stopped: the lips of a face the model reads nothing of (a held-out
    clip in training.restyle's look), then still, and a SIGTERM: the run says why no word was read."""
    from training.restyle import restyle

    frames = [restyle(image) for image in read_frames(clip(CLIPS[0]))]
    video = write_video(tmp_path / "newface.avi", frames + frames[-1:] * 100, 25.0, "MJPG")
    process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--headless"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "first frame processed" in line:
            break
    time.sleep(3.5)  # the clip's 3 s played, its lips read; the still frames after it take 4 s more
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == run_live.EXIT_INTERRUPTED and out == "\n", (out, err)
    assert any(line.startswith("lipstream: no words read, though the lips moved for ") for line in err.splitlines())


def test_a_picture_without_colour_is_told_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A grey camera (here a held-out clip made black-and-white) reads poorly with the bundled colour model:
    the run says so at the first face, once; the clip as filmed says nothing of it."""
    grey = tmp_path / "grey.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(clip(CLIPS[0])), "-vf", "hue=s=0",
                    str(grey)], check=True)
    told = {}
    for video in (grey, clip(CLIPS[0])):
        assert run_live.main(["--source", str(video), "--model", str(MODEL), "--headless", "--fast"]) == 0
        told[video] = [line for line in capsys.readouterr().err.splitlines() if "no colour" in line]
    assert told[clip(CLIPS[0])] == []
    assert told[grey] == ["lipstream: no colour in the picture at 0.0 s (a grey or infrared camera, or a "
                          "black-and-white video), and lipstream-lite.onnx reads colour: reading suffers; a "
                          "fine-tune on clips from this camera mends it (README: Reading your own face)"]


def test_lips_that_move_with_no_word_read_are_told_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A held-out clip in another look (training.restyle's: red and blue swapped, darker, softer, as a new
    face or camera brings), which the bundled model reads nothing of: the run says the lips moved and what
    to do, instead of an empty transcript alone; the clip as filmed is read, and says nothing of it."""
    from training.restyle import restyle

    frames = read_frames(clip(CLIPS[0]))
    other = write_video(tmp_path / "newface.avi", [restyle(image) for image in frames], 25.0, "MJPG")
    said = {}
    for video in (other, clip(CLIPS[0])):
        assert run_live.main(["--source", str(video), "--model", str(MODEL), "--headless", "--fast"]) == 0
        out, err = capsys.readouterr()
        said[video] = (out.strip(), [line for line in err.splitlines() if "no words read" in line])
    filmed, told = said[clip(CLIPS[0])]
    assert len(filmed.split()) == 6 and told == []
    read, told = said[other]
    assert read == "" and len(told) == 1
    assert re.fullmatch(r"lipstream: no words read, though the lips moved for \d\.\d s: lipstream-lite\.onnx reads "
                        r"the faces and cameras it was trained on \(the bundled model, one GRID speaker\); another "
                        r"face needs a fine-tune \(README: Reading your own face\)", told[0])


def test_a_face_whose_lips_never_move_is_told_as_that(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A video of a still face (one real frame, held 3 s) reads no word: the run says why, rather than
    leave an empty transcript and a subtitle file without cues to be taken for a fault."""
    still = write_video(tmp_path / "still.avi", read_frames(clip(CLIPS[0]))[:1] * 75, 25.0, "MJPG")
    srt = tmp_path / "still.srt"
    assert run_live.main(["--source", str(still), "--model", str(MODEL), "--headless", "--fast", "--srt",
                          str(srt)]) == 0
    err = capsys.readouterr().err
    assert srt.read_text() == "" and "lipstream: no words read: the lips did not move (the subtitles hold no cue)\n" \
        in err, err


def test_lips_that_moved_too_briefly_for_a_word_are_told_as_that(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """A face (a held-out clip's, in a look the bundled model reads nothing of: training.restyle's) held
    still, but for seven frames of speech: no word is read, and the run says the lips moved only briefly,
    not that they did not move, nor that the model may not know this face (which takes half a second)."""
    from training.restyle import restyle

    frames = [restyle(image) for image in read_frames(clip(CLIPS[0]))[42:49]]
    brief = write_video(tmp_path / "brief.avi", frames[:1] * 30 + frames + frames[-1:] * 30, 25.0, "MJPG")
    assert run_live.main(["--source", str(brief), "--model", str(MODEL), "--headless", "--fast"]) == 0
    out, err = capsys.readouterr()
    assert out == "\n" and re.search(r"^lipstream: no words read: the lips moved for 0\.\d s only$", err, re.M), err


def test_an_empty_file_is_refused_as_empty(tmp_path: Path) -> None:
    empty = tmp_path / "talk.mp4"
    empty.touch()
    result = _run("--source", str(empty), "--headless")
    assert result.returncode == 2
    assert result.stderr.strip() == f"lipstream: error: {empty} is empty (0 bytes): nothing to lipread"


def test_a_face_too_small_to_read_well_is_said_once(tmp_path: Path) -> None:
    """A third of GRID's size in a 720p frame (its mouth enlarged 4x for the model): read, and told once."""
    frames = read_frames(clip(CLIPS[0]))
    small = [cv2.resize(f, (120, 96), interpolation=cv2.INTER_AREA) for f in frames]
    video = write_video(tmp_path / "far.avi", [cv2.copyMakeBorder(f, 300, 324, 600, 560, cv2.BORDER_CONSTANT)
                                               for f in small], 25.0, "MJPG")
    result = _run("--source", str(video), "--headless", "--fast")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "small" in line]
    assert len(said) == 1 and re.fullmatch(r"lipstream: face small at 0\.0 s: its mouth is enlarged [34]\.\dx for "
                                           r"the model, and above 3x reading suffers: come closer, or film at a "
                                           r"higher resolution", said[0]), result.stderr
    assert "small" not in _run("--source", str(clip(CLIPS[0])), "--headless", "--fast").stderr


def test_unreadable_video_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    result = _run("--source", str(bad), "--headless")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot read" in result.stderr


def test_the_main_command_takes_file_names_from_the_folder_it_is_run_in(offline: Callable[[str], str],
                                                                        tmp_path: Path) -> None:
    """`/path/to/lipstream live --source talk.mp4` from any folder: the wrapper must not move elsewhere."""
    stamp = Path(sys.prefix) / ".lipstream-stamp"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / "lipstream").read_bytes()
                          + f"{ROOT}\n".encode()).hexdigest()  # as the script stamps its environment
    if not stamp.is_file() or stamp.read_text().splitlines()[:1] != [want[:16]]:
        pytest.skip("not run in the environment ./lipstream keeps (it would be rebuilt)")
    (tmp_path / "talk.mp4").symlink_to(clip(CLIPS[0]))
    result = subprocess.run([str(ROOT / "lipstream"), "live", "--source", "talk.mp4", "--headless", "--fast",
                             "--srt", "subtitles/talk.srt"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "LIPSTREAM_VENV": sys.prefix}, timeout=120)
    assert result.returncode == 0, result.stderr
    text = offline(CLIPS[0])
    assert cue_words(tmp_path / "subtitles" / "talk.srt") == text.split()
    # live's options alone are live's: `./lipstream --source talk.mp4`
    result = subprocess.run([str(ROOT / "lipstream"), "--source", "talk.mp4", "--headless", "--fast"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "LIPSTREAM_VENV": sys.prefix},
                            timeout=120)
    assert (result.returncode, result.stdout) == (0, text + "\n"), result.stderr


def test_live_process_never_imports_tensorflow_or_jax_and_says_only_its_own_lines(tmp_path: Path) -> None:
    code = ("import sys, run_live\n"
            f"rc = run_live.main(['--source', {str(clip(CLIPS[0]))!r}, '--headless', '--fast', '--jsonl', "
            f"{str(tmp_path / 'x.jsonl')!r}])\n"
            "heavy = sorted(m for m in ('tensorflow', 'jax', 'keras') if m in sys.modules)\n"
            "print(rc, heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "0 []", result.stderr
    assert all(line.startswith("lipstream: ") for line in result.stderr.splitlines()), result.stderr  # no MediaPipe


def test_the_runtime_s_modules_import_nothing_of_training_or_export() -> None:
    """The runtime stands alone: its commands (live, bench, record, vad_report) read GRID's align files
    through realtime.grid, and training and export build on the runtime, never the other way round."""
    code = ("import sys, run_live, realtime.bench, realtime.record, realtime.transcribe, realtime.vad_report, "
            "realtime.window\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'export', 'tensorflow', 'keras'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


class _MjpegCamera:
    """A network camera on loopback: serves a real clip as MJPEG at 25 fps, `takes` times (each
    connection gets the clip once, then the stream ends), then refuses connections. Each take differs in
    one pixel, as a camera's next frames always differ: one that starts over bit for bit, having sent its
    frames faster than filmed (as frames sent while the model loads seem, read at once on a busy machine),
    is a recording read to its end (realtime.capture)."""

    def __init__(self, path: Path, takes: int):
        import http.server
        import socketserver
        import threading
        import time

        def take(n: int) -> list[bytes]:
            jpegs = []
            for frame in read_frames(path):
                frame[0, 0] = 40 * n
                jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
            return jpegs

        sent_takes = [take(n) for n in range(takes)]
        served = {"takes": 0}
        camera = self
        self.sent: list[float] = []  # when each frame was written (monotonic clock)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if served["takes"] >= takes:
                    self.send_error(503)
                    return
                jpegs = sent_takes[served["takes"]]
                served["takes"] += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for jpeg in jpegs:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpeg), jpeg))
                    camera.sent.append(time.monotonic())
                    time.sleep(0.04)

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.served = served
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/camera.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_falling_behind_is_said_as_it_happens(capsys: pytest.CaptureFixture) -> None:
    """A real clip played at its fps, read with the grammar's widest beam (512): a read takes longer than
    a frame's 40 ms (here 5 times longer: 60 of the 75 frames dropped), so frames are dropped. The first
    dropped frame is told at once, with what to lower, and the total at the end. (A 960 fps video stood
    in for a slow machine until the queue came to hold 0.16 s of frames at any rate: the frames the
    pipeline never needs no longer overflow it.)"""
    code = run_live.main(["--source", str(clip(CLIPS[0])), "--model", str(MODEL), "--headless", "--decoder", "grammar",
                          "--beam-width", "512"])
    said = capsys.readouterr().err.splitlines()
    told = [line for line in said if "fell behind at" in line]
    total = [line for line in said if line.endswith("frames dropped (processing fell behind)")]
    assert code == 0 and len(told) == len(total) == 1, said
    assert said.index(told[0]) < said.index(total[0])
    assert told[0].endswith("frames are dropped, and reading suffers (a smaller --beam-width, or --decoder "
                            "greedy, decodes faster)")


def test_a_network_camera_without_timestamps_is_stamped_by_the_clock() -> None:
    """MJPEG over HTTP carries no timestamps (FFmpeg reports its "no time", -2^63 µs): its frames are
    stamped as they come, from the opening on, in order, at the rate it sends them."""
    camera = _MjpegCamera(clip(CLIPS[0]), takes=1)
    try:
        source = FrameSource(SourceOptions(source=camera.url)).start()
        frames = [source.frames.get(timeout=20) for _ in range(75)]  # the clip's, before it ends
        source.stop()
    finally:
        camera.close()
    t = np.array([f.t for f in frames])
    assert t[0] >= 0 and np.all(np.diff(t) >= 0)
    # Stamped at the pace they were sent, however the loaded machine paced the sending.
    gaps, sent_gaps = np.diff(t), np.diff(camera.sent[:len(t)])
    assert np.median(np.abs(gaps - sent_gaps)) < 0.02, (gaps, sent_gaps)


def test_camera_that_stops_delivering_is_retried_then_ends_cleanly(tmp_path: Path) -> None:
    camera = _MjpegCamera(clip(CLIPS[0]), takes=2)
    try:
        out = tmp_path / "captions.jsonl"
        code = run_live.main(["--source", camera.url, "--model", str(MODEL), "--headless", "--jsonl", str(out)])
    finally:
        camera.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert camera.served["takes"] == 2  # it reconnected once after the first stream ended
    assert code == run_live.EXIT_SOURCE_ENDED
    assert lines[-1]["final"] is True
    # Both takes were read: the captions' frame times span more than one take lasts (3 s; the clock runs on
    # across the reconnection). How well they read is not asked: a camera's frames come in real time, and
    # the suite's other workers can leave this run too little of the machine to read them all.
    shown = [line["t"] for line in lines[:-1] if (line["commit"] + line["tentative"]).strip()]
    assert max(shown) - min(shown) > 3.0, lines


def test_moving_lips_follow_the_words_of_a_real_clip() -> None:
    """The pause detector on real landmarks: within the words (as the align file times them) the lips
    never rest long enough to end a phrase, and after the last word they rest."""
    from realtime.activity import MovingLips
    from realtime.captions import PolicyOptions
    from realtime.grid import read_align

    words = [t for t in read_align(GRID / "align" / "bbaf5a.align") if t.is_word]
    moving_lips = MovingLips()
    with MouthTracker(TrackerOptions()) as tracker:
        moving = np.array([moving_lips(tracker.process(f, i / 25).lips)
                           for i, f in enumerate(read_frames(clip("bbaf5a")))])
    speech = np.zeros(len(moving), bool)
    speech[int(words[0].start):int(np.ceil(words[-1].end))] = True
    rests = np.diff(np.flatnonzero(np.concatenate([[True], moving[speech], [True]]))) - 1
    assert rests.max() < PolicyOptions().still, rests
    after = int(np.ceil(words[-1].end)) + 2
    assert len(moving) - after >= PolicyOptions().still and not moving[after:].any()


def test_a_closed_stdout_is_no_place_for_the_transcript(offline: Callable[[str], str], tmp_path: Path) -> None:
    """Started with stdout closed (`>&-`): `--jsonl -` is refused before the run, and without it the words
    reach the subtitles, and, with no other output, a file, not nowhere."""
    command = [sys.executable, str(ROOT / "run_live.py"), "--source", str(clip(CLIPS[0])), "--headless", "--fast"]
    def closed_stdout(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *extra], stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120,
                              preexec_fn=lambda: os.close(1))
    for names in (("--jsonl", "-"), ("--srt", "/dev/stdout"), ("--vtt", "/dev/fd/1"), ("--srt", "-")):
        other = ("--vtt", str(tmp_path / "a.vtt")) if names[0] == "--srt" else ("--srt", str(tmp_path / "a.srt"))
        run = closed_stdout(*names, *other)
        assert run.returncode == 2 and run.stderr.splitlines() == [
            f"lipstream: error: {names[0]} writes to stdout, which is closed: name a file instead"]
        assert not list(tmp_path.iterdir())
    run = closed_stdout("--srt", str(tmp_path / "a.srt"))
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert cue_words(tmp_path / "a.srt") == offline(CLIPS[0]).split()
    (tmp_path / "a.srt").unlink()
    run = closed_stdout()
    said = run.stderr.splitlines()
    assert run.returncode == 2 and "lipstream: error: could not write the transcript to stdout (it is closed)" in said
    saved = list(tmp_path.glob("lipstream-transcript-*.txt"))
    assert len(saved) == 1 and saved[0].read_text() == offline(CLIPS[0]) + "\n"
