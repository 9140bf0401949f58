"""Opening the HDF5 mouth-crop cache (written by training.prepare, which resumes it; read by
training.dataset and training.report) and finding its completely written clips."""

from __future__ import annotations

from pathlib import Path

import h5py


def open_cache(cache: Path) -> h5py.File:
    """The HDF5 cache, read-only; a one-line error for a path that is not one (h5py's is a dump)."""
    if Path(cache).is_dir():
        raise ValueError(f"{cache} is a folder, not a cache file")
    try:
        return h5py.File(cache, "r")
    except OSError as e:
        if not Path(cache).exists():
            raise FileNotFoundError(f"no cache at {cache}: make one with python -m training.prepare") from None
        raise ValueError(f"{cache} is not a lipstream cache (not a readable HDF5 file: "
                         f"{' '.join(str(e).split())})") from None  # h5py's reason whole, on one line


def complete_clips(f: h5py.File) -> list[tuple[str, h5py.Group]]:
    """(speaker/name, group) of every completely written clip, sorted by key (an interrupted prepare
    leaves its last clip incomplete)."""
    clips = [(f"{speaker}/{name}", g) for speaker, group in f.get("clips", {}).items()
             for name, g in group.items() if g.attrs.get("complete", False)]
    return sorted(clips, key=lambda c: c[0])
