"""The parity gate: Keras and ONNX Runtime must agree on real cached windows before a model ships."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime.decode import greedy
from realtime.spec import ModelSpec, normalise

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


def gate(keras_model, sessions: dict[str, object], clips: list[np.ndarray], spec: ModelSpec) -> list[ParityResult]:
    """Compare every emitted form on windows of every length: `full` (one session) and `streaming`
    (front then back sessions), each against Keras."""
    results = []
    for length in WINDOW_LENGTHS:
        x = normalise(windows(clips, length))
        reference = np.asarray(keras_model.predict_on_batch(x))
        full = sessions["full"].run(None, {"frames": x})[0]
        results.append(check(reference, full, spec, "full"))
        features = sessions["front"].run(None, {"frames": x})[0]
        halves = sessions["back"].run(None, {"features": features})[0]
        results.append(check(reference, halves, spec, "front+back"))
    return results
