"""Output files: checked before a run (so that no run ends in a write that fails), their folders made
when written, text written so that no run leaves half a file, and a pipe written as its reader takes it
(so a stop is not held up by a reader that stopped reading); and the process's stderr: native
libraries' lines held back (native_stderr), a stream whose reader is gone silenced (silence), and a
command's stdout and stderr kept from costing it its work when they fail (run_command)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

from realtime.exits import EXIT_USAGE
from realtime.interrupts import STOP_POLL, held_interrupts


def utf8(name: str) -> bool:
    """Whether a file name is UTF-8 (one that is not comes into Python with surrogate escapes)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


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
        return f"cannot write {what}: no file can be made in {existing} ({e.strerror or e})"
    return None


_SILENCED: set[int] = set()  # the descriptors `silence` gave up on: a file named by them is not written


def silence(stream: IO[str] | None) -> None:
    """Point the process's own stdout or stderr at /dev/null once writing to it failed (a closed pipe),
    so that Python's flush at exit does not fail again with a traceback of its own; a stream that is
    not the process's (main() run inside another program) is left alone."""
    if stream not in (sys.__stdout__, sys.__stderr__) or stream is None:
        return  # None: started closed, and pointed at /dev/null then (run_live)
    _SILENCED.add(stream.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


class KeptStream:
    """A process stream (stdout, stderr) whose failure costs its command nothing: the first write or flush
    that fails (a closed pipe, a full disk) points it at /dev/null and is kept in `error`, and what is
    written after it goes nowhere. Anything else is the stream's."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        self._guarded(self.stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._guarded(self.stream.flush)

    def _guarded(self, call: Callable[..., object], *args: object) -> None:
        if self.error is None:
            try:
                call(*args)
            except OSError as e:
                self.error = e
                silence(self.stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


# What `pip install 'lipstream[train]'` adds to the runtime: training and export need them, live does not.
TRAINING_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxconverter_common", "matplotlib")


def training_packages_missing(e: BaseException) -> str | None:
    """The one-line refusal for a training or export command where only the runtime is installed (`pip
    install lipstream` without [train]); None for any other failure."""
    name = (getattr(e, "name", None) or "").split(".")[0]
    if not isinstance(e, ModuleNotFoundError) or name not in TRAINING_PACKAGES:
        return None
    return (f"this command needs the training packages ({name} is missing): install lipstream with its [train] "
            "extra (pip install '.[train]' in the checkout)")


def run_command(main: Callable[[], int | None]) -> int:
    """A command's exit code, its main run with stdout and stderr kept (KeptStream): a reader that leaves
    (`| head`) or a disk that fills up stops neither its work nor its files, and gives no traceback. A
    closed pipe is the reader's choice, and goes unsaid; output lost to a failing stdout is said at the end,
    on stderr, and the command exits 2. A training package missing from an install of the runtime alone is
    one line, not a traceback."""
    if sys.stdout is None or sys.stderr is None:  # started closed: Python itself writes nothing there
        return main() or 0
    out, err = KeptStream(sys.stdout), KeptStream(sys.stderr)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        code = main() or 0
    except SystemExit as e:  # argparse's --help and refusals
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else EXIT_USAGE
    except ModuleNotFoundError as e:
        if (problem := training_packages_missing(e)) is None:
            raise
        err.write(f"error: {problem}\n")
        code = EXIT_USAGE
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = out.stream, err.stream
    if out.error is not None and not isinstance(out.error, BrokenPipeError):
        err.write(f"error: could not write to stdout ({out.error.strerror or out.error}): what the command "
                  "printed from then on is lost\n")
        err.flush()
        return code or EXIT_USAGE
    return code


def written_in_place(path: Path) -> bool:
    """Whether `path` is written to as it stands rather than replaced: a device, a pipe, or one of the
    process's own streams (/dev/stdout, /dev/fd/N), which name no file that could be replaced."""
    path = Path(os.path.abspath(path))
    return path.exists() and not path.is_dir() and (path.parts[:2] == ("/", "dev") or not path.is_file())


def own_stream(path: Path) -> IO[str] | None:
    """sys.stdout or sys.stderr when `path` is where it goes (/dev/stdout, /dev/fd/1, or the file it is
    redirected to): written through the stream itself, so neither overwrites the other."""
    try:
        named = os.stat(path)
    except OSError:
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = os.fstat(stream.fileno())
        except (OSError, ValueError, AttributeError):  # a stream with no file behind it (a test's capture)
            continue
        if (fd.st_dev, fd.st_ino) == (named.st_dev, named.st_ino):
            return stream
    return None


def _descriptor(path: Path) -> int | None:
    """The descriptor a path names (/dev/stderr, /dev/fd/2, /proc/self/fd/2), or None."""
    name = os.path.abspath(path)
    streams = {"/dev/stdout": 1, "/dev/stderr": 2}
    if name in streams:
        return streams[name]
    head, number = os.path.split(name)
    return int(number) if head in ("/dev/fd", "/proc/self/fd") and number.isdigit() else None


def output_problem(path: Path) -> str | None:
    """Why a file cannot be written at `path`, or None. Makes nothing."""
    path = Path(path)
    try:
        if written_in_place(path):  # nothing to try without writing into it; the device answers for itself
            return None if os.access(path, os.W_OK) else f"cannot write {path}: it is not writable"
        target = Path(os.path.realpath(path))  # a symlink is written through to its file
        if target.is_dir():
            return f"cannot write {path}: it is a folder"
        if target.exists():  # a file made read-only is kept so: tried (opened to append, nothing lost), not asked
            with open(target, "a"):
                pass
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return folder_problem(target.parent, path) or _name_problem(target, path)


TMP = ".tmp"  # what write_text adds to a file's name to write it whole or not at all


def _name_problem(target: Path, path: Path) -> str | None:
    """A name the file system takes, but not with the TMP a file is written through: refused before a run,
    not when its result is written."""
    existing = next(p for p in (target.parent, *target.parent.parents) if p.exists())
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):  # a file system that does not say
        return None
    if len(os.fsencode(target.name + TMP)) <= limit:
        return None
    return f"cannot write {path}: its name is too long (it is written through NAME{TMP}, and this file system " \
           f"takes names of up to {limit} bytes)"


