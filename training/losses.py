"""Training losses, registered with Keras so checkpoints load in safe mode."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
from keras import ops

if TYPE_CHECKING:  # Keras' backend here: the tensors the losses take and give
    import tensorflow as tf


def fits_frames(labels: tf.Tensor, frames: tf.Tensor) -> tf.Tensor:
    """Whether each label (batch, width; -1 pads) can be read in its frames: CTC needs a frame for each
    letter and a blank between two equal letters."""
    repeats = ops.sum(ops.cast((labels[:, 1:] == labels[:, :-1]) & (labels[:, 1:] >= 0), "int32"), axis=1)
    return ops.sum(ops.cast(labels >= 0, "int32"), axis=1) + repeats <= frames


def ctc_log_likelihood(labels: tf.Tensor, log_probs: tf.Tensor, frames: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the CTC log-likelihood of each label (batch, width; -1 pads) in its first `frames` of `log_probs`
    (batch, time, classes; the blank last, where Vocabulary puts it), whether the label can be read
    there). TensorFlow's fused CTC kernel: the dense path keras.ops.ctc_loss takes builds scans into the
    graph (slower to trace, and the source of oneDNN's "DT_BOOL" error line), and on its own, forward and
    backward, takes about ten times as long. A label that has no letters or does not fit its frames
    cannot be read: the kernel refuses it, so it reads a one-letter stand-in there, which the caller
    leaves out."""
    import tensorflow as tf

    possible = tf.reduce_any(labels >= 0, axis=1) & fits_frames(labels, frames)
    stand_in = tf.concat([tf.zeros_like(labels[:, :1]), -tf.ones_like(labels[:, 1:])], axis=1)
    shifted = tf.sparse.from_dense(tf.where(possible[:, None], labels, stand_in) + 1)  # padding: 0, left out
    sparse = tf.SparseTensor(shifted.indices, shifted.values - 1, shifted.dense_shape)
    return -tf.compat.v1.nn.ctc_loss(sparse, log_probs, frames, time_major=False), possible


