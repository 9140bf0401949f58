"""How a command stops: SIGTERM (kill, a service manager) is taken as Ctrl-C, so what is done is kept and
the command says so instead of dying without a word (interrupt, stops_like_ctrl_c, interruptible); files
that belong together are written whole before a stop is acted on (held_interrupts); and a stop Python
would drop is kept for the work to act on (kept_stop_requests)."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, ParamSpec

from realtime.exits import EXIT_INTERRUPTED

STOP_POLL = 0.1  # seconds a wait (for a frame, for a pipe's reader) goes without asking whether to stop


def interrupt(signum: int, frame: object) -> NoReturn:
    """A signal handler: a stop request (SIGTERM: kill, a service manager) ends a command as Ctrl-C does,
    so what is done is kept and the command says so, instead of dying without a word."""
    raise KeyboardInterrupt


StopHandler = Callable[[int, Any], Any]


@contextlib.contextmanager
def _stop_handlers(make: Callable[[StopHandler], StopHandler]) -> Iterator[dict[signal.Signals, StopHandler]]:
    """SIGINT's and SIGTERM's handlers, where the command has one of its own (not SIG_DFL or SIG_IGN), each
    replaced by `make` of it for the block (on the main thread, the only one signals reach); the ones
    replaced, which are back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {s: handler for s in (signal.SIGINT, signal.SIGTERM) if callable(handler := signal.getsignal(s))}
    for s, handler in previous.items():
        signal.signal(s, make(handler))
    try:
        yield previous
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def held_interrupts() -> Iterator[Callable[[], bool]]:
    """Ctrl-C, and SIGTERM where the command takes it as one, wait until the block is done: files that
    belong together (a clip and its manifest line, a checkpoint's models and state) are written together,
    and a loop reading frames (FrameSource.until) stops between them when the function given says one came.
    Then each signal that came goes to the handler the block found: one that raises KeyboardInterrupt
    raises it, and run_live's start-up handler, which only notes a stop, notes it. A block that fails hands
    them on too: a Ctrl-C that came first is not lost to an error a caller may catch and carry on from."""
    pressed: list[int] = []
    previous: dict[signal.Signals, StopHandler] = {}
    try:
        with _stop_handlers(lambda handler: lambda number, frame: pressed.append(number)) as previous:
            yield lambda: bool(pressed)
    finally:
        for number in dict.fromkeys(pressed):  # each signal once, in the order they came
            previous[signal.Signals(number)](number, None)


@contextlib.contextmanager
def kept_stop_requests() -> Iterator[Callable[[], None]]:
    """Ctrl-C, and SIGTERM where the command takes it as one, act as they do, and are noted too: Python drops
    a KeyboardInterrupt raised where it cannot propagate (in a garbage collector's weakref callback, which
    TensorFlow's training runs many of: "Exception ignored in"), and the run would go on to its end. The
    function given raises KeyboardInterrupt for a request that came, at a point the work chooses."""
    asked: list[int] = []

    def noted(handler: StopHandler) -> StopHandler:
        def handle(number: int, frame: Any) -> Any:
            asked.append(number)
            return handler(number, frame)
        return handle

    def check() -> None:
        if asked:
            raise KeyboardInterrupt

    with _stop_handlers(noted):
        yield check


Params = ParamSpec("Params")


def stops_like_ctrl_c(main: Callable[Params, int]) -> Callable[Params, int]:
    """A command's main, with SIGTERM taken as Ctrl-C while it runs (and the earlier handler back after)."""
    @functools.wraps(main)
    def run(*args: Params.args, **kwargs: Params.kwargs) -> int:
        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            return main(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return run


def interruptible(main: Callable[[list[str] | None], int]) -> Callable[..., int]:
    """A command that writes its results at its end, with Ctrl-C (or SIGTERM) mid-run one line and exit
    130, not a traceback from wherever the work was."""
    @stops_like_ctrl_c
    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    return run
