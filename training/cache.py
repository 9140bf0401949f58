"""Reading the HDF5 mouth-crop cache (written by training.prepare, which resumes it): opening it, finding
its completely written clips, loading them, and the checks that a model and a cache fit (crop, fps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py

from realtime.crop import CropSpec
from training.augment import CachedClip


def open_cache(cache: Path) -> h5py.File:
    """The HDF5 cache, read-only; a one-line error for a path that is not one (h5py's is a dump)."""
    if Path(cache).is_dir():
        raise ValueError(f"{cache} is a folder, not a cache file")
    try:
        return h5py.File(cache, "r")
    except OSError as e:
        if not Path(cache).exists():
            raise FileNotFoundError(f"no cache at {cache}: make one with python -m training.prepare") from None
        if "unable to lock file" in str(e):  # HDF5 locks a file another process writes
            raise ValueError(f"{cache} is being written by another process: try again once it is done") from None
        raise ValueError(f"{cache} is not a lipstream cache (not a readable HDF5 file: "
                         f"{' '.join(str(e).split())})") from None  # h5py's reason whole, on one line


def complete_clips(f: h5py.File) -> list[tuple[str, h5py.Group]]:
    """(speaker/name, group) of every completely written clip, sorted by key (an interrupted prepare
    leaves its last clip incomplete)."""
    clips = [(f"{speaker}/{name}", g) for speaker, group in f.get("clips", {}).items()
             for name, g in group.items() if g.attrs.get("complete", False)]
    return sorted(clips, key=lambda c: c[0])


# The least crop side a model reads: every configuration's convolutions and poolings halve it four times
# (training.model), and a smaller one leaves them no pixel.
LEAST_CROP = 15


def read_crop_spec(cache: Path) -> CropSpec:
    """The crop the cache's clips were cut with, read as a model's are (CropSpec.from_json)."""
    with open_cache(cache) as f:
        if "crop" not in f.attrs:
            raise ValueError(f"{cache} is not a lipstream cache (no crop settings)")
        try:
            crop = CropSpec.from_json(f.attrs["crop"])
        except ValueError as e:
            raise ValueError(f"{cache}: {e}") from None
    if min(crop.height, crop.width) < LEAST_CROP:
        raise ValueError(f"{cache}'s crops are {crop.height} x {crop.width} pixels, and a model needs {LEAST_CROP} a "
                         "side: prepare a cache with a larger --crop-size")
    return crop


def check_crop(cache: Path, crop: CropSpec, user: object, hint: str) -> None:
    """Refuse a cache cut with another crop than `user` (a model that reads it, a run that adds to it)
    uses: its pixels would mean nothing to a model of the other."""
    cached = read_crop_spec(cache)
    if cached != crop:
        raise ValueError(f"{cache} was cut with another crop than {user} uses ({cached} against {crop}): {hint}")


def not_whole(cache: Path, key: str, missing: list[str]) -> ValueError:
    """The one-line error for a clip without a part it needs (a damaged or hand-made cache): h5py's
    KeyError names neither the clip nor what to do."""
    return ValueError(f"{cache} is not a whole lipstream cache: clip {key} has no {' or '.join(missing)} (make it "
                      "again with python -m training.prepare)")


def read_fps(cache: Path) -> float:
    """The frame rate of the cache's clips, which a model trained on them reads at (its spec's fps)."""
    with open_cache(cache) as f:
        clips = complete_clips(f)
        if unrated := next((key for key, g in clips if "fps" not in g.attrs), None):
            raise not_whole(cache, unrated, ["fps"])
        rates = {round(float(g.attrs["fps"]), 2) for _, g in clips}
    if len(rates) > 1:
        raise ValueError(f"{cache} holds clips at several frame rates ({', '.join(map(str, sorted(rates)))} fps): "
                         "a model reads one; cache each rate apart")
    if not rates:
        raise ValueError(f"{cache} holds no complete clips")
    return rates.pop()


def same_rate(a: float, b: float) -> bool:
    """Whether two frame rates are one for a model: equal to the hundredth a cache records them to."""
    return round(a, 2) == round(b, 2)


def check_fps(cache: Path, fps: float, reader: object) -> None:
    """Refuse a cache whose clips run at another frame rate than `reader` (a model) reads at: its weights
    know lips moving at their own rate."""
    if not same_rate(rate := read_fps(cache), fps):
        raise ValueError(f"{cache} holds clips at {rate:g} fps, and {reader} reads {fps:g} fps: use clips at its rate")


def load_clips(cache: Path, wanted: Callable[[str], bool] | None = None) -> list[CachedClip]:
    """Every complete clip in the cache, or those whose key is `wanted` (an evaluation's split: the others
    are not read), in memory (uint8 crops: about 1 GB for 900 GRID clips); a clip without a part it needs
    is one line naming it (not_whole)."""
    with open_cache(cache) as f:
        clips, complete = [], 0
        for key, g in complete_clips(f):
            complete += 1
            if wanted is not None and not wanted(key):
                continue
            missing = [n for n in ("mouth", "spans") if n not in g] + \
                [n for n in ("text", "words", "fps") if n not in g.attrs]
            if missing:
                raise not_whole(cache, key, missing)
            clips.append(CachedClip(key, g["mouth"][()], str(g.attrs["text"]), tuple(json.loads(g.attrs["words"])),
                                    g["spans"][()], g["speech"][()] if "speech" in g else None))  # speech: float16
    if not complete:
        raise ValueError(f"{cache} holds no complete clips")
    return clips
