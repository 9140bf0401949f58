"""Frame capture on the videos users bring: phone rotation tags, variable frame rates, containers that
round their length up, a damaged packet, a video served over HTTP, a file named like a camera, high-speed
video, a recording served as a stream. Each is made from a real GRID clip with FFmpeg."""

from __future__ import annotations

import contextlib
import fractions
import functools
import http.server
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.capture import (MAX_BEHIND, MAX_FPS, USUAL_FPS, Backlog, CaptureError, Frame, FrameSource, Resampler,
                              SourceOptions, Video, capture_fps, local_path)
from tests.test_tracker import read_frames

ROOT = Path(__file__).resolve().parents[1]
CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "grid" / "s1" / "video" / "bram2n.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def read_all(source: str, fast: bool = True, **options: float) -> tuple[FrameSource, list[Frame]]:
    """Every frame the source gives, up to 500: a source replayed without end, or one whose stream
    never ends (10 s without a frame), fails instead of hanging."""
    capture = FrameSource(SourceOptions(source=source, fast=fast, **options)).start()
    try:
        frames = []
        while len(frames) < 500 and (frame := capture.frames.get(timeout=10)) is not None:
            frames.append(frame)
        return capture, frames
    finally:
        capture.stop()


def test_a_video_whose_name_is_not_utf8_is_refused_in_a_line_not_opened(tmp_path: Path) -> None:
    """OpenCV crashes (a segmentation fault) on a file name that is not UTF-8: such a video is not handed to
    it, and the reason is said, not taken for a damaged file."""
    odd = tmp_path / os.fsdecode(b"clip\xff.mp4")
    odd.symlink_to(CLIP)
    with pytest.raises(CaptureError) as refused:
        FrameSource(SourceOptions(source=str(odd)))
    assert str(refused.value) == f"cannot read {odd}: its file name is not UTF-8: rename it"


def test_a_rotation_tag_turns_the_frames_upright(tmp_path: Path) -> None:
    """A phone stores the pixels as the sensor saw them and tags the rotation: here upside down,
    tagged 180 degrees."""
    ffmpeg("-i", str(CLIP), "-vf", "hflip,vflip", "-an", str(tmp_path / "upside_down.mp4"))
    ffmpeg("-i", str(tmp_path / "upside_down.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=180",
           str(tmp_path / "tagged.mp4"))
    source, frames = read_all(str(tmp_path / "tagged.mp4"))
    original = read_frames(CLIP)
    assert source.error is None and len(frames) == len(original)
    upright = np.mean([np.abs(f.image.astype(int) - o).mean() for f, o in zip(frames, original)])
    flipped = np.mean([np.abs(f.image[::-1, ::-1].astype(int) - o).mean() for f, o in zip(frames, original)])
    assert upright < 3 < 10 < flipped


@pytest.mark.parametrize("stored, aspect, turned", [("270:288", "4/3", False), ("480:288", "3/4", False),
                                                     ("216:360", "4/3", True)])
def test_non_square_pixels_come_as_a_player_shows_them(stored: str, aspect: str, turned: bool,
                                                       tmp_path: Path) -> None:
    """DV and broadcast files store a 16:9 or 4:3 picture in 720 x 576 pixels and say how wide each is
    (the sample aspect ratio): read as stored, the face is squashed and the lips read wrong. A phone's
    video stored sideways stretches what it stores, then turns it."""
    path = tmp_path / "anamorphic.mp4"
    turn = "transpose=1," if turned else ""  # stored a quarter turn clockwise, tagged to turn it back
    ffmpeg("-i", str(CLIP), "-vf", f"{turn}scale={stored},setsar={aspect}", "-an", str(path))
    if turned:
        ffmpeg("-i", str(path), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tmp_path / "tagged.mp4"))
        path = tmp_path / "tagged.mp4"
    source, frames = read_all(str(path))
    original = read_frames(CLIP)
    assert source.error is None and len(frames) == len(original)
    assert {f.image.shape for f in frames} == {original[0].shape}
    assert np.mean([np.abs(f.image.astype(int) - o).mean() for f, o in zip(frames, original)]) < 4


