"""The parity gate: Keras and ONNX Runtime must agree on real cached windows before a model ships."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from realtime.backend import OnnxModel, StreamingBackend
from realtime.decode import greedy
from realtime.spec import ModelSpec, normalise

if TYPE_CHECKING:
    import keras

WINDOW_LENGTHS = (12, 30, 75, 150)
MAX_PROB_DIFF = 1e-4


@dataclass(frozen=True)
class ParityResult:
    form: str
    length: int
    max_prob_diff: float
    transcripts_equal: bool

    @property
    def ok(self) -> bool:
        return self.max_prob_diff <= MAX_PROB_DIFF and self.transcripts_equal


def windows(clips: list[np.ndarray], length: int, count: int = 4) -> np.ndarray:
    """`count` real windows of `length` frames cut from consecutive clips joined end to end."""
    stream = np.concatenate(clips)
    starts = np.linspace(0, len(stream) - length, count).astype(int)
    return np.stack([stream[s:s + length] for s in starts])


def check(keras_logp: np.ndarray, onnx_logp: np.ndarray, spec: ModelSpec, form: str) -> ParityResult:
    diff = float(np.abs(np.exp(keras_logp) - np.exp(onnx_logp)).max())
    same = all(greedy(a, spec.vocabulary).text == greedy(b, spec.vocabulary).text
               for a, b in zip(keras_logp, onnx_logp))
    return ParityResult(form, keras_logp.shape[1], diff, same)


def _streamed(model: OnnxModel, crops: np.ndarray, window: int) -> np.ndarray:
    """The StreamingBackend's log-probabilities after each clip in `crops` is fed frame by frame."""
    out = []
    for clip in crops:
        stream = StreamingBackend(model, window=window)
        for crop in clip:
            stream.push(crop)
        out.append(stream.logp())
    return np.stack(out)


def gate(keras_model: keras.Model, model: OnnxModel, clips: list[np.ndarray]) -> list[ParityResult]:
    """Compare every emitted form with Keras on windows of every length: `full` (the whole window in
    one run), `streaming` (the runtime's StreamingBackend fed frame by frame, then its back end) and
    `sliding` (the same after the window has slid by its length: its start read afresh)."""
    results = []
    available = sum(len(c) for c in clips)
    for length in (n for n in WINDOW_LENGTHS if n <= available):
        crops = windows(clips, length)
        x = normalise(crops)
        reference = np.asarray(keras_model.predict_on_batch(x))
        results.append(check(reference, model.batch_logp(x), model.spec, "full"))
        results.append(check(reference, _streamed(model, crops, length), model.spec, "streaming"))
        if 2 * length <= available:
            longer = windows(clips, 2 * length)
            reference = np.asarray(keras_model.predict_on_batch(normalise(longer[:, length:])))
            results.append(check(reference, _streamed(model, longer, length), model.spec, "sliding"))
    return results
