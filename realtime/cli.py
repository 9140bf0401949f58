"""What the command lines share: argument types that refuse impossible numbers up front, in argparse's
one usage line, rather than as a traceback or a silent no-op later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from realtime.decode import BEAM_WIDTH


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number no less than `low`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, not {value}")
        return value
    return parse


def number(text: str) -> float:
    """An argparse type: a finite number (float() would take "nan" and "inf")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a number of 0 or more."""
    value = number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a share, from 0 to 1."""
    value = number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


def fraction_below_one(text: str) -> float:
    """An argparse type: a rate or momentum, from 0 up to but not 1."""
    value = number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 up to but not 1, not {text}")
    return value


def add_beam_width(parser: argparse.ArgumentParser) -> None:
    """--beam-width, as every command that decodes takes it."""
    parser.add_argument("--beam-width", type=at_least(1), metavar="N",
                        help=f"the beam and grammar decoders' width (default {BEAM_WIDTH['beam']} and "
                             f"{BEAM_WIDTH['grammar']})")
