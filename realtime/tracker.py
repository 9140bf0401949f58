"""Mouth tracking over MediaPipe FaceMesh in tracking mode: frames in, stable mouth crops out."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import ModuleType

import cv2
import numpy as np

from realtime.crop import LIPS, CropPose, CropSpec, crop_box, crop_mouth, frontality, pose_from_landmarks

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


@contextlib.contextmanager
def _quiet_native_stderr():
    """MediaPipe's C++ start-up warnings go straight to file descriptor 2, before any log setting
    applies; they say nothing a user can act on, so they are muted while the graph starts."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class TrackerOptions:
    crop: CropSpec = field(default_factory=CropSpec)
    max_faces: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    hold_seconds: float = 0.2  # keep the last pose through a detection drop-out this short
    smoothing_cutoff_hz: float = 2.0  # one-euro filter: cutoff when the head is still
    smoothing_beta: float = 0.5  # one-euro filter: how fast the cutoff opens with motion (per eye distance/s)
    new_face_jump: float = 0.5  # a jump larger than this (in crop widths) is a new face: reset smoothing
    cut_change: float = 2.0  # a mean change of a small grey thumbnail larger than this is a cut: reset smoothing
    cut_over_usual: float = 4.0  # ... and larger than this many times its median over the last 25 frames
    small_face: float = 0.35  # a far face is read in a view until it is this share of the frame's shorter side
    # (FaceMesh's own detector finds GRID's face in a 1080p frame from about a quarter)
    view_faces: float = 4.0  # the view's side, in face widths
    search_seconds: float = 0.5  # how often the far-face detector looks while no face is found


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


View = tuple[int, int, int, int]  # x0, y0, x1, y1: the part of the frame FaceMesh is given


def view_around(box: np.ndarray, side: float, shape: tuple[int, int]) -> View:
    """A square of `side` pixels centred on the face box (x0, y0, x1, y1), moved inside the frame
    (`shape`: its height and width)."""
    return view_at((box[:2] + box[2:]) / 2 - side / 2, side, shape)


def view_at(corner: np.ndarray, side: float, shape: tuple[int, int]) -> View:
    """A square of `side` pixels with its top left corner at `corner` (x, y), moved inside the frame."""
    h, w = shape
    side = int(min(side, w, h))
    x0 = int(min(max(corner[0], 0), w - side))
    y0 = int(min(max(corner[1], 0), h - side))
    return x0, y0, x0 + side, y0 + side


def box_size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


