"""When someone is speaking: a frame-level signal (the voice's energy, the lips' opening) becomes one span.

The voice and the lips use the same rule. A frame is active above an adaptive floor — a low percentile of
the take's own frames, since most of a take is not speech — plus a margin. Blips shorter than any speech
sound (a click, a lip smack) are dropped first, so that they cannot be joined to the speech; then pauses
shorter than the hang-over are bridged, so a word's quiet consonants and the gaps between words do not
split it; then what is still shorter than the minimum (a breath, a twitch of the lips) is ignored. The span
runs from the first active frame to the last.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from realtime.crop import LIPS, MOUTH_CORNERS


@dataclass(frozen=True)
class Span:
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class ActivityOptions:
    margin: float  # active above floor + margin, in the signal's units
    floor_percentile: float = 10.0
    min_burst: float = 0.0  # seconds: shorter blips are dropped before the hang-over can bridge them
    hangover: float = 0.3  # seconds: shorter pauses are bridged
    min_active: float = 0.2  # seconds: shorter bursts are not speech
    pre: float = 0.0  # seconds added before the first active frame (onsets below the threshold)
    post: float = 0.0  # seconds added after the last one


def true_runs(mask: np.ndarray) -> np.ndarray:
    """(N, 2) start and end (exclusive) frame of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return edges.reshape(-1, 2)


def active_frames(values: np.ndarray, frame_seconds: float, options: ActivityOptions) -> np.ndarray:
    """Frame-level activity, (T,) bool; NaN frames (no measurement) are inactive and set no floor."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        mask = values > np.nanpercentile(values, options.floor_percentile) + options.margin
    for start, end in true_runs(mask):
        if (end - start) * frame_seconds < options.min_burst:
            mask[start:end] = False
    runs = true_runs(mask)
    for (_, end), (start, _) in zip(runs[:-1], runs[1:]):
        if (start - end) * frame_seconds < options.hangover:
            mask[end:start] = True
    for start, end in true_runs(mask):
        if (end - start) * frame_seconds < options.min_active:
            mask[start:end] = False
    return mask


def active_span(values: np.ndarray, frame_seconds: float, options: ActivityOptions) -> Span | None:
    """First to last active frame, widened by pre/post and kept within the signal; None when nothing is."""
    runs = true_runs(active_frames(values, frame_seconds, options))
    if not len(runs):
        return None
    duration = len(values) * frame_seconds
    return Span(max(0.0, runs[0, 0] * frame_seconds - options.pre),
                min(duration, runs[-1, 1] * frame_seconds + options.post))


# Tuned on GRID speaker 1 against its word alignments: the lips start to move about 0.25 s before the
# voice (they shape the first sound), and close within a frame of the last word's end.
LIP_ACTIVITY = ActivityOptions(margin=0.02)

_INNER_TOP = [LIPS.index(i) for i in (82, 13, 312)]
_INNER_BOTTOM = [LIPS.index(i) for i in (87, 14, 317)]


def mouth_opening(lips: np.ndarray) -> np.ndarray:
    """(T, 40, 2) lip landmarks -> (T,) inner-lip gap over mouth width, so distance to the camera cancels."""
    lips = np.asarray(lips, dtype=np.float64)
    width = np.linalg.norm(lips[:, MOUTH_CORNERS[0]] - lips[:, MOUTH_CORNERS[1]], axis=-1)
    gap = np.linalg.norm(lips[:, _INNER_TOP] - lips[:, _INNER_BOTTOM], axis=-1).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / width


def lip_span(lips: np.ndarray, fps: float, options: ActivityOptions = LIP_ACTIVITY) -> Span | None:
    """The span where the mouth moves, for silent speech: frames without a face are NaN and never active."""
    return active_span(mouth_opening(lips), 1.0 / fps, options)


class MovingLips:
    """Frame by frame, whether the lips move: the live loop's pause detector, so a phrase ends where
    the speaker's mouth rests, whatever the model reads there. The floor is the mouth's resting
    opening, a low percentile of the last HISTORY frames, as `active_frames` takes it over a take."""

    HISTORY = 250  # frames: 10 s at 25 fps, long enough to hold the mouth at rest between phrases

    def __init__(self, options: ActivityOptions = LIP_ACTIVITY):
        self.options = options
        self.openings: deque[float] = deque(maxlen=self.HISTORY)
        self.last = False

    def __call__(self, lips: np.ndarray | None) -> bool:
        """`lips`: one frame's (40, 2) lip landmarks; None (a frame the tracker held) repeats the last answer."""
        if lips is None:
            return self.last
        opening = float(mouth_opening(np.asarray(lips)[None])[0])
        if np.isfinite(opening):
            self.openings.append(opening)
            floor = np.percentile(self.openings, self.options.floor_percentile)
            self.last = bool(opening > floor + self.options.margin)
        return self.last

    def reset(self) -> None:
        self.openings.clear()
        self.last = False


@dataclass(frozen=True)
class VadOptions:
    frame_ms: float = 10.0
    band_hz: tuple[float, float] = (300.0, 4000.0)  # the voice's band: hum below and hiss above are not speech
    # Tuned on GRID speaker 1 (python -m realtime.vad_report): 15 dB above the floor, with pre/post making
    # up for the quiet ends of words (a plosive's closure, a trailing nasal) that fall below it.
    activity: ActivityOptions = field(default_factory=lambda: ActivityOptions(
        margin=15.0, floor_percentile=10.0, min_burst=0.05, hangover=0.3, min_active=0.2, pre=0.05, post=0.025))


ZERO_POWER = 1e-10  # band_energy_db's floor: -100 dB, what frames of exact zeros read


def band_energy_db(samples: np.ndarray, rate: int, frame_ms: float, band_hz: tuple[float, float]) -> np.ndarray:
    """Energy in `band_hz` of each `frame_ms` frame, in dB; only its differences matter."""
    n = max(1, round(rate * frame_ms / 1000))
    count = len(samples) // n
    frames = np.asarray(samples[:count * n], dtype=np.float64).reshape(count, n) * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    return 10 * np.log10(power[:, band].sum(axis=1) / n + ZERO_POWER)


def detect_speech(samples: np.ndarray, rate: int, options: VadOptions = VadOptions()) -> Span | None:
    """The main speech span of a take (first voiced frame to last), in seconds; None for no speech. Exact
    zeros before the first sound (a microphone starting up) measure no room: as its floor, they would make
    the room's noise speech, so they are left out (NaN) as frames without a measurement are. Zeros after
    a sound are kept: noise suppression silences the room between words, and only speech is left."""
    energy = band_energy_db(samples, rate, options.frame_ms, options.band_hz)
    starting = np.argmax(energy > 10 * np.log10(ZERO_POWER)) if len(energy) else 0
    energy[:starting] = np.nan
    return active_span(energy, options.frame_ms / 1000, options.activity)
