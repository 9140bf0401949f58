"""Output files: their folders made on demand, and text written so that no run leaves half a file."""

from __future__ import annotations

from pathlib import Path


def make_folder_for(path: Path) -> None:
    """Make the folder `path` goes in; an OSError that names the culprit when a file stands in its way
    (mkdir's own says only "File exists")."""
    path = Path(path)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(f"cannot write {path}: {blocker} is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a file through a temporary name, so an interrupted run never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
