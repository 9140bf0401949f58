"""Reading a whole video from Python: what `run_live.py --source FILE --headless --fast` reads, as a value,
for a researcher's scripts (as whisper's `transcribe` is the library call under its command). The same
pipeline as the live captions: the mouth crop, the streaming model and the caption policy's commits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from realtime.backend import BUNDLED_MODEL, MOST_THREADS, PROVIDERS, ModelLoadError, OnnxModel, find_model
from realtime.captions import POLICIES, PolicyOptions, TimedWord, transcript
from realtime.capture import CaptureError, Resampler, SourceOptions, is_camera, open_source
from realtime.cli import MAX_BEAM_WIDTH, window_problem
from realtime.decode import DECODERS
from realtime.interrupts import held_interrupts
from realtime.live import LONGEST_WINDOW, SHORTEST_WINDOW, LiveOptions, LivePipeline, nothing_read


class TranscribeError(Exception):
    """A source or model that cannot be read, or an option no run takes; the message is the line run_live
    prints for it."""


@dataclass(frozen=True)
class Transcript:
    """What a video said: its words, a phrase a line, and when each was read on the lips."""

    text: str  # the words read, a phrase a line, as run_live prints them
    # Each word with the media seconds of the first and last frames read as it (one frame: start == end), to the
    # millisecond; a phrase's first word often begins up to half a second before its sound, as the lips move first.
    words: tuple[TimedWord, ...]
    phrases: tuple[int, ...]  # the words that begin a phrase (what was said between two rests of the lips)
    error: str | None = None  # why the reading ended early (a damaged video, a stop): the words before it are kept


def transcribe(source: str | Path, model: str | Path = BUNDLED_MODEL, policy: PolicyOptions = PolicyOptions(),
               window: int = LiveOptions.window, hop: int = LiveOptions.hop, provider: str = "auto",
               threads: int = 0) -> Transcript:
    """Every frame of a video file (or a stream, until it ends) read as fast as the machine allows. `model`: an
    ONNX model, or the name of a bundled one; `policy`: the caption policy and decoder (`--policy`, `--decoder`);
    `window`, `hop`, `provider` and `threads` as run_live takes them. Raises TranscribeError for a camera (it
    never ends: run_live reads it live), a source that cannot be opened (a URL that does not answer, after
    OpenCV's 30 s) or holds no face, a model that cannot be loaded, or an option the command refuses. Ctrl-C
    stops the reading between frames (or the open of a URL within half a second): a handler that raises
    KeyboardInterrupt (Python's own) raises it then, and one that does not (a script's, noting the stop) gets
    the words read so far, `error` saying where it stopped."""
    options = LiveOptions(window, hop, policy=policy)
    if problem := _refusal(str(source), options, provider, threads):
        raise TranscribeError(problem)
    try:
        with held_interrupts() as stop_asked:  # a URL that does not answer holds OpenCV's open for 30 s
            frames = open_source(SourceOptions(source=str(source), fast=True), stop_asked)
    except CaptureError as e:
        raise TranscribeError(str(e)) from None
    if frames is None:  # stopped as it opened, by a handler that only notes the stop
        return Transcript("", (), (), "stopped before the first frame")
    pipeline: LivePipeline | None = None
    try:
        try:
            onnx = OnnxModel(find_model(Path(model)), provider, threads)
            pipeline = LivePipeline(onnx, options)
        except ModelLoadError as e:
            raise TranscribeError(str(e)) from None
        frames.start()
        last: float | None = None  # the media time of the last frame read
        with held_interrupts() as stop_asked:  # a KeyboardInterrupt inside the frame queue's lock would hold it
            for frame in Resampler(onnx.spec.fps).resample(frames.until(stop_asked)):
                pipeline.step(frame)
                last = frame.t
            stopped = None if not stop_asked() else \
                "stopped before the first frame" if last is None else f"stopped at {last:.1f} s"
        if not stopped and (problem := nothing_read(str(source), frames, pipeline)):
            raise TranscribeError(problem)
        caption = pipeline.finish()
        words = tuple(replace(w, start=round(w.start, 3), end=round(w.end, 3), committed_at=round(w.committed_at, 3))
                      for w in pipeline.policy.words)  # not 0.43999999999999995: sums of frame periods
        return Transcript(transcript(caption), words, caption.phrases, stopped or frames.failure or frames.error)
    finally:
        frames.stop()
        if pipeline is not None:
            pipeline.close()


def _refusal(source: str, options: LiveOptions, provider: str, threads: int) -> str | None:
    """Why no reading can begin, told before anything loads, as run_live refuses its options; or None."""
    if not source:
        return "an empty name names no file"
    policy = options.policy
    if is_camera(source):
        return f"{source} is a camera, which never ends: run_live.py --source {source} reads it live"
    for value, known, what in ((provider, PROVIDERS, "provider"), (policy.policy, POLICIES, "caption policy"),
                               (policy.decoder, DECODERS, "decoder")):
        if value not in known:
            return f"unknown {what} {value!r} (choose from {', '.join(known)})"
    if not SHORTEST_WINDOW <= options.window <= LONGEST_WINDOW:
        return f"the window must be from {SHORTEST_WINDOW} to {LONGEST_WINDOW} frames"
    if options.hop < 1:
        return "the hop must be 1 frame or more"
    if not 0 <= threads <= MOST_THREADS:
        return f"threads must be from 0 (all cores) to {MOST_THREADS}"
    if policy.beam_width is not None and not 1 <= policy.beam_width <= MAX_BEAM_WIDTH:
        return f"the beam width must be from 1 to {MAX_BEAM_WIDTH}"
    return window_problem(options)
