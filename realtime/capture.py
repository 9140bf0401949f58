"""Frame capture: a thread that stamps each frame with its time and never blocks the pipeline, and a
resampler that turns whatever rate the source delivers into the model's frame rate."""

from __future__ import annotations

import math
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import cv2
import numpy as np

from realtime.files import utf8
from realtime.interrupts import STOP_POLL

# FFmpeg's own lines (a damaged file's decoding errors, a refused connection) are muted: the user gets
# lipstream's one line instead. Read by OpenCV when it first opens a video; set it to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# So are OpenCV's own (a stalled stream's read timeout, a missing camera), once for the process rather
# than around every read; OPENCV_LOG_LEVEL set in the environment keeps them.
if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.setLogLevel(0)


class CaptureError(Exception):
    """A source that cannot be opened; the message is one line for the user."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR
    t: float  # seconds: media time for files (the file's timeline), time since the stream started for cameras
    index: int  # frame number from the source
    captured: float  # time.monotonic() when the frame was read: where glass-to-caption latency starts
    read_ms: float = 0.0  # time spent reading and decoding it


@dataclass(frozen=True)
class SourceOptions:
    source: str = "0"  # camera index, video file or stream URL
    fast: bool = False  # files: read as fast as possible instead of at the file's own fps
    backlog: float = 0.16  # seconds of frames held for a pipeline that falls behind (4 at 25 fps, 38 at 240)
    retries: int = 5  # reopen attempts after a camera or stream's last frame before it is given up
    backoff: float = 0.2  # seconds before the first reopen, doubled each time


# Consecutive failed reads after which a video is taken to have ended: a damaged packet fails one
# read and the next frames still decode.
FAILED_READS = 25
# A video that ends this much short of its container's duration ended early (cut off); container
# durations are estimates (mkv and fragmented mp4 round up to a frame or two).
SHORTFALL = 0.25  # seconds
# The highest frame rate taken as filmed (phones' slow motion); above it the container gave its time base
# (1000 for WebM and Matroska without a rate), and a frame without a usable time is placed at USUAL_FPS.
MAX_FPS = 960
USUAL_FPS = 30.0  # most cameras' rate: a source's that gives none
# A stream whose timestamps run further ahead of the clock than this has jumped (a discontinuity, a new
# segment): it is paced from that frame on, not waited for.
MAX_AHEAD = 1.0  # seconds
OPEN_GRACE = 0.5  # s: how long an open may go on after a stop request before the caller goes on without it
# A stream's frame read this much after its own time starts a backlog (what it sent at once after a
# stall, or buffered while the model loaded): see Backlog.
BACKLOG = 0.25  # seconds
LOSING_GROUND = 0.5  # seconds a backlog may grow, the pipeline holding the reader up, before it is given up
MAX_BEHIND = 5.0  # seconds


class Backlog:
    """Whether a stream's frames are kept for the pipeline, not dropped when it is busy. A backlog's are,
    so that the captions catch up with the words in them: from a frame read more than BACKLOG after its
    time until the pipeline has taken every frame and one comes within a frame period of its time. A
    pipeline that loses ground instead (slower than real time: the frames come later than the backlog's
    best by LOSING_GROUND while it holds the reader up), or a frame later than MAX_BEHIND, ends it until
    the stream is read in time again: frames that come in time are dropped for newer ones, as a camera's
    are, so that such a machine stays with the stream. A network that delivers late holds nothing up,
    and only makes the backlog longer."""

    def __init__(self, period: float):
        self.period = period  # seconds a frame lasts
        self.best: float | None = None  # the least late a frame of the backlog came; None: no backlog
        self.armed = True  # a backlog may start (not while losing ground)

    def keeps(self, late: float, drained: bool, held_up: bool) -> bool:
        """For a frame read `late` seconds after its time, the pipeline having taken every frame or not,
        and having held the reader up (the last frame waited for room) or not."""
        in_time = late < self.period
        if self.best is None:
            self.armed = self.armed or in_time
            if self.armed and BACKLOG < late <= MAX_BEHIND:
                self.best = late
        elif in_time and drained:
            self.best = None
        elif late > MAX_BEHIND or (held_up and late > self.best + LOSING_GROUND):
            self.best, self.armed = None, False
        else:
            self.best = min(self.best, late) if held_up else late
        return self.best is not None


def is_camera(source: str) -> bool:
    """A camera index (ASCII digits, as OpenCV takes it: a C int), unless a file of that name exists."""
    return (source.isascii() and source.isdigit() and len(source) <= 10 and int(source) < 2 ** 31
            and not Path(source).exists())


def is_url(source: str) -> bool:
    return "://" in source


def local_path(source: str) -> Path | None:
    """The file a source names, as a path or a file:// URL (decoded: %20 is a space), so both get the
    same checks and timeline, and a caller can keep its outputs off the video; None for a camera or
    another URL."""
    if is_camera(source):
        return None
    if not is_url(source):
        return Path(source)
    url = urlparse(source)
    return Path(url2pathname(url.path)) if url.scheme == "file" and url.netloc in ("", "localhost") else None


# A URL whose path ends in one of these names a recording, even when its container gives no length (a
# WebM written as a stream, a .ts saved from a broadcast); a live stream's or camera's URL rarely does
# (.m3u8, .mjpg, .flv for HTTP-FLV, none).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv", ".wmv",
                            ".ts", ".m2ts", ".mts", ".3gp"})


def names_a_video_file(url: str) -> bool:
    return Path(urlparse(url).path).suffix.lower() in VIDEO_SUFFIXES


def video_timeline(path: str) -> tuple[float, float | None]:
    """Where a file's video starts on the file's timeline, and how long the video itself lasts (None
    when the file does not say). A file whose sound starts first (a screen recording, an edit) shows
    its first frame late, and OpenCV gives frame times from the video's own start; one whose sound runs
    on after the picture has a container longer than its video, which OpenCV counts frames from."""
    import av  # PyAV reads what OpenCV does not report (about 60 ms to import)

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            first = 0.0  # the video's first time stamp, in seconds
            if stream.start_time is not None and stream.time_base is not None:
                first = float(stream.start_time * stream.time_base)
            start = max(0.0, first - (container.start_time or 0) / 1e6)
            rate = stream.average_rate or stream.guessed_rate
            if stream.frames and rate:  # the count the file's header gives (a duration would be an estimate)
                length = stream.frames / float(rate)
                # An MP4's edit list may show fewer (`-c copy` cuts); other containers' durations are what is
                # left of a cut-off file.
                if "mp4" in container.format.name.split(",") and stream.duration and stream.time_base is not None:
                    length = min(length, float(stream.duration * stream.time_base))
                return start, length
            end = _clock_seconds(stream.metadata.get("DURATION", ""))  # Matroska keeps where the video ends
            return start, None if end is None else max(0.0, end - first)
    except (av.FFmpegError, IndexError, OSError):
        return 0.0, None


def _clock_seconds(text: str) -> float | None:
    """`HH:MM:SS.fraction` in seconds; None for anything else."""
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def held_without_video(path: Path) -> str | None:
    """What a file that holds streams but no video holds ("sound": a voice memo, sound saved as .mp4;
    "subtitles": an .srt), so that it is said as such and not as a damaged video; None otherwise."""
    import av

    names = {"audio": "sound", "subtitle": "subtitles"}
    try:
        with av.open(str(path)) as container:
            if not container.streams or container.streams.video:
                return None
            kinds = dict.fromkeys(names.get(stream.type, "data") for stream in container.streams)
    except (av.FFmpegError, OSError):
        return None
    return " and ".join(kinds)


def capture_fps(capture: cv2.VideoCapture | Video, fallback: float) -> float:
    """An opened video's frame rate as its container gives it; `fallback` (the rate its kind of source
    is usually filmed at) where it gives none, or one above MAX_FPS, which is its time base."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps <= MAX_FPS else fallback


