"""Latency benchmark: the live pipeline (the same code as run_live.py, headless) on a video paced at
its own fps as a webcam would deliver it, stage by stage and glass to caption.

    python -m realtime.bench --source FILE [--model PATH] [--provider auto|cuda|cpu]
        [--policy P] [--right-context N] [--decoder D] [--beam-width N] [--hop N] [--fast] [--json PATH]
        [--plot PATH.png]

With a GRID align file beside the video (FILE.align, or the corpus' align/NAME.align), it also
measures how long after a word's end the word is committed. The export against its Keras original
is `python -m export.speed` (the runtime never loads TensorFlow).
"""

from __future__ import annotations

import difflib
import importlib.util
import io
import json
import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np

from realtime.backend import (BUNDLED_MODEL, PROVIDERS, ModelLoadError, OnnxModel, StreamingBackend, model_path,
                              streaming_paths)
from realtime.capture import CaptureError, FrameSource, Resampler, SourceOptions, Video, capture_fps, local_path
from realtime.cli import (Parser, add_decoder, add_policy, at_least, named, named_path, policy_options, summary,
                          window_problem)
from realtime.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOURCE_ENDED, EXIT_USAGE
from realtime.files import outputs_problem, run_command, write_text, write_whole
from realtime.grid import GRID_FPS, AlignError, Token, align_of, read_align, sentence
from realtime.interrupts import held_interrupts, interruptible
from realtime.live import STAGES, LiveOptions, LivePipeline, nothing_read
from realtime.tracker import TrackerOptions, tracked_video

WINDOW = 75  # frames of the window the comparisons read: one GRID sentence


def percentiles(values: list[float] | np.ndarray) -> dict[str, float | None]:
    """p50, p95 and p99 (linear interpolation between order statistics); None (JSON's null) for no values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


@dataclass
class Recording:
    """Everything measured while the stream ran."""

    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    latency: list[float] = field(default_factory=list)
    media_t: list[float] = field(default_factory=list)
    frames: int = 0
    wall: float = 0.0
    cpu: float = 0.0


def run_stream(model: OnnxModel, source: str, options: LiveOptions,
               fast: bool = False) -> tuple[Recording, LivePipeline, FrameSource]:
    pipeline = LivePipeline(model, options)
    frames = FrameSource(SourceOptions(source=source, fast=fast))
    resampler = Resampler(model.spec.fps)
    rec = Recording()
    cpu = time.process_time()  # every thread's CPU time, user and system
    started = time.monotonic()
    frames.start()
    try:  # a Ctrl-C is raised after the loop, not inside the frame queue's lock (FrameSource.until)
        with held_interrupts() as stop_asked:
            for f in resampler.resample(frames.until(stop_asked)):
                step = pipeline.step(f)
                for stage, ms in step.stages_ms.items():
                    rec.stages[stage].append(ms)
                rec.latency.append(step.latency_ms)
                rec.media_t.append(f.t)
                rec.frames += 1
    finally:
        frames.stop()
    pipeline.finish()
    rec.wall = time.monotonic() - started
    rec.cpu = (time.process_time() - cpu) / rec.wall * 100
    return rec, pipeline, frames


def peak_rss_mb() -> float | None:
    """The process's peak resident memory; None where the platform does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def align_beside(source: Path) -> Path | None:
    for candidate in (source.with_suffix(".align"), source.parent.parent / "align" / f"{source.stem}.align",
                      align_of(source)):
        if candidate.is_file():
            return candidate
    return None


def reference(source: Path) -> list[Token] | None:
    """The tokens of the align file beside `source` (align_beside), None without one. Read before the run,
    as its words' times are used after it: a file that is not an align file raises an AlignError naming it."""
    align = align_beside(source)
    try:
        return None if align is None else read_align(align)
    except OSError as e:
        raise AlignError(f"cannot read {align}: {e.strerror or e}") from None
    except AlignError as e:
        raise AlignError(f"{e}: not a GRID align file, which is read beside the video for its words' times") from None


