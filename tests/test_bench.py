"""The latency benchmark's mechanics on a real GRID clip: its fields, their consistency, stage times that
add up, and the percentile code. No speed is asserted: this machine's timings are not a test's business."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import jiwer
import numpy as np
import pytest

import realtime.bench
import run_live
from realtime.backend import OnnxModel
from realtime.bench import main as bench_main
from realtime.bench import percentiles, run_stream
from realtime.capture import FrameSource, Resampler, Video
from realtime.grid import read_align, sentence
from realtime.live import STAGES, LiveOptions, LivePipeline
from realtime.tracker import MouthTracker, TrackResult
from tests.conftest import disk_full_past

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "lipstream-lite.onnx"
CLIP = ROOT.parent / "shared" / "data" / "grid" / "s1" / "video" / "bbaf5a.mp4"
CLIP_ALIGN = CLIP.parent.parent / "align" / f"{CLIP.stem}.align"


def test_percentiles_interpolate_between_order_statistics() -> None:
    assert percentiles(np.arange(1, 101)) == {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}  # JSON's null: NaN is no JSON


def test_each_stage_is_timed_within_its_frame(monkeypatch) -> None:
    """Each frame's stages are timed within its total, and on a frame with a face every stage after
    capture took some time (FaceMesh's on every frame): none is left out of the figures. How much of the
    total they account for is a timing, this machine's load's as much as the code's, so it is not asserted."""
    faces = []  # per frame: whether a face was cropped (the pipeline's own step, only watched)
    step = LivePipeline.step

    def watched(self, frame):
        result = step(self, frame)
        faces.append(result.track.crop is not None)
        return result

    monkeypatch.setattr(LivePipeline, "step", watched)
    rec, pipeline, source = run_stream(OnnxModel(MODEL, "cpu"), str(CLIP), LiveOptions(), fast=True)
    pipeline.close()
    assert rec.frames == 75 and len(faces) == 75 and all(len(v) == rec.frames for v in rec.stages.values())
    stages = {s: np.asarray(v) for s, v in rec.stages.items()}
    parts = np.sum([stages[s] for s in STAGES if s != "total"], axis=0)
    assert np.all(parts <= stages["total"] + 1e-6)
    assert sum(faces) >= 70  # GRID's speaker faces the camera throughout
    with_face = np.array(faces)
    for s in ("landmarks", "crop", "front_end", "back_end", "captions"):
        assert np.all(stages[s][with_face] > 0), s  # hop 1: the back end and captions run every face frame
    assert np.all(stages["landmarks"] > 0)
    # A frame's caption is ready no sooner than its own processing after capture took (clocks: 0.1 ms).
    processing = stages["total"] - stages["capture"]
    assert np.all(np.asarray(rec.latency) + 0.1 >= processing)


def test_bench_writes_every_field_consistently(tmp_path: Path, capsys, monkeypatch) -> None:
    sources, handed = [], []  # the bench's frame source, and the frames it handed on (only watched)
    iterate = FrameSource.until

    def watched(self, stopped):
        sources.append(self)
        for frame in iterate(self, stopped):
            handed.append(frame)
            yield frame

    monkeypatch.setattr(FrameSource, "until", watched)
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    assert bench_main(["--source", str(CLIP), "--json", str(out), "--plot", str(plot)]) == 0  # paced
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == {k: v for k, v in result.items() if k != "transcript"}

    def ordered(p: dict) -> bool:
        return p["p50"] <= p["p95"] <= p["p99"]

    assert ordered(result["glass_to_caption_ms"])
    stages = result["stages_ms"]
    assert set(stages) == set(STAGES) and all(ordered(p) for p in stages.values())
    # Every stage of this clip (a face in every frame) takes time on most frames, and no stage's
    # percentile exceeds the total's: a frame's total holds each of its stages.
    assert all(p["p50"] > 0 for p in stages.values()), stages
    assert all(p[k] <= stages["total"][k] + 1e-6 for p in stages.values() for k in ("p50", "p95", "p99"))
    capture = cv2.VideoCapture(str(CLIP))
    clip_frames = sum(1 for _ in iter(lambda: capture.read()[0], False))
    capture.release()
    # Paced, a frame the pipeline had not taken yet when a newer one came is dropped: the frames dropped
    # are the clip's frames that never reached the pipeline (how many depends on this machine's load), and
    # the frames processed are those the model's rate makes of the ones that did (gaps filled, as live; all
    # 75 on a machine that keeps up).
    delivered = [frame.index for frame in handed]
    assert clip_frames == 75 and len(sources) == 1 and sources[0].read == clip_frames
    assert delivered == sorted(set(delivered)) and set(delivered) <= set(range(clip_frames))
    assert result["dropped_frames"] == clip_frames - len(delivered)
    assert result["frames"] == len(list(Resampler(25.0).resample(handed))) and result["seconds"] > 0
    assert result["fps"] == pytest.approx(result["frames"] / result["seconds"], rel=0.01)
    assert result["rss_mb"] > 0 and result["cpu_percent"] > 0
    assert result["provider"] == "cpu" and result["provider_reason"]
    compare = result["compare_ms"]
    for key in ("ort_window", "ort_sliding_update", "ort_phrase_update", "ort_int8_window", "ort_int8_stream_update"):
        assert compare[key] > 0, key  # the bundled model's int8 variant sits beside it
    assert compare["ort_stream_update"] == compare["ort_phrase_update"]  # the pause policy's form
    # The clip's align file sits in the corpus' align folder: commit delays and WER are measured against
    # its words. A delay is measured for each word read right, so "words" counts the words read right.
    said = sentence(read_align(CLIP_ALIGN))
    assert said == "bin blue at f five again" and result["transcript"]
    assert result["wer"] == pytest.approx(jiwer.wer(said, result["transcript"]))
    assert result["word_commit_delay_ms"]["words"] == jiwer.process_words(said, result["transcript"]).hits >= 1
    assert ordered(result["word_commit_delay_ms"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_to_stdout_is_printed_once_and_makes_no_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`--json -` names stdout, where the results are printed anyway: no file named '-' is written."""
    monkeypatch.chdir(tmp_path)
    assert bench_main(["--source", str(CLIP), "--fast", "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 75 and list(tmp_path.iterdir()) == []


def test_a_stop_while_the_engines_are_compared_keeps_the_stream_s_figures(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Ctrl-C (SIGINT) once the stream was read, as the engines are compared (40 s here): the stream's
    figures, measured, are printed and written all the same, without the comparisons, and the exit says it
    was stopped; before, they were thrown away."""
    import signal

    compare = realtime.bench.compare

    def comparing_pressing_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return compare(*args, **kwargs)

    monkeypatch.setattr(realtime.bench, "compare", comparing_pressing_ctrl_c)
    out = tmp_path / "bench.json"
    try:
        code = bench_main(["--source", str(CLIP), "--fast", "--json", str(out)])
    except KeyboardInterrupt:
        pytest.fail("the stop threw the figures away")
    captured = capsys.readouterr()
    assert code == 130
    assert captured.err.splitlines()[-1] == "interrupted: the engines were not compared; the stream's figures follow"
    printed, written = json.loads(captured.out), json.loads(out.read_text())
    assert printed["frames"] == 75 and printed["compare_ms"] == {} and printed["wer"] >= 0
    assert written == {**printed, "transcript": written["transcript"]} and written["transcript"]


def test_figures_are_printed_and_old_files_kept_when_the_outputs_cannot_be_written(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A disk that fills up (files limited to 32 KB here: the 58 KB plot does not fit) and a --json on a full
    device: the figures are printed all the same, each file not written is one line, the exit is 2, and the
    user's old plot is as it was (written in place, it was left half a PNG, after a traceback and no figures).
    No word read right gives null commit delays, not NaN, which is no JSON. The video is named by its file://
    URL, and its align file is found beside it."""
    importlib.import_module("matplotlib.pyplot")  # its font cache is made, if it must be, before the limit

    video = tmp_path / "short.mp4"  # the clip's first 7 frames: too few for the engines' comparisons
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(CLIP), "-frames:v", "7", "-an", str(video)],
                   check=True)
    (tmp_path / "short.align").write_bytes(CLIP_ALIGN.read_bytes())
    old = tmp_path / "old.png"
    old.write_bytes(b"the user's own plot")
    with disk_full_past(32768):
        code = bench_main(["--source", f"file://{video}", "--fast", "--json", "/dev/full", "--plot", str(old)])
    captured = capsys.readouterr()
    assert code == 2
    figures = json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"{name} is no JSON"))
    assert figures["frames"] == 7 and figures["word_commit_delay_ms"] == {"p50": None, "p95": None, "p99": None,
                                                                         "words": 0}
    assert captured.err.splitlines() == [
        "error: cannot write /dev/full (No space left on device): the figures are on stdout",
        f"error: cannot write {old} (File too large): the figures are on stdout"]
    assert old.read_bytes() == b"the user's own plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png", "short.align", "short.mp4"]


@pytest.mark.parametrize("video_at, align_at", [("bbaf5a.mp4", "bbaf5a.align"),
                                               ("s1/bbaf5a.mpg", "alignments/s1/bbaf5a.align")])  # GRID's own layout
def test_a_bad_align_file_beside_the_video_is_refused_before_the_run(video_at: str, align_at: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """The align file is read for the word commit delays, after the run: one that is no align file is
    refused in one line naming it before the run, not a traceback that loses the run's results. It is found
    beside the video, or where either GRID layout keeps it."""
    video, align, out = tmp_path / video_at, tmp_path / align_at, tmp_path / "bench.json"
    for made in (video, align):
        made.parent.mkdir(parents=True, exist_ok=True)
    video.symlink_to(CLIP)
    align.write_text("garbage\n")
    assert bench_main(["--source", str(video), "--fast", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: {align}:1: expected 'start end word', got 'garbage': not a GRID "
                                         "align file, which is read beside the video for its words' times"]
    assert not captured.out and not out.exists()  # refused before the run: no results to print


@pytest.mark.parametrize("outputs, says", [(("--json", "VIDEO"), "VIDEO is the video read: choose another file"),
                                           (("--json", "talk.align"),
                                            "talk.align is the align file read beside the video: choose another file"),
                                           (("--json", "x.png", "--plot", "x.png"), "x.png is another output")])
def test_outputs_that_would_overwrite_the_video_or_each_other_are_refused(
        outputs: tuple[str, ...], says: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The live captioner's check, the same function: neither the video read nor its words' align file
    beside it is replaced by the results."""
    video, align = tmp_path / "talk.mp4", tmp_path / "talk.align"
    video.write_bytes(CLIP.read_bytes())
    align.write_bytes(CLIP_ALIGN.read_bytes())
    args = [str(video) if a == "VIDEO" else str(tmp_path / a) if "." in a else a for a in outputs]
    assert bench_main(["--source", str(video), "--fast", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says.replace("VIDEO", str(video)) in err, err
    assert video.read_bytes() == CLIP.read_bytes() and align.read_bytes() == CLIP_ALIGN.read_bytes()
    assert sorted(tmp_path.iterdir()) == [align, video]


@pytest.mark.parametrize("options, says", [  # refused whatever their value, the default's included
    (["--decoder", "greedy", "--beam-width", "5"], "--beam-width has no effect with --decoder greedy"),
    (["--policy", "pause", "--right-context", "12"], "--right-context has no effect with --policy pause"),
    (["--right-context", "40"], "--right-context has no effect with --policy pause"),
    (["--policy", "local-agreement", "--right-context", "40"], "--right-context has no effect with --policy local"),
    (["--json", ""], "argument --json: an empty name names no file"),
    (["--plot", ""], "argument --plot: an empty name names no file"),
    (["--model", ""], "argument --model: an empty name names no file"),
])
def test_options_without_effect_and_empty_names_are_refused(options: list[str], says: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """An option the others leave without effect is refused when given, whatever its value, not ignored;
    an empty name (the current folder, as a path) names no file."""
    with pytest.raises(SystemExit) as exit_:
        bench_main(["--source", str(CLIP), "--fast", "--json", str(tmp_path / "bench.json"), *options])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and says in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_plot_without_matplotlib_is_refused_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    """The runtime alone installs no matplotlib: --plot says so in one line before the video is read,
    not in a traceback after the whole run, its figures lost."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as an install without it: nothing to import
    with pytest.raises(SystemExit) as exit_:
        bench_main(["--source", str(CLIP), "--fast", "--plot", str(tmp_path / "bench.png")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--plot needs matplotlib" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_video_without_a_face_is_refused_as_the_live_captioner_refuses_it(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """Two seconds of an empty room: nothing was read, so there is no latency to report (exit 2, the line
    live gives: test_a_video_without_any_face_is_an_error), not a full report of a run that read nothing."""
    video, out = tmp_path / "room.avi", tmp_path / "bench.json"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (360, 288))
    for _ in range(50):
        writer.write(np.full((288, 360, 3), 90, np.uint8))
    writer.release()
    assert bench_main(["--source", str(video), "--fast", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: no face in {video}: nothing was read"]
    assert not captured.out and not out.exists()


def test_a_video_cut_off_gives_no_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A download cut off halfway: figures of its first half, and a WER against all of its words, would
    pass for the clip's; the live captioner's exit for a source that ended early (3), and nothing written."""
    half, out = tmp_path / "half.mp4", tmp_path / "bench.json"
    data = CLIP.read_bytes()
    half.write_bytes(data[:len(data) // 2])
    (tmp_path / "half.align").write_bytes(CLIP.parent.parent.joinpath("align", "bbaf5a.align").read_bytes())
    assert bench_main(["--source", str(half), "--fast", "--json", str(out)]) == run_live.EXIT_SOURCE_ENDED
    captured = capsys.readouterr()
    said = captured.err.splitlines()
    assert len(said) == 1 and said[0].startswith("error: video ended early") and said[0].endswith(
        ": no figures written"), captured.err
    assert not captured.out and not out.exists()


def test_the_crops_compared_are_tracked_at_the_video_s_own_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """The crops the ORT comparisons read are tracked as prepare and the live loop track a video: each
    frame at its index over the video's own rate (30 fps here, not the model's 25), faceless frames
    counted, so the tracker's hold and far-face search run on the video's clock; and the video is
    closed once read. Stamped by the faces found at the model's rate, faceless frames stopped the
    clock: the far-face search then never looked again."""
    video = tmp_path / "talk.avi"
    capture = cv2.VideoCapture(str(CLIP))
    images = [capture.read()[1] for _ in range(16)]
    capture.release()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, images[0].shape[1::-1])
    for image in [np.zeros_like(images[0])] * 4 + images:  # a faceless start: a fade-in
        writer.write(image)
    writer.release()
    stamps: dict[int, list[float]] = {}  # each tracker's, in the order they first tracked
    process = MouthTracker.process

    def watched(self: MouthTracker, frame: np.ndarray, t: float) -> TrackResult:
        stamps.setdefault(id(self), []).append(t)
        return process(self, frame, t)

    opened = []
    monkeypatch.setattr(MouthTracker, "process", watched)
    monkeypatch.setattr(realtime.bench, "Video", lambda source: opened.append(Video(source)) or opened[-1])
    assert bench_main(["--source", str(video), "--fast"]) == 0
    assert json.loads(capsys.readouterr().out)["compare_ms"]["ort_window"] > 0
    *_, compared = stamps.values()  # the live pipeline's tracker first, then the comparisons'
    assert compared == pytest.approx([i / 30 for i in range(20)])
    assert len(opened) == 1 and not opened[0].isOpened()