def file_id(path: Path) -> tuple[int, int] | str:
    """What one file is however it is named: its device and inode where it exists (so a hard or symbolic
    link to it is it too), else the path it would be made at."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return st.st_dev, st.st_ino


def shareable(path: Path) -> bool:
    """Whether two outputs may both name `path`: a character device (/dev/null, a terminal) or one of the
    process's own streams takes each write as it comes and is never closed on another's text. A pipe is
    not: the first output's close ends its reader's read, and the second would wait for one for ever."""
    if own_stream(path) is not None:
        return True
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def first_taken(outputs: Sequence[Path], inputs: Iterable[tuple[Path, str]]) -> tuple[Path, str] | None:
    """The first output that is one of the files read (`inputs`, each with what it is) or an output named
    before it ("another output"), with what it is; or None. Two outputs may name one shareable target
    (`--srt /dev/null --vtt /dev/null`). Each file is looked at once, and the inputs not at all while no
    output exists yet: none can be one of them (a corpus' clips are many)."""
    ids = [file_id(path) for path in outputs]
    taken = {file_id(path): what for path, what in inputs} if any(isinstance(i, tuple) for i in ids) else {}
    shared: set[tuple[int, int] | str] = set()  # outputs' targets that another output may name too
    for path, key in zip(outputs, ids):
        if key in taken and not (key in shared and shareable(path)):
            return path, taken[key]
        if key not in taken and shareable(path):
            shared.add(key)
        taken[key] = "another output"
    return None


def outputs_problem(outputs: Iterable[str | Path], inputs: Iterable[tuple[Path | None, str]] = (),
                    taken: str = "{path} is {what}: choose another file") -> str | None:
    """Why the output files asked for cannot all be written, or None: each must be writable, none may be
    one of the files read (`inputs`, each with what it is: it would be lost) nor another output (one would
    replace the other); that is said by `taken`, given the output's `path` and `what` it is. An input that
    is no file (None: a camera or stream; a name with no file there) has nothing to lose."""
    paths = [Path(p) for p in outputs]
    if problem := next(filter(None, map(output_problem, paths)), None):
        return problem
    files = ((path, what) for path, what in inputs if path is not None and path.is_file())
    if found := first_taken(paths, files):
        return taken.format(path=found[0], what=found[1])
    return None


def make_folder_for(path: Path) -> None:
    """Make the folder `path` goes in; a NotADirectoryError that names the culprit when a file stands
    in its way (mkdir's own says only "File exists")."""
    path = Path(path)
    problem = folder_problem(path.parent, path)
    if problem:
        raise NotADirectoryError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)


