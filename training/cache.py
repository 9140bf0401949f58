"""Opening the HDF5 mouth-crop cache (written by training.prepare, read by training.dataset)."""

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
                         f"{str(e).splitlines()[0][:60]})") from None
