from __future__ import annotations

import math
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.crop import LIPS, CropPose
from realtime.tracker import MouthTracker, TrackerOptions, TrackResult, tracked_video

FPS = 25.0


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def track(frames: list[np.ndarray], options: TrackerOptions | None = None) -> list[TrackResult]:
    with MouthTracker(options) as tracker:
        return [tracker.process(frame, i / FPS) for i, frame in enumerate(frames)]


def first_pose(frame: np.ndarray, options: TrackerOptions | None = None) -> CropPose:
    """The unsmoothed pose a fresh tracker gives for one frame."""
    (result,) = track([frame], options)
    assert result.reason == "ok"
    return result.pose


@pytest.fixture(scope="module")
def frames(grid_s1: Path) -> list[np.ndarray]:
    """All 75 frames of a real clip with a clean start."""
    frames = read_frames(grid_s1 / "video" / "bbaf2n.mp4")
    assert len(frames) == 75
    return frames


@pytest.fixture(scope="module")
def tracked(frames: list[np.ndarray]) -> list[TrackResult]:
    return track(frames)


def test_every_frame_of_a_real_clip_gets_a_crop(tracked: list[TrackResult]):
    for result in tracked:
        assert result.reason == "ok" and result.faces == 1
        assert result.crop is not None and result.crop.shape == (50, 100, 3) and result.crop.dtype == np.uint8
        assert result.box.shape == (4, 2) and result.lips.shape == (40, 2)
        assert 0.9 < result.quality <= 1.0  # GRID speakers face the camera
        # The lips lie inside the crop box (axis-aligned here: the head is upright).
        (x0, y0), (x1, y1) = result.box.min(axis=0), result.box.max(axis=0)
        assert (result.lips[:, 0] > x0).all() and (result.lips[:, 0] < x1).all()
        assert (result.lips[:, 1] > y0).all() and (result.lips[:, 1] < y1).all()


def test_crop_size_is_steady_within_a_clip(tracked: list[TrackResult]):
    width = np.array([r.pose.width for r in tracked])
    assert width.std() / width.mean() < 0.02