def test_variable_frame_rate_frames_carry_their_own_times(tmp_path: Path) -> None:
    """Every other frame dropped in the first 1.5 s: each frame keeps the time it was filmed at, not
    its place at the file's average rate."""
    kept = [n for n in range(75) if n >= 38 or n % 2 == 0]
    ffmpeg("-i", str(CLIP), "-vf", r"select='gte(n\,38)+not(mod(n\,2))'", "-vsync", "vfr", "-an",
           str(tmp_path / "vfr.mp4"))
    source, frames = read_all(str(tmp_path / "vfr.mp4"))
    assert source.error is None
    assert np.allclose([f.t for f in frames], np.array(kept) / 25, atol=1e-3)


@pytest.mark.parametrize("name, flags", [("clip.mkv", ()),
                                         ("fragmented.mp4", ("-movflags", "frag_keyframe+empty_moov"))])
def test_containers_that_round_their_length_up_end_cleanly(tmp_path: Path, name: str, flags: tuple[str, ...]) -> None:
    ffmpeg("-i", str(CLIP), "-c", "copy", *flags, str(tmp_path / name))
    source, frames = read_all(str(tmp_path / name))
    assert source.duration >= 3.0  # the container may say 77 frames of a 75-frame clip
    assert source.error is None and len(frames) == 75


def test_a_video_whose_sound_runs_on_after_it_ends_cleanly(tmp_path: Path) -> None:
    """Three seconds of picture and a minute of sound in Matroska: OpenCV counts frames for the minute;
    the video's own length says the picture was read whole, not cut off."""
    ffmpeg("-i", str(CLIP), "-f", "lavfi", "-i", "anullsrc=r=16000", "-map", "0:v", "-map", "1:a", "-t", "60",
           "-c:v", "copy", "-c:a", "aac", str(tmp_path / "talk.mkv"))
    source, frames = read_all(str(tmp_path / "talk.mkv"))
    assert source.error is None and len(frames) == 75 and source.duration == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("name", [str, Path.as_uri])
def test_a_video_that_starts_after_its_sound_keeps_the_file_s_timeline(tmp_path: Path,
                                                                       name: Callable[[Path], str]) -> None:
    """Its first frame is shown 2 s in (a player shows the sound's first 2 s over black): frames, and so
    captions and subtitle cues, carry the file's times, not the video stream's own; named by its path
    or a file:// URL (with %20 for the space)."""
    late = tmp_path / "late start.mp4"
    ffmpeg("-itsoffset", "2", "-i", str(CLIP), "-f", "lavfi", "-i", "anullsrc=r=16000", "-map", "0:v", "-map", "1:a",
           "-t", "5", "-c:v", "copy", "-c:a", "aac", str(late))
    source, frames = read_all(name(late))
    assert source.error is None and source.video_start == pytest.approx(2.0)
    assert np.allclose([f.t for f in frames], 2 + np.arange(75) / 25, atol=1e-3)


def test_a_video_cut_without_re_encoding_ends_cleanly(tmp_path: Path) -> None:
    """`ffmpeg -ss 1.1 -c copy` keeps the packets from the keyframe before the cut and hides the first
    ones with an edit list: the header counts 75 frames, of which 47 are shown, and a player plays 1.9 s.
    Read whole, it has not ended early."""
    ffmpeg("-ss", "1.1", "-i", str(CLIP), "-c", "copy", str(tmp_path / "cut.mp4"))
    source, frames = read_all(str(tmp_path / "cut.mp4"))
    assert source.duration == pytest.approx(1.9, abs=0.05)
    assert source.error is None and len(frames) == pytest.approx(47, abs=1)


def test_a_matroska_video_that_starts_after_its_sound_ends_cleanly(tmp_path: Path) -> None:
    """Matroska keeps where the video ends on the file's timeline (4.06 s here), not how long it lasts (3 s)."""
    ffmpeg("-itsoffset", "1", "-i", str(CLIP), "-i", str(CLIP), "-map", "0:v", "-map", "1:a", "-c", "copy",
           str(tmp_path / "late.mkv"))
    source, frames = read_all(str(tmp_path / "late.mkv"))
    assert source.video_start == pytest.approx(1.0, abs=0.1) and source.duration == pytest.approx(3.0, abs=0.1)
    assert source.error is None and len(frames) == 75


