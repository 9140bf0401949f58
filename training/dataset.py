"""From the HDF5 cache to tf.data batches: loading, the validation split, and the input pipeline. Also the
checked reading of the JSON records a run folder keeps (read_json, fields_checked, is_*) and the split's own
record (SplitRecord): one edited by hand or cut short is one line naming the file and the key."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realtime.crop import CropSpec, is_number
from realtime.files import write_text
from realtime.spec import normalise
from realtime.vocab import Vocabulary
from training.augment import UNKNOWN, CachedClip, Sample, Sampler
from training.cache import complete_clips, open_cache
from realtime.grid import RIVALS, rivals

if TYPE_CHECKING:
    import tensorflow as tf

LABEL_PAD = -1
VAL_FRACTION = 0.06  # the share of clips held out for validation (about 50 of GRID's 900 per speaker)
MOST_BATCH = 256  # samples a step: 256 windows of 75 RGB crops are 1.2 GB of input alone, before activations


def read_json(path: Path, what: str, needs: dict[str, Callable[[object], bool]] | None = None) -> dict:
    """The JSON object a run folder keeps at `path` (a run's state, recipe or split, a fine-tune's request)
    with the keys it `needs`, each holding a value its test passes; one edited by hand or cut short is a
    one-line error naming the file, as `what` it is not (json's own names neither the file nor the key)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise OSError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:  # not JSON, or not text
        raise ValueError(f"{path} is not {what} ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not {what} (not a JSON object)")
    return fields_checked(record, path, what, needs or {})


def fields_checked(record: dict, path: Path, what: str, needs: dict[str, Callable[[object], bool]]) -> dict:
    """`record`, read from `path`, when it holds every key `needs` names with a value its test passes; else
    a one-line error naming the file and the key (for keys that only some records need)."""
    for key, fits in needs.items():
        if key not in record:
            raise ValueError(f"{path} is not {what} (no {key!r})")
        if not fits(record[key]):
            raise ValueError(f"{path} is not {what} ({key!r} is {json.dumps(record[key])})")
    return record


def is_names(value: object) -> bool:
    """A JSON list of strings (clip names)."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def is_count(value: object) -> bool:
    """A whole JSON number, 0 or more (true and false are not)."""
    return type(value) is int and value >= 0


def read_crop_spec(cache: Path) -> CropSpec:
    """The crop the cache's clips were cut with, read as a model's are (CropSpec.from_json)."""
    with open_cache(cache) as f:
        if "crop" not in f.attrs:
            raise ValueError(f"{cache} is not a lipstream cache (no crop settings)")
        try:
            return CropSpec.from_json(f.attrs["crop"])
        except ValueError as e:
            raise ValueError(f"{cache}: {e}") from None


def check_crop(cache: Path, crop: CropSpec, user: object, hint: str) -> None:
    """Refuse a cache cut with another crop than `user` (a model that reads it, a run that adds to it)
    uses: its pixels would mean nothing to a model of the other."""
    cached = read_crop_spec(cache)
    if cached != crop:
        raise ValueError(f"{cache} was cut with another crop than {user} uses ({cached} against {crop}): {hint}")


def read_fps(cache: Path) -> float:
    """The frame rate of the cache's clips, which a model trained on them reads at (its spec's fps)."""
    with open_cache(cache) as f:
        rates = {round(float(g.attrs["fps"]), 2) for _, g in complete_clips(f)}
    if len(rates) > 1:
        raise ValueError(f"{cache} holds clips at several frame rates ({', '.join(map(str, sorted(rates)))} fps): "
                         "a model reads one; cache each rate apart")
    if not rates:
        raise ValueError(f"{cache} holds no complete clips")
    return rates.pop()


def unwritable_texts(texts: Iterable[tuple[str, str]], vocabulary: Vocabulary) -> str:
    """Which of the clips' texts (key, text) `vocabulary` cannot write, for a one-line refusal: each
    clip's key and the characters, three of them and how many more; empty when it writes them all."""
    bad = [f"{key} ({unknown})" for key, text in texts if (unknown := vocabulary.unknown(text))]
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


def check_fps(cache: Path, fps: float, reader: object) -> None:
    """Refuse a cache whose clips run at another frame rate than `reader` (a model) reads at: its weights
    know lips moving at their own rate."""
    if (rate := read_fps(cache)) != round(fps, 2):
        raise ValueError(f"{cache} holds clips at {rate:g} fps, and {reader} reads {fps:g} fps: use clips at its rate")


