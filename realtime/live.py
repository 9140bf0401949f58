"""The live loop: frames -> mouth crops -> streaming inference -> rolling captions.

LivePipeline is the per-frame work, shared by run_live.py and the benchmark; `run` wires it to a
frame source, the window or headless outputs, and the user's keys.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from realtime.activity import MovingLips
from realtime.backend import OnnxModel, StreamingBackend
from realtime.capture import Frame
from realtime.captions import CaptionPolicy, CaptionState, PolicyOptions, make_policy
from realtime.tracker import MouthTracker, TrackerOptions, TrackResult

STAGES = ("capture", "landmarks", "crop", "front_end", "back_end", "captions", "total")


@dataclass(frozen=True)
class LiveOptions:
    window: int = 150  # most frames the back end reads at once (6 s at 25 fps)
    hop: int = 1  # run the back end and the policy every `hop` frames
    lost_face_seconds: float = 0.5  # after this long without a face, commit and restart the stream
    policy: PolicyOptions = field(default_factory=PolicyOptions)
    max_faces: int = 2


@dataclass(frozen=True)
class StepResult:
    frame: Frame
    track: TrackResult
    caption: CaptionState
    changed: bool  # the caption differs from the previous step's
    no_face: bool  # no face for longer than lost_face_seconds
    stages_ms: dict[str, float]
    latency_ms: float  # from the frame's capture to its caption state being ready


class LivePipeline:
    def __init__(self, model: OnnxModel, options: LiveOptions = LiveOptions()):
        self.model = model
        self.options = options
        spec = model.spec
        self.backend = StreamingBackend(model, options.window)  # first: it refuses a model that cannot stream
        self.tracker = MouthTracker(TrackerOptions(crop=spec.crop, max_faces=options.max_faces))
        self.policy = make_policy(spec.vocabulary, options.policy)
        self.times: deque[float] = deque(maxlen=options.window)
        self.moving_lips = MovingLips()
        self.moving: deque[bool] = deque(maxlen=options.window)  # per frame of the window: the lips move
        self.caption = CaptionState(0.0, "", "")
        self.last_face = -np.inf

    def close(self) -> None:
        self.tracker.close()

    def _set(self, caption: CaptionState) -> bool:
        changed = (caption.committed, caption.tentative) != (self.caption.committed, self.caption.tentative)
        self.caption = caption
        return changed

    def step(self, frame: Frame) -> StepResult:
        """Process one frame at the model's rate."""
        started = time.perf_counter()
        track = self.tracker.process(frame.image, frame.t)
        stages = {"capture": frame.read_ms, "landmarks": track.landmark_ms, "crop": track.crop_ms,
                  "front_end": 0.0, "back_end": 0.0, "captions": 0.0}
        changed = False
        if track.crop is None:
            if self.backend.count and frame.t - self.last_face > self.options.lost_face_seconds:
                # The face is gone: what is stable is committed, and the next face starts a fresh stream.
                t0 = time.perf_counter()
                changed = self._set(self.policy.flush(frame.t))
                self.backend.reset()
                self.times.clear()
                self.moving.clear()
                self.moving_lips.reset()
                stages["captions"] = (time.perf_counter() - t0) * 1e3
        else:
            self.last_face = frame.t
            t0 = time.perf_counter()
            self.backend.push(track.crop)
            self.times.append(frame.t)
            self.moving.append(self.moving_lips(track.lips))
            t1 = time.perf_counter()
            stages["front_end"] = (t1 - t0) * 1e3
            if self.backend.count % self.options.hop == 0:
                times = np.fromiter(self.times, float)
                first = int(np.searchsorted(times, self.policy.window_start()))
                first = min(first, len(times) - 1)
                logp = self.backend.logp(first)
                t2 = time.perf_counter()
                moving = np.fromiter(self.moving, bool)[first:]
                changed = self._set(self.policy.update(logp, times[first:], moving))
                stages["back_end"] = (t2 - t1) * 1e3
                stages["captions"] = (time.perf_counter() - t2) * 1e3
        done = time.perf_counter()
        stages["total"] = (done - started) * 1e3 + frame.read_ms
        no_face = track.crop is None and frame.t - self.last_face > self.options.lost_face_seconds
        latency = (time.monotonic() - frame.captured) * 1e3
        return StepResult(frame, track, self.caption, changed, no_face, stages, latency)

    def finish(self, t: float | None = None) -> CaptionState:
        """End of stream: everything read is committed."""
        self._set(self.policy.flush(t))
        return self.caption


def _timestamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def subtitles(policy: CaptionPolicy, kind: str, words_per_cue: int = 6) -> str:
    """SRT or WebVTT cues of the committed words, at their read times."""
    sep = "," if kind == "srt" else "."
    lines = [] if kind == "srt" else ["WEBVTT", ""]
    words = policy.words
    for n, i in enumerate(range(0, len(words), words_per_cue), start=1):
        cue = words[i:i + words_per_cue]
        start, end = cue[0].start, max(cue[-1].end, cue[0].start) + 0.2
        if kind == "srt":
            lines.append(str(n))
        lines += [f"{_timestamp(start, sep)} --> {_timestamp(end, sep)}", " ".join(w.text for w in cue), ""]
    return "\n".join(lines)


class JsonLines:
    """`{"t", "committed", "tentative"}` per caption change, then `{"final": true, "text"}`."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.last: tuple[str, str] | None = None

    def caption(self, c: CaptionState) -> None:
        if (c.committed, c.tentative) == self.last:
            return
        self.last = (c.committed, c.tentative)
        self.out.write(json.dumps({"t": round(c.t, 3), "committed": c.committed, "tentative": c.tentative}) + "\n")
        self.out.flush()

    def final(self, text: str) -> None:
        self.out.write(json.dumps({"final": True, "text": text}) + "\n")
        self.out.flush()


def log(message: str) -> None:
    print(f"lipstream: {message}", file=sys.stderr, flush=True)
