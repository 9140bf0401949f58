"""Mouth tracking over MediaPipe: FaceMesh in tracking mode, with a static-mode FaceMesh to find a fast-moving
face afresh and the full-range FaceDetection to find a far one; frames in, stable mouth crops out."""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

import cv2
import numpy as np

from realtime.capture import Video, video_images
from realtime.crop import (LEFT_EYE_OUTER, LIPS, RIGHT_EYE_OUTER, CropPose, CropSpec, crop_box, crop_mouth, frontality,
                           pose_from_landmarks)
from realtime.files import native_stderr

if TYPE_CHECKING:  # types only: mediapipe is loaded by load_solution, without TensorFlow or JAX
    from mediapipe.python.solutions.face_detection import FaceDetection
    from mediapipe.python.solutions.face_mesh import FaceMesh

# mediapipe imports TensorFlow and JAX when they are installed (seconds, and memory) though FaceMesh
# needs neither; they are hidden from it while it loads and visible again afterwards.
_HIDDEN_FROM_MEDIAPIPE = ("tensorflow", "jax", "jaxlib")


def load_solution(name: str) -> ModuleType:
    """`mediapipe.python.solutions.<name>`, imported without TensorFlow or JAX."""
    module = f"mediapipe.python.solutions.{name}"
    if "mediapipe" in sys.modules:
        return importlib.import_module(module)
    hidden = [name for name in _HIDDEN_FROM_MEDIAPIPE if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail fast
    try:
        return importlib.import_module(module)
    finally:
        for name in hidden:
            sys.modules.pop(name, None)


@dataclass(frozen=True)
class TrackerOptions:
    crop: CropSpec = field(default_factory=CropSpec)
    max_faces: int = 2  # FaceMesh finds a second person too, so the tracker chooses whom to read (_choose)
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    hold_seconds: float = 0.2  # keep the last pose through a detection drop-out this short
    smoothing_cutoff_hz: float = 2.0  # one-euro filter: cutoff when the head is still
    smoothing_beta: float = 4.0  # one-euro filter: how fast the cutoff opens with motion (per crop width/s)
    new_face_jump: float = 0.5  # a jump larger than this (in crop widths) is a new face: reset smoothing
    cut_change: float = 2.0  # a mean change of a small grey thumbnail larger than this is a cut: reset smoothing
    cut_over_usual: float = 4.0  # ... and larger than this many times its median over the last 25 frames
    small_face: float = 0.35  # a far face is read in a view until it is this share of the frame's shorter side
    # (FaceMesh's own detector finds GRID's face in a 1080p frame from about a quarter)
    view_faces: float = 4.0  # the view's side, in face widths (the cut detector's view: in crop widths)
    edge_margin: float = 0.25  # a face is read with its eyes and lips this far inside the frame (eye distances)
    shake_floor: float = 0.02  # the image moving less than this (crop widths) in a frame is not followed
    fast_move: float = 0.08  # a face moved more than this (crop widths, or log size) in a frame is found afresh
    search_seconds: float = 0.5  # how often the far-face detector also looks in tiles while no face is found


@dataclass(frozen=True)
class TrackResult:
    """One frame's outcome. `crop` is None when there is no face; `reason` says why."""

    t: float
    crop: np.ndarray | None
    pose: CropPose | None
    box: np.ndarray | None  # (4, 2) crop corners in the frame
    lips: np.ndarray | None  # (40, 2) lip landmarks in the frame, outer contour first
    quality: float  # 0..1: how frontal the face is (realtime.crop.frontality); 0 without a face
    reason: str  # "ok", "held" (detection dropped, last pose kept), "no_face"
    faces: int = 0  # faces FaceMesh found in what it looked at (a far face's view holds only that face)
    landmark_ms: float = 0.0  # time spent in FaceMesh, and in placing and cutting the crop
    crop_ms: float = 0.0
    jumped: bool = False  # the face read is elsewhere than a frame ago: another person, or a cut


class _OneEuro:
    """One-euro filter (Casiez et al. 2012) over a vector: steady when still, quick when moving."""

    def __init__(self, cutoff: float, beta: float, scale: np.ndarray):
        self.cutoff, self.beta, self.scale = cutoff, beta, scale
        self.value: np.ndarray | None = None
        self.speed = np.zeros_like(scale)
        self.t = 0.0

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        if self.value is None:
            self.value, self.t = x.copy(), t
            return self.value
        dt = max(t - self.t, 1e-3)
        speed = (x - self.value) / dt
        self.speed += self._alpha(1.0, dt) * (speed - self.speed)
        cutoff = self.cutoff + self.beta * np.abs(self.speed) / self.scale
        self.value = self.value + self._alpha(cutoff, dt) * (x - self.value)
        self.t = t
        return self.value

    def reset(self) -> None:
        self.value = None
        self.speed[:] = 0

    def move(self, shift: np.ndarray) -> None:
        """Move the first components' smoothed value by `shift`: what they measure moved that far."""
        if self.value is not None:
            self.value[:len(shift)] += shift

    def place(self, x: np.ndarray) -> np.ndarray:
        """After a call: set the first components to `x`, unsmoothed (they moved too fast for smoothing
        to follow)."""
        assert self.value is not None
        self.value[:len(x)] = x
        self.speed[:len(x)] = 0
        return self.value


View = tuple[int, int, int, int]  # x0, y0, x1, y1: the part of the frame FaceMesh is given


def view_around(box: np.ndarray, side: float, shape: tuple[int, int]) -> View:
    """A square of `side` pixels centred on the face box (x0, y0, x1, y1), moved inside the frame
    (`shape`: its height and width); no larger than the frame's shorter side, and then still centred."""
    side = min(side, *shape)
    return view_at((box[:2] + box[2:]) / 2 - side / 2, side, shape)


def view_at(corner: np.ndarray, side: float, shape: tuple[int, int]) -> View:
    """A square of `side` pixels with its top left corner at `corner` (x, y), moved inside the frame."""
    h, w = shape
    side = int(min(side, w, h))
    x0 = int(min(max(corner[0], 0), w - side))
    y0 = int(min(max(corner[1], 0), h - side))
    return x0, y0, x0 + side, y0 + side


def _moved_fast(before: CropPose, now: CropPose, limit: float) -> bool:
    """Whether the pose moved or changed size by more than `limit` crop widths in one frame."""
    return math.hypot(now.cx - before.cx, now.cy - before.cy) > limit * before.width or \
        abs(math.log(now.width / before.width)) > limit


def in_frame(points: np.ndarray, shape: tuple[int, int], margin: float) -> bool:
    """Whether a face's outer eye corners and lips lie in the frame (`shape`: its height and width), at
    least `margin` eye distances from its edges. The crop is scaled from the eyes and placed by the
    lips, and FaceMesh guesses the landmarks of a face partly out of the frame: a face with a cheek
    out of a 720p frame read its closed mouth as open eight times as wide as it was."""
    h, w = shape
    inset = margin * float(np.linalg.norm(points[LEFT_EYE_OUTER, :2] - points[RIGHT_EYE_OUTER, :2]))
    points = points[[RIGHT_EYE_OUTER, LEFT_EYE_OUTER, *LIPS], :2]
    return bool(np.all((points >= inset) & (points < np.array([w, h]) - inset)))


def face_box(points: np.ndarray) -> np.ndarray:
    """The box (x0, y0, x1, y1) around a face's landmarks."""
    return np.concatenate([points[:, :2].min(axis=0), points[:, :2].max(axis=0)])


def _apart(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two boxes (x0, y0, x1, y1) do not overlap."""
    return bool(a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] or b[1] >= a[3])


def box_size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


class MouthTracker:
    """Follows one face and returns the model's mouth crop for every frame.

    Several faces: locks on the largest and most central, then follows the one nearest its last
    position. The crop pose is smoothed over time and reset when a new face appears.

    FaceMesh finds faces with a short-range detector that sees the whole frame shrunk to 128 pixels,
    so a face far away in a large frame (a lecture video; GRID's face in a 1080p frame) is never found.
    When FaceMesh finds none, MediaPipe's full-range detector looks (in the whole frame every frame,
    in tiles every `search_seconds`), and a small face is then read in a view around it, cut from the
    frame at its own resolution: the mouth crop is cut from the full frame as before, so the model
    sees the same pixels.

    A face that moves fast (a head turned quickly, a face sliding in or out of the frame) is looked
    at again without tracking: FaceMesh's tracked landmarks lag behind it and stretch the mouth.
    """

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self._mesh = self._new_mesh(static=False)
        self._detecting_mesh: FaceMesh | None = None  # FaceMesh without tracking, made the first time it is needed
        self._starting = {self._mesh}  # meshes yet to find a face
        self._filter = _OneEuro(self.options.smoothing_cutoff_hz, self.options.smoothing_beta, np.ones(4))
        self._last: CropPose | None = None
        self._others: list[CropPose] = []  # the faces not followed, in the last frame the followed one was read in
        self._raw: CropPose | None = None  # the last frame's pose before smoothing (None: it had no face)
        self._step = np.zeros(2)  # how far the face's centre moved from the frame before the last to the last
        self._box: np.ndarray | None = None  # the last frame's face box (None: it had no face)
        self._last_seen = -math.inf
        self._grey: np.ndarray | None = None  # the last frame, grey: the cut check and the shift compare with it
        self._changes: deque[float] = deque(maxlen=25)  # the thumbnail's recent changes: a shot's usual
        self._view: View | None = None  # None: the whole frame
        self._place_in_view: np.ndarray | None = None  # where the followed face sits in the view
        self._looked_at: View | None = None  # where FaceMesh looked last (its tracking state is there)
        self._finder: FaceDetection | None = None  # the full-range face detector, made the first time it is needed
        self._searched = -math.inf

    def _new_mesh(self, static: bool) -> FaceMesh:
        with native_stderr():
            mesh = load_solution("face_mesh").FaceMesh(
                static_image_mode=static,
                max_num_faces=self.options.max_faces,
                refine_landmarks=False,
                min_detection_confidence=self.options.min_detection_confidence,
                min_tracking_confidence=self.options.min_tracking_confidence,
            )
            mesh.process(np.zeros((48, 64, 3), np.uint8))  # waits for the graph's start-up, which logs
        return mesh

    def close(self) -> None:
        for solution in (self._mesh, self._detecting_mesh, self._finder):
            if solution is not None:
                solution.close()

    def __enter__(self) -> "MouthTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        self._filter.reset()
        self._last, self._others = None, []
        self._raw, self._step, self._box = None, np.zeros(2), None
        self._last_seen = -math.inf
        self._grey = None
        self._view = None
        self._place_in_view = None

    def _landmarks(self, rgb: np.ndarray, view: View | None, afresh: bool = False) -> list[np.ndarray]:
        """FaceMesh's faces in `view` of the frame, in frame pixels. `afresh`: found by detection, not
        from where they were last frame: after a fast move the tracked landmarks lag and stretch the
        face (a face moved 80 pixels read 40 % wider)."""
        if afresh:
            if self._detecting_mesh is None:
                self._detecting_mesh = self._new_mesh(static=True)
                self._starting.add(self._detecting_mesh)
            mesh = self._detecting_mesh
        else:
            mesh, self._looked_at = self._mesh, view
        x0, y0, x1, y1 = view or (0, 0, rgb.shape[1], rgb.shape[0])
        image = np.ascontiguousarray(rgb[y0:y1, x0:x1]) if view else rgb
        if mesh in self._starting:  # until its first face: the first landmarks start calculators that log
            with native_stderr():
                found = mesh.process(image).multi_face_landmarks or []
            if found:
                self._starting.discard(mesh)
        else:
            found = mesh.process(image).multi_face_landmarks or []
        w, h = x1 - x0, y1 - y0
        return [np.array([(x0 + p.x * w, y0 + p.y * h, p.z * w) for p in f.landmark], dtype=np.float64)
                for f in found]

    def _far_face(self, rgb: np.ndarray, tiles: bool) -> np.ndarray | None:
        """The most confident face the full-range detector finds, as a box in frame pixels. It sees its
        input shrunk to 192 pixels, so with `tiles` a frame of 720 lines or more is also searched in
        overlapping tiles half its height (a 720p or 1080p frame: 18 tiles, about 50 ms on this
        machine's CPU)."""
        h, w = rgb.shape[:2]
        found = self._detect(rgb, 0, 0)
        side = min(h, w) // 2
        if not found and tiles and side >= 360:
            found = [face for y in range(0, h - side + 1, side // 2) for x in range(0, w - side + 1, side // 2)
                     for face in self._detect(np.ascontiguousarray(rgb[y:y + side, x:x + side]), x, y)]
        return max(found, key=lambda face: face[0])[1] if found else None

    def _detector(self) -> FaceDetection:
        """The full-range face detector, made the first time it is needed."""
        if self._finder is None:
            with native_stderr():
                self._finder = load_solution("face_detection").FaceDetection(
                    model_selection=1, min_detection_confidence=self.options.min_detection_confidence)
                self._finder.process(np.zeros((48, 64, 3), np.uint8))  # its start-up logs too
        return self._finder

    def _detect(self, image: np.ndarray, x0: int, y0: int) -> list[tuple[float, np.ndarray]]:
        """The full-range detector's faces in `image`, cut from the frame at (x0, y0): (score, box)."""
        h, w = image.shape[:2]
        faces = []
        for detection in self._detector().process(image).detections or []:
            box = detection.location_data.relative_bounding_box
            faces.append((detection.score[0], np.array([x0 + box.xmin * w, y0 + box.ymin * h,
                                                        x0 + (box.xmin + box.width) * w,
                                                        y0 + (box.ymin + box.height) * h])))
        return faces

    def _around(self, box: np.ndarray, shape: tuple[int, int]) -> View:
        """A view around a face's box to find it afresh in: not the whole frame, which FaceMesh's
        detector sees shrunk and where it may miss a small face."""
        return view_around(box, box_size(box) * self.options.view_faces, shape)

    def _expected_box(self) -> np.ndarray | None:
        """Where the face's box would be had it moved on as in its last step (None: no face last frame).
        A face moving fast is looked for there, not where FaceMesh's lagging landmarks put it."""
        return None if self._box is None else self._box + np.tile(self._step, 2)

    def _next_view(self, points: np.ndarray, view: View | None, shape: tuple[int, int]) -> View | None:
        """Where FaceMesh looks next frame. A face it found in the whole frame it tracks there. A face
        found only in a view (small and far away) it can track only in a view, and only if the face stays
        put in what it sees: the view moves with the face, and keeps its size while the face's stays
        within a factor of two. A face grown to `small_face` of the frame is tracked in the whole frame."""
        if view is None:
            return None
        box = face_box(points)
        size = box_size(box)
        if size >= self.options.small_face * min(shape):
            return None
        side, wanted = view[2] - view[0], size * self.options.view_faces
        if not wanted / 2 <= side <= wanted * 2:  # FaceMesh must find the face afresh at its new scale
            self._place_in_view = None
            return view_around(box, wanted, shape)
        centre = (box[:2] + box[2:]) / 2
        if self._place_in_view is None:  # a new view: the face stays where it was found in it
            self._place_in_view = centre - view[:2]
        return view_at(centre - self._place_in_view, side, shape)

    def _choose(self, faces: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray | None:
        """The face to follow, of those in the frame; None if there is none."""
        faces = [f for f in faces if in_frame(f, shape, self.options.edge_margin)]
        if not faces:
            return None
        spec = self.options.crop
        poses = [pose_from_landmarks(f, spec) for f in faces]
        if self._last is not None:
            last = self._last
            return faces[int(np.argmin([math.hypot(p.cx - last.cx, p.cy - last.cy) for p in poses]))]
        h, w = shape
        diagonal = math.hypot(w, h)
        score = [p.width * (1 - math.hypot(p.cx - w / 2, p.cy - h / 2) / diagonal) for p in poses]
        return faces[int(np.argmax(score))]

    def _is_other(self, raw: CropPose) -> bool:
        """Whether a face is one of the others the followed one was last read beside, where it was then."""
        return any(not _moved_fast(other, raw, self.options.new_face_jump) for other in self._others)

    def _is_cut(self, previous: np.ndarray | None, grey: np.ndarray) -> bool:
        """A cut in an edited video: the smoothed pose would take about five frames to follow the face
        to its new place (docs/streaming.md: Cuts), so smoothing starts afresh. Within a shot a
        64x48 grey thumbnail changes by a mean 0.3 grey levels a frame (1.1 at the 99.9th percentile,
        GRID); at the cuts between GRID clips by 2.5 to 29. A grainy video changes more in every frame
        (sensor noise of 20 grey levels: 2.5), so a cut must also stand out from the shot's usual change.
        The thumbnail is of the face's surroundings (a view four crops wide): a cut shows there even when
        the face is a small part of a still frame, whose whole hardly changes."""
        if previous is None or previous.shape != grey.shape:
            return False
        last = self._last  # the face's surroundings, where a cut shows even when the face is a small part
        x0, y0, x1, y1 = (0, 0, grey.shape[1], grey.shape[0]) if last is None else \
            view_around(np.array([last.cx, last.cy, last.cx, last.cy]), self.options.view_faces * last.width,
                        (grey.shape[0], grey.shape[1]))

        def thumbnail(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image[y0:y1, x0:x1], (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32)

        change = float(np.abs(thumbnail(grey) - thumbnail(previous)).mean())
        usual = float(np.median(self._changes)) if self._changes else 0.0
        self._changes.append(change)
        return change > max(self.options.cut_change, self.options.cut_over_usual * usual)

    def _content_shift(self, previous: np.ndarray | None, grey: np.ndarray) -> np.ndarray:
        """How far the upper face (brow to nose; not the mouth, which moves as it speaks) moved in the
        image since the last frame, in pixels, by phase correlation; below `shake_floor` crop widths,
        nothing. A camera held in the hand shakes the face by whole pixels every frame, and the
        smoothed crop, which lagged behind, shook the mouth in the crop: moved with the image, the
        crop stays on the mouth while its landmarks' own jitter is still smoothed."""
        none = np.zeros(2)
        if previous is None or self._box is None or self._last is None or previous.shape != grey.shape:
            return none
        x0, y0, x1, y1 = self._box
        y1 = y0 + 0.55 * (y1 - y0)
        x0, y0 = max(int(x0), 0), max(int(y0), 0)
        x1, y1 = min(int(x1), grey.shape[1]), min(int(y1), grey.shape[0])
        if x1 - x0 < 16 or y1 - y0 < 16:
            return none
        scale = min(1.0, 128 / (x1 - x0))

        def part(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                              ).astype(np.float64)

        a, b = part(previous), part(grey)
        (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F))
        shift = np.array([dx, dy]) / scale
        return shift if math.hypot(*shift) > self.options.shake_floor * self._last.width else none

    def process(self, frame_bgr: np.ndarray, t: float) -> TrackResult:
        """Track one BGR frame captured at time `t` (seconds); never raises for a frame without a face."""
        started = time.perf_counter()
        h, w = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        previous_grey, self._grey = self._grey, grey
        if self._is_cut(previous_grey, grey):
            self._filter.reset()
        else:
            self._filter.move(self._content_shift(previous_grey, grey))
        view, previous = self._view, self._looked_at
        faces = self._landmarks(rgb, view)
        if not faces and view != previous:  # FaceMesh tracked the face in another view's coordinates and
            faces = self._landmarks(rgb, view)  # lost it; a second look detects it afresh
        fresh = False  # the faces were found afresh, not tracked
        expected = self._expected_box()
        if not faces and expected is not None:  # lost where it was a frame ago: a fast move can outrun
            faces = self._landmarks(rgb, self._around(expected, (h, w)), afresh=True)  # FaceMesh's tracking
            fresh = bool(faces)
        if not faces and view is not None:  # the face left the view: look at the whole frame
            view = None
            faces = self._landmarks(rgb, None)
        if not faces:
            tiles = not 0 <= t - self._searched < self.options.search_seconds  # (a new stream's t restarts)
            if tiles:
                self._searched = t
            far = self._far_face(rgb, tiles)
            if far is not None:
                view, self._place_in_view = self._around(far, (h, w)), None
                faces = self._landmarks(rgb, view)
        spec = self.options.crop
        points = self._choose(faces, (h, w))
        # other people: faces apart from the one chosen (FaceMesh may also give a stale second mesh of a face
        # that moves fast, over it), before a fast move re-reads `points` below
        unchosen = [] if points is None else [f for f in faces if _apart(face_box(f), face_box(points))]
        raw = None if points is None else pose_from_landmarks(points, spec)
        if raw is not None and self._is_other(raw) and t - self._last_seen <= self.options.hold_seconds:
            points = raw = None  # the face followed is gone for a blink, not swapped for the person beside it
        before = self._raw or self._last  # after a drop-out, the pose held through it
        # a face that moves fast, or did a frame ago (FaceMesh's tracking, left behind, may move little)
        fast = raw is not None and before is not None and (
            _moved_fast(before, raw, self.options.fast_move) or
            math.hypot(*self._step) > self.options.fast_move * before.width)
        if fast and not fresh and points is not None:
            # FaceMesh's tracked landmarks lag a fast move and stretch the face: it is looked for afresh where it
            # was heading, then around them, else held as a drop-out
            tracked, points = points, None
            for box in (expected, face_box(tracked)):
                if points is None and box is not None:
                    points = self._choose(self._landmarks(rgb, self._around(box, (h, w)), afresh=True), (h, w))
            raw = None if points is None else pose_from_landmarks(points, spec)
        landmarked = time.perf_counter()
        landmark_ms = (landmarked - started) * 1e3
        if points is None or raw is None:  # the one is None where the other is
            self._raw, self._step, self._box = None, np.zeros(2), None
            if self._last is not None and t - self._last_seen <= self.options.hold_seconds:
                pose = self._last
                crop = crop_mouth(frame_bgr, pose, spec)
                return TrackResult(t, crop, pose, crop_box(pose, spec), None, 0.0, "held", 0, landmark_ms,
                                   crop_ms=(time.perf_counter() - landmarked) * 1e3)
            self.reset()
            return TrackResult(t, None, None, None, None, 0.0, "no_face", 0, landmark_ms)

        self._view = self._next_view(points, view, (h, w))
        # a face far from where it was and from where its motion would have taken it is another face
        # (or a cut); a face that keeps sliding fast is not
        jumped = self._last is not None and all(
            math.hypot(raw.cx - self._last.cx - dx, raw.cy - self._last.cy - dy) >
            self.options.new_face_jump * self._last.width for dx, dy in (self._step, (0.0, 0.0)))
        self._step = np.zeros(2) if self._raw is None else np.array([raw.cx - self._raw.cx, raw.cy - self._raw.cy])
        self._raw, self._box = raw, face_box(points)
        if jumped:
            self._filter.reset()
        # Smooth centre and width relative to the crop width, so the filter does not depend on resolution.
        unit = raw.width
        self._filter.scale = np.array([unit, unit, unit, 1.0])
        cx, cy, width, angle = self._filter(raw.as_array(), t)
        if fast:  # a fast-moving face is followed where it is read, not smoothed behind it
            cx, cy, width, angle = self._filter.place(raw.as_array()[:2])
        pose = CropPose(float(cx), float(cy), float(width), float(angle))
        self._last, self._last_seen = pose, t
        self._others = [pose_from_landmarks(f, spec) for f in unchosen]
        crop = crop_mouth(frame_bgr, pose, spec)
        return TrackResult(t, crop, pose, crop_box(pose, spec), points[list(LIPS), :2].astype(np.float32),
                           frontality(points), "ok", len(faces), landmark_ms,
                           crop_ms=(time.perf_counter() - landmarked) * 1e3, jumped=jumped)


def lip_landmarks(results: Iterable[TrackResult]) -> np.ndarray:
    """(T, 40, 2) lip landmarks of tracked frames, NaN in a frame that has none (held, or without a face)."""
    missing = np.full((len(LIPS), 2), np.nan, np.float32)
    return np.stack([missing if r.lips is None else r.lips for r in results])


def track_frames(tracker: MouthTracker, images: Iterable[np.ndarray], fps: float) -> Iterator[TrackResult]:
    """One video's frames tracked in order, each stamped by its index at the `fps` it was filmed at: frames
    without a face count too, as the tracker's hold, smoothing and search are timed in the video's seconds."""
    return (tracker.process(image, index / fps) for index, image in enumerate(images))


@contextlib.contextmanager
def tracked_video(capture: Video, fps: float, options: TrackerOptions) -> Iterator[Iterator[TrackResult]]:
    """Every frame of an opened video through track_frames, with a fresh tracker, for the block's length;
    the capture is released as the block ends, however far its frames were read."""
    try:
        with MouthTracker(options) as tracker:
            yield track_frames(tracker, video_images(capture), fps)
    finally:
        capture.release()
