"""Keras → ONNX export with a parity gate: `python -m export`."""

from pathlib import Path

import training  # noqa: F401  (its TensorFlow environment settings, in effect before keras loads TensorFlow)

OPSET = 17  # the default; tf2onnx supports opsets up to MAX_OPSET
MAX_OPSET = 18
CACHE = Path("cache/s1.h5")  # the cache the README's first command writes: real windows to check and time on
