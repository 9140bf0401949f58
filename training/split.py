"""The validation split: which clips a run holds out. By default a deterministic split by clip name, the
same on every machine and run; a run records the clips it took (SplitRecord, and its models' spec the clips
held out), and evaluation and export go by that record."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realtime.crop import is_number
from realtime.files import write_text
from realtime.grid import Clip, find_clips
from realtime.spec import ModelSpec
from training.augment import CachedClip
from training.records import is_count, is_names, read_json

VAL_FRACTION = 0.06  # the share of clips held out for validation (about 50 of GRID's 900 per speaker)


def is_validation(key: str, fraction: float) -> bool:
    """A deterministic split by clip: the same clips validate on every machine and every run. The takes of
    one sentence (realtime.record's bbaf2n, bbaf2n_2) fall on one side, so a held-out clip says a sentence no
    clip trained on says: a take trained on would make its reading a test of memory."""
    digest = int(hashlib.sha1(re.sub(r"_\d+$", "", key).encode()).hexdigest()[:8], 16)
    return digest % 10_000 < fraction * 10_000


def split(clips: list[CachedClip], fraction: float) -> tuple[list[CachedClip], list[CachedClip]]:
    train = [c for c in clips if not is_validation(c.key, fraction)]
    val = [c for c in clips if is_validation(c.key, fraction)]
    return train, val


def held_out_first(clips: list[CachedClip], model: Path | None = None,
                   spec: ModelSpec | None = None) -> list[CachedClip]:
    """The clips, those `model`'s run held out first (as split_of finds them; without a model, the
    deterministic split's): for checks that want unseen clips, and any clip when there are too few of those."""
    held_out = split_of(model, spec, "val", None).takes
    return sorted(clips, key=lambda c: not held_out(c.key))


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


@dataclass(frozen=True)
class SplitChoice:
    """The clip keys a --split takes, and what chose them (an evaluation says so: a figure on held-out clips
    and one on training clips look alike)."""

    takes: Callable[[str], bool]
    source: str


def split_of(model: Path | None, spec: ModelSpec | None, side: str, share: float | None) -> SplitChoice:
    """Which clip keys `--split` takes (`side`: val, train or all): those of the split.json beside `model`
    (training.train's record of the run's clips: a model put in a run's folder, its base say, is read on
    that run's clips); else those `spec` records as held out, the others for `train` (wherever the model was
    copied or exported to); else the deterministic split by `share`, default training's. `share` also
    overrides the records."""
    record = model.parent / "split.json" if model else None
    if side == "all":
        return SplitChoice(lambda key: True, "every clip, training ones too")
    if share is None and record and record.is_file():
        run = SplitRecord.read(record)
        return SplitChoice((lambda key: key in run.validation) if side == "val" else run.trains,
                           f"the {'validation' if side == 'val' else 'training'} clips {record} records")
    if share is None and spec and spec.validation:
        held_out = frozenset(spec.validation)
        return SplitChoice(lambda key: (key in held_out) == (side == "val"),
                           f"the {'' if side == 'val' else 'clips other than the '}{len(held_out)} clips the model "
                           f"records as held out, such as {spec.validation[0]}")
    share = VAL_FRACTION if share is None else share
    return SplitChoice(lambda key: is_validation(key, share) == (side == "val"),
                       f"the deterministic split at share {share:g}, by clip key (speaker folder/clip name)")


def select_clips(grid: Path, side: str, count: int, found: list[Clip] | None = None) -> list[Clip]:
    """The aligned clips under `grid` (`found` there already, or looked for now): all, or those training
    holds out (`val`); the first `count` (0: all)."""
    aligned = [c for c in (find_clips(grid) if found is None else found) if c.align is not None]
    clips = [c for c in aligned if side == "all" or is_validation(c.key, VAL_FRACTION)]
    if count:
        clips = clips[:count]
    if not aligned:
        raise ValueError(f"no aligned clips under {grid}")
    if not clips:
        raise ValueError(f"none of the {len(aligned)} aligned clips under {grid} is held out for validation: "
                         "--split all takes them all")
    return clips