def is_still_image(path: Path) -> bool:
    """Whether the file is a photo, which FFmpeg opens as a one-frame video. Its signature alone does not
    say: a raw MJPEG video begins as a JPEG does, so a second frame is looked for."""
    if not cv2.haveImageReader(str(path)):
        return False
    capture = cv2.VideoCapture(str(path))
    try:
        return not (capture.grab() and capture.grab())
    finally:
        capture.release()


class Video:
    """An OpenCV capture of a video file or URL whose frames come as a player shows them: upright, as the
    file's rotation tag says (phones film upright and tag the rotation; OpenCV 4.11 ignores the tag
    unless asked), and in square pixels, as its sample aspect ratio says (DV and broadcast files store
    16:9 or 4:3 pictures as 720 x 576, which OpenCV reads as stored: faces squashed, and read wrong).
    Anything but `read` is the capture's own."""

    def __init__(self, source: str):
        # OpenCV crashes (a segmentation fault) on a name that is not UTF-8: such a video is not opened, and
        # `refusal` says why.
        self.refusal = None if utf8(source) else "its file name is not UTF-8: rename it"
        self.capture = cv2.VideoCapture() if self.refusal else cv2.VideoCapture(source)
        self.capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        num, den = self.capture.get(cv2.CAP_PROP_SAR_NUM), self.capture.get(cv2.CAP_PROP_SAR_DEN)
        self.aspect = num / den if num > 0 and den > 0 else 1.0  # a stored pixel's width over its height
        self._sideways = round(self.capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, image = self.capture.read()
        if ok and self.aspect != 1.0:
            h, w = image.shape[:2]
            size = (w, round(h * self.aspect)) if self._sideways else (round(w * self.aspect), h)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if size[0] * size[1] < w * h
                               else cv2.INTER_LINEAR)
        return ok, image

    def __getattr__(self, name: str) -> Any:
        return getattr(self.capture, name)