@overload
def open_output(path: Path, at_first_write: Literal[False] = False) -> IO[str]: ...


@overload
def open_output(path: Path, at_first_write: bool) -> IO[str] | OpenedAtFirstWrite: ...


def open_output(path: Path, at_first_write: bool = False) -> IO[str] | OpenedAtFirstWrite:
    """An output written as the run goes (JSON lines): through a symlink to its file, into a device or pipe.
    `at_first_write`: a file is opened, and so replaced, only when first written to, so that a run that
    writes nothing leaves it as it was; a stream, device or pipe holds nothing to lose and is opened at
    once (a FIFO blocks here until it has a reader)."""
    stream = own_stream(path)
    if stream:
        return stream
    if not written_in_place(path):
        if at_first_write:
            return OpenedAtFirstWrite(path)
        path = Path(os.path.realpath(path))
        make_folder_for(path)
    return open(path, "w", encoding="utf-8")


class OpenedAtFirstWrite:
    """open_output's file, opened at its first write; `closed` until then, as no file is open."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))  # the file named now, should the run change folder later
        self.file: IO[str] | None = None

    @property
    def closed(self) -> bool:
        return self.file is None or self.file.closed

    def write(self, text: str) -> int:
        if self.file is None:
            self.file = open_output(self.path)
        return self.file.write(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


PIPE_WAIT = 10.0  # seconds a named pipe is given to find a reader


def _opened_in_place(path: Path, stopped: Callable[[], bool] | None = None) -> int:
    """A descriptor for writing into a device or pipe as it stands. A named pipe no process reads from
    would hold a blocking open for ever (and the run with it): it is tried without blocking until a
    reader comes, for PIPE_WAIT seconds at most, or until a stop is asked for."""
    if not stat.S_ISFIFO(os.stat(path).st_mode):
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    deadline = time.monotonic() + PIPE_WAIT
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            if stopped is not None and stopped():
                raise ReaderStalled(e.errno, "no process read from the pipe") from None
            if time.monotonic() > deadline:
                raise OSError(e.errno, f"no process read from the pipe in {PIPE_WAIT:g} s") from None
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd


def is_pipe(stream: IO[str]) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # not a file of the system's (io.UnsupportedOperation: a StringIO), or closed
        return False


class ReaderStalled(OSError):
    """A pipe's reader has taken nothing for STALL_GRACE seconds, and a stop is asked for: the write is given up."""


STALL_GRACE = 2.0  # seconds a stopping run waits on a pipe whose reader takes nothing: a slow reader keeps up


def write_as_read(pipe: IO[str], data: bytes, stopped: Callable[[], bool]) -> None:
    """Write to a pipe as its reader makes room, without blocking (another writer, `2>&1`, may fill the room
    first). Its reader may stop reading and not leave; a plain write would then hold the run, stop requests
    and all, for as long as the reader does. So once a stop is asked for, a reader that has taken nothing for
    STALL_GRACE seconds is given up on (ReaderStalled), a record then perhaps cut short; one that reads,
    however slowly, gets everything."""
    pipe.flush()  # anything written through the stream goes first
    fd = pipe.fileno()
    taken = time.monotonic()  # when the reader last made room
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while data:
            if select.select([], [fd], [], STOP_POLL)[1]:
                try:
                    data = data[os.write(fd, data[:select.PIPE_BUF]):]
                    taken = time.monotonic()
                    continue
                except BlockingIOError:  # the room went to another writer
                    pass
            if stopped() and time.monotonic() - taken >= STALL_GRACE:
                raise ReaderStalled(errno.EAGAIN, "its reader stopped reading")
    finally:
        os.set_blocking(fd, blocking)