def test_crop_does_not_zoom_while_the_mouth_opens(tracked: list[TrackResult]):
    """Lip width changes with speech (about 6% in this clip); the crop width must not follow it."""
    opening = np.array([np.linalg.norm(r.lips[LIPS.index(13)] - r.lips[LIPS.index(14)]) for r in tracked])
    width = np.array([r.pose.width for r in tracked])
    order = np.argsort(opening)
    closed, wide_open = order[: len(order) // 4], order[-(len(order) // 4):]
    assert opening[wide_open].mean() > 3 * opening[closed].mean()  # the speaker does open the mouth
    assert width[wide_open].mean() / width[closed].mean() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("degrees", [10.0, -10.0])
def test_crop_follows_head_roll(frames: list[np.ndarray], degrees: float):
    frame = frames[0]
    upright = first_pose(frame)
    # cv2 turns positive angles counter-clockwise on screen; with y pointing down that is a negative roll.
    rotation = cv2.getRotationMatrix2D((upright.cx, upright.cy), degrees, 1.0)
    rolled = first_pose(cv2.warpAffine(frame, rotation, frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE))
    assert math.degrees(rolled.angle - upright.angle) == pytest.approx(-degrees, abs=2.0)
    assert math.hypot(rolled.cx - upright.cx, rolled.cy - upright.cy) < 3.0  # rotated about the crop centre
    assert rolled.width == pytest.approx(upright.width, rel=0.03)


def test_black_frame_without_a_face_before(frames: list[np.ndarray]):
    (result,) = track([np.zeros_like(frames[0])])
    assert (result.crop, result.pose, result.box, result.lips) == (None, None, None, None)
    assert (result.reason, result.quality, result.faces) == ("no_face", 0.0, 0)


def test_detection_drop_out_is_held_then_given_up(frames: list[np.ndarray]):
    """Within hold_seconds of the last detection a frame without a face keeps the last pose; later, none."""
    hold = TrackerOptions().hold_seconds
    black = np.zeros_like(frames[0])
    with MouthTracker() as tracker:
        for i, frame in enumerate(frames[:5]):
            seen = tracker.process(frame, i / FPS)
        assert seen.reason == "ok"
        t = seen.t
        for dt in (0.5 * hold, 0.9 * hold):
            held = tracker.process(black, t + dt)
            assert held.reason == "held" and held.pose == seen.pose and held.lips is None
            assert held.crop is not None and held.crop.shape == (50, 100, 3)
            np.testing.assert_allclose(held.box, seen.box)
        for dt in (1.5 * hold, 1.6 * hold, 10 * hold):
            gone = tracker.process(black, t + dt)
            assert gone.reason == "no_face" and gone.crop is None and gone.pose is None


def at_x(frame: np.ndarray, x: int, size: tuple[int, int]) -> np.ndarray:
    """`frame` on a black canvas of `size` (height, width), vertically centred, its left edge at `x`
    (cut off where it leaves)."""
    canvas = np.zeros((*size, 3), np.uint8)
    y, x0, x1 = (size[0] - frame.shape[0]) // 2, max(x, 0), min(x + frame.shape[1], size[1])
    canvas[y:y + frame.shape[0], x0:x1] = frame[:, x0 - x:x1 - x]
    return canvas


@pytest.mark.parametrize("shift, gap", [(240, True), (30, True), (240, False)],
                         ids=["far_after_gap", "near_after_gap", "sudden_jump"])
def test_new_face_starts_afresh(frames: list[np.ndarray], shift: int, gap: bool):
    """A face found after a gap, or far from the last one, is a new face: its crop is centred on it,
    not smoothed from where the last face was."""
    with MouthTracker() as tracker:
        before = [tracker.process(at_x(f, 0, (288, 600)), i / FPS) for i, f in enumerate(frames[:10])]
        t = before[-1].t
        if gap:
            t += 0.5
            assert tracker.process(np.zeros((288, 600, 3), np.uint8), t).reason == "no_face"
        # FaceMesh may need a frame to find the face again; the tracker holds the old pose meanwhile.
        for frame in frames[11:16]:
            t += 1 / FPS
            after = tracker.process(at_x(frame, shift, (288, 600)), t)
            if after.reason == "ok":
                break
    assert after.reason == "ok"
    expected = first_pose(at_x(frame, shift, (288, 600)))
    assert expected.cx - before[-1].pose.cx > 0.8 * shift
    assert (after.pose.cx, after.pose.cy) == pytest.approx((expected.cx, expected.cy), abs=1.0)
    assert after.pose.width == pytest.approx(expected.width, rel=0.01)


def two_faces(frame: np.ndarray, left_scale: float, right_scale: float) -> np.ndarray:
    """The face in `frame` twice, side by side, each scaled about its own mouth (so it stays in place);
    scale 0 leaves that side empty."""
    face = frame[:, 40:280]  # the speaker and some background
    mouth_x, mouth_y = 119, 222
    canvas = np.zeros((frame.shape[0], 2 * face.shape[1], 3), np.uint8)
    canvas[:] = frame[0, 0]
    for x0, scale in ((0, left_scale), (face.shape[1], right_scale)):
        if scale == 0:
            continue
        small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        x, y = round(x0 + mouth_x * (1 - scale)), round(mouth_y * (1 - scale))
        canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


@pytest.mark.parametrize("big_on_left", [True, False], ids=["big_left", "big_right"])
def test_locks_on_the_larger_face_and_stays_on_it(frames: list[np.ndarray], big_on_left: bool):
    """Starts on the larger face; keeps following it when it later becomes the smaller one."""
    scales = [(1.0, 0.5)] * 4 + [(1.0 - 0.1 * k, 0.5 + 0.1 * k) for k in range(1, 6)] + [(0.5, 1.0)] * 4
    if not big_on_left:
        scales = [(b, a) for a, b in scales]
    canvas = [two_faces(f, *s) for f, s in zip(frames, scales)]
    results = track(canvas)
    # Both faces are seen at the start and at the end, so both choices are real choices.
    assert results[0].faces == 2 and results[-1].faces == 2
    half = canvas[0].shape[1] / 2
    for result in results:
        assert result.reason == "ok"
        assert (result.pose.cx < half) == big_on_left


def test_keeps_the_followed_face_when_a_larger_one_appears(frames: list[np.ndarray]):
    """FaceMesh lists the larger newcomer first; the tracker stays on the face it was following."""
    scales = [(0, 0.5)] * 4 + [(1.0, 0.5)] * 6  # a speaker on the right, then someone closer on the left
    canvas = [two_faces(f, *s) for f, s in zip(frames, scales)]
    results = track(canvas)
    assert results[-1].faces == 2
    half = canvas[0].shape[1] / 2
    for result in results:
        assert result.reason == "ok" and result.pose.cx > half


def test_the_followed_face_gone_another_is_read_and_said_to_be(frames: list[np.ndarray]):
    """Two people; the one read leaves: the tracker reads the other, and says so on that frame only."""
    canvas = [two_faces(f, 1.0, 0.6) for f in frames[:5]] + [two_faces(f, 0, 0.6) for f in frames[5:12]]
    results = track(canvas)
    half = canvas[0].shape[1] / 2
    assert all(r.pose.cx < half for r in results[:5]) and results[-1].pose.cx > half
    assert sum(r.jumped for r in results) == 1


def test_the_followed_face_gone_for_a_blink_is_held_not_swapped_for_the_other(frames: list[np.ndarray]):
    """Two people; the one read is gone for 3 frames (a hand, a dropped frame), shorter than the hold: its
    pose is held, not swapped for the other person's, and it is read again when back. The tracker had
    jumped to the other face, restarting the stream, and stayed there: the nearer face when the first came back."""
    canvas = ([two_faces(f, 1.0, 0.6) for f in frames[:5]] + [two_faces(f, 0, 0.6) for f in frames[5:8]] +
              [two_faces(f, 1.0, 0.6) for f in frames[8:14]])
    results = track(canvas)
    half = canvas[0].shape[1] / 2
    assert [r.reason for r in results[5:8]] == ["held"] * 3
    assert all(r.pose.cx < half for r in results) and not any(r.jumped for r in results)
    assert results[-1].reason == "ok" and results[-1].faces == 2


def test_a_cut_starts_smoothing_afresh(frames: list[np.ndarray], grid_s1: Path):
    """A cut between two real clips, as in an edited video or the concatenated test stream: the crop on
    the new shot's first frame is where a fresh tracker puts it, not smoothed from the last shot's."""
    other = read_frames(grid_s1 / "video" / "bbaf5a.mp4")
    results = track(frames + other[:3])
    before, after = results[len(frames) - 1].pose, results[len(frames)].pose
    expected = first_pose(other[0])
    jump = math.hypot(expected.cx - before.cx, expected.cy - before.cy)
    assert jump > 5  # the speaker sat about ten pixels away in that take
    assert math.hypot(after.cx - expected.cx, after.cy - expected.cy) < 0.2 * jump
    assert after.width == pytest.approx(expected.width, rel=0.02)


def in_large_frame(frames: list[np.ndarray], scale: float, size: tuple[int, int] = (1080, 1920),
                   at: tuple[int, int] = (700, 400)) -> list[np.ndarray]:
    """The clip's frames scaled and pasted at (x, y) into a black frame of `size` (height, width): a
    speaker far from the camera of a lecture video."""
    out = []
    for frame in frames:
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else frame
        large = np.zeros((*size, 3), np.uint8)
        large[at[1]:at[1] + small.shape[0], at[0]:at[0] + small.shape[1]] = small
        out.append(large)
    return out


def test_a_face_far_away_in_a_1080p_frame_is_found_and_cut_from_the_same_pixels(
        frames: list[np.ndarray], tracked: list[TrackResult]) -> None:
    """GRID's face at its own size in a 1080p frame is too small for FaceMesh's detector: the
    full-range detector finds it, and the mouth crops are those of the clip itself."""
    far = track(in_large_frame(frames[:20], 1.0))
    assert all(r.reason == "ok" for r in far)
    for near, result in zip(tracked, far):
        assert result.pose.cx - 700 == pytest.approx(near.pose.cx, abs=1.5)
        assert result.pose.cy - 400 == pytest.approx(near.pose.cy, abs=1.5)
        assert np.abs(result.crop.astype(int) - near.crop).mean() < 4


def test_a_face_half_that_size_is_found_in_tiles_and_followed_as_it_moves(frames: list[np.ndarray],
                                                                          tracked: list[TrackResult]) -> None:
    """At half GRID's size (eye corners 30 pixels apart) the face is found only in tiles of the
    frame; then a view that moves with the face keeps FaceMesh tracking it across the frame."""
    moving = [in_large_frame([f], 0.5, at=(300 + 12 * i, 500 - 4 * i))[0] for i, f in enumerate(frames[:40])]
    far = track(moving)
    assert all(r.reason == "ok" for r in far)
    for i, (near, result) in enumerate(zip(tracked, far)):  # the lips (unsmoothed) where they were put
        assert result.lips.mean(axis=0) == pytest.approx(near.lips.mean(axis=0) / 2 + (300 + 12 * i, 500 - 4 * i),
                                                         abs=1.5)


def test_a_far_face_coming_closer_is_tracked_throughout(frames: list[np.ndarray],
                                                       tracked: list[TrackResult]) -> None:
    """From half GRID's size to three times it over 60 frames: read in a view while it is small, in the
    whole frame once it is large, and not lost where one hands over to the other."""
    scales = np.linspace(0.5, 3.0, 60)
    coming = [in_large_frame([f], s, at=(300, 50))[0] for f, s in zip(frames, scales)]
    for s, near, result in zip(scales, tracked, track(coming)):
        assert result.reason == "ok"
        # where the lips were put, within 3 pixels of the clip's own (1.5 in the frame at half size)
        assert (result.lips.mean(axis=0) - (300, 50)) / s == pytest.approx(near.lips.mean(axis=0), abs=3)


def test_grain_is_not_taken_for_cuts(frames: list[np.ndarray], tracked: list[TrackResult]) -> None:
    """Sensor noise of 25 grey levels changes the cut check's thumbnail by about 3 levels every frame, more
    than a cut between GRID clips may: the crop must stay as steady as on the clean clip, not restart its
    smoothing each frame."""
    rng = np.random.default_rng(0)
    grainy = track([np.clip(f + rng.normal(0, 25, f.shape), 0, 255).astype(np.uint8) for f in frames])

    def wobble(results: list[TrackResult]) -> float:  # mean frame-to-frame move of the crop, in crop widths
        return float(np.mean([abs(b.pose.cx - a.pose.cx) / b.pose.width for a, b in zip(results, results[1:])]))

    assert wobble(grainy) < 3 * wobble(tracked)  # restarting each frame: 6 times (the grain alone: 2)


def test_a_cut_shows_around_the_face_when_the_face_is_a_small_part_of_the_frame(frames: list[np.ndarray],
                                                                                grid_s1: Path) -> None:
    """The two takes pasted into one still 1280x720 frame: the frame as a whole hardly changes at the cut,
    the face's surroundings do, and smoothing starts afresh there as in the clips themselves."""
    other = read_frames(grid_s1 / "video" / "bbaf5a.mp4")[:3]
    pasted = in_large_frame(frames + other, 1.0, size=(720, 1280), at=(460, 216))
    results = track(pasted)
    expected = first_pose(pasted[len(frames)])
    before, after = results[len(frames) - 1].pose, results[len(frames)].pose
    jump = math.hypot(expected.cx - before.cx, expected.cy - before.cy)
    assert jump > 5
    assert math.hypot(after.cx - expected.cx, after.cy - expected.cy) < 0.2 * jump


@pytest.fixture(scope="module")
def near(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The speaker twice as large (his face 240 pixels wide), as a webcam sees a user at arm's length."""
    return [cv2.resize(f[:, 40:280], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for f in frames]


@pytest.fixture(scope="module")
def near_still(near: list[np.ndarray]) -> list[TrackResult]:
    """`near` tracked standing still at the left of a 1280x720 frame."""
    return track([at_x(f, 0, (720, 1280)) for f in near])


@pytest.mark.parametrize("speed", [40, 80, 160])
def test_a_face_moving_fast_is_cropped_where_it_is(near: list[np.ndarray], near_still: list[TrackResult],
                                                   speed: int) -> None:
    """A face swaying across a 1280x720 frame at up to 40 to 160 pixels a frame (a quarter of a crop
    width to one) is cropped where it is and at its size: FaceMesh's tracked landmarks lag such a move
    and read the face wider, and smoothing would lag further. It is one face throughout, never taken
    for another."""
    size, travel = (720, 1280), 1280 - near[0].shape[1]
    period = math.pi * travel / speed  # frames of one sway there and back, at `speed` in its middle
    xs = [round(travel / 2 * (1 - math.cos(2 * math.pi * i / period))) for i in range(len(near))]
    moved = track([at_x(f, x, size) for f, x in zip(near, xs)])
    for x, a, b in zip(xs, near_still, moved):
        assert b.reason == "ok" and not b.jumped
        assert (b.pose.cx - x, b.pose.cy) == pytest.approx((a.pose.cx, a.pose.cy), abs=0.1 * a.pose.width)
        assert b.pose.width == pytest.approx(a.pose.width, rel=0.05)


def test_a_shaking_camera_keeps_the_mouth_still_in_the_crop(near: list[np.ndarray]) -> None:
    """A camera held in the hand: the face shakes by whole pixels, up to 4 a frame each way. The crop
    moves with the image (its landmarks' own jitter still smoothed), so the mouth crops are nearly those
    of the steady camera: a mean 3.0 grey levels apart; 4.8 when the smoothed crop lagged the shake."""
    rng = np.random.default_rng(0)
    shake = np.cumsum(rng.integers(-4, 5, size=(len(near), 2)), axis=0)

    def at(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
        return at_x(np.pad(frame, ((72 + dy, 72 - dy), (0, 0), (0, 0))), 400 + dx, (720, 1280))

    assert np.abs(shake).max() < 72
    steady = track([at(f, 0, 0) for f in near])
    shaken = track([at(f, dx, dy) for f, (dx, dy) in zip(near, shake)])
    assert all(r.reason == "ok" for r in shaken)
    assert np.mean([np.abs(a.crop.astype(int) - b.crop).mean() for a, b in zip(steady, shaken)]) < 3.8


@pytest.mark.parametrize("speed", [8, 20])
def test_a_face_leaving_the_frame_is_read_while_whole_then_let_go(frames: list[np.ndarray],
                                                                 tracked: list[TrackResult], speed: int) -> None:
    """A face sliding out past the frame's edge: read right while its eyes and lips are well inside, then
    held and lost, never read with landmarks FaceMesh guessed for the part outside."""
    last = frames[-1]
    steps = range(120, 600, speed)  # from 120 pixels in to the edge
    results = track([at_x(last, x, (288, 600)) for x in steps])
    still = tracked[-1]
    read = [(x, r) for x, r in zip(steps, results) if r.reason == "ok"]
    assert len(read) >= len(steps) // 3
    for x, r in read:
        assert r.pose.width == pytest.approx(still.pose.width, rel=0.05)
        assert r.lips.mean(axis=0) == pytest.approx(still.lips.mean(axis=0) + (x, 0), abs=0.05 * still.pose.width)
    assert results[-1].reason == "no_face"


@pytest.mark.parametrize("limit", [None, 3, 0])
def test_a_video_tracked_is_stamped_by_frame_and_closed_once_read_or_left(grid_s1: Path,
                                                                          limit: int | None) -> None:
    """tracked_video, as prepare and the benchmark read a video: frame i at i / fps, and the video closed
    when its frames end, when the caller stops early, or when it reads none."""
    capture = cv2.VideoCapture(str(grid_s1 / "video" / "bbaf2n.mp4"))
    with tracked_video(capture, FPS, TrackerOptions()) as tracked:
        results = list(islice(tracked, limit))
    assert [r.t for r in results] == [i / FPS for i in range(75 if limit is None else limit)]
    assert all(r.reason == "ok" for r in results) and not capture.isOpened()