@keras.saving.register_keras_serializable("lipstream")
class CTCLoss(keras.losses.Loss):
    """CTC over characters; y_true packs [input frames, label ids..., -1 padding], and with `rivals` > 0
    that many rival labels after the label, each as wide (training.dataset.pad_batch).

    `confidence_penalty` > 0 subtracts that weight times the entropy of each frame's distribution,
    summed over the sample's frames (Pereyra et al. 2017, "Regularizing neural networks by penalizing
    confident output distributions"): a model that reads its training clips almost exactly is kept from
    putting all its mass on one reading. Measured: a word or so better on whole clips, far worse when
    streamed, so off by default (docs/experiments.md).

    `sequence_weight` > 0 adds that weight times the sentence-level cross-entropy of the label against
    its rivals (the GRID sentences one word away): -log of the label's share of `sequence_scale` x CTC
    log-likelihood, softmaxed over the label and its rivals. CTC alone only raises the label's
    likelihood; this lowers the rivals' on the same frames, which is what the grammar decoder chooses
    between (MMI-style sequence training, with the grammar's one-word neighbours as the competing set;
    a scale below 1 demands a margin, as the acoustic scale of lattice-based MMI does). Samples without
    rivals (not whole GRID sentences) get CTC alone."""

    def __init__(self, blank: int, confidence_penalty: float = 0.0, sequence_weight: float = 0.0,
                 sequence_scale: float = 1.0, rivals: int = 0, name: str = "ctc_loss", **kwargs: object):
        super().__init__(name=name, **kwargs)
        self.blank = blank
        self.confidence_penalty = confidence_penalty
        self.sequence_weight = sequence_weight
        self.sequence_scale = sequence_scale
        self.rivals = rivals

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = ops.cast(y_true, "int32")
        batch = ops.shape(y_true)[0]
        lengths = y_true[:, 0]
        labels = ops.reshape(y_true[:, 1:], (batch, 1 + self.rivals, -1))  # (B, label and rivals, width)
        label_lengths = ops.sum(ops.cast(labels >= 0, "int32"), axis=2)
        if y_pred.shape[-1] is not None and self.blank != y_pred.shape[-1] - 1:
            raise ValueError(f"the CTC blank must be the last class ({y_pred.shape[-1] - 1}), not {self.blank}")
        # A label that retiming (speed-up, dropped frames) squeezed out of its frames has no alignment:
        # CTC's loss there is a large number whose gradient means nothing. It adds nothing.
        likelihood, possible = ctc_log_likelihood(labels[:, 0], y_pred, lengths)
        loss = ops.where(possible, -likelihood, ops.zeros_like(likelihood))
        if self.confidence_penalty:
            frames = ops.cast(ops.arange(ops.shape(y_pred)[1])[None, :] < lengths[:, None], y_pred.dtype)
            entropy = -ops.sum(ops.exp(y_pred) * y_pred, axis=-1)
            loss = loss - self.confidence_penalty * ops.sum(entropy * frames, axis=1)
        if self.rivals and self.sequence_weight:  # skipped for a batch without rivals (most of the word batches)
            loss = loss + self.sequence_weight * ops.cond(
                ops.any(label_lengths[:, 1] > 0),
                lambda: self._sequence_loss(labels, y_pred, lengths), lambda: ops.zeros_like(loss))
        return loss

    def _sequence_loss(self, labels: tf.Tensor, y_pred: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """-log softmax over (label, rivals) of the scaled CTC log-likelihoods, taken at the label; 0
        for a sample without rivals or whose label does not fit its frames."""
        import tensorflow as tf

        batch, readings = tf.shape(labels)[0], 1 + self.rivals
        likelihood, possible = ctc_log_likelihood(tf.reshape(labels, (batch * readings, -1)),
                                                  tf.repeat(y_pred, readings, axis=0), tf.repeat(lengths, readings))
        likelihood = tf.where(possible, likelihood, -math.inf)  # a rival that cannot be read takes no share
        scaled = self.sequence_scale * tf.reshape(likelihood, (batch, readings))
        share = scaled[:, 0] - tf.reduce_logsumexp(scaled, axis=1)
        label_fits = tf.reshape(possible, (batch, readings))[:, 0]  # without rivals, the share is 1 and this 0
        return tf.where(label_fits, -share, tf.zeros_like(share))

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "blank": self.blank, "confidence_penalty": self.confidence_penalty,
                "sequence_weight": self.sequence_weight, "sequence_scale": self.sequence_scale,
                "rivals": self.rivals}


@keras.saving.register_keras_serializable("lipstream")
class FrameLoss(keras.losses.Loss):
    """Per-frame classification against targets from the align files' word spans (which word, which
    character): dense supervision long before CTC finds its alignments. Frames labelled -1 are ignored.
    Takes logits or log-probabilities (log_softmax leaves log-probabilities unchanged)."""

    def __init__(self, name: str = "frame_loss", **kwargs: object):
        super().__init__(name=name, **kwargs)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(y_true >= 0, "float32")
        ce = ops.sparse_categorical_crossentropy(ops.maximum(y_true, 0), y_pred, from_logits=True)
        return ops.sum(ce * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable("lipstream")
class SpeechLoss(keras.losses.Loss):
    """Mean squared error of the predicted speech features per frame (training.speech); frames whose
    features are NaN (no sound, padding) are ignored."""

    def __init__(self, name: str = "speech_loss", **kwargs: object):
        super().__init__(name=name, **kwargs)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        known = ops.logical_not(ops.isnan(y_true))
        error = ops.where(known, ops.square(y_pred - ops.where(known, y_true, 0.0)), 0.0)
        frames = ops.cast(ops.all(known, axis=-1), "float32")
        per_frame = ops.mean(error, axis=-1)
        return ops.sum(per_frame * frames, axis=1) / ops.maximum(ops.sum(frames, axis=1), 1.0)
