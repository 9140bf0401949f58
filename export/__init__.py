"""Keras → ONNX export with a parity gate: `python -m export`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # as training/ does: TensorFlow's INFO lines are noise
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as training/ does: several times faster on AVX2 CPUs

OPSET = 17  # the default; tf2onnx supports opsets up to MAX_OPSET
MAX_OPSET = 18
