"""Training losses, registered with Keras so checkpoints load in safe mode."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable("lipstream")
class CTCLoss(keras.losses.Loss):
    """CTC over characters; y_true packs [input frames, label ids..., -1 padding].

    `confidence_penalty` > 0 subtracts that weight times the entropy of each frame's distribution,
    summed over the sample's frames (Pereyra et al. 2017, "Regularizing neural networks by penalizing
    confident output distributions"): a model that reads its training clips almost exactly is kept from
    putting all its mass on one reading. Measured: a word or so better on whole clips, far worse when
    streamed, so off by default (README)."""

    def __init__(self, blank: int, confidence_penalty: float = 0.0, name: str = "ctc_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.blank = blank
        self.confidence_penalty = confidence_penalty

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        lengths = y_true[:, 0]
        labels = y_true[:, 1:]
        label_lengths = ops.sum(ops.cast(labels >= 0, "int32"), axis=1)
        loss = ops.ctc_loss(ops.maximum(labels, 0), y_pred, label_lengths, lengths, mask_index=self.blank)
        if self.confidence_penalty:
            frames = ops.cast(ops.arange(ops.shape(y_pred)[1])[None, :] < lengths[:, None], y_pred.dtype)
            entropy = -ops.sum(ops.exp(y_pred) * y_pred, axis=-1)
            loss = loss - self.confidence_penalty * ops.sum(entropy * frames, axis=1)
        return loss

    def get_config(self):
        return {**super().get_config(), "blank": self.blank, "confidence_penalty": self.confidence_penalty}


@keras.saving.register_keras_serializable("lipstream")
class FrameLoss(keras.losses.Loss):
    """Per-frame classification against targets from the align files' word spans (which word, which
    character): dense supervision long before CTC finds its alignments. Frames labelled -1 are ignored.
    Takes logits or log-probabilities (log_softmax leaves log-probabilities unchanged)."""

    def __init__(self, name: str = "frame_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(y_true >= 0, "float32")
        ce = ops.sparse_categorical_crossentropy(ops.maximum(y_true, 0), y_pred, from_logits=True)
        return ops.sum(ce * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable("lipstream")
class SpeechLoss(keras.losses.Loss):
    """Mean squared error of the predicted speech features per frame (training.speech); frames whose
    features are NaN (no sound, padding) are ignored."""

    def __init__(self, name: str = "speech_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        known = ops.logical_not(ops.isnan(y_true))
        error = ops.where(known, ops.square(y_pred - ops.where(known, y_true, 0.0)), 0.0)
        frames = ops.cast(ops.all(known, axis=-1), "float32")
        per_frame = ops.mean(error, axis=-1)
        return ops.sum(per_frame * frames, axis=1) / ops.maximum(ops.sum(frames, axis=1), 1.0)
