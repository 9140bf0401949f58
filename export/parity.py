"""The parity gate: Keras and ONNX Runtime must agree on real cached windows before a model ships, a
variant with the model it was rounded from, and a variant's streaming parts with its own full model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from realtime.backend import OnnxModel, StreamingBackend
from realtime.spec import normalise

if TYPE_CHECKING:
    import keras

WINDOW_LENGTHS = (12, 30, 75, 150)
WINDOWS = 4  # of each length, each starting at least SPACING frames after the one before
SPACING = max(WINDOW_LENGTHS) // 2
# The longest sliding window reads twice its length, and its four starts are SPACING apart.
FRAMES_NEEDED = 2 * max(WINDOW_LENGTHS) + (WINDOWS - 1) * SPACING
MAX_PROB_DIFF = 1e-4
# A variant's streaming parts against its own full model, which rounds the same arithmetic done in
# another order: on this gate's windows of the bundled model's 53 validation clips, fp16 moved a
# probability by up to 1.9e-3 and int8 by up to 0.015 (0.0028 and 0.027 for the test suite's tiny model);
# int8 parts quantised on their own, not as the full model, streamed up to 0.36 apart.
VARIANT_MAX_PROB_DIFF = {"fp16": 1e-2, "int8": 0.1}
# A variant's full model against the exported (fp32) one: rounding may move probabilities, not readings.
# On this gate's windows of the bundled model's validation clips, fp16 moved a probability by up to
# 9.7e-4 and int8 by up to 0.082 (one best class apart, at a near tie); int8 moved the test suite's
# tiny model, unsure of its letters, by up to 0.33, and int8 calibrated on blank frames (every activation
# range lost) moved the bundled model's by up to 1.0: limits that refuse a broken rounding, not rounding.
ROUNDED_MAX_PROB_DIFF = {"fp16": 1e-2, "int8": 0.5}


# A frame's best class (greedy decoding's path) may differ from the reference's only at a near tie: where
# the reference's two best classes stand at most NEAR_TIE times the check's probability limit apart, so
# that rounding which moves one of them by the limit could reorder them. (Twice the limit would add
# nothing to the limit itself: two classes that each move by at most the limit can trade places only
# where they stood that close.) The frames that flipped stood at most 0.09 of the limit apart: the
# tiny test model's int8 parts at 0.013, 0.057 and 0.087 (limit 0.1), its fp16 at 0.011 (limit 1e-2);
# the bundled model's forms and variants flipped none.
NEAR_TIE = 1


@dataclass(frozen=True)
class ParityResult:
    form: str
    length: int
    max_prob_diff: float
    ties: int  # frames whose best class differs at a near tie of the reference
    flips: int  # frames whose best class differs where the reference was clear
    limit: float = MAX_PROB_DIFF

    @property
    def ok(self) -> bool:
        return self.max_prob_diff <= self.limit and not self.flips


def windows(clips: list[np.ndarray], length: int, count: int = WINDOWS) -> np.ndarray:
    """`count` real windows of `length` frames cut from consecutive clips joined end to end. Clips that
    hold fewer than FRAMES_NEEDED frames (a person's few short recordings) are joined again after
    themselves until they hold as many, so that the gate's windows still start SPACING or more frames
    apart: still real frames, some of them read more than once."""
    stream = np.concatenate(clips)
    if not len(stream):
        raise ValueError("the clips hold no frames")
    stream = np.concatenate([stream] * -(-FRAMES_NEEDED // len(stream)))
    starts = np.linspace(0, len(stream) - length, count).astype(int)
    return np.stack([stream[s:s + length] for s in starts])


def check(reference: np.ndarray, logp: np.ndarray, form: str, limit: float = MAX_PROB_DIFF) -> ParityResult:
    """How far `logp` strays from `reference` (batches of log-probabilities): its largest probability
    difference, and the frames whose best class (greedy decoding's path) differs, at near ties of the
    reference (NEAR_TIE) and elsewhere."""
    expected, actual = np.exp(reference), np.exp(logp)
    second, best = np.moveaxis(np.sort(expected, axis=-1)[..., -2:], -1, 0)
    apart = expected.argmax(-1) != actual.argmax(-1)
    tie = best - second <= NEAR_TIE * limit
    return ParityResult(form, reference.shape[1], float(np.abs(expected - actual).max()), int((apart & tie).sum()),
                        int((apart & ~tie).sum()), limit)


def _streamed(model: OnnxModel, crops: np.ndarray, window: int) -> np.ndarray:
    """The StreamingBackend's log-probabilities after each clip in `crops` is fed frame by frame."""
    out = []
    for clip in crops:
        stream = StreamingBackend(model, window=window)
        for crop in clip:
            stream.push(crop)
        out.append(stream.logp())
    return np.stack(out)


def _compared(reference: Callable[[np.ndarray], np.ndarray], model: OnnxModel, clips: list[np.ndarray],
              limit: float, full: Callable[[np.ndarray, np.ndarray], ParityResult]) -> list[ParityResult]:
    """`full`'s row (from a window batch and the reference's read of it), then the streaming forms of
    `model` against `reference`, on windows of every length."""
    results = []
    for length in WINDOW_LENGTHS:
        crops = windows(clips, length)
        x = normalise(crops)
        expected = reference(x)
        results.append(full(x, expected))
        results.append(check(expected, _streamed(model, crops, length), "streaming", limit))
        longer = windows(clips, 2 * length)
        results.append(check(reference(normalise(longer[:, length:])), _streamed(model, longer, length), "sliding",
                             limit))
    return results


def gate(keras_model: keras.Model, model: OnnxModel, clips: list[np.ndarray]) -> list[ParityResult]:
    """Compare every emitted form with Keras on windows of every length: `full` (the whole window in
    one run), `streaming` (the runtime's StreamingBackend fed frame by frame, then its back end) and
    `sliding` (the same after the window has slid by its length: its start read afresh). A form passes
    when no probability moves by more than MAX_PROB_DIFF and each frame's best class is Keras' but at
    near ties (NEAR_TIE): equal transcripts would refuse a model merely unsure between two letters."""
    from training.model import forward

    return _compared(forward(keras_model), model, clips, MAX_PROB_DIFF,
                     lambda x, expected: check(expected, model.batch_logp(x), "full"))


def variant_gate(model: OnnxModel, exported: OnnxModel, clips: list[np.ndarray], limit: float,
                 rounded: float) -> list[ParityResult]:
    """A variant's full model against the `exported` model it was rounded from, within `rounded`, and its
    `streaming` and `sliding` forms, as gate() reads them, against its own full model: the parts live
    captioning streams with must read as the model they were made with, within `limit`. Each frame's
    best class must be the reference's but at near ties (NEAR_TIE)."""
    return _compared(model.batch_logp, model, clips, limit,
                     lambda x, read: check(exported.batch_logp(x), read, "full", rounded))
