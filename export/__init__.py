"""Keras → ONNX export with a parity gate: `python -m export`."""

from collections.abc import Iterable
from pathlib import Path

import training  # noqa: F401  (its TensorFlow environment settings, in effect before keras loads TensorFlow)

OPSET = 17  # the default; tf2onnx supports opsets up to MAX_OPSET
MAX_OPSET = 18
# The cache the README's training commands write, from the folder they run in: real windows to check and time on.
CACHE = Path("cache/s1.h5")
A_CACHE = ("cache", "make one with python -m training.prepare, or name one with --cache")


def missing(inputs: Iterable[tuple[Path, str | tuple[str, str]]]) -> str | None:
    """`no WHAT at PATH` for the first of these (path, what) files that is not there, or None; `what` may be
    (what, how to get one), said after it."""
    for path, what in inputs:
        if not path.is_file():
            what, how = (what, "") if isinstance(what, str) else what
            return f"no {what} at {path}" + (f": {how}" if how else "")
    return None
