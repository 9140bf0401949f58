"""Output files: checked before a run (so that no run ends in a write that fails), their folders made
when written, and text written so that no run leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def folder_problem(folder: Path, what: Path | None = None) -> str | None:
    """Why `what` (default: the folder itself) cannot be written into `folder`, which may not exist
    yet, or None. Makes nothing."""
    what = what or folder
    try:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            return f"cannot write {what}: {existing} is not a folder"
    except OSError as e:  # a name too long for the file system
        return f"cannot write {what}: {e.strerror or e}"
    try:  # tried, not asked: os.access says yes to root everywhere, /proc and read-only mounts included
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return f"cannot write {what}: {existing} is not writable ({e.strerror or e})"
    return None


def output_problem(path: Path) -> str | None:
    """Why a file cannot be written at `path`, or None. Makes nothing."""
    path = Path(path)
    target = Path(os.path.realpath(path))  # where write_text writes
    try:
        if target.is_dir():
            return f"cannot write {path}: it is a folder"
        if target.exists() and not target.is_file():  # a device or a pipe, written to directly
            return None if os.access(target, os.W_OK) else f"cannot write {path}: it is not writable"
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return folder_problem(target.parent, path)


def make_folder_for(path: Path) -> None:
    """Make the folder `path` goes in; a NotADirectoryError that names the culprit when a file stands
    in its way (mkdir's own says only "File exists")."""
    path = Path(path)
    problem = folder_problem(path.parent, path)
    if problem:
        raise NotADirectoryError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a file through a temporary name, so an interrupted run never leaves half a file. A symlink
    is written through to its file, and what is not a file (/dev/stdout, a pipe) is written to directly:
    neither is replaced."""
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        path.write_text(text, encoding="utf-8")
        return
    make_folder_for(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