def commit_delays(pipeline: LivePipeline, tokens: list[Token]) -> list[float]:
    """Milliseconds from each correctly read word's end (an align file's `tokens`) to its commit."""
    reference = [t for t in tokens if t.is_word]
    committed = pipeline.policy.words
    matcher = difflib.SequenceMatcher(a=[t.word for t in reference], b=[w.text for w in committed], autojunk=False)
    delays = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            ref, got = reference[block.a + k], committed[block.b + k]
            delays.append((got.committed_at - ref.end / GRID_FPS) * 1e3)
    return delays


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn`, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def compare(model: OnnxModel, crops: np.ndarray, policy: str = "pause", repeats: int = 30) -> dict[str, float]:
    """ms for one T-frame window: ORT's full window, and its streaming update (front end on the new
    frame + back end over the window) in both forms: as a sliding window pays it (`ort_sliding_update`:
    its start moves every frame and is re-read) and as the pause policy pays it while a phrase is spoken
    (`ort_phrase_update`: the window grows from a pause, its start held). `ort_stream_update` is the form
    `policy` runs."""
    window = crops[-WINDOW:]
    stream = StreamingBackend(model, len(window))
    for crop in window:
        stream.push(crop)

    def update() -> None:
        stream.push(window[-1])
        stream.logp()

    phrase = StreamingBackend(model, 2 * len(window))
    phrase_ms = []
    for _ in range(repeats):
        phrase.reset()
        for crop in window[:-1]:
            phrase.push(crop)
        t = time.perf_counter()
        phrase.push(window[-1])
        phrase.logp()
        phrase_ms.append((time.perf_counter() - t) * 1e3)

    out = {"ort_window": median_ms(lambda: model.window_logp(window), repeats),
           "ort_sliding_update": median_ms(update, repeats),
           "ort_phrase_update": float(np.median(phrase_ms))}
    out["ort_stream_update"] = out["ort_phrase_update" if policy == "pause" else "ort_sliding_update"]
    return out


def plot(rec: Recording, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = [s for s in STAGES if s != "total"] + ["total", "glass→caption"]
    data = [rec.stages[s] for s in STAGES if s != "total"] + [rec.stages["total"], rec.latency]
    a.boxplot(data, whis=(1, 99), showfliers=False)
    a.set_xticks(range(1, len(names) + 1), names, rotation=30)
    a.set_ylabel("ms per frame (whiskers p1-p99)")
    a.set_title("latency by stage")
    b.plot(rec.media_t, rec.latency, lw=0.6)
    b.set_xlabel("stream time (s)")
    b.set_ylabel("glass-to-caption latency (ms)")
    b.set_title("glass to caption over time")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    write_whole(path, png.getvalue())  # a failed write leaves the file there as it was


def json_path(text: str) -> Path | None:
    """--json's PATH; - (stdout), where the results are printed anyway, is no file to write."""
    return None if text == "-" else named_path(text)


@interruptible
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m realtime.bench", description=summary(__doc__))
    parser.add_argument("--source", type=named, required=True,
                        help="a video file (or its file:// URL), played at its own fps")
    parser.add_argument("--model", type=model_path, default=BUNDLED_MODEL,
                        help="the ONNX model (a bare name such as lipstream-lite.int8.onnx names a bundled one)")
    parser.add_argument("--provider", default="auto", choices=PROVIDERS)
    parser.add_argument("--json", type=json_path, metavar="PATH",
                        help="write the results, the transcript included, as one JSON object to PATH (stdout has "
                             "them either way, without the transcript; - writes nothing more)")
    parser.add_argument("--plot", type=named_path, help="write a PNG of the latency distributions")
    parser.add_argument("--hop", type=at_least(1), default=LiveOptions.hop,
                        help="update the captions every N frames")
    parser.add_argument("--fast", action="store_true",
                        help="read as fast as possible (accuracy only: latencies then include queueing)")
    add_policy(parser)
    add_decoder(parser)
    parser.checks.append(lambda a: window_problem(LiveOptions(hop=a.hop, policy=policy_options(a))))
    args = parser.parse_args(argv)
    options = LiveOptions(hop=args.hop, policy=policy_options(args))
    if args.plot and args.plot.suffix.lower() != ".png":
        parser.error("--plot must name a .png file")
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # the runtime alone has no plotting
        parser.error("--plot needs matplotlib, which the runtime does not install: install lipstream with its [train] "
                     "extra")
    # Before the run, not after it: its results must not be lost to a file that cannot be written or read.
    video = local_path(args.source)
    problem = outputs_problem([p for p in (args.json, args.plot) if p],
                              [(video, "the video read"),
                               (video and align_beside(video), "the align file read beside the video")])
    try:
        tokens = None if video is None else reference(video)
    except AlignError as e:
        problem = problem or str(e)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        model = OnnxModel(args.model, args.provider)
        rec, pipeline, source = run_stream(model, args.source, options, args.fast)
    except (ModelLoadError, CaptureError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    problem = nothing_read(args.source, source, pipeline)  # as live refuses it
    cut = source.failure or source.error  # figures of part of a video, its WER against all of its words
    if problem or cut:
        pipeline.close()
        print(f"error: {problem or f'{cut}: no figures written'}", file=sys.stderr)
        return EXIT_USAGE if problem else EXIT_FAILED if source.failure else EXIT_SOURCE_ENDED
    rss_mb = peak_rss_mb()
    comparisons: dict[str, float] = {}
    interrupted = False
    try:  # a stop now keeps the stream's figures, measured already: they are written without the comparisons
        capture = Video(args.source if video is None else str(video))
        fps = capture_fps(capture, GRID_FPS)  # GRID's where the video gives none
        with tracked_video(capture, fps, TrackerOptions(crop=model.spec.crop)) as tracked:
            crops = list(islice((r.crop for r in tracked if r.crop is not None), WINDOW))
        if len(crops) >= 8:
            # int8 first: an engine's idle workers still spinning would slow the next one timed.
            int8 = args.model.with_suffix(".int8.onnx")
            if int8.is_file() and all(p.is_file() for p in streaming_paths(int8)):
                try:
                    q = compare(OnnxModel(int8, args.provider), np.stack(crops), args.policy)
                    comparisons.update(ort_int8_window=q["ort_window"], ort_int8_stream_update=q["ort_stream_update"])
                except ModelLoadError as e:
                    print(f"int8 comparison skipped: {e}", file=sys.stderr)
            comparisons.update(compare(model, np.stack(crops), args.policy))
    except KeyboardInterrupt:
        print("interrupted: the engines were not compared; the stream's figures follow", file=sys.stderr)
        comparisons, interrupted = {}, True
    result = {
        "glass_to_caption_ms": percentiles(rec.latency),
        "stages_ms": {s: percentiles(v) for s, v in rec.stages.items()},
        "fps": rec.frames / rec.wall if rec.wall else 0.0,
        "dropped_frames": source.dropped,
        "frames": rec.frames,
        "seconds": rec.wall,
        "cpu_percent": rec.cpu,
        "rss_mb": rss_mb,
        "provider": model.choice.name,
        "provider_reason": model.choice.reason,
        "compare_ms": comparisons,
    }
    if tokens is not None:
        import jiwer

        delays = commit_delays(pipeline, tokens)
        result["word_commit_delay_ms"] = {**percentiles(delays), "words": len(delays)}
        result["wer"] = float(jiwer.wer(sentence(tokens), pipeline.policy.committed))
    result["transcript"] = pipeline.policy.committed
    pipeline.close()
    print(json.dumps({k: v for k, v in result.items() if k != "transcript"}, indent=1))  # first: a file may fail
    code = EXIT_OK
    for path, write in ((args.json, lambda path: write_text(path, json.dumps(result, indent=1))),
                        (args.plot, lambda path: plot(rec, path))):
        if path:
            try:
                write(path)
            except OSError as e:
                print(f"error: cannot write {path} ({e.strerror or e}): the figures are on stdout", file=sys.stderr)
                code = EXIT_USAGE
    return EXIT_INTERRUPTED if interrupted else code


if __name__ == "__main__":
    sys.exit(run_command(main))
