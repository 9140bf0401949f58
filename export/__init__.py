"""Keras → ONNX export with a parity gate: `python -m export`."""

OPSET = 17  # the default; tf2onnx supports opsets up to MAX_OPSET
MAX_OPSET = 18