def test_a_damaged_packet_does_not_end_the_video(tmp_path: Path) -> None:
    """One frame's H.264 data gets an impossible length: that frame is lost, the ones after it are read."""
    ffmpeg("-i", str(CLIP), "-c:v", "copy", "-an", str(tmp_path / "clip.mp4"))
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_packets", "-of", "json",
                            str(tmp_path / "clip.mp4")], capture_output=True, text=True, check=True)
    position = int(json.loads(probe.stdout)["packets"][30]["pos"])
    data = bytearray((tmp_path / "clip.mp4").read_bytes())
    data[position:position + 4] = b"\xff\xff\xff\xff"
    (tmp_path / "damaged.mp4").write_bytes(data)
    source, frames = read_all(str(tmp_path / "damaged.mp4"))
    assert source.error is None and len(frames) == 74
    assert frames[-1].t == pytest.approx(74 / 25)


def test_a_cut_off_video_is_said_to_have_ended_early(tmp_path: Path) -> None:
    data = CLIP.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[:len(data) // 2])
    source, frames = read_all(str(tmp_path / "half.mp4"))
    assert source.error is not None and source.error.startswith("video ended early")
    assert 0 < len(frames) < 60


def test_a_video_of_which_no_frame_decodes_is_refused_as_it_opens(tmp_path: Path) -> None:
    """Its first 5000 bytes: it opens and gives its length, but no frame decodes. Said when the source
    opens (before the model loads), not once the frames are read."""
    (tmp_path / "head.mp4").write_bytes(CLIP.read_bytes()[:5000])
    with pytest.raises(CaptureError, match="^cannot decode any frame of .*head.mp4: damaged or cut off"):
        FrameSource(SourceOptions(source=str(tmp_path / "head.mp4")))


def resampled_at(fps: str, video: Path) -> tuple[FrameSource, list[Frame]]:
    """CLIP re-encoded at `fps` into `video` (its suffix names the container), read whole, and resampled to
    the model's 25 fps."""
    ffmpeg("-i", str(CLIP), "-vf", f"fps={fps}", "-an", str(video))
    source = FrameSource(SourceOptions(source=str(video), fast=True)).start()
    try:
        return source, list(Resampler(25).resample(source))
    finally:
        source.stop()


@pytest.mark.parametrize("fps, suffix", [("29.97", "mp4"), ("30", "webm"), ("12", "webm")])
def test_a_video_ending_just_past_a_due_time_gives_no_frame_more(tmp_path: Path, fps: str, suffix: str) -> None:
    """Three seconds at 29.97 fps end 3 ms past 3.0 s, and a webm's timestamps, in milliseconds, put the end of
    a 30 or 12 fps one 1 ms past it: the 3.0 s due time is no frame of the video's (the source's last frame
    for it made 76 frames of a 3 s clip)."""
    _, out = resampled_at(fps, tmp_path / f"at{fps}.{suffix}")
    assert len(out) == 75 and out[-1].t == pytest.approx(2.96)


def test_a_raw_mjpeg_video_is_read_and_a_photo_refused(tmp_path: Path) -> None:
    """A raw MJPEG stream (`-f mjpeg`, as some cameras record) begins with a JPEG's signature, as a photo
    does: it was refused as a still image. It is read whole; a JPEG photo of the same frame is refused."""
    video, photo = tmp_path / "clip.mjpeg", tmp_path / "frame.jpg"
    ffmpeg("-i", str(CLIP), "-c:v", "mjpeg", "-q:v", "3", "-an", "-f", "mjpeg", str(video))
    ffmpeg("-i", str(CLIP), "-frames:v", "1", str(photo))
    source = FrameSource(SourceOptions(source=str(video), fast=True)).start()
    try:
        frames = list(source)
    finally:
        source.stop()
    assert source.error is None and len(frames) == 75
    with pytest.raises(CaptureError, match="is a still image, not a video"):
        FrameSource(SourceOptions(source=str(photo), fast=True))


@pytest.mark.parametrize("fps, last", [(24, 71), (60, 178), (25, 74), (12, 35), (10, 29)])
def test_a_video_at_another_rate_is_resampled_to_its_end(tmp_path: Path, fps: int, last: int) -> None:
    """Three seconds at 24, 60, 25, 12 or 10 fps give the model's 75 frames, each the source frame nearest its
    due time, to the end: the 24 fps video's last frame (2.958 s) is the nearest to the last due time (2.96 s),
    though no frame comes after it; the 60 fps video's last (2.983 s) is nearest to none. A 12 fps video's last
    frame (2.917 s) is shown until its end, 3 s: it is the frame of 2.96 s, which a frame after it would have
    been nearer to, had one come (the video lost its last model frame)."""
    source, out = resampled_at(str(fps), tmp_path / f"at{fps}.mp4")
    assert source.read == 3 * fps and len(out) == 75
    assert np.allclose([f.t for f in out], np.arange(75) / 25)
    assert all(abs(f.index / fps - f.t) <= 0.5 / fps + 1e-6 or f.index == last for f in out) and out[-1].index == last


@pytest.mark.parametrize("fps", [300, 960])
def test_a_high_speed_video_is_read_to_its_end(tmp_path: Path, fps: int) -> None:
    """Phones film slow motion at 240 to 960 fps: such a video is neither said to have ended early nor
    given another rate's times."""
    ffmpeg("-i", str(CLIP), "-vf", f"setpts=N/({fps}*TB)", "-r", str(fps), "-an", str(tmp_path / "fast.mp4"))
    source, frames = read_all(str(tmp_path / "fast.mp4"))
    assert source.error is None and len(frames) == 75
    assert np.allclose([f.t for f in frames], np.arange(75) / fps, atol=1e-4)


@pytest.mark.parametrize("fps, held", [(25, 4), (30, 5), (240, 38)])
def test_a_faster_source_queues_as_long_not_as_many_frames(tmp_path: Path, fps: int, held: int) -> None:
    """The pipeline takes 25 frames a second of any source: a 240 fps video played at its pace queued 4
    frames (17 ms), and any hiccup dropped frames and said reading suffered."""
    ffmpeg("-i", str(CLIP), "-vf", f"fps={fps}", "-an", str(tmp_path / "clip.mp4"))
    source = FrameSource(SourceOptions(source=str(tmp_path / "clip.mp4")))
    assert source.frames.maxsize == held


def test_local_path_is_the_file_a_path_or_a_file_url_names(tmp_path: Path) -> None:
    video = tmp_path / "a talk.mp4"
    assert local_path(str(video)) == local_path(video.as_uri()) == local_path(f"file://localhost{video}") == video
    assert local_path("0") is None and local_path("http://example.com/talk.mp4") is None


# Reads every frame of a video in a process whose address space is capped a little above what it has
# mapped once its source is open, keeping each frame as a consumer that falls behind would: OpenCV then
# fails for real to allocate a frame partway through. Prints the frames read and the source's state.
READ_WITH_LITTLE_MEMORY = """if True:
    import json, re, resource, sys
    import av  # imported by the source's timeline thread: loaded before the cap
    from realtime.capture import FrameSource, SourceOptions
    source = FrameSource(SourceOptions(source=sys.argv[1], fast=True))
    mapped = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS,
                       (mapped + int(sys.argv[2]) * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    kept = list(source.start())
    print(json.dumps({"frames": len(kept), "error": source.error, "failure": source.failure}))
"""


def test_a_failure_in_the_reader_thread_ends_the_stream(tmp_path: Path) -> None:
    """Whatever fails while reading ends the stream with the reason in one line, instead of leaving the
    consumer waiting for frames forever: here OpenCV, short of memory, cannot allocate the next 4K frame
    (25 MB) of twenty, the earlier ones still held by the consumer."""
    video = tmp_path / "4k.mp4"
    ffmpeg("-i", str(CLIP), "-vf", "scale=3840:2160", "-frames:v", "20", "-an", "-preset", "ultrafast", str(video))
    run = subprocess.run([sys.executable, "-c", READ_WITH_LITTLE_MEMORY, str(video), "300"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]  # the consumer's loop ended: the stream was closed
    read = json.loads(run.stdout)
    assert 0 < read["frames"] < 20, read  # frames came, then the reading failed partway
    assert read["error"] is None  # lipstream's own failure, not the source's
    failure = read["failure"]
    assert failure.startswith(f"reading {video} failed: ") and "\n" not in failure, failure
    assert "Insufficient memory" in failure  # what OpenCV said, kept


@contextlib.contextmanager
def http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server on a thread: its address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The clip on a local HTTP server, as a video on the web would be."""
    shutil.copy(CLIP, tmp_path / "clip.mp4")
    with http_server(functools.partial(_QuietHandler, directory=str(tmp_path))) as address:
        yield f"{address}/clip.mp4"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def streamed(bodies: Iterator[bytes | Iterator[bytes]], connections: list[str] | None = None) -> Iterator[str]:
    """A server answering as a live stream does, with no length (its end is the connection's): each
    connection, whatever the path, gets the next of `bodies` (bytes, or parts sent as they come). The
    path each connection asks for is added to `connections`, when given: how often the stream was opened."""
    class Handler(_QuietHandler):
        def do_GET(self) -> None:
            if connections is not None:
                connections.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            body = next(bodies)
            for part in [body] if isinstance(body, bytes) else body:
                self.wfile.write(part)
                self.wfile.flush()

    with http_server(Handler) as address:
        yield address


@pytest.fixture
def clip_ts(tmp_path: Path) -> bytes:
    """The clip as MPEG-TS, the container of broadcasts and of streams sent over HTTP."""
    ffmpeg("-i", str(CLIP), "-an", "-c:v", "copy", str(tmp_path / "clip.ts"))
    return (tmp_path / "clip.ts").read_bytes()


def test_a_ts_recording_streamed_without_a_length_is_played_once(clip_ts: bytes) -> None:
    """Its name says it is a recording: played at its own times, ended, not reopened."""
    with streamed(itertools.repeat(clip_ts)) as address:
        source, frames = read_all(f"{address}/clip.ts")
    assert source.is_video and source.error is None
    assert np.allclose([f.t for f in frames], np.arange(75) / 25, atol=1e-3)


def test_a_recording_at_a_stream_s_url_is_played_at_its_pace_and_not_read_again(clip_ts: bytes) -> None:
    """Nothing says it is a recording, so it is read as a live stream: held to its own timestamps' pace
    (it comes as fast as the network gives it), so that no frame is dropped, and reopened when it ends;
    it then starts over with the same frame, having come faster than filmed: it has ended, read once,
    not replayed without end."""
    connections: list[str] = []
    with streamed(itertools.repeat(clip_ts), connections) as address:
        source, frames = read_all(f"{address}/live", fast=False)
    assert not source.is_video and source.error is None
    assert source.read == len(frames) == 75 and source.dropped == 0
    assert connections == ["/live", "/live"]  # opened, reopened once at its end, then given up
    # Stamped by the clock: read as it plays (about 3 s), not as it came (a few ms).
    assert frames[-1].t - frames[0].t > 1.5


def test_what_a_stream_sent_before_it_was_read_is_read_at_once(clip_ts: bytes) -> None:
    """Opened, then read 2.5 s later (the model loading): the frames of those 2.5 s are behind its pace
    and read at once, so a live stream's captions are not late by the loading time for the whole run;
    only the last half second can be held to its time. Told by the frames the source held back, not by
    how long the reading took: a busy machine reads later, which only leaves more frames behind."""
    with streamed(itertools.repeat(clip_ts)) as address:
        source = FrameSource(SourceOptions(source=f"{address}/live"))
        time.sleep(2.5)
        source.start()
        try:
            frames = []
            while (frame := source.frames.get(timeout=10)) is not None:
                frames.append(frame)
        finally:
            source.stop()
    assert source.read == len(frames) == 75 and source.error is None
    # Its pace runs from the opening, 2.5 s or more before any frame was read: the clip's frames 0 to 62
    # (0 to 2.48 s) were due by then and went out unwaited, so at most the 12 after them were held. Paced
    # from its first frame read instead, every frame after that one would have been held.
    assert source.paced <= 75 - 63


def test_a_stream_that_stalls_is_read_whole_at_its_own_times_once_it_comes_back(tmp_path: Path) -> None:
    """A live stream sent at its pace (the clip twice, 6 s) stalls for 2 s at 2.5 s, after it has been
    opened and read for a while, then sends what it held back at once (as a network does). A pipeline
    taking 12 ms a frame still gets every frame, each stamped with its own time, not with when it came,
    so the model's 25 fps frames are all there: none of the words said in the stall is lost."""
    ffmpeg("-stream_loop", "1", "-i", str(CLIP), "-an", "-c:v", "libx264", "-f", "mpegts", str(tmp_path / "twice.ts"))
    twice = (tmp_path / "twice.ts").read_bytes()
    packets = [twice[i:i + 188] for i in range(0, len(twice), 188)]
    chunks = [b"".join(packets[len(packets) * i // 150:len(packets) * (i + 1) // 150]) for i in range(150)]

    def paced() -> Iterator[bytes]:
        started = time.monotonic()
        for i, chunk in enumerate(chunks):  # frame i is due at i / 25 s; those due in the stall come at 4.5 s
            time.sleep(max(0.0, started + (i / 25 if i / 25 < 2.5 else max(i / 25, 4.5)) - time.monotonic()))
            yield chunk

    with streamed(iter([paced(), twice])) as address:  # then, reopened, all at once: it has ended
        source = FrameSource(SourceOptions(source=f"{address}/live")).start()
        try:
            frames = []
            while (frame := source.frames.get(timeout=10)) is not None:
                frames.append(frame)
                time.sleep(0.012)
        finally:
            source.stop()
    assert source.error is None and source.read == len(frames) == 150 and source.dropped == 0
    assert np.allclose(np.diff([f.t for f in frames]), 1 / 25, atol=2e-3)
    assert [f.index for f in Resampler(25.0).resample(frames)] == list(range(150))


def test_a_backlog_is_kept_while_the_pipeline_catches_up_and_not_while_it_loses_ground() -> None:
    """Frames 0.9 s late after a stall, read sooner than they last (a pipeline faster than real time):
    kept until the pipeline has taken them all and one comes in time. A pipeline slower than real time
    loses ground instead: the backlog ends, and none starts again until a frame comes in time, so the
    pipeline's own slowness is never taken for a backlog; a network that delivers late is not the
    pipeline's; and nothing later than MAX_BEHIND is kept."""
    catching_up = Backlog(1 / 25)
    kept = [catching_up.keeps(late, drained, True) for late, drained in
            [(0.0, True), (0.2, True), (0.9, False), (0.6, False), (0.3, False), (0.1, False), (0.02, False),
             (0.02, True), (0.1, True)]]
    assert kept == [False, False, True, True, True, True, True, False, False]
    # Losing ground from the best it reached (0.3 s late), the pipeline holding the reader up.
    losing = Backlog(1 / 25)
    kept = [losing.keeps(late, False, True) for late in (0.5, 0.3, 0.6, 0.9, 1.2, 0.3, 0.01, 0.4)]
    assert kept == [True, True, True, False, False, False, False, True]
    # A network that delivers ever later, the pipeline waiting for it: a longer backlog, kept.
    trickle = Backlog(1 / 25)
    assert all(trickle.keeps(late, False, False) for late in (0.3, 0.9, 1.5, 2.1, 2.7))
    assert not Backlog(1 / 25).keeps(MAX_BEHIND + 1, False, False)


def test_a_stream_whose_timestamps_jump_ahead_is_paced_on_from_the_jump(clip_ts: bytes, tmp_path: Path) -> None:
    """Its timestamps leap 97 s ahead mid-stream (a discontinuity): the frames after it are not held for
    97 s (read_all gives up after 10 s without a frame), but paced from the first frame after the jump."""
    ffmpeg("-i", str(tmp_path / "clip.ts"), "-c", "copy", "-output_ts_offset", "100", str(tmp_path / "later.ts"))
    with streamed(itertools.repeat(clip_ts + (tmp_path / "later.ts").read_bytes())) as address:
        source, frames = read_all(f"{address}/live", fast=False)
    assert source.error is None and source.read == len(frames) == 150
    assert frames[74].t - frames[0].t > 1.5 and frames[-1].t - frames[75].t > 1.5  # each part read as it plays


def test_a_stream_that_ends_as_soon_as_it_reopens_is_given_up(clip_ts: bytes) -> None:
    """After the clip, each connection sends the stream's tables and packets emptied of their picture (an
    encoder that lost its camera): it opens and no frame comes. Such reopens count against one budget,
    as failed opens do."""
    tables, video = clip_ts[:3 * 188], clip_ts[3 * 188:12 * 188]
    blank = tables + b"".join(video[i:i + 4] + bytes(184) for i in range(0, len(video), 188))
    with streamed(itertools.chain([clip_ts], itertools.repeat(blank))) as address:
        source, frames = read_all(f"{address}/live", fast=False, retries=3, backoff=0.01)
    assert source.error == f"{address}/live stopped delivering frames"
    assert 0 < source.read <= 75


# Reads every frame of the source its argument names, and says how it went.
READ_ALL = """if True:
    import json, sys
    from realtime.capture import FrameSource, SourceOptions
    source = FrameSource(SourceOptions(source=sys.argv[1], fast=True))
    frames = list(source.start())
    print(json.dumps({"frames": len(frames), "error": source.error}))
"""


def test_opencv_s_own_lines_stay_off_stderr(served: str, tmp_path: Path) -> None:
    """A video served over HTTP whose sound, in 2.5 ms packets, runs 12 s past its picture: OpenCV warns
    that it gave up looking for another video packet among thousands of audio ones. Read in a process
    whose environment leaves OpenCV's log levels unset (as a user's does), the warning stays off stderr;
    with OPENCV_LOG_LEVEL set, which keeps OpenCV's lines, the same read shows it."""
    ffmpeg("-i", str(CLIP), "-f", "lavfi", "-i", "sine=r=48000", "-map", "0:v", "-map", "1:a", "-t", "15",
           "-c:v", "copy", "-c:a", "libopus", "-frame_duration", "2.5", "-movflags", "+faststart",
           str(tmp_path / "long_sound.mp4"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    said = {}
    for level in (None, "WARNING"):
        run = subprocess.run([sys.executable, "-c", READ_ALL, served.replace("clip.mp4", "long_sound.mp4")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env=env if level is None else {**env, "OPENCV_LOG_LEVEL": level})
        assert run.returncode == 0, run.stderr[-2000:]
        assert json.loads(run.stdout) == {"frames": 75, "error": None}
        said[level] = run.stderr
    assert said[None] == ""
    assert "WARN" in said["WARNING"]  # the case does make OpenCV warn


@pytest.mark.parametrize("fast", [True, False])
def test_a_video_url_is_played_once_at_its_own_times(served: str, fast: bool) -> None:
    """Not taken for a live stream: it ends instead of being reopened, and paced, nothing is dropped."""
    source, frames = read_all(served, fast)
    assert source.is_video and source.error is None and source.dropped == 0
    assert [f.index for f in frames] == list(range(75))
    assert np.allclose([f.t for f in frames], np.arange(75) / 25, atol=1e-3)


def test_a_webm_without_a_length_served_over_http_is_played_once(served: str, tmp_path: Path) -> None:
    """A WebM written as a stream has no duration: its name, not its container, says it is a recording."""
    ffmpeg("-i", str(CLIP), "-an", "-c:v", "libvpx", "-b:v", "1M", "-f", "webm", "-live", "1",
           str(tmp_path / "stream.webm"))
    source, frames = read_all(served.replace("clip.mp4", "stream.webm"))
    assert source.is_video and source.error is None and source.duration == 0
    assert [f.index for f in frames] == list(range(75))


def test_a_file_url_is_a_video(tmp_path: Path) -> None:
    source, frames = read_all(CLIP.as_uri())
    assert source.is_video and len(frames) == 75


def test_a_file_named_like_a_camera_is_read_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(CLIP, tmp_path / "2024")
    monkeypatch.chdir(tmp_path)
    source, frames = read_all("2024")
    assert source.is_video and len(frames) == 75


def test_a_held_video_waits_and_then_goes_on_from_where_it_was() -> None:
    """The window's pause on a video: while held no frame is read (nor dropped), and once released the
    video is played on from the frame it had reached, at its own times."""
    source = FrameSource(SourceOptions(source=str(CLIP))).start()
    frames = source.frames
    first = [frames.get(timeout=10) for _ in range(10)]
    source.hold(True)
    at_hold = source.read
    assert source.waiting.wait(30)  # however loaded the machine, the reading thread gets to the hold
    read = source.read
    assert read - at_hold <= 1  # only a frame being paced when the hold came is still delivered
    # Waiting on the hold, the thread reads nothing until released, however long that is; watched for a
    # second, in which a fault that read on anyway would read this clip's 25 frames a second.
    time.sleep(1.0)
    assert source.waiting.is_set() and source.read == read
    source.hold(False)
    rest = list(source)
    assert [f.index for f in first + rest] == list(range(75)) and source.dropped == 0
    assert [round(f.t * 25, 3) for f in first + rest] == list(range(75))  # the file's own times


# Milliseconds from the first frame of a recording whose frames came unevenly, 15 to 70 ms apart: no rate
# fits them.
UNEVEN_MS = np.cumsum([0] + [15 + k * 37 % 56 for k in range(74)])


def webm_without_a_rate(path: Path) -> Path:
    """The clip as a WebM whose header gives no frame rate, its frames at UNEVEN_MS, as a recording made
    in a browser can be. Written with PyAV: FFmpeg's command line writes the rate of the video it reads."""
    import av

    with av.open(str(CLIP)) as clip, av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx")
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        stream.codec_context.framerate = fractions.Fraction(0, 1)  # none: no DefaultDuration is written
        for frame, ms in zip(clip.decode(video=0), UNEVEN_MS, strict=True):
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = int(ms), fractions.Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("video, reported, fps", [("GRID", 25.0, 25.0), ("NTSC", 30000 / 1001, 30000 / 1001),
                                                   ("slow motion", MAX_FPS, MAX_FPS),
                                                   ("WebM without a rate", 1000.0, 12.5)])
def test_a_rate_the_container_does_not_give_is_the_callers_fallback(video: str, reported: float, fps: float,
                                                                    tmp_path: Path) -> None:
    """Real files: the GRID clip (25 fps), one at NTSC's 29.97 and one at MAX_FPS (phones' slow motion) give
    their rates; a WebM whose header gives none reports its container's time base, 1000, which is above
    MAX_FPS, so it gets the fallback, which each caller chooses (a camera's usual 30; GRID's 25 for a clip
    to prepare)."""
    if video == "GRID":
        path = CLIP
    elif video == "WebM without a rate":
        path = webm_without_a_rate(tmp_path / "recorded.webm")
    else:
        path = tmp_path / "video.mp4"
        rate = ["-r", "30000/1001"] if video == "NTSC" else ["-vf", f"setpts=N/({MAX_FPS}*TB)", "-r", str(MAX_FPS)]
        ffmpeg("-i", str(CLIP), *rate, "-an", str(path))
    capture = Video(str(path))
    try:
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(reported)  # the case is the one it stands for
        assert capture_fps(capture, 12.5) == pytest.approx(fps)
    finally:
        capture.release()


def test_a_webm_without_a_rate_is_read_at_its_frames_own_times(tmp_path: Path) -> None:
    """Its container's rate (its time base) is not taken as filmed: the source takes a camera's usual rate,
    and each frame keeps the time it was written with."""
    source, frames = read_all(str(webm_without_a_rate(tmp_path / "recorded.webm")))
    assert source.fps == USUAL_FPS and source.error is None
    assert np.allclose([f.t for f in frames], UNEVEN_MS / 1000, atol=1e-3)


class NoRateCamera:
    """Stand-in for a camera (absent hardware) whose driver reports no frame rate: 0, or -1 for a property
    it does not support."""

    def __init__(self, fps: float):
        self.fps = fps

    def get(self, prop: int) -> float:
        assert prop == cv2.CAP_PROP_FPS
        return self.fps


@pytest.mark.parametrize("reported", [0.0, -1.0])
def test_a_camera_that_gives_no_rate_is_the_callers_fallback(reported: float) -> None:
    """No file gives these (the WebM above gives its time base): only a camera, so a stand-in gives them."""
    assert capture_fps(NoRateCamera(reported), 12.5) == 12.5


def test_the_reading_thread_releases_the_capture_it_read_from() -> None:
    """A video read to its end is released by the thread that read it, with no stop() from the consumer:
    never from under a read in progress. One stopped mid-video is released as its thread ends; one never
    started, by stop() itself."""
    ended = FrameSource(SourceOptions(source=str(CLIP), fast=True)).start()
    assert len(list(ended)) == 75  # to the end of the stream, then the thread ends on its own
    ended._thread.join(timeout=30)
    stopped = FrameSource(SourceOptions(source=str(CLIP))).start()
    assert stopped.frames.get(timeout=10) is not None
    stopped.stop()
    never_started = FrameSource(SourceOptions(source=str(CLIP)))
    never_started.stop()
    for source in (ended, stopped, never_started):
        assert not source._capture.isOpened()
