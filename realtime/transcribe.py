"""Reading a whole video from Python: what `run_live.py --source FILE --headless --fast` reads, as a value,
for a researcher's scripts (as whisper's `transcribe` is the library call under its command). The same
pipeline as the live captions: the mouth crop, the streaming model and the caption policy's commits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from realtime.backend import BUNDLED_MODEL, ModelLoadError, OnnxModel, find_model
from realtime.captions import PolicyOptions, TimedWord, transcript
from realtime.capture import CaptureError, FrameSource, Resampler, SourceOptions
from realtime.interrupts import held_interrupts
from realtime.live import LiveOptions, LivePipeline, nothing_read


class TranscribeError(Exception):
    """A source or model that cannot be read; the message is the line run_live prints for it."""


@dataclass(frozen=True)
class Transcript:
    text: str  # the words read, a phrase a line, as run_live prints them
    words: tuple[TimedWord, ...]  # each word with the media seconds it was said in, to the millisecond
    phrases: tuple[int, ...]  # the words that begin a phrase (what was said between two rests of the lips)
    error: str | None = None  # why the source ended early (a damaged video): the words before it are kept


def transcribe(source: str | Path, model: str | Path = BUNDLED_MODEL, policy: PolicyOptions = PolicyOptions(),
               provider: str = "auto", threads: int = 0) -> Transcript:
    """Every frame of a video file (or a stream, until it ends) read as fast as the machine allows. `model`:
    an ONNX model, or the name of a bundled one; `policy`: the caption policy and decoder (`--policy`,
    `--decoder`); `provider` and `threads` as run_live takes them. Raises TranscribeError for a source that
    cannot be opened or holds no face, or a model that cannot be loaded; a Ctrl-C stops the reading between
    frames and is raised after it."""
    try:
        frames = FrameSource(SourceOptions(source=str(source), fast=True))
    except CaptureError as e:
        raise TranscribeError(str(e)) from None
    try:
        onnx = OnnxModel(find_model(Path(model)), provider, threads)
        pipeline = LivePipeline(onnx, LiveOptions(policy=policy))
    except ModelLoadError as e:
        frames.stop()
        raise TranscribeError(str(e)) from None
    try:
        frames.start()
        with held_interrupts() as stop_asked:  # a KeyboardInterrupt inside the frame queue's lock would hold it
            for frame in Resampler(onnx.spec.fps).resample(frames.until(stop_asked)):
                pipeline.step(frame)
        frames.stop()
        if frames.failure:
            raise TranscribeError(frames.failure)
        if problem := nothing_read(str(source), frames, pipeline):
            raise TranscribeError(problem)
        caption = pipeline.finish()
        words = tuple(replace(w, start=round(w.start, 3), end=round(w.end, 3), committed_at=round(w.committed_at, 3))
                      for w in pipeline.policy.words)  # not 0.43999999999999995: sums of frame periods
        return Transcript(transcript(caption), words, caption.phrases, frames.error)
    finally:
        frames.stop()
        pipeline.close()