def write_stream(stream: IO[str], text: str, stopped: Callable[[], bool] | None = None) -> None:
    """Write and flush; into a pipe, given `stopped` (whether a stop was asked for), as its reader takes it."""
    if stopped is not None and is_pipe(stream):
        write_as_read(stream, text.encode(getattr(stream, "encoding", None) or "utf-8", errors="replace"), stopped)
    else:
        stream.write(text)
        stream.flush()


def write_text(path: Path, text: str, stopped: Callable[[], bool] | None = None) -> None:
    """Write a file through a temporary name, so an interrupted run never leaves half a file; a file
    replaced keeps its permissions and, where the user may give them, its owner and group (a transcript
    kept private stays private; ACLs and extended attributes are not copied). A symlink is written through
    to its file, and a device or pipe (/dev/stdout) is written into: neither is replaced, and a pipe given
    `stopped` is written as its reader takes it (write_as_read). A stream given up on (silence: /dev/stderr, its
    reader gone) is not written into the /dev/null put in its place: that fails, so the text goes elsewhere."""
    if (fd := _descriptor(path)) in _SILENCED:
        raise OSError(errno.EPIPE, f"it was given up on (fd {fd})")
    stream = own_stream(path)
    if stream:
        write_stream(stream, text, stopped)
        return
    if written_in_place(path):
        with open(_opened_in_place(path, stopped), "w", encoding="utf-8") as file:
            write_stream(file, text, stopped)
        return
    write_whole(path, text)


def write_whole(path: Path, data: str | bytes) -> None:
    """A file (text, or bytes: a PNG) written through a temporary name and renamed: a failed or interrupted
    write leaves the file as it was, and a file replaced keeps its permissions (stage_file). A device or pipe
    is written into, not replaced."""
    if written_in_place(path):
        with open(_opened_in_place(path), "wb") as file:
            file.write(data if isinstance(data, bytes) else data.encode())
        return
    tmp, target = stage_file(path, data)
    try:
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stage_file(path: Path, data: str | bytes, newline: str | None = None) -> tuple[Path, Path]:
    """`write_whole`'s first half: `data` (text, or bytes) written whole beside the file `path` names (a
    symlink's target), under a temporary name, with the permissions of the file it will replace; that name
    and the file's, for the caller to rename (training renames an epoch's files once all are written). A
    failed write leaves no partial file. `newline` as open's ("": line ends as written), for text."""
    path = Path(os.path.realpath(path))
    make_folder_for(path)
    try:
        kept: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        kept = None
    tmp = path.with_name(path.name + TMP)
    tmp.unlink(missing_ok=True)  # left by a killed run: made afresh, so it starts with no one's permissions
    # A file written over is made readable by its owner alone until its group is settled, never by more
    # people than before in between.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if kept is None else 0o600)
    try:
        binary = isinstance(data, bytes)
        opened: IO[Any] = open(fd, "wb") if binary else open(fd, "w", encoding="utf-8", newline=newline)
        with opened as file:
            if kept is not None:
                mode = stat.S_IMODE(kept.st_mode)
                if not _give_owner(fd, kept):  # another group than the file's: none of the group's rights
                    mode &= ~0o070
                with contextlib.suppress(OSError):  # a file system without permissions (some network mounts)
                    os.fchmod(fd, mode)
            file.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, path


def _give_owner(fd: int, kept: os.stat_result) -> bool:
    """Give the open file `kept`'s owner and group, or its group alone (a user may give a group of theirs,
    not an owner); whether the group is `kept`'s now."""
    for owner in ((kept.st_uid, kept.st_gid), (-1, kept.st_gid)):
        with contextlib.suppress(OSError):
            os.fchown(fd, *owner)
            return True
    return os.fstat(fd).st_gid == kept.st_gid


@contextlib.contextmanager
def native_stderr(keep: Callable[[str], bool] = lambda line: False) -> Iterator[None]:
    """What is written to file descriptor 2 while the block runs, held back, and afterwards the lines
    `keep` accepts passed on: native libraries (MediaPipe's start-up, TensorFlow's absl logging) write
    there past any Python or environment log setting, lines that say nothing a user can act on."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # stderr closed or its reader gone: nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            with held_interrupts():  # stderr back, even when a stop request ends the block
                if sys.stderr is not None:
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True) if keep(line)]
            if kept and sys.stderr is not None:
                sys.stderr.write("".join(kept))
