"""From cached clips to tf.data batches: the input pipeline (samples drawn by training.augment's Sampler,
padded into batches with their targets), and batched prediction over whole clips."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from realtime.grid import RIVALS, rivals
from realtime.spec import normalise
from realtime.vocab import Vocabulary
from training.augment import UNKNOWN, CachedClip, Sample, Sampler

if TYPE_CHECKING:
    import tensorflow as tf

LABEL_PAD = -1
MOST_BATCH = 256  # samples a step: 256 windows of 75 RGB crops are 1.2 GB of input alone, before activations


def unwritable_texts(texts: Iterable[tuple[str, str]], vocabulary: Vocabulary) -> str:
    """Which of the clips' texts (key, text) `vocabulary` cannot write, for a one-line refusal: each
    clip's key and the characters, three of them and how many more; empty when it writes them all."""
    bad = [f"{key} ({unknown})" for key, text in texts if (unknown := vocabulary.unknown(text))]
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


def predict_clips(predict: Callable[[np.ndarray], np.ndarray], clips: list[CachedClip],
                  batch_size: int = 16) -> list[np.ndarray]:
    """Per-clip outputs (T, classes) of `predict` (a normalised batch -> (B, T, classes)). Clips are
    batched with clips of their own length: padding would reach the backward GRU before the clip's own
    frames, and a clip's reading would depend on the clips batched with it."""
    out: list[np.ndarray] = [np.empty(0)] * len(clips)
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(len(clip.mouth), []).append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            y = predict(np.stack([normalise(clips[i].mouth) for i in chunk]))
            for j, i in enumerate(chunk):
                out[i] = y[j]
    return out


def pad_batch(samples: list[Sample], vocabulary: Vocabulary,
              with_rivals: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Normalised frames padded to the longest sample, and targets:
    `ctc` = [frames, label ids..., -1 padding]; with `with_rivals`, the label is followed by the
    realtime.grid.RIVALS sentences one word away from it, each padded as the label is, to the longest
    reading in the batch (all padding for a sample that is not a whole GRID sentence); `words` and
    `chars` = per-frame classes, -1 where unknown; `speech` = per-frame speech features, NaN where
    unknown (only when the samples carry them)."""
    texts = [[s.text, *(rivals(s.text) if with_rivals else [])] for s in samples]
    t = max(len(s.frames) for s in samples)
    n = max(len(text) for sample_texts in texts for text in sample_texts)
    x = np.zeros((len(samples), t, *samples[0].frames.shape[1:]), dtype=np.float32)
    ctc = np.full((len(samples), 1 + (1 + RIVALS * with_rivals) * n), LABEL_PAD, dtype=np.int32)
    words = np.full((len(samples), t), UNKNOWN, dtype=np.int32)
    chars = np.full((len(samples), t), UNKNOWN, dtype=np.int32)
    for i, s in enumerate(samples):
        x[i, :len(s.frames)] = normalise(s.frames)
        ctc[i, 0] = len(s.frames)
        for j, text in enumerate(texts[i]):
            ctc[i, 1 + j * n:1 + j * n + len(text)] = vocabulary.encode(text)
        words[i, :len(s.frames)] = s.frame_classes
        chars[i, :len(s.frames)] = s.frame_chars
    targets: dict[str, np.ndarray] = {"ctc": ctc, "words": words, "chars": chars}
    if samples[0].frame_speech is not None:
        speech = np.full((len(samples), t, samples[0].frame_speech.shape[1]), np.nan, dtype=np.float32)
        for i, s in enumerate(samples):
            speech[i, :len(s.frames)] = s.frame_speech
        targets["speech"] = speech
    return x, targets


SHORTEST_STREAM_WINDOW = 30  # frames


@dataclass(frozen=True)
class SampleMix:
    """Which kinds of sample an epoch draws: optionally short samples first (a curriculum; from scratch
    it slowed training, docs/experiments.md), then mostly sentences and stream windows of `window` frames (the live
    loop reads windows up to its own window length)."""

    curriculum_epochs: int = 0
    stream: float = 0.35  # share of stream windows after the curriculum
    window: tuple[int, int] = (SHORTEST_STREAM_WINDOW, 90)  # stream window length range, frames
    splice: float = 0.0  # share of the whole sentences spliced from several clips' words (Sampler.splice)

    def weights(self, epoch: int) -> dict[str, float]:
        if epoch < self.curriculum_epochs:
            return {"words": 0.6, "stream": 0.2, "sentence": 0.2}
        rest = 1.0 - self.stream
        weights = {"words": rest * 0.4, "stream": self.stream, "sentence": rest * 0.6 * (1 - self.splice)}
        if self.splice:  # absent, not zero, without it: the draws of a run without splicing stay as they were
            weights["splice"] = rest * 0.6 * self.splice
        return weights


def batches(sampler: Sampler, batch_size: int, steps: int, epoch: int, mix: SampleMix,
            vocabulary: Vocabulary, with_rivals: bool = False) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """One epoch of `batch_size` samples a batch, drawn from the sampler's (seed, epoch) alone, so that a
    resumed run draws what the uninterrupted one would have; each batch is one kind of sample, so padding
    wastes little. `with_rivals`: see pad_batch."""
    sampler.start_epoch(epoch)
    weights = mix.weights(epoch)
    kinds, p = list(weights), np.array(list(weights.values()))
    for _ in range(steps):
        kind = kinds[int(sampler.rng.choice(len(kinds), p=p / p.sum()))]
        length = int(sampler.rng.integers(mix.window[0], mix.window[1] + 1))
        yield pad_batch([draw_with_words(sampler, kind, length) for _ in range(batch_size)], vocabulary,
                        with_rivals)


REDRAWS = 1000  # silent windows drawn in a row before the clips are taken to hold no window with words


def draw_with_words(sampler: Sampler, kind: str, length: int) -> Sample:
    """A sample with words, drawn again while a window falls in silence (CTC needs a label), so that a
    batch stays whole: a short batch could not be split evenly over the devices of --strategy mirrored.
    Clips with no words, or only words longer than the window, are said in one line, not looped on."""
    for _ in range(REDRAWS):
        if (sample := sampler.draw(kind, length)).text:
            return sample
    raise ValueError(f"{REDRAWS} {kind} samples of {length} frames in a row held no word: the clips have no text, "
                     "or words longer than the window")


def tf_dataset(sampler: Sampler, batch_size: int, steps: int, first_epoch: int, mix: SampleMix,
               vocabulary: Vocabulary, frame_shape: tuple[int, int, int], with_rivals: bool = False) -> tf.data.Dataset:
    """A repeating tf.data pipeline over `batches`, prefetched so augmentation overlaps training: `steps`
    batches an epoch from `first_epoch` on. The pipeline counts the epochs itself (for the curriculum),
    because prefetching draws an epoch's first batches before Keras says it has begun. Each iteration
    draws with a sampler of its own: Keras builds the model from one iteration, and drops it while its
    prefetching may still be drawing."""
    import tensorflow as tf

    def generate():
        own = copy.copy(sampler)  # the clips shared, its random state not
        for epoch in itertools.count(first_epoch):
            yield from batches(own, batch_size, steps, epoch, mix, vocabulary, with_rivals)

    targets = {k: tf.TensorSpec((None, None), tf.int32) for k in ("ctc", "words", "chars")}
    if sampler.speech_dims:
        targets["speech"] = tf.TensorSpec((None, None, sampler.speech_dims), tf.float32)
    signature = (tf.TensorSpec((None, None, *frame_shape), tf.float32), targets)
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(4)
