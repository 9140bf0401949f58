"""Live lipreading captions from a webcam or a video file.

    python run_live.py                        # camera 0, the bundled model, a window
    python run_live.py --source clip.mp4      # a video file, played at its own fps
    python run_live.py --source clip.mp4 --headless --jsonl - --fast

Keys in the window: q or Esc (or its close button) quit, space pause (a video waits where it is; for
a camera, what was read is committed first), c clear the screen (the transcript and subtitles keep
every word), s save the transcript, + and - make the view and its captions larger or smaller, ] and [ the
captions alone, o hide (or show) the tracking marks drawn over the lips and the frame rate. When a
video ends, the window stays open on its last words until it is closed.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from realtime.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOURCE_ENDED, EXIT_USAGE

if TYPE_CHECKING:  # the runtime's modules load once the stop handler is in place (main)
    from realtime.backend import OnnxModel
    from realtime.captions import CaptionPolicy, CaptionState
    from realtime.capture import FrameSource
    from realtime.live import LivePipeline, StepResult
    from realtime.outputs import JsonLines
    from realtime.window import CaptionStyle, Window

NOTICE_SECONDS = 4.0  # how long the window shows a notice: what its s key did, a face too small, ...
SUBTITLES_EVERY = 2.0  # s: a run cut short loses the subtitles of its last seconds at most
STALL_SHOWN = 1.0  # s without a frame (two frame periods at least) before the window says it waits for one
SPEECH_FRAMES = 12  # frames of moving lips that no word was read from before the run says why it may be


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from realtime.backend import BUNDLED_MODEL, MOST_THREADS, PROVIDERS, model_path
    from realtime.cli import (EpilogDefaultsFormatter, Parser, add_decoder, add_policy, at_least, named, policy_options,
                              summary, window_problem, within)
    from realtime.live import LONGEST_WINDOW, SHORTEST_WINDOW, LiveOptions
    from realtime.window import CAPTION_SIZES, MOST_CAPTION_ROWS, CaptionStyle

    command = Path(sys.argv[0]).name  # run_live.py as ./lipstream runs it, lipstream-live when installed
    p = Parser(prog="lipstream live" if command == "run_live.py" else command, description=summary(__doc__),
               formatter_class=EpilogDefaultsFormatter,
               epilog=__doc__[__doc__.index("Keys"):])
    p.add_argument("--source", type=named, default="0",
                   help="camera index, video file or stream URL (default: camera 0)")
    p.add_argument("--model", type=model_path, default=BUNDLED_MODEL,
                   help="lipstream ONNX model (default: the bundled one; a bare name such as "
                        "lipstream-lite.int8.onnx names a bundled variant)")
    p.add_argument("--provider", choices=PROVIDERS, default="auto", help="ONNX Runtime device (default: auto)")
    add_decoder(p)
    p.add_argument("--headless", action="store_true", help="no window")
    p.add_argument("--jsonl", type=jsonl_target, metavar="PATH",
                   help="write caption changes as JSON lines to PATH, or - for stdout")
    p.add_argument("--srt", type=subtitle_path, metavar="PATH",
                   help="write the committed words as SRT subtitles to PATH, or - for stdout (at the end)")
    p.add_argument("--vtt", type=subtitle_path, metavar="PATH",
                   help="write the committed words as WebVTT subtitles to PATH, or - for stdout (at the end)")
    p.add_argument("--fast", action="store_true", help="files: read as fast as possible, not at the file's fps")
    p.add_argument("--window", type=at_least(SHORTEST_WINDOW, LONGEST_WINDOW), default=LiveOptions.window,
                   help=f"most frames the model reads at once, {SHORTEST_WINDOW} to {LONGEST_WINDOW}: a phrase must "
                        f"fit (default: {LiveOptions.window})")
    p.add_argument("--hop", type=at_least(1), default=LiveOptions.hop,
                   help=f"update the captions every N frames (default: {LiveOptions.hop}); at most half the window")
    add_policy(p)
    p.add_argument("--caption-rows", type=at_least(1, MOST_CAPTION_ROWS), metavar="N",
                   help=f"lines of captions the window shows, 1 to {MOST_CAPTION_ROWS} (default: {CaptionStyle.rows}); "
                        "the band below the picture grows with them")
    sizes = CAPTION_SIZES[0], CAPTION_SIZES[-1]
    p.add_argument("--caption-size", type=within(*sizes), metavar="S",
                   help=f"the captions' size, {sizes[0]:g} to {sizes[1]:g} times what the view gives them, never "
                        "smaller than at a 288-line view (default: 1; the [ and ] keys step it)")
    p.add_argument("--threads", type=at_least(0, MOST_THREADS), default=0,
                   help=f"ONNX Runtime threads, up to {MOST_THREADS} (default, or 0: all cores)")
    p.checks.append(lambda a: window_problem(LiveOptions(window=a.window, hop=a.hop, policy=policy_options(a))))
    p.checks.append(_subtitle_format_problem)
    p.checks.append(lambda a: next((f"--caption-{name} has no effect with --headless, which draws no captions"
                                    for name in ("rows", "size") if getattr(a, f"caption_{name}") is not None), None)
                    if a.headless else None)
    p.checks.append(_stdout_problem)
    args = p.parse_args(argv)
    # None until the checks: refused with --headless if given
    args.caption_rows = args.caption_rows or CaptionStyle.rows
    args.caption_size = args.caption_size or CaptionStyle.size
    return args


def jsonl_target(text: str) -> str:
    """--jsonl's PATH; any name of stdout (/dev/stdout, /dev/fd/1) is `-`, written through sys.stdout, whose
    reader leaving ends the run."""
    from realtime.cli import named

    return "-" if names_stdout(named(text)) else named(text)


def subtitle_path(text: str) -> Path:
    """A subtitle file's path; - is stdout, which takes the subtitles once, at the end, as any stream does."""
    from realtime.cli import named_path

    return Path("/dev/stdout") if text == "-" else named_path(text)


