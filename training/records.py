"""The JSON records a run folder keeps (a run's state, recipe and split, a fine-tune's request), read with
their keys checked: one edited by hand or cut short is one line naming the file and the key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeGuard


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


def is_count(value: object) -> TypeGuard[int]:
    """A whole JSON number, 0 or more (true and false are not)."""
    return type(value) is int and value >= 0
