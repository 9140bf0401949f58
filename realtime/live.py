"""The live loop: frames -> mouth crops -> streaming inference -> rolling captions.

LivePipeline is the per-frame work, shared by run_live.py (which wires it to a frame source, the
window or headless outputs, and the user's keys) and the benchmark.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from realtime.activity import MovingLips
from realtime.backend import OnnxModel, StreamingBackend
from realtime.captions import CaptionState, PolicyOptions, make_policy
from realtime.capture import Frame, FrameSource
from realtime.crop import CropSpec
from realtime.interrupts import held_interrupts
from realtime.spec import ModelSpec
from realtime.tracker import MouthTracker, TrackerOptions, TrackResult

STAGES = ("capture", "landmarks", "crop", "front_end", "back_end", "captions", "total")


SHORTEST_WINDOW = 100  # frames: a spoken phrase must fit in the window (docs/streaming.md: Window length)
# 30 s at 25 fps: a phrase is read whole on every frame until a pause, so a longer window only delays
# the captions of a speaker who does not pause, and each read of it takes longer than a frame lasts.
LONGEST_WINDOW = 750
# A mouth crop enlarged more than this from the frame's pixels reads worse: four held-out clips in a 1080p
# frame read every word at half GRID's size (2.8x) and lost letters from 0.4 of it (3.4x) (docs/streaming.md:
# Faces far away).
MOST_ENLARGED = 3.0


@dataclass(frozen=True)
class LiveOptions:
    window: int = 150  # most frames the back end reads at once (6 s at 25 fps)
    hop: int = 1  # run the back end and the policy every `hop` frames
    lost_face_seconds: float = 0.5  # after this long without a face, commit and restart the stream
    policy: PolicyOptions = field(default_factory=PolicyOptions)


@dataclass(frozen=True)
class StepResult:
    frame: Frame
    track: TrackResult
    caption: CaptionState
    changed: bool  # the caption differs from the previous step's
    no_face: bool  # no face for longer than lost_face_seconds
    stages_ms: dict[str, float]
    latency_ms: float  # from the frame's capture to its caption state being ready


def enlargement(track: TrackResult, crop: CropSpec) -> float:
    """How much the model's mouth crop enlarges the frame's pixels (GRID's face: 1.4x); 0 without a face."""
    return crop.width / track.pose.width if track.pose is not None else 0.0


def colourless(crop: np.ndarray) -> bool:
    """Whether a colour (BGR) mouth crop holds no colour: a grey or infrared camera, or a black-and-white
    video. A face's skin and lips are redder than blue by tens of levels; such a picture, by under one."""
    if crop.ndim != 3 or crop.shape[-1] != 3:
        return False
    return float(np.abs(crop[..., 2].astype(np.int16) - crop[..., 0]).mean()) < 1.0


class LivePipeline:
    def __init__(self, model: OnnxModel, options: LiveOptions = LiveOptions()):
        self.options = options
        spec = model.spec
        self.backend = StreamingBackend(model, options.window)  # first: it refuses a model that cannot stream
        self.tracker = MouthTracker(TrackerOptions(crop=spec.crop))
        self.policy = make_policy(spec.vocabulary, options.policy)
        self.times: deque[float] = deque(maxlen=options.window)
        self.moving_lips = MovingLips()
        self.moving: deque[bool] = deque(maxlen=options.window)  # per frame of the window: the lips move
        self.caption = CaptionState(0.0, "", "")
        self.last_face = -np.inf
        self.began = np.inf  # media time of the run's first frame: until a face is found, its absence counts from it
        self.moved = 0  # frames the lips moved in, of the whole run: speech, read or not

    def close(self) -> None:
        self.tracker.close()

    @property
    def saw_a_face(self) -> bool:
        """Whether a face was found in some frame so far (last_face is set on each, and never reset)."""
        return math.isfinite(self.last_face)

    def _set(self, caption: CaptionState) -> bool:
        changed = _text(caption) != _text(self.caption)
        self.caption = caption
        return changed

    def step(self, frame: Frame) -> StepResult:
        """Process one frame at the model's rate. A stop request (Ctrl-C, SIGTERM) waits for the frame to be
        processed whole: one landing between the back end's frames and their times, or in the policy's
        update, would leave them apart, and the words read so far could not be committed."""
        started = time.perf_counter()
        self.began = min(self.began, frame.t)
        with held_interrupts():
            track = self.tracker.process(frame.image, frame.t)
            stages = {"capture": frame.read_ms, "landmarks": track.landmark_ms, "crop": track.crop_ms,
                      "front_end": 0.0, "back_end": 0.0, "captions": 0.0}
            changed = False
            if track.reason == "ok":  # not a pose held through a drop-out: the face was last seen here
                self.last_face = frame.t
            if track.crop is None:
                if self.backend.count and frame.t - self.last_face > self.options.lost_face_seconds:
                    changed = self.restart(frame.t, stages)  # the face is gone
            else:
                if track.jumped and self.backend.count:  # another face, or a cut: what it says is not this phrase
                    changed = self.restart(frame.t, stages)
                t0 = time.perf_counter()
                self.backend.push(track.crop)
                self.times.append(frame.t)
                self.moving.append(self.moving_lips(track.lips))
                self.moved += self.moving[-1]
                stages["front_end"] = (time.perf_counter() - t0) * 1e3
                if self.backend.count % self.options.hop == 0:
                    changed = self._read(stages) or changed
        done = time.perf_counter()
        stages["total"] = (done - started) * 1e3 + frame.read_ms
        # a camera's first dark frames, or a face found a few frames in, are no missing face
        no_face = track.crop is None and frame.t - max(self.last_face, self.began) > self.options.lost_face_seconds
        latency = (time.monotonic() - frame.captured) * 1e3
        return StepResult(frame, track, self.caption, changed, no_face, stages, latency)

    def _read(self, stages: dict[str, float]) -> bool:
        """The back end over the policy's window and the policy's update: whether the caption changed. The
        ms each took are added to `stages`' back_end and captions."""
        t0 = time.perf_counter()
        times = np.fromiter(self.times, float)
        first = min(int(np.searchsorted(times, self.policy.window_start())), len(times) - 1)
        logp = self.backend.logp(first)
        t1 = time.perf_counter()
        changed = self._set(self.policy.update(logp, times[first:], np.fromiter(self.moving, bool)[first:]))
        stages["back_end"] += (t1 - t0) * 1e3
        stages["captions"] += (time.perf_counter() - t1) * 1e3
        return changed

    def _read_the_rest(self, stages: dict[str, float]) -> None:
        """Read the frames that came after the last read (with --hop above 1) before a flush."""
        if self.backend.count % self.options.hop:
            self._read(stages)

    def restart(self, t: float, stages: dict[str, float] | None = None) -> bool:
        """Commit everything read and start a fresh stream: the face was lost or replaced (a cut), or
        the user paused, so the next frames do not continue these (a window across the gap would read
        one phrase). `stages` (a step's) is given the ms its back end and captions took.
        Returns whether the caption changed."""
        stages = dict.fromkeys(STAGES, 0.0) if stages is None else stages
        before = self.caption
        self._read_the_rest(stages)
        t0 = time.perf_counter()
        self._set(self.policy.flush(t))
        self.backend.reset()
        self.times.clear()
        self.moving.clear()
        self.moving_lips.reset()
        stages["captions"] += (time.perf_counter() - t0) * 1e3
        return _text(self.caption) != _text(before)

    def finish(self) -> CaptionState:
        """End of stream: everything read is committed."""
        self._read_the_rest(dict.fromkeys(STAGES, 0.0))  # not a step's: timed by none
        self._set(self.policy.flush())
        return self.caption


def nothing_read(source: str, frames: FrameSource, pipeline: LivePipeline) -> str | None:
    """Why a run read nothing of `source`, or None: not one frame decoded, or a video read to its end
    without a face in any frame. Bad input, not a run cut short or a silent empty transcript."""
    if frames.error and not frames.read:
        return frames.error
    if frames.is_video and not pipeline.saw_a_face and not frames.error and not frames.failure:
        return f"no face in {source}: nothing was read"
    return None


@dataclass(frozen=True)
class Notice:
    """A line a live run tells: `text` on stderr; `short`, the few words the window shows ("" for what it shows
    otherwise: the face lost and found, by its "no face" status)."""

    text: str
    short: str


@dataclass(eq=False)  # stateful: what has been said
class RunNotices:
    """What a live run tells as it happens: falling behind, no colour and a small face once each; another face
    at each jump; the face lost and found at each change. The user can act on them, and headless nothing else
    shows them."""

    spec: ModelSpec
    model_name: str
    decoder: str
    behind: bool = False
    small: bool = False
    colour_seen: bool = False
    faceless: bool = False

    def of(self, step: StepResult, dropped: int, pipeline: LivePipeline) -> list[Notice]:
        """The notices a step gives, with `dropped` frames dropped so far."""
        said, t = [], step.frame.t
        if step.track.jumped:  # the transcript goes on with what someone else says
            said.append(Notice(f"reading another face at {t:.1f} s (a second person, or a cut)",
                               "reading another face"))
        if dropped and not self.behind:  # as it happens: headless, the total comes at the end
            self.behind = True
            # The beam and grammar decoders read each phrase again on every frame: the first thing to lower.
            faster = ("" if self.decoder == "greedy"
                      else " (a smaller --beam-width, or --decoder greedy, decodes faster)")
            said.append(Notice(f"processing fell behind at {t:.1f} s: frames are dropped, and reading suffers{faster}",
                               "falling behind: frames dropped"))
        if not self.colour_seen and step.track.crop is not None:  # the first face's picture
            self.colour_seen = True
            if self.spec.crop.channels == 3 and colourless(step.track.crop):
                said.append(Notice(f"no colour in the picture at {t:.1f} s (a grey or infrared camera, or a "
                                   f"black-and-white video), and {self.model_name} reads colour: reading suffers; a "
                                   "fine-tune on clips from this camera mends it (README: Reading your own face)",
                                   "no colour in the picture: reading suffers"))
        if not self.small and (enlarged := enlargement(step.track, self.spec.crop)) > MOST_ENLARGED:
            self.small = True
            said.append(Notice(f"face small at {t:.1f} s: its mouth is enlarged {enlarged:.1f}x for the model, and "
                               f"above {MOST_ENLARGED:g}x reading suffers: come closer, or film at a higher resolution",
                               "face small: come closer"))
        if step.no_face != self.faceless and (step.no_face or step.track.crop is not None):
            self.faceless = step.no_face
            # media time, where in a long file to look: when the face was last seen, or is found
            seen = pipeline.last_face if pipeline.saw_a_face else pipeline.began
            at = f"at {seen if self.faceless else t:.1f} s"
            said.append(Notice(f"no face in view {at}: nothing to read until a face is seen" if self.faceless
                               else f"face found {at}", ""))
        return said


def _text(caption: CaptionState) -> tuple[str, str]:
    """What a caption shows, without its time."""
    return caption.committed, caption.tentative
