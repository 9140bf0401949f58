"""The mouth crop: one pure function shared by training and the live loop, so both see the same pixels.

The crop is placed from landmarks that do not move with speech (outer eye corners and the base of the
nose) and scaled by the eye-corner distance, measured in 3D so that turning the head does not zoom it.
Lip width is never used: it changes as the mouth opens.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import TypeGuard

import cv2
import numpy as np

RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263
SUBNASALE = 2
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIPS = LIPS_OUTER + LIPS_INNER
MOUTH_CORNERS = (LIPS.index(61), LIPS.index(291))  # where the mouth's corners are in a row of `LIPS`


def is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number: json reads NaN and Infinity, and true and false are ints to Python."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class CropSpec:
    """What the model reads: size in pixels, and where the crop sits on the face in eye-corner distances."""

    height: int = 50
    width: int = 100
    channels: int = 3
    face_width: float = 1.1  # crop width / 3D outer-eye-corner distance
    below_nose: float = 0.30  # crop centre below the subnasale, in eye-corner distances

    @classmethod
    def from_json(cls, text: str) -> CropSpec:
        """The settings a cache or a model stores, read by one rule for both, so that neither takes what
        the other refuses: a field left out keeps its default (settings from before it), one this version
        does not know is refused (it would cut other pixels than the model was taught on), and a bad value
        is a one-line error naming it."""
        try:
            values = json.loads(text)
        except (TypeError, ValueError):  # not JSON, or not text
            values = None
        if not isinstance(values, dict):
            raise ValueError(f"crop settings {text!r} are not a JSON object")
        shown = json.dumps(values)  # one line, however the stored text is laid out
        if unknown := sorted(set(values) - {f.name for f in fields(cls)}):
            raise ValueError(f"crop settings {shown} name {', '.join(unknown)}, which this version does not know")

        wants = {"height": (lambda v: type(v) is int and v > 0, "a size in pixels"),
                 "width": (lambda v: type(v) is int and v > 0, "a size in pixels"),
                 "channels": (lambda v: type(v) is int and v in (1, 3), "1 or 3"),
                 "face_width": (lambda v: is_number(v) and v > 0, "a finite width above 0"),
                 "below_nose": (is_number, "a finite distance")}
        for name, value in values.items():
            fits, wanted = wants[name]
            if not fits(value):
                raise ValueError(f"crop settings {shown} give {name} {json.dumps(value)}, not {wanted}")
        return cls(**values)


@dataclass(frozen=True)
class CropPose:
    """Where the crop sits in the frame: centre (px), width (px) and roll (radians)."""

    cx: float
    cy: float
    width: float
    angle: float

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.width, self.angle], dtype=np.float64)


def pose_from_landmarks(points: np.ndarray, spec: CropSpec) -> CropPose:
    """Crop pose from FaceMesh landmarks in pixels, shape (N, 3) with z in the same units as x."""
    right, left, nose = points[RIGHT_EYE_OUTER], points[LEFT_EYE_OUTER], points[SUBNASALE]
    across = left[:2] - right[:2]
    angle = math.atan2(across[1], across[0])
    eye_distance = float(np.linalg.norm(left - right))
    down = np.array([-math.sin(angle), math.cos(angle)])
    centre = nose[:2] + spec.below_nose * eye_distance * down
    return CropPose(float(centre[0]), float(centre[1]), spec.face_width * eye_distance, angle)


def frontality(points: np.ndarray) -> float:
    """How squarely the face meets the camera, 0..1: the outer eye corners' distance in the image over
    their distance in 3D, which a turned head shortens in the image only."""
    across = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
    return float(np.linalg.norm(across[:2]) / max(float(np.linalg.norm(across)), 1e-6))


def crop_matrix(pose: CropPose, spec: CropSpec) -> np.ndarray:
    """2x3 affine map from crop pixel coordinates to frame pixel coordinates."""
    s = pose.width / spec.width
    c, n = s * math.cos(pose.angle), s * math.sin(pose.angle)
    u0, v0 = (spec.width - 1) / 2, (spec.height - 1) / 2
    return np.array([[c, -n, pose.cx - c * u0 + n * v0],
                     [n, c, pose.cy - n * u0 - c * v0]], dtype=np.float64)


def crop_box(pose: CropPose, spec: CropSpec) -> np.ndarray:
    """The crop's four corners in the frame, (4, 2), clockwise from top-left."""
    m = crop_matrix(pose, spec)
    corners = np.array([[0, 0, 1], [spec.width - 1, 0, 1],
                        [spec.width - 1, spec.height - 1, 1], [0, spec.height - 1, 1]], dtype=np.float64)
    return corners @ m.T


def crop_mouth(frame_bgr: np.ndarray, pose: CropPose, spec: CropSpec) -> np.ndarray:
    """The model's input for one frame: (height, width, 3) uint8 RGB, or (height, width, 1) grey."""
    patch = cv2.warpAffine(frame_bgr, crop_matrix(pose, spec), (spec.width, spec.height),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    if spec.channels == 1:
        return cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)
