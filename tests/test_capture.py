"""Frame capture on the videos users bring: phone rotation tags, variable frame rates, containers that
round their length up, a damaged packet, a video served over HTTP, a file named like a camera. Each is
made from a real GRID clip with FFmpeg."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from realtime.capture import FrameSource, SourceOptions
from tests.test_tracker import read_frames

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "grid" / "s1" / "video" / "bram2n.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def read_all(source: str, fast: bool = True) -> tuple[FrameSource, list]:
    """Every frame the source gives, up to 500 (a source replayed without end must fail, not hang)."""
    capture = FrameSource(SourceOptions(source=source, fast=fast)).start()
    try:
        return capture, list(itertools.islice(capture, 500))
    finally:
        capture.stop()


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


def test_variable_frame_rate_frames_carry_their_own_times(tmp_path: Path) -> None:
    """Every other frame dropped in the first 1.5 s: each frame keeps the time it was filmed at, not
    its place at the file's average rate."""
    kept = [n for n in range(75) if n >= 38 or n % 2 == 0]
    ffmpeg("-i", str(CLIP), "-vf", r"select='gte(n\,38)+not(mod(n\,2))'", "-vsync", "vfr", "-an",
           str(tmp_path / "vfr.mp4"))
    source, frames = read_all(str(tmp_path / "vfr.mp4"))
    assert source.error is None
    assert np.allclose([f.t for f in frames], np.array(kept) / 25, atol=1e-3)


@pytest.mark.parametrize("name, flags", [("clip.mkv", ()), ("fragmented.mp4", ("-movflags", "frag_keyframe+empty_moov"))])
def test_containers_that_round_their_length_up_end_cleanly(tmp_path: Path, name: str, flags: tuple[str, ...]) -> None:
    ffmpeg("-i", str(CLIP), "-c", "copy", *flags, str(tmp_path / name))
    source, frames = read_all(str(tmp_path / name))
    assert source.duration > 3.0  # the container says 77 frames of a 75-frame clip
    assert source.error is None and len(frames) == 75


def test_a_video_that_starts_after_its_sound_keeps_the_file_s_timeline(tmp_path: Path) -> None:
    """Its first frame is shown 2 s in (a player shows the sound's first 2 s over black): frames, and so
    captions and subtitle cues, carry the file's times, not the video stream's own."""
    late = tmp_path / "late.mp4"
    ffmpeg("-itsoffset", "2", "-i", str(CLIP), "-f", "lavfi", "-i", "anullsrc=r=16000", "-map", "0:v", "-map", "1:a",
           "-t", "5", "-c:v", "copy", "-c:a", "aac", str(late))
    source, frames = read_all(str(late))
    assert source.error is None and source.video_start == pytest.approx(2.0)
    assert np.allclose([f.t for f in frames], 2 + np.arange(75) / 25, atol=1e-3)


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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The clip on a local HTTP server, as a video on the web would be."""
    shutil.copy(CLIP, tmp_path / "clip.mp4")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    finally:
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("fast", [True, False])
def test_a_video_url_is_played_once_at_its_own_times(served: str, fast: bool) -> None:
    """Not taken for a live stream: it ends instead of being reopened, and paced, nothing is dropped."""
    source, frames = read_all(served, fast)
    assert source.is_video and source.error is None and source.dropped == 0
    assert [f.index for f in frames] == list(range(75))
    assert np.allclose([f.t for f in frames], np.arange(75) / 25, atol=1e-3)


def test_a_webm_without_a_length_served_over_http_is_played_once(served: str, tmp_path: Path) -> None:
    """A WebM written as a stream has no duration: its name, not its container, says it is a recording."""
    ffmpeg("-i", str(CLIP), "-an", "-c:v", "libvpx", "-b:v", "1M", "-f", "webm", "-live", "1", str(tmp_path / "stream.webm"))
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
