"""The character vocabulary a CTC model reads out, and GRID's sentence grammar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_CHARSET = " abcdefghijklmnopqrstuvwxyz"

# GRID sentences are command colour preposition letter digit adverb.
GRID_GRAMMAR: tuple[tuple[str, ...], ...] = (
    ("bin", "lay", "place", "set"),
    ("blue", "green", "red", "white"),
    ("at", "by", "in", "with"),
    tuple("abcdefghijklmnopqrstuvxyz"),  # every letter but w
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    ("again", "now", "please", "soon"),
)

GRID_WORDS: tuple[str, ...] = tuple(w for slot in GRID_GRAMMAR for w in slot)


@dataclass(frozen=True)
class Vocabulary:
    """Characters in output-index order; the CTC blank is the index after the last character."""

    charset: str = GRID_CHARSET

    def __post_init__(self) -> None:
        # Captions are words: the space separates them, and each class must be one character.
        if " " not in self.charset or len(set(self.charset)) != len(self.charset):
            raise ValueError(f"charset {self.charset!r} must hold a space and no character twice")

    @property
    def blank(self) -> int:
        return len(self.charset)

    @property
    def size(self) -> int:
        """Number of output classes, blank included."""
        return len(self.charset) + 1

    def unknown(self, text: str) -> str:
        """The characters of `text` this vocabulary cannot write, each once, sorted."""
        return "".join(sorted(set(text) - set(self.charset)))

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.charset)}
        try:
            return np.array([index[c] for c in text], dtype=np.int32)
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None
