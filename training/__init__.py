"""Training the Keras model: the GRID cache, augmentation, the LipNet family, training and evaluation."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's start-up INFO lines: noise to a user; warnings stay
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512-class features; on an
# AVX2-only CPU they make a training step of `lite` about 3.5 times faster (docs/training.md).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