def video_images(capture: Video) -> Iterator[np.ndarray]:
    """The frames of an opened video in order, to the first that fails to decode; the capture is released
    when they end, or when the reader stops early."""
    try:
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            yield image
    finally:
        capture.release()


class FrameSource:
    """Reads frames on a thread. Cameras, live streams and paced videos drop the oldest frame when the
    consumer falls behind (counted in `dropped`); `fast` videos, and a stream's backlog (Backlog), wait
    for room instead, so every frame is processed.

    A video (a file, or a URL to one) has an end and its own timeline: frames carry their media
    time, it is played at its pace and never reopened. A camera or live stream (a URL whose container
    gives no length and whose name is not a video file's) is reopened when it stops delivering, unless
    it then starts over as a recording served that way does. A camera's frames are stamped by the clock;
    a stream's by its own timestamps, from its opening, and it is read no faster than them, so that such
    a recording plays at its pace too (one without timestamps is stamped by the clock)."""

    def __init__(self, options: SourceOptions):
        self.options = options
        source = options.source
        self._path = local_path(source)
        try:
            found = None if self._path is None else self._path.stat()
        except FileNotFoundError:
            raise CaptureError(f"no video file at {source}") from None
        except OSError as e:  # a name too long, a folder in the path that is a file or cannot be entered
            raise CaptureError(f"cannot read {source} ({e.strerror})") from None
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise CaptureError(f"{source} is a folder, not a video file")
        if found is not None and not stat.S_ISREG(found.st_mode):
            kind = "a named pipe" if stat.S_ISFIFO(found.st_mode) else "a socket" if stat.S_ISSOCK(found.st_mode) \
                else "a device"
            raise CaptureError(f"{source} is {kind}, not a video file")
        if found is not None and found.st_size == 0:
            raise CaptureError(f"{source} is empty (0 bytes): nothing to lipread")
        self._capture = self._open()
        self._opened_at = time.monotonic()  # where a stream's pace starts: it can hold nothing older
        self._origin = self._opened_at  # a stream's time 0, which its frames' times count from
        fps = self._capture.get(cv2.CAP_PROP_FPS)  # the container's own: its frame count is at that rate
        self.fps = capture_fps(self._capture, USUAL_FPS)
        if self._path is not None and is_still_image(self._path):
            self._capture.release()
            raise CaptureError(f"{source} is a still image, not a video: nothing to lipread")
        frames = 0.0 if is_camera(source) else self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        counted = 0 < frames < 1e12  # a live stream has no count; a webm without a duration, a garbage one
        self.is_video = self._path is not None or counted or (is_url(source) and names_a_video_file(source))
        # The container's estimate, 0 when unknown: OpenCV counts the frames at the container's own rate.
        self.duration = frames / fps if counted and fps > 0 else 0.0
        # A video's first frame, decoded while it opens: one of which no frame decodes is refused before the
        # model loads. A camera's or live stream's would be stale by then (they are reopened when they give none).
        self._opened: tuple[np.ndarray, float] | None = None
        if self.is_video:
            self._opened = self._first_frame()
        self._last_t = -1.0  # media time of the last frame read, from the video's own start
        self.video_start = 0.0  # where that start is on the file's timeline: read beside the model's loading
        self._timeline = None if self._path is None else threading.Thread(target=self._read_timeline, daemon=True)
        if self._timeline is not None:
            self._timeline.start()
        # As long at any rate: a 240 fps video gives the 25 fps pipeline ten frames a frame, not needed but queued.
        self.frames: queue.Queue[Frame | None] = queue.Queue(maxsize=max(2, round(options.backlog * self.fps)))
        self.dropped = 0
        self.read = 0
        self.paced = 0  # a stream's frames held back to its own pace; the others were behind it, read at once
        self.error: str | None = None  # why the stream ended early, when it did
        self.failure: str | None = None  # what failed in the reading itself, when something did
        self._stop = threading.Event()
        self._released = threading.Event()  # cleared while a video is held
        self._released.set()
        self._held_at = 0.0
        self._pace = (0.0, 0.0)  # the clock and a stream's timestamp its pace is kept from
        self._last_media = self._last_due = 0.0  # the timestamp of the stream's last frame, and its time
        self.waiting = threading.Event()  # set while the reading thread waits for a hold's release
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def _open(self) -> cv2.VideoCapture | Video:
        source = self.options.source
        if is_camera(source):
            camera = cv2.VideoCapture(int(source))
            if not camera.isOpened():
                raise CaptureError(f"cannot open camera {source}; to read a video file instead, use --source FILE")
            return camera
        capture = Video(source if self._path is None else str(self._path))
        if not capture.isOpened():
            if self._path is None:
                raise CaptureError(f"cannot open {source}: unreachable, or not a stream this OpenCV build can decode")
            if capture.refusal:
                raise CaptureError(f"cannot read {source}: {capture.refusal}")
            if held := held_without_video(self._path):
                raise CaptureError(f"{source} holds {held} but no video: nothing to lipread")
            raise CaptureError(f"cannot read {source}: damaged or cut off, or not a video this OpenCV build decodes")
        return capture

    def _first_frame(self) -> tuple[np.ndarray, float]:
        """The video's first frame that decodes (a damaged one is skipped, as when reading), and the ms
        it took."""
        for _ in range(FAILED_READS):
            ok, image, read_ms = self._next_frame()
            if ok and image is not None:
                return image, read_ms
        self._capture.release()
        raise CaptureError(f"cannot decode any frame of {self.options.source}: damaged or cut off, "
                           "or not a video this OpenCV build decodes")

    def _next_frame(self) -> tuple[bool, np.ndarray | None, float]:
        """The next frame read and the ms reading it took: first the one decoded while the video opened."""
        if self._opened is not None:
            (opened, read_ms), self._opened = self._opened, None
            return True, opened, read_ms
        started = time.perf_counter()
        ok, image = self._capture.read()
        return ok, image, (time.perf_counter() - started) * 1e3

    def start(self) -> "FrameSource":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def hold(self, held: bool) -> None:
        """Keep a video where it is while its viewer pauses, as a player does: no frame is read meanwhile
        (but the one being paced when the hold came), and its pace goes on from there once released. A
        camera cannot wait, so it is never held."""
        if not self.is_video or held != self._released.is_set():
            return
        if held:
            self._held_at = time.monotonic()
            self._released.clear()
        else:
            self._started += time.monotonic() - self._held_at
            self._released.set()

    def stop(self) -> None:
        self._stop.set()
        try:  # unblock a producer waiting on a full queue
            self.frames.get_nowait()
        except queue.Empty:
            pass
        if self._thread.ident is None:  # never started: the capture is this thread's to release
            self._capture.release()
        else:  # the reading thread releases it as it ends: a read that hangs on a stalled stream is not
            self._thread.join(timeout=2)  # cut under it from this thread (OpenCV frees the GIL in there)
        if self._timeline is not None:  # a local file's, read in milliseconds: stopped, nothing holds the file
            self._timeline.join(timeout=2)

    def _put(self, item: Frame | None, keep: bool = False) -> float:
        """Queue a frame for the pipeline (None: the end); return the seconds it waited for room. A frame
        to `keep`, a video read --fast, and the end wait; a camera's or a paced video's frame replaces
        the oldest waiting one."""
        if keep or self.options.fast and self.is_video or item is None:
            try:
                self.frames.put_nowait(item)
                return 0.0
            except queue.Full:
                pass
            started = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.frames.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            return time.monotonic() - started
        try:
            self.frames.put_nowait(item)
        except queue.Full:
            try:
                self.frames.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self.frames.put_nowait(item)
        return 0.0

    def _reopen(self, attempt: int) -> bool:
        """Reopens a camera or stream that stopped delivering, after a back-off doubled with each attempt
        since its last frame: an open alone is no sign it is back, so one that keeps ending as soon as
        it opens is given up after `retries` as one that fails to open is."""
        if attempt >= self.options.retries or self._stop.wait(self.options.backoff * 2 ** attempt):
            return False
        self._capture.release()
        try:
            self._capture = self._open()
            self._opened_at = time.monotonic()
        except CaptureError:
            pass  # reading the released capture fails: the next attempt
        return True

    def _read_timeline(self) -> None:
        self.video_start, length = video_timeline(str(self._path))
        if length:  # the video's own length, where the container's may include sound after it
            self.duration = length

    def _media_time(self) -> float:
        """The frame just read's presentation time (variable frame rates included); a frame's place
        at the nominal rate when the container gives no usable time."""
        t = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
        return t if t > self._last_t else self._last_t + 1 / self.fps

    def _run(self) -> None:
        """Whatever stops the reading, the stream ends: a consumer is never left waiting for frames, and
        the capture (the last one opened, after any reopening) is released here, where it is read."""
        try:
            self._read()
        except Exception as e:  # lipstream's own failure, not the source's: told apart from `error`
            self.failure = f"reading {self.options.source} failed: {type(e).__name__}: {' '.join(str(e).split())}"
        finally:
            self._capture.release()
            self._put(None)

    def _read(self) -> None:
        if self._timeline is not None:
            self._timeline.join()
        pace = self.is_video and not self.options.fast
        stream = not self.is_video and not is_camera(self.options.source)
        failed = reopens = 0
        first: np.ndarray | None = None  # the frame the last opening started with
        opened = (0.0, 0, 0.0)  # when it did (time.monotonic()), and `read` and `held` then
        held = 0.0  # seconds a stream was held back to its own pace, or by the pipeline, in all
        last_t = 0.0  # the last stream frame's time: a frame stamped by the clock among timed ones keeps order
        backlog, waited = Backlog(1 / self.fps), 0.0  # and how long the last frame waited for the pipeline
        while not self._stop.is_set():
            if not self._released.wait(0.05):
                self.waiting.set()
                continue  # held: look again (a stop ends the wait too)
            if self.waiting.is_set():  # a lock-free look on every frame; the clear only after a hold
                self.waiting.clear()
            ok, image, read_ms = self._next_frame()
            if not ok or image is None:
                if self.is_video:
                    failed += 1
                    if failed < FAILED_READS:
                        continue
                    end = self._last_t + 1 / self.fps
                    if end < self.duration - SHORTFALL:
                        self.error = f"video ended early: read {end:.2f} s of {self.duration:.2f} s"
                    break
                if not self._reopen(reopens):
                    self.error = f"{self.options.source} stopped delivering frames"
                    break
                reopens += 1
                continue
            if reopens and first is not None and np.array_equal(image, first) and \
                    (self.read - opened[1]) / self.fps > 2 * (time.monotonic() - opened[0] - (held - opened[2])):
                # Reopened, it starts over bit for bit (a camera never does), and it gave its frames faster
                # than they were filmed: a recording served as a file, read to its end. One played in real
                # time (a stream looping a clip) is reopened as a camera is.
                break
            if reopens or first is None:
                first, opened = image, (time.monotonic(), self.read, held)
            failed = reopens = 0
            keep, due = False, None  # a stream's backlog is kept, and its frames were due before they came
            if stream and (paced := self._keep_pace(restart=self.read == opened[1]))[1] is not None:
                held, due = held + paced[0], paced[1]
                keep = backlog.keeps(time.monotonic() - due, self.frames.empty(), waited > 0)
                t = max(due - self._origin, last_t)
            elif self.is_video:
                self._last_t = self._media_time()
                t = self._last_t + self.video_start
                if pace:
                    wait = self._started + t - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
            else:
                t = max(time.monotonic() - self._origin, last_t) if stream else time.monotonic() - self._started
            last_t = t
            captured = time.monotonic() if due is None else min(due, time.monotonic())
            waited = self._put(Frame(image, t, self.read, captured, read_ms), keep=keep)
            # Waiting for the pipeline is not delivery time: it counts with `held`, so that a recording served
            # whole is still told from a live stream when the pipeline reads slower than real time.
            held += waited
            self.read += 1

    def _keep_pace(self, restart: bool) -> tuple[float, float | None]:
        """Hold a stream's frame back until its own time; return the seconds held and that time (on
        time.monotonic()'s clock), which the frame is stamped with (None: the frame has no usable
        timestamp, and is stamped by the clock, as a camera's are). Its time runs from the opening
        (`restart`: this frame is its first): a live stream comes no faster than that, and what it
        buffered while the model loaded, or sends after a stall, is behind it and read at once, each
        frame at its own time, so captions catch up; a recording served at a stream's URL comes as fast
        as the network gives it, and would otherwise be read at that speed, its frames dropped by a
        pipeline that reads in real time. A timestamp that goes back or stands still (an encoder
        restarted) is paced on from the last frame's time, as a jump ahead of more than MAX_AHEAD is (or
        from now, when that is sooner). A frame held is counted in `paced`."""
        now, media = time.monotonic(), self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
        if not 0 <= media < 1e9:  # MJPEG over HTTP gives FFmpeg's "no time", -2^63 µs
            return 0.0, None
        if restart:
            self._pace = (self._opened_at, media)
        elif media <= self._last_media:  # on from the last frame, which a backlog may still be behind
            self._pace = (self._last_due + 1 / self.fps, media)
        due = self._pace[0] + (media - self._pace[1])
        if due - now > MAX_AHEAD:
            self._pace = (min(self._last_due + 1 / self.fps, now), media)
            due = self._pace[0]
        self._last_media, self._last_due = media, due
        if due <= now:
            return 0.0, due
        self.paced += 1
        return (0.0 if self._stop.wait(due - now) else due - now), due

    def __iter__(self) -> Iterator[Frame]:
        return self.until(lambda: False)

    def until(self, stopped: Callable[[], bool],
              waiting: Callable[[float], None] | None = None) -> Iterator[Frame]:
        """The frames until the end, or until `stopped()` is true: asked before each frame, and every
        STOP_POLL seconds while none comes, when `waiting` is called too, with the seconds since the last
        frame came (a window stays drawn and answers its keys through a stalled camera or stream). A stop
        request a signal handler notes is acted on here, between frames; a KeyboardInterrupt raised inside
        the queue's lock can leave the lock held, and the pipeline and the reading thread then wait on it
        for ever (a Ctrl-C as a run read its first frame did)."""
        came = time.monotonic()
        while not stopped():
            try:
                frame = self.frames.get(timeout=STOP_POLL)
            except queue.Empty:
                if waiting is not None:
                    waiting(time.monotonic() - came)
                continue
            if frame is None:
                return
            came = time.monotonic()
            yield frame