class MouthTracker:
    """Follows one face and returns the model's mouth crop for every frame.

    Several faces: locks on the largest and most central, then follows the one nearest its last
    position. The crop pose is smoothed over time and reset when a new face appears.

    FaceMesh finds faces with a short-range detector that sees the whole frame shrunk to 128 pixels,
    so a face far away in a large frame (a lecture video; GRID's face in a 1080p frame) is never found.
    When FaceMesh finds none, MediaPipe's full-range detector looks (every `search_seconds`), and a
    small face is then read in a view around it, cut from the frame at its own resolution: the mouth
    crop is cut from the full frame as before, so the model sees the same pixels.
    """

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        with _quiet_native_stderr():
            self._mesh = load_solution("face_mesh").FaceMesh(
                static_image_mode=False,
                max_num_faces=self.options.max_faces,
                refine_landmarks=False,
                min_detection_confidence=self.options.min_detection_confidence,
                min_tracking_confidence=self.options.min_tracking_confidence,
            )
            self._mesh.process(np.zeros((48, 64, 3), np.uint8))  # waits for the graph's start-up, which logs
        self._quiet = True  # until the first face: the first landmarks start calculators that log too
        self._filter = _OneEuro(self.options.smoothing_cutoff_hz, self.options.smoothing_beta, np.ones(4))
        self._last: CropPose | None = None
        self._last_seen = -math.inf
        self._grey: np.ndarray | None = None  # the last frame, grey: the cut check compares with it
        self._changes: deque[float] = deque(maxlen=25)  # the thumbnail's recent changes: a shot's usual
        self._view: View | None = None  # None: the whole frame
        self._place_in_view: np.ndarray | None = None  # where the followed face sits in the view
        self._looked_at: View | None = None  # where FaceMesh looked last (its tracking state is there)
        self._finder = None  # the full-range face detector, made the first time it is needed
        self._searched = -math.inf

    def close(self) -> None:
        self._mesh.close()
        if self._finder is not None:
            self._finder.close()

    def __enter__(self) -> "MouthTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        self._filter.reset()
        self._last = None
        self._last_seen = -math.inf
        self._grey = None
        self._view = None
        self._place_in_view = None

    def _landmarks(self, rgb: np.ndarray, view: View | None) -> list[np.ndarray]:
        """FaceMesh's faces in `view` of the frame, in frame pixels."""
        self._looked_at = view
        x0, y0, x1, y1 = view or (0, 0, rgb.shape[1], rgb.shape[0])
        image = np.ascontiguousarray(rgb[y0:y1, x0:x1]) if view else rgb
        if self._quiet:
            with _quiet_native_stderr():
                found = self._mesh.process(image).multi_face_landmarks or []
            self._quiet = not found
        else:
            found = self._mesh.process(image).multi_face_landmarks or []
        w, h = x1 - x0, y1 - y0
        return [np.array([(x0 + p.x * w, y0 + p.y * h, p.z * w) for p in f.landmark], dtype=np.float64)
                for f in found]

    def _far_face(self, rgb: np.ndarray) -> np.ndarray | None:
        """The most confident face the full-range detector finds, as a box in frame pixels. It sees its
        input shrunk to 192 pixels, so a frame of 720 lines or more is also searched in overlapping
        tiles half its height (a 720p or 1080p frame: 18 tiles, about 50 ms on this machine's CPU)."""
        if self._finder is None:
            with _quiet_native_stderr():
                self._finder = load_solution("face_detection").FaceDetection(
                    model_selection=1, min_detection_confidence=self.options.min_detection_confidence)
                self._finder.process(np.zeros((48, 64, 3), np.uint8))  # its start-up logs too
        h, w = rgb.shape[:2]
        found = self._detect(rgb, 0, 0)
        side = min(h, w) // 2
        if not found and side >= 360:
            found = [face for y in range(0, h - side + 1, side // 2) for x in range(0, w - side + 1, side // 2)
                     for face in self._detect(np.ascontiguousarray(rgb[y:y + side, x:x + side]), x, y)]
        return max(found, key=lambda face: face[0])[1] if found else None

    def _detect(self, image: np.ndarray, x0: int, y0: int) -> list[tuple[float, np.ndarray]]:
        """The full-range detector's faces in `image`, cut from the frame at (x0, y0): (score, box)."""
        h, w = image.shape[:2]
        faces = []
        for detection in self._finder.process(image).detections or []:
            box = detection.location_data.relative_bounding_box
            faces.append((detection.score[0], np.array([x0 + box.xmin * w, y0 + box.ymin * h,
                                                        x0 + (box.xmin + box.width) * w,
                                                        y0 + (box.ymin + box.height) * h])))
        return faces

    def _next_view(self, points: np.ndarray, view: View | None, shape: tuple[int, int]) -> View | None:
        """Where FaceMesh looks next frame. A face it found in the whole frame it tracks there. A face
        found only in a view (small and far away) it can track only in a view, and only if the face stays
        put in what it sees: the view moves with the face, and keeps its size while the face's stays
        within a factor of two. A face grown to `small_face` of the frame is tracked in the whole frame."""
        if view is None:
            return None
        box = np.concatenate([points[:, :2].min(axis=0), points[:, :2].max(axis=0)])
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

    def _choose(self, faces: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
        spec = self.options.crop
        poses = [pose_from_landmarks(f, spec) for f in faces]
        if self._last is not None:
            last = self._last
            return faces[int(np.argmin([math.hypot(p.cx - last.cx, p.cy - last.cy) for p in poses]))]
        h, w = shape
        diagonal = math.hypot(w, h)
        score = [p.width * (1 - math.hypot(p.cx - w / 2, p.cy - h / 2) / diagonal) for p in poses]
        return faces[int(np.argmax(score))]

    def _is_cut(self, frame_bgr: np.ndarray) -> bool:
        """A cut in an edited video: the smoothed pose would take about five frames to follow the face
        to its new place (README: Streaming captions), so smoothing starts afresh. Within a shot a
        64x48 grey thumbnail changes by a mean 0.3 grey levels a frame (1.1 at the 99.9th percentile,
        GRID); at the cuts between GRID clips by 2.5 to 29. A grainy video changes more in every frame
        (sensor noise of 20 grey levels: 2.5), so a cut must also stand out from the shot's usual change.
        The thumbnail is of the face's surroundings (a view four crops wide): a cut shows there even when
        the face is a small part of a still frame, whose whole hardly changes."""
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        previous, self._grey = self._grey, grey
        if previous is None or previous.shape != grey.shape:
            return False
        last = self._last  # the face's surroundings, where a cut shows even when the face is a small part
        x0, y0, x1, y1 = (0, 0, grey.shape[1], grey.shape[0]) if last is None else \
            view_around(np.array([last.cx, last.cy, last.cx, last.cy]), self.options.view_faces * last.width, grey.shape)

        def thumbnail(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image[y0:y1, x0:x1], (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32)

        change = float(np.abs(thumbnail(grey) - thumbnail(previous)).mean())
        usual = float(np.median(self._changes)) if self._changes else 0.0
        self._changes.append(change)
        return change > max(self.options.cut_change, self.options.cut_over_usual * usual)

    def process(self, frame_bgr: np.ndarray, t: float) -> TrackResult:
        """Track one BGR frame captured at time `t` (seconds); never raises for a frame without a face."""
        started = time.perf_counter()
        h, w = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        if self._is_cut(frame_bgr):
            self._filter.reset()
        view, previous = self._view, self._looked_at
        faces = self._landmarks(rgb, view)
        if not faces and view != previous:  # FaceMesh tracked the face in another view's coordinates and
            faces = self._landmarks(rgb, view)  # lost it; a second look detects it afresh
        if not faces and view is not None:  # the face left the view: look at the whole frame
            view = None
            faces = self._landmarks(rgb, None)
        if not faces and not 0 <= t - self._searched < self.options.search_seconds:  # (a new stream's t restarts)
            self._searched = t
            far = self._far_face(rgb)
            if far is not None:
                view, self._place_in_view = view_around(far, box_size(far) * self.options.view_faces, (h, w)), None
                faces = self._landmarks(rgb, view)
        landmarked = time.perf_counter()
        timing = {"landmark_ms": (landmarked - started) * 1e3}
        spec = self.options.crop
        if not faces:
            if self._last is not None and t - self._last_seen <= self.options.hold_seconds:
                pose = self._last
                crop = crop_mouth(frame_bgr, pose, spec)
                return TrackResult(t, crop, pose, crop_box(pose, spec), None, 0.0, "held", 0, **timing,
                                   crop_ms=(time.perf_counter() - landmarked) * 1e3)
            self.reset()
            return TrackResult(t, None, None, None, None, 0.0, "no_face", 0, **timing)

        points = self._choose(faces, (h, w))
        self._view = self._next_view(points, view, (h, w))
        raw = pose_from_landmarks(points, spec)
        jumped = self._last is not None and math.hypot(raw.cx - self._last.cx, raw.cy - self._last.cy) > \
            self.options.new_face_jump * self._last.width
        if jumped:
            self._filter.reset()
        # Smooth centre and width relative to the crop width, so the filter does not depend on resolution.
        unit = raw.width
        self._filter.scale = np.array([unit, unit, unit, 1.0])
        cx, cy, width, angle = self._filter(raw.as_array(), t)
        pose = CropPose(float(cx), float(cy), float(width), float(angle))
        self._last, self._last_seen = pose, t
        crop = crop_mouth(frame_bgr, pose, spec)
        return TrackResult(t, crop, pose, crop_box(pose, spec), points[list(LIPS), :2].astype(np.float32),
                           frontality(points), "ok", len(faces), **timing,
                           crop_ms=(time.perf_counter() - landmarked) * 1e3, jumped=jumped)