def load_clips(cache: Path) -> list[CachedClip]:
    """Every complete clip in the cache, in memory (uint8 crops: about 1 GB for 900 GRID clips). A clip
    without a part it needs (a damaged or hand-made cache) is one line naming it, not h5py's KeyError."""
    with open_cache(cache) as f:
        clips = []
        for key, g in complete_clips(f):
            missing = [n for n in ("mouth", "spans") if n not in g] + [n for n in ("text", "words") if n not in g.attrs]
            if missing:
                raise ValueError(f"{cache} is not a whole lipstream cache: clip {key} has no {' or '.join(missing)} "
                                 "(make it again with python -m training.prepare)")
            clips.append(CachedClip(key, g["mouth"][()], str(g.attrs["text"]), tuple(json.loads(g.attrs["words"])),
                                    g["spans"][()], g["speech"][()] if "speech" in g else None))  # speech: float16
    if not clips:
        raise ValueError(f"{cache} holds no complete clips")
    return clips


def is_validation(key: str, fraction: float) -> bool:
    """A deterministic split by clip: the same clips validate on every machine and every run."""
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return digest % 10_000 < fraction * 10_000


def held_out_first(clips: list[CachedClip], model: Path | None = None) -> list[CachedClip]:
    """The clips, those `model`'s run held out first (its split.json's; without one, or without a
    model, the deterministic split's): for checks that want unseen clips, and any clip when there are
    too few of those."""
    held_out = split_of(model, "val", None)
    return sorted(clips, key=lambda c: not held_out(c.key))


def split(clips: list[CachedClip], fraction: float) -> tuple[list[CachedClip], list[CachedClip]]:
    train = [c for c in clips if not is_validation(c.key, fraction)]
    val = [c for c in clips if is_validation(c.key, fraction)]
    return train, val


@dataclass(frozen=True)
class SplitRecord:
    """A run's split.json: the clips it validates and trains on, written when it begins. The one record a
    resumed run and training.evaluate go by: the share alone does not give the clips of a run that used
    --limit, or that validates on a training clip because none fell in the split."""

    fraction: float
    validation: tuple[str, ...]
    train: tuple[str, ...] | None  # None: a record from before the training keys were kept (it kept a count)

    @classmethod
    def read(cls, path: Path) -> SplitRecord:
        record = read_json(path, "a training run's split record",
                           {"fraction": is_number, "validation": is_names,
                            "train": lambda v: v is None or is_names(v) or is_count(v)})  # a count: an older record
        fraction, train = record["fraction"], record["train"]
        if not 0 <= fraction < 1:
            raise ValueError(f"{path} records a validation share of {fraction}, not from 0 up to but not 1")
        return cls(float(fraction), tuple(map(str, record["validation"])),
                   tuple(map(str, train)) if isinstance(train, list) else None)

    def write(self, path: Path) -> None:
        train = None if self.train is None else list(self.train)  # None stays "not recorded", not "no clip"
        write_text(path, json.dumps({"fraction": self.fraction, "validation": list(self.validation),
                                     "train": train}, indent=1))

    def trains(self, key: str) -> bool:
        """Whether the run trains on clip `key` (an older record: every clip it does not validate on)."""
        return key in self.train if self.train is not None else key not in self.validation

    def clips(self, clips: list[CachedClip], limit: int, cache: Path) -> tuple[list[CachedClip], list[CachedClip]]:
        """The recorded (training, validation) clips among the cache's `clips` (an older record: those of
        the first `limit`, 0: all, not validated on); a one-line error when `cache` lacks any of them."""
        if self.train is None:
            clips = clips[:limit or None]
        keys = {c.key for c in clips}
        missing = [k for k in (*self.validation, *(self.train or ())) if k not in keys]
        if missing:
            raise ValueError(f"{cache} lacks {len(missing)} of the clips the run trains or validates on (e.g. "
                             f"{missing[0]}): resume it with the cache it began with")
        return [c for c in clips if self.trains(c.key)], [c for c in clips if c.key in self.validation]


def split_of(model: Path | None, split: str, share: float | None) -> Callable[[str], bool]:
    """Which clip keys `--split` takes: those of the split.json beside `model` (as training.train records
    the run's clips); else the deterministic split by `share`, default training's. `share` also overrides
    a record."""
    record = model.parent / "split.json" if model else None
    if split == "all":
        return lambda key: True
    if share is None and record and record.is_file():
        run = SplitRecord.read(record)
        return (lambda key: key in run.validation) if split == "val" else run.trains
    share = VAL_FRACTION if share is None else share
    return lambda key: is_validation(key, share) == (split == "val")


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
    targets = {"ctc": ctc, "words": words, "chars": chars}
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
        yield pad_batch([saying_something(sampler, kind, length) for _ in range(batch_size)], vocabulary,
                        with_rivals)


REDRAWS = 1000  # silent windows drawn in a row before the clips are taken to hold no window with words


def saying_something(sampler: Sampler, kind: str, length: int) -> Sample:
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
