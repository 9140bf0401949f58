"""What the command lines share: the Parser, whose refusal of an option is one usage line; argument types
that refuse impossible numbers and empty names up front, rather than as a traceback or a silent no-op
later; the decoder and caption-policy options (add_decoder, add_policy, policy_options), and
window_problem, which refuses a live window its hop and policy cannot read whole (how commands stop:
realtime.interrupts)."""

from __future__ import annotations

import argparse
import copy
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from realtime.captions import POLICIES, PolicyOptions
from realtime.decode import BEAM_WIDTH, DECODERS, SEARCHES
from realtime.exits import EXIT_USAGE
from realtime.files import utf8

if TYPE_CHECKING:  # a type only: live loads OpenCV, which a command's --help need not wait for, and imports this
    from realtime.live import LiveOptions


class DefaultsFormatter(argparse.HelpFormatter):
    """--help gives each option's default, so a user need not read the code to know them; not for
    flags off by default, options with none, or help that already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if (not action.option_strings or text == argparse.SUPPRESS or action.default is None
                or action.default is False or action.default == argparse.SUPPRESS or "default" in (text or "")):
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list | tuple) else str(action.default)
        shown = shown.replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"default: {shown}"

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help:  # argparse prints no help line at all for an option without help text
            action = copy.copy(action)
            action.help = self._get_help_string(action)
        return super()._format_action(action)


class EpilogDefaultsFormatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """DefaultsFormatter, with the description and epilog printed as written (run_live's table of keys)."""


class Parser(argparse.ArgumentParser):
    """argparse's parser whose refusal of an option is one line (the usage block is --help's to show).
    `checks` refuse, in that line too, an option that the others leave without effect: one silently
    ignored would let the user believe it was applied. Options are taken by their whole names only: a
    misspelt one (`--headles`) is refused, not read as whichever option it begins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.checks: list[Callable[[argparse.Namespace], str | None]] = []

    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: Any = None) -> tuple[Any, list[str]]:
        """argparse's, then the checks (parse_args comes through here too)."""
        parsed, rest = super().parse_known_args(args, namespace)
        if problem := next(filter(None, (check(parsed) for check in self.checks)), None):
            self.error(problem)
        return parsed, rest

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: ") and not message.split(": ", 1)[1].startswith("-"):
            message += ": every value follows the option it is for" + \
                (", as in --source FILE" if "--source" in self._option_string_actions else "")  # a bare video
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (--help lists the options)\n")


def folder_name(text: str) -> str:
    """A name for one folder inside another (a speaker's): not empty, not a path that leads elsewhere."""
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(f"must be a plain folder name, not {text!r}")
    if not_utf8 := _not_utf8(text):
        raise argparse.ArgumentTypeError(not_utf8)
    return text


def _not_utf8(name: str) -> str | None:
    """Why a name given on the command line is refused, when its bytes are not UTF-8 (OpenCV crashes on
    such a name, and stderr cannot print it)."""
    return None if utf8(name) else f"the name {os.fsencode(name)!r} is not UTF-8: rename it"


NAME_MAX = 255  # bytes in one file or folder name, on Linux's file systems and macOS's


def named(text: str) -> str:
    """An argparse type: a file's name, not empty (as a path, '' is the current folder, and no file), and
    none of its parts longer than a file system takes (checking such a path raises, where a missing file
    is only not there). A URL's parts are the server's to judge."""
    if not text:
        raise argparse.ArgumentTypeError("an empty name names no file")
    if not_utf8 := _not_utf8(text):  # OpenCV crashes on such a name
        raise argparse.ArgumentTypeError(not_utf8)
    if "://" not in text and (longest := max(len(part.encode()) for part in text.split("/"))) > NAME_MAX:
        raise argparse.ArgumentTypeError(f"a part of it is {longest} bytes long, and a file or folder name "
                                         f"holds at most {NAME_MAX}")
    return text


def named_path(text: str) -> Path:
    """`named`, as a path."""
    return Path(named(text))


def summary(doc: str) -> str:
    """A module docstring's first paragraph on one line: its command's --help description."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number no less than `low` (and, given `high`, no more than it)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"{low} or more" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {value}")
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


def within(low: float, high: float = math.inf, *, above: bool = False,
           below: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from `low` (or `above` it) to `high` (or `below` it)."""
    if high == math.inf:
        bounds = f"above {low:g}" if above else f"{low:g} or more"
    elif above:
        bounds = f"above {low:g} and {'below' if below else 'at most'} {high:g}"
    else:
        bounds = f"from {low:g} {'up to but not' if below else 'to'} {high:g}"

    def parse(text: str) -> float:
        value = number(text)
        if value < low or (above and value == low) or value > high or (below and value == high):
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value
    return parse


non_negative = within(0)
positive = within(0, above=True)
fraction = within(0, 1)  # a share
fraction_below_one = within(0, 1, below=True)  # a rate or momentum


def window_problem(options: LiveOptions) -> str | None:
    """Why a live window cannot be read with this hop, or None. Pause and local-agreement decode each read
    whole, so a word is read whole only where two reads overlap by its length: reads at most half the
    window apart. Right-context keeps what each read settles, but a read that starts at the frames the last
    one left unsettled takes them for a sentence's start, and guesses (at hops past two thirds of the window,
    words are lost): the same half window. A right context as long as the window would let no frame settle,
    and one longer than the window less the hop lets frames leave it before they settle."""
    window, hop, policy, right_context = (options.window, options.hop, options.policy.policy,
                                          options.policy.right_context)
    if hop > window // 2:
        return (f"--hop must not exceed half the window ({window // 2} frames with --policy {policy}), "
                "or words between two reads are read in parts")
    if policy != "right-context":
        return None
    if right_context >= window:
        return f"--right-context must be less than the window ({window} frames)"
    if hop + right_context > window:
        return (f"--hop plus --right-context must not exceed the window ({window} frames), or frames leave "
                "it before they settle")
    return None


MAX_BEAM_WIDTH = 512


def add_decoder(parser: Parser) -> None:
    """--decoder and --beam-width, as every command that decodes takes them; a width given to the greedy
    decoder, which has no beam, is refused."""
    parser.add_argument("--decoder", choices=DECODERS, default=PolicyOptions.decoder,
                        help="greedy: fastest; beam: a beam search; grammar: GRID sentences first, free text when "
                             "the speech is not one")
    # Beyond a few hundred hypotheses nothing more is found, and each read's search takes seconds.
    parser.add_argument("--beam-width", type=at_least(1, MAX_BEAM_WIDTH), metavar="N",
                        help=f"the beam and grammar decoders' width (default: {BEAM_WIDTH})")
    parser.checks.append(_beam_width_problem)


def _beam_width_problem(args: argparse.Namespace) -> str | None:
    if args.beam_width is None or args.decoder in SEARCHES:
        return None
    return (f"--beam-width has no effect with --decoder {args.decoder}, which keeps no beam: choose --decoder "
            f"{' or '.join(SEARCHES)}, or leave it out")


def add_policy(parser: Parser) -> None:
    """--policy and --right-context, as the live commands take them (read with `policy_options`); a right
    context given to another policy, which has none, is refused. Its default is None, so that one given
    is told from one left out whatever its value."""
    parser.add_argument("--policy", choices=POLICIES, default=PolicyOptions.policy,
                        help="how captions are committed")
    parser.add_argument("--right-context", type=at_least(0), metavar="N",
                        help=f"right-context policy: how many later frames the model reads before a frame's "
                             f"reading is final (default: {PolicyOptions.right_context})")
    parser.checks.append(_right_context_problem)


def _right_context_problem(args: argparse.Namespace) -> str | None:
    if args.right_context is None or args.policy == "right-context":
        return None
    return f"--right-context has no effect with --policy {args.policy}: it is the right-context policy's alone"


def policy_options(args: argparse.Namespace) -> PolicyOptions:
    """The caption policy that add_decoder's and add_policy's options ask for."""
    right_context = PolicyOptions.right_context if args.right_context is None else args.right_context
    return PolicyOptions(args.policy, args.decoder, args.beam_width, right_context=right_context)