def open_source(options: SourceOptions, stopping: Callable[[], bool]) -> FrameSource | None:
    """The source, opened on a thread of its own: OpenCV's open of a URL that does not answer holds the
    thread that asked for 30 s, and a stop asked for meanwhile (`stopping()` turns true) ends the wait within
    OPEN_GRACE seconds. None when the open is still under way then (it is left to end with the process); an
    open that ends within it (a file's, in milliseconds) gives its source, and the caller stops as after any
    stop before its first frame."""
    opened: list[FrameSource | Exception] = []
    given_up = threading.Event()  # set, under `lock`, once the caller has gone on without the source
    lock = threading.Lock()

    def open_it() -> None:
        try:
            result: FrameSource | Exception = FrameSource(options)
        except Exception as e:  # raised on the caller's thread, below
            result = e
        with lock:
            if given_up.is_set():  # an open that ended after all: its capture and connection are let go
                if isinstance(result, FrameSource):
                    result.stop()
            else:
                opened.append(result)

    thread = threading.Thread(target=open_it, name="open", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)
        if stopping():
            thread.join(OPEN_GRACE)
            with lock:
                if not opened:
                    given_up.set()
                    return None
            break
    if isinstance(opened[0], Exception):
        raise opened[0]
    return opened[0]


class Resampler:
    """Maps frames stamped at any rate onto the model's rate: frame k is due at k / fps and takes the
    source frame nearest that time (a 30 fps webcam loses one frame in six for a 25 fps model; a
    15 fps one repeats frames)."""

    MAX_GAP = 0.5  # seconds: a longer stall is skipped, not filled with copies of one frame

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.next_t = -math.inf  # when the next frame is due: none is, until the first frame starts the count
        self.previous: Frame | None = None
        self.interval = 0.0  # seconds between the source's last two frames

    def push(self, frame: Frame) -> list[Frame]:
        if frame.t - self.next_t > self.MAX_GAP:
            self.next_t, self.previous = frame.t, None
        out = []
        while frame.t + 1e-6 >= self.next_t:
            previous = self.previous
            out.append(self._due(previous if previous is not None and
                                 self.next_t - previous.t < frame.t - self.next_t else frame))
        if self.previous is not None:
            self.interval = frame.t - self.previous.t
        self.previous = frame
        return out

    def flush(self) -> list[Frame]:
        """At the source's end: its last frame for each due time before the frame after it would have come,
        one interval later, when the source ends (a 24 fps video's last frame is due at 2.96 s of 3, and no
        later frame comes to make it due; a 12 fps video's last, shown from 2.92 s, is nearer 3.0 than 2.96,
        and is still the frame of 2.96). A due time less than a quarter of a period before that end gets
        none: a 29.97 fps video ends 3 ms past 3.0 s, and timestamps rounded to the millisecond move the end
        by as much."""
        out = []
        last = self.previous
        while last is not None and self.next_t < last.t + self.interval - self.period / 4:
            out.append(self._due(last))
        return out

    def resample(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """Every frame of a source at the model's rate, its last included."""
        for frame in frames:
            yield from self.push(frame)
        yield from self.flush()

    def _due(self, nearest: Frame) -> Frame:
        """`nearest` as the frame due now; the next one is due a period later."""
        due, self.next_t = self.next_t, self.next_t + self.period
        return Frame(nearest.image, due, nearest.index, nearest.captured, nearest.read_ms)
