"""Keras → ONNX export with a parity gate: `python -m export`."""

from collections.abc import Iterable
from pathlib import Path

import training  # noqa: F401  (its TensorFlow environment settings, in effect before keras loads TensorFlow)

OPSET = 17  # the default; tf2onnx supports opsets up to MAX_OPSET
MAX_OPSET = 18
CACHE = Path("cache/s1.h5")  # the cache the README's training commands write: real windows to check and time on
A_CACHE = "cache (make one with python -m training.prepare)"


def missing(inputs: Iterable[tuple[Path, str]]) -> str | None:
    """`no WHAT at PATH` for the first of these (path, what) files that is not there, or None."""
    return next((f"no {what} at {path}" for path, what in inputs if not path.is_file()), None)