def _subtitle_format_problem(args: argparse.Namespace) -> str | None:
    """A subtitle file named as the other format's (a player would read it as that format, and fail), or JSON lines
    named as subtitles."""
    for option, path, other in (("--srt", args.srt, ".vtt"), ("--vtt", args.vtt, ".srt")):
        if path and path.suffix.lower() == other:
            return f"{option} writes {option[2:].upper()} subtitles, and {path} is named as {other[1:].upper()}: " \
                   f"use {'--vtt' if option == '--srt' else '--srt'} for it, or another name"
    if args.jsonl and (kind := Path(args.jsonl).suffix.lower()) in (".srt", ".vtt"):
        return f"--jsonl writes JSON lines, and {args.jsonl} is named as {kind[1:].upper()} subtitles: use " \
               f"--{kind[1:]} for it, or another name"
    return None


def _to_stdout(args: argparse.Namespace) -> list[str]:
    """The output options that name stdout."""
    return [option for option, name in (("--jsonl", args.jsonl), ("--srt", args.srt), ("--vtt", args.vtt))
            if name and names_stdout(name)]


def _stdout_problem(args: argparse.Namespace) -> str | None:
    """Two outputs on stdout: JSON lines and subtitles one after another, which nothing could read."""
    if len(to := _to_stdout(args)) < 2:
        return None
    return (f"{', '.join(to[:-1])} and {to[-1]} {'both' if len(to) == 2 else 'all'} name stdout, where they would "
            "run into each other: name a file for all but one")


def stdout_failed(e: OSError) -> str:
    """What became of stdout: its reader left (a closed pipe), or it could not take the words (a full disk)."""
    if isinstance(e, BrokenPipeError):
        return f"stdout was closed ({e.strerror or e})"
    return f"could not write to stdout ({e.strerror or e})"


class _ReaderGone(Exception):
    """Whoever read the JSON lines on stdout has gone (a closed pipe): no one is left to caption for."""


_stop_requested: list[int] = []  # the stop requests (SIGINT, SIGTERM) that came while starting up or reading


def _stopping() -> bool:
    """Whether a stop was asked for: acted on between frames, and by a write into a pipe whose reader stopped
    reading (realtime.files.write_as_read), which would otherwise hold the run for as long as the reader does."""
    return bool(_stop_requested)


def _lost_to_the_stop(error: OSError) -> bool:
    """Whether a write failed for the stop: given up on for it, or its reader gone with it."""
    from realtime.files import ReaderStalled

    return isinstance(error, ReaderStalled) or (isinstance(error, BrokenPipeError) and _stopping())


