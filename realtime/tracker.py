"""Mouth tracking over MediaPipe FaceMesh in tracking mode: frames in, stable mouth crops out."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType

import cv2
import numpy as np

from realtime.crop import LIPS, CropPose, CropSpec, crop_box, crop_mouth, frontality, pose_from_landmarks

# mediapipe imports TensorFlow and JAX when they are installed (seconds, and memory) though FaceMesh
# needs neither; they are hidden from it while it loads and visible again afterwards.
_HIDDEN_FROM_MEDIAPIPE = ("tensorflow", "jax", "jaxlib")


def load_face_mesh_module() -> ModuleType:
    """`mediapipe.python.solutions.face_mesh`, imported without TensorFlow or JAX."""
    if "mediapipe" in sys.modules:
        return importlib.import_module("mediapipe.python.solutions.face_mesh")
    hidden = [name for name in _HIDDEN_FROM_MEDIAPIPE if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail fast
    try:
        return importlib.import_module("mediapipe.python.solutions.face_mesh")
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
    faces: int = 0
    landmark_ms: float = 0.0  # time spent in FaceMesh, and in placing and cutting the crop
    crop_ms: float = 0.0


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


class MouthTracker:
    """Follows one face and returns the model's mouth crop for every frame.

    Several faces: locks on the largest and most central, then follows the one nearest its last
    position. The crop pose is smoothed over time and reset when a new face appears.
    """

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        with _quiet_native_stderr():
            face_mesh = load_face_mesh_module()
            self._mesh = face_mesh.FaceMesh(
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
        self._thumbnail: np.ndarray | None = None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "MouthTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        self._filter.reset()
        self._last = None
        self._last_seen = -math.inf
        self._thumbnail = None

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
        GRID); at the cuts between GRID clips by 2.5 to 29."""
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        thumbnail = cv2.resize(grey, (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._thumbnail = self._thumbnail, thumbnail
        return previous is not None and float(np.abs(thumbnail - previous).mean()) > self.options.cut_change

    def process(self, frame_bgr: np.ndarray, t: float) -> TrackResult:
        """Track one BGR frame captured at time `t` (seconds); never raises for a frame without a face."""
        started = time.perf_counter()
        h, w = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        if self._is_cut(frame_bgr):
            self._filter.reset()
        if self._quiet:
            with _quiet_native_stderr():
                found = self._mesh.process(rgb).multi_face_landmarks or []
            self._quiet = not found
        else:
            found = self._mesh.process(rgb).multi_face_landmarks or []
        landmarked = time.perf_counter()
        timing = {"landmark_ms": (landmarked - started) * 1e3}
        faces = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], dtype=np.float64) for f in found]
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
        raw = pose_from_landmarks(points, spec)
        if self._last is not None and math.hypot(raw.cx - self._last.cx, raw.cy - self._last.cy) > \
                self.options.new_face_jump * self._last.width:
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
                           crop_ms=(time.perf_counter() - landmarked) * 1e3)
