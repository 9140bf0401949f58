"""Training the Keras model: the GRID cache, augmentation, the LipNet family, training and evaluation."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's start-up INFO lines: noise to a user; warnings stay