def _defer(signum: int, frame: object) -> None:
    """A stop request noted, not raised: while modules load, an interrupted import (NumPy's, ONNX Runtime's)
    would fail later as a misleading ImportError, or a library could swallow it; while frames are read, it
    is acted on between them (FrameSource.until)."""
    _stop_requested.append(signum)


def save_transcript(text: str) -> str:
    """The transcript to lipstream-transcript-DATE-TIME.txt in the current folder (the window's s key, and
    the last resort when every output failed); says where, or why it could not, and returns it in short
    for the window."""
    from realtime.files import write_text
    from realtime.outputs import log

    path = Path(f"lipstream-transcript-{time.strftime('%Y%m%d-%H%M%S')}.txt")
    try:
        write_text(path, text + "\n")
    except OSError as e:
        reason = e.strerror or str(e)
        log(f"error: could not save {path} ({reason})")
        return f"error: transcript not saved ({reason.split(f'{path.name}: ', 1)[-1]})"  # the window wraps it
    log(f"saved {path}")
    return f"saved {path}"


def names_stdout(name: str | Path) -> bool:
    """Whether an output's name is stdout's own (`-`, /dev/stdout, /dev/fd/1), which, with stdout closed at
    start, leads to the /dev/null put in its place (_std_streams_open)."""
    return str(name) == "-" or os.path.abspath(name) in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _std_streams_open() -> None:
    """A process started with stdout or stderr closed (`>&-`, `2>&-`) gets /dev/null there: else the next
    file opened (the video, an output) takes descriptor 1 or 2, and native libraries' lines would be
    written into it. Python has set sys.stdout or sys.stderr to None for it, and that stays: stdout
    closed is told as no place for the transcript."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    _std_streams_open()
    _stop_requested.clear()
    deferred = {s: signal.signal(s, _defer) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(parse_args(argv))
    finally:
        for s, handler in deferred.items():
            signal.signal(s, handler)


def _refusal(args: argparse.Namespace) -> str | None:
    """Why the run cannot start, told before any frame is read: a run must not end in a file it cannot write,
    nor want a window where none can open."""
    from realtime.backend import streaming_paths
    from realtime.capture import local_path
    from realtime.files import outputs_problem

    outputs = [p for p in (None if args.jsonl == "-" else args.jsonl, args.srt, args.vtt) if p]
    read = [(local_path(args.source), "the video read"), (args.model, "the model read"),
            *((part, "a part of the model read") for part in streaming_paths(args.model))]
    if problem := outputs_problem(outputs, read):
        return problem
    if sys.stdout is None and (closed := next(iter(_to_stdout(args)), None)):
        return f"{closed} writes to stdout, which is closed: name a file instead"
    if not args.headless:
        from realtime.window import display_problem

        if problem := display_problem():
            return f"{problem}; use --headless, which prints the transcript"
    return None


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from realtime.backend import ModelLoadError, OnnxModel
    from realtime.capture import CaptureError, SourceOptions, open_source
    from realtime.cli import policy_options
    from realtime.files import open_output, silence, write_stream
    from realtime.interrupts import interrupt
    from realtime.live import LiveOptions, LivePipeline
    from realtime.outputs import JsonLines, log, log_gives_way_to

    log_gives_way_to(_stopping)
    if problem := _refusal(args):
        log(f"error: {problem}")
        return EXIT_USAGE
    try:  # the source first: a wrong path is told before the model and FaceMesh load
        source = open_source(SourceOptions(source=args.source, fast=args.fast), _stopping)
    except CaptureError as e:
        log(f"error: {e}")
        return EXIT_INTERRUPTED if _stop_requested else EXIT_USAGE  # a stop asked for while it opened came first
    if source is None:  # no model nor pipeline to end as below: files are left as they were, stdout has its last line
        log(f"stopped while opening {args.source}")
        if args.jsonl == "-":
            ended = JsonLines(sys.stdout, stopped=lambda: True)
            ended.final("")  # given up on if the pipe's reader takes nothing
            if ended.error:
                silence(sys.stdout)
        elif not (args.jsonl or args.srt or args.vtt) and sys.stdout is not None:  # (None: started with it closed)
            try:
                write_stream(sys.stdout, "\n", lambda: True)  # given up on if the pipe's reader takes nothing
            except OSError:
                silence(sys.stdout)
        return EXIT_INTERRUPTED
    try:
        model = OnnxModel(args.model, args.provider, args.threads)
        pipeline = LivePipeline(model, LiveOptions(window=args.window, hop=args.hop, policy=policy_options(args)))
    except ModelLoadError as e:
        log(f"error: {e}")
        source.stop()
        return EXIT_USAGE
    log(f"running on {model.choice.name.upper()} ({model.choice.reason}); model {args.model.name}, "
        f"{model.spec.fps:g} fps, decoder {args.decoder}")
    window = None
    if not args.headless:
        from realtime.window import CaptionStyle, Window

        try:
            window = Window()
        except Exception:  # OpenCV raises cv2.error without a GUI build
            log("error: cannot open a window here (no display?); use --headless, which prints the transcript")
            pipeline.close()
            source.stop()
            return EXIT_USAGE
    signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever a library set while loading
    signal.signal(signal.SIGTERM, interrupt)  # a stop request too: the transcript is kept
    out = None
    try:  # a FIFO blocks here until it has a reader: Ctrl-C still stops the run
        if args.jsonl == "-":
            out = JsonLines(sys.stdout, stopped=_stopping)
        elif args.jsonl:  # a file is opened (so replaced) at its first line: a run that reads nothing leaves it
            out = JsonLines(open_output(Path(args.jsonl), at_first_write=True), stopped=_stopping)
    except (KeyboardInterrupt, OSError) as e:
        if isinstance(e, OSError):
            log(f"error: cannot write {args.jsonl} ({e.strerror or e})")
        pipeline.close()
        source.stop()
        if window is not None:
            window.close()
        return EXIT_USAGE if isinstance(e, OSError) else EXIT_INTERRUPTED
    # From here a stop request is noted, and acted on between frames (FrameSource.until): a KeyboardInterrupt
    # raised wherever the loop is could leave a queue's lock held, and the run waiting on it for ever.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _defer)
    viewer = None if window is None else _Viewer(window, source, pipeline, out, model.choice.name.upper(),
                                                   CaptionStyle(args.caption_rows, args.caption_size))
    run = _LiveRun(args, source, model, pipeline, viewer, out, started)
    run.read()
    run.write()
    if run.ended:
        run.hold()
    return run.code


class _KeptSubtitles:
    """Subtitle files kept up to date as the run goes, so that a run cut short where nothing of ours runs (the
    display's connection lost: Qt ends the process; a power cut) keeps them up to then. A device or stream takes
    them once, at the end (it cannot be rewritten); a write that fails is tried, and told, then."""

    def __init__(self, args: argparse.Namespace, policy: CaptionPolicy) -> None:
        from realtime.files import own_stream, written_in_place

        self.files = [(Path(p), kind) for p, kind in ((args.srt, "srt"), (args.vtt, "vtt"))
                      if p and not written_in_place(Path(p)) and own_stream(Path(p)) is None]
        self.policy = policy
        self.written, self.due = 0, 0.0  # committed words the files hold; when they are next rewritten

    def update(self) -> None:
        """Rewrite the files if words were committed since, at most every SUBTITLES_EVERY seconds."""
        from realtime.files import write_text
        from realtime.outputs import subtitles

        if len(self.policy.words) == self.written or time.monotonic() < self.due:
            return
        self.written, self.due = len(self.policy.words), time.monotonic() + SUBTITLES_EVERY
        for path, kind in self.files:
            try:
                write_text(path, subtitles(self.policy, kind))
            except OSError:
                pass


@dataclass(eq=False)  # stateful: what the view shows
class _Viewer:
    """The window: each frame drawn with its captions, and what its keys do (docs/usage.md: Options and window
    keys)."""

    window: Window
    source: FrameSource
    pipeline: LivePipeline
    out: JsonLines | None
    device: str  # where the model runs, for the status line
    style: CaptionStyle  # the captions' rows and size: [ and ] change the size
    paused: bool = False
    holding: bool = False  # the video has ended and its last words are held: nothing is left to pause
    tracking: bool = True  # the crop box, lip contour, inset and frame rate drawn (the o key hides them)
    scale: float = 0.0  # the view's: first_zoom's for the first frame, then changed with + and -
    first: int = 0  # the first committed word the captions show: those before rolled off, or cleared with c
    frames_read: list[float] = field(default_factory=list)  # when, over the last second: the rate shown
    # What a key did, and what the run's notices said, each shown for NOTICE_SECONDS (a line on stderr is not seen
    # from a desktop): (text, colour, until when).
    notices: list[tuple[str, tuple[int, int, int], float]] = field(default_factory=list)

    def frame_read(self) -> None:
        self.frames_read.append(time.monotonic())

    def show(self, step: StepResult, wait_ms: int = 1, hud: str = "", stalled: float = 0.0) -> int:
        """Draw the frame and its captions (`stalled`: the seconds the source has given no frame, said when
        not 0); the key pressed meanwhile (255 for none)."""
        from realtime.window import caption_layout, first_zoom, picture_shape, render, rolled

        self.frames_read = [t for t in self.frames_read if t > time.monotonic() - 1]
        hud = hud or (f"{len(self.frames_read)} fps  {step.latency_ms:.0f} ms  {self.device}"
                      f"  dropped {self.source.dropped}") * self.tracking
        self.scale = self.scale or first_zoom(step.frame.image.shape, self.window.room, self.style)
        self.notices = [notice for notice in self.notices if notice[2] > time.monotonic()]
        image = render(step, hud, self.scale, paused=self.paused, first=self.first,
                       notices=[(text, colour) for text, colour, _ in self.notices], style=self.style, stalled=stalled,
                       tracking=self.tracking)
        self.first = rolled(self.first, step.caption.committed, step.caption.tentative,
                            caption_layout(picture_shape(step.frame.image.shape, self.scale), self.style),
                            step.caption.phrases)
        return self.window.show(image, wait_ms)

    def tell(self, text: str, colour: tuple[int, int, int]) -> None:
        """Show a line in the window for NOTICE_SECONDS (a line shown already, from then)."""
        self.notices = [n for n in self.notices if n[0] != text] + [(text, colour, time.monotonic() + NOTICE_SECONDS)]

    def answer(self, key: int, step: StepResult) -> StepResult:
        """Do what `key` asks; the step to show from now (a camera's pause commits what was read)."""
        from realtime.captions import transcript
        from realtime.outputs import log
        from realtime.window import (CAPTION_SIZES, GREEN, LARGER_CAPTIONS, LARGER_KEYS, RED, SMALLER_CAPTIONS,
                                     SMALLER_KEY, YELLOW, caption_size, fitting_zoom, picture_shape, zoom, zoom_limit)

        if key in (ord("q"), 27) or _stop_requested:  # q, Esc, or Ctrl-C (SIGTERM) while a video waits
            raise KeyboardInterrupt
        if key == ord(" ") and not self.holding:
            self.paused = not self.paused
            if self.source.is_video:  # the video waits where it is: nothing is missed, nothing restarts
                self.source.hold(self.paused)
            elif self.paused and self.pipeline.restart(step.frame.t):  # a camera's frames pass unread meanwhile
                step = replace(step, caption=self.pipeline.caption)
                if self.out:
                    self.out.caption(step.caption)
            log(f"paused at {step.frame.t:.1f} s (space resumes)" if self.paused else "resumed")
        elif key in (*LARGER_KEYS, SMALLER_KEY):
            largest = fitting_zoom(step.frame.image.shape, self.window.room, self.style)
            zoomed = zoom(self.scale, key, largest)
            if zoomed == self.scale:  # said, so that a key pressed in vain is not taken for a key lost
                log(said := zoom_limit(zoomed, key, largest))
                self.tell(said, YELLOW)
            else:
                self.scale = zoomed
                log(f"view at {zoomed:.3g}x")
        elif key in (LARGER_CAPTIONS, SMALLER_CAPTIONS):
            size = caption_size(self.style.size, key, picture_shape(step.frame.image.shape, self.scale))
            if size == self.style.size:
                said = f"captions at {size:g}x, their {'largest' if key == LARGER_CAPTIONS else 'smallest'}" + \
                    " at this view" * (size not in (CAPTION_SIZES[0], CAPTION_SIZES[-1]))
            else:
                self.style = replace(self.style, size=size)
                # Larger captions take more of the screen: the view shrinks to keep them on it.
                largest = fitting_zoom(step.frame.image.shape, self.window.room, self.style)
                said = f"captions at {size:g}x" + f", view at {largest:.3g}x to fit them" * (self.scale > largest)
                self.scale = min(self.scale, largest)
            log(said)
            self.tell(said, YELLOW)
        elif key == ord("c"):
            self.first = len(self.pipeline.policy.words)
            log("screen cleared (the transcript keeps every word)")
        elif key == ord("o"):  # for a viewer reading the lips too: the marks drawn over them hide them
            self.tracking = not self.tracking
            said = "tracking marks shown" if self.tracking else "tracking marks hidden: o shows them"
            log(said)
            self.tell(said, YELLOW)
        elif key == ord("s"):  # the run goes on whether or not it could
            said = save_transcript(transcript(self.pipeline.caption))
            self.tell(said, RED if said.startswith("error") else GREEN)
        return step


@dataclass(eq=False)  # stateful: how the run went
class _LiveRun:
    """A run once its source, model and outputs are open: it reads the frames, then writes what was read."""

    args: argparse.Namespace
    source: FrameSource
    model: OnnxModel
    pipeline: LivePipeline
    viewer: _Viewer | None
    out: JsonLines | None
    started: float  # time.monotonic() when the command started
    step: StepResult | None = None  # the last frame's; None until the first is read
    final: CaptionState = field(init=False)  # everything read, committed, once read() has ended
    code: int = EXIT_OK  # the exit code: the reading's, then EXIT_USAGE if an output failed
    stopped: bool = False  # by the user (Ctrl-C, q), or a reader gone from stdout, before the source's end
    unread: bool = False  # nothing was read (a bad source, a stop before the first frame): outputs are left be
    ended: bool = False  # a video read to its end in a window, which then holds its last words

    def __post_init__(self) -> None:
        self.final = self.pipeline.caption  # what a run that fails before read() ends has read: nothing

    def read(self) -> None:
        """Read the frames until the source ends or a stop is asked for, then commit everything read."""
        from realtime.live import nothing_read
        from realtime.outputs import log

        source, pipeline = self.source, self.pipeline
        try:
            self._read_frames()
            # A video read to its end in a window: once every output is written, its last words stay on screen.
            self.ended = (self.viewer is not None and self.step is not None and source.is_video
                          and pipeline.saw_a_face and not source.error)
            if source.failure:
                log(f"error: {source.failure}; the transcript so far is kept")
                self.code, self.ended = EXIT_FAILED, False
            elif problem := nothing_read(self.args.source, source, pipeline):
                log(f"error: {problem}")
                self.code, self.unread = EXIT_USAGE, True
            elif source.error:
                log(f"error: {source.error}; the transcript so far is kept")
                self.code = EXIT_SOURCE_ENDED
        except KeyboardInterrupt:
            self.code, self.stopped = EXIT_OK if self.viewer is not None else EXIT_INTERRUPTED, True
        except _ReaderGone:
            self.stopped = True  # told with the outputs
        except Exception as e:  # a failure of lipstream's own: one line, and the words read so far reach the outputs
            log(f"error: stopped by an internal failure ({type(e).__name__}: {e}); the transcript so far is kept")
            self.code = EXIT_FAILED
        finally:
            for s in (signal.SIGINT, signal.SIGTERM):  # a second stop request must not cost the outputs
                signal.signal(s, _defer)
            source.stop()
            try:
                self.final = pipeline.finish()
            except Exception as e:  # the pipeline itself failed: what it had committed still reaches the outputs
                log(f"error: the last frames could not be read ({type(e).__name__}: {e})")
                self.final = replace(pipeline.caption, tentative="")
                self.code = EXIT_FAILED
            pipeline.close()
            if self.viewer is not None and not self.ended:
                self.viewer.window.close()
        # Stopped before its first frame (Ctrl-C as the model loaded), or before any face was seen: nothing read
        # either, and files there before stay as they were.
        if not self.unread and (self.step is None or not pipeline.saw_a_face):
            self.unread = True
            if self.step is not None and (self.args.jsonl not in (None, "-") or self.args.srt or self.args.vtt):
                log("no face was seen, so nothing was read: the outputs are left as they were")

    def _read_frames(self) -> None:
        """Read the frames, a pipeline step each, as the captions go to the outputs and the window; raises
        KeyboardInterrupt on a stop, and _ReaderGone when stdout's reader has gone."""
        from realtime.capture import Resampler
        from realtime.live import RunNotices
        from realtime.outputs import log
        from realtime.window import YELLOW

        if _stop_requested:  # stopped while starting up: nothing read, so the outputs are left as they were
            raise KeyboardInterrupt
        source, pipeline, viewer, out = self.source, self.pipeline, self.viewer, self.out
        notices = RunNotices(self.model.spec, self.model.path.name, self.args.decoder)
        kept = _KeptSubtitles(self.args, pipeline.policy)
        late = max(STALL_SHOWN, 2 / source.fps)
        told = False  # that the source stalled, once a stall

        def waiting(seconds: float) -> None:
            """A stalled camera or stream (reopened meanwhile, which can take tens of seconds): the window
            stays drawn, answers its keys, and says it waits, so that frozen captions are not taken for silence."""
            nonlocal told
            if viewer is None or self.step is None:
                return
            if seconds >= late and not told:
                log(f"no frame for {late:g} s: waiting for the source")
                told = True
            self.step = viewer.answer(viewer.show(self.step, stalled=seconds if seconds >= late else 0.0), self.step)

        source.start()
        for f in Resampler(self.model.spec.fps).resample(source.until(_stopping, waiting)):
            told = False
            if viewer is None or not viewer.paused:  # a paused camera: its frames pass unread, and keys answered
                first = self.step is None
                self.step = pipeline.step(f)
                if viewer is not None:
                    viewer.frame_read()
                if first:  # said once the frame is read: a stop that comes once it is said finds the frame read
                    log(f"first frame processed {time.monotonic() - self.started:.2f} s after start")
                for notice in notices.of(self.step, source.dropped, pipeline):
                    log(notice.text)
                    if viewer is not None and notice.short:
                        viewer.tell(notice.short, YELLOW)
                if self.step.changed and out:
                    out.caption(self.step.caption)
                    if out.error and self.args.jsonl == "-":  # a line given up on for a stop is the stop's
                        raise KeyboardInterrupt if _stop_requested else _ReaderGone
            kept.update()  # on every frame: words committed within the throttle are written once it allows
            if viewer is not None and self.step is not None:
                self.step = viewer.answer(viewer.show(self.step), self.step)
                while viewer.paused and source.is_video:  # a video waits for its viewer, as a player does
                    self.step = viewer.answer(viewer.show(self.step, wait_ms=30), self.step)
                    kept.update()
        if _stop_requested:  # the frames stopped for it, not at the source's end
            raise KeyboardInterrupt

    def write(self) -> None:
        """Write what was read to every output; one that fails makes the run exit 2, unless it failed already."""
        from realtime.captions import transcript
        from realtime.files import own_stream, silence, write_stream, write_text, written_in_place
        from realtime.outputs import log, subtitles

        args, out, final, unread = self.args, self.out, self.final, self.unread
        # Stopped or failed before a word was read: subtitle files there before stay as they were (the JSON lines,
        # written as the captions changed, hold what was shown; stdout, a device or a pipe is told the end). A run
        # read to its end writes them.
        read_nothing = not unread and not final.committed  # frames were read, and no word in them
        wordless = read_nothing and (self.stopped or self.code != EXIT_OK)
        untouched = [p for p in (args.srt, args.vtt)
                     if wordless and p and not written_in_place(Path(p)) and own_stream(Path(p)) is None]
        if there := [p for p in untouched if Path(p).exists()]:  # files there before (the others are not made)
            log(f"{'stopped' if self.stopped else 'ended'} before a word was read: {' and '.join(map(str, there))} "
                f"{'is' if len(there) == 1 else 'are'} left as {'it was' if len(there) == 1 else 'they were'}")
        # An output not written; one lost to the stop (its reader took nothing, or left with the stop: Ctrl-C
        # reaches a shell pipeline's every process).
        lost = stopped = False
        on_stdout = bool(_to_stdout(args))  # stdout holds an output: the transcript is not printed there as well
        instead = "" if on_stdout else "; the transcript follows on stdout"
        # A file not opened yet (no caption shown) is left as it was; a stream is told the end.
        if out and not ((unread or wordless) and out.out.closed):
            out.caption(final)
            out.final(transcript(final))
            if out.error and args.jsonl == "-":
                silence(sys.stdout)
                log(f"error: {stdout_failed(out.error)}; stopped")
                lost, stopped = True, stopped or _lost_to_the_stop(out.error)
            elif out.error:  # a disk that filled up during the run: the words go to stdout instead
                log(f"error: could not write {args.jsonl} ({out.error.strerror or out.error}){instead}")
                lost = True
        kept = out is not None and out.error is None  # the transcript has reached an output
        subtitled = False  # a subtitle file was written
        # No cue outlasts the last frame read (the video's end, or where the run stopped; the captions' own time
        # stands still where no face is read). With no frame read the run is unread, and writes no subtitles.
        until = (self.step.frame.t if self.step else final.t) + 1 / self.model.spec.fps
        for path, kind in ((args.srt, "srt"), (args.vtt, "vtt")):
            if path and not unread and path not in untouched:
                try:
                    write_text(path, subtitles(self.pipeline.policy, kind, until), _stopping)
                    kept = subtitled = True
                except OSError as e:  # a disk that filled up during the run: the words go to stdout instead
                    if names_stdout(path):
                        silence(sys.stdout)
                        log(f"error: {stdout_failed(e)}: the {kind.upper()} subtitles were not written")
                    else:
                        log(f"error: could not write {path} ({e.strerror or e}){instead}")
                    lost, stopped = True, stopped or _lost_to_the_stop(e)
        if self.source.dropped:
            log(f"{self.source.dropped} frames dropped (processing fell behind)")
        moved = self.pipeline.moved / self.model.spec.fps
        if read_nothing and self.pipeline.moved >= SPEECH_FRAMES:
            log(f"no words read, though the lips moved for {moved:.1f} s: "
                f"{self.model.path.name} reads the faces and cameras it was trained on (the bundled model, one GRID "
                "speaker); another face needs a fine-tune (README: Reading your own face)")
        elif read_nothing and not wordless:  # said, or an empty output looks like a fault
            briefly = math.ceil(moved * 10) / 10  # one frame's 0.04 s is not "0.0 s"
            log("no words read: the lips " + (f"moved for {briefly:.1f} s only" if moved else "did not move") +
                " (the subtitles hold no cue)" * subtitled)
        if not unread and ((lost and not on_stdout) or (not out and not args.srt and not args.vtt)):
            try:
                if sys.stdout is not None:
                    write_stream(sys.stdout, transcript(final) + "\n", _stopping)
                elif final.committed:  # started with stdout closed (`>&-`): the words would go nowhere
                    raise OSError(errno.EBADF, "it is closed")
                kept = True
            except OSError as e:  # a closed pipe or a full disk behind stdout
                silence(sys.stdout)
                log(f"error: could not write the transcript to stdout ({e.strerror or e})")
                lost, stopped = True, stopped or _lost_to_the_stop(e)
        if not kept and final.committed:  # every output failed: the words still reach a file
            save_transcript(transcript(final))
        if lost and self.code == EXIT_OK:  # a headless run's write given up on for a stop is the stop's
            self.code = EXIT_INTERRUPTED if stopped and self.viewer is None else EXIT_USAGE

    def hold(self) -> None:
        """Once everything is written, a video read to its end keeps its last words, committed, on screen until
        the window is closed."""
        from realtime.interrupts import interrupt
        from realtime.outputs import log

        assert self.viewer is not None and self.step is not None  # self.ended says so
        viewer = self.viewer
        viewer.holding = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, interrupt)
        step = replace(self.step, caption=self.final, no_face=False)  # nothing is read now: no face is asked for
        log("the video has ended: q, Esc or the close button closes the window")
        try:
            while True:
                step = viewer.answer(viewer.show(step, wait_ms=30, hud="end of the video: q closes"), step)
        except KeyboardInterrupt:
            pass
        finally:
            viewer.window.close()


if __name__ == "__main__":
    sys.exit(main())
