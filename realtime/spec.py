"""What a model needs to be fed and read: the one source of configuration, stored in the model itself.

Training writes a ModelSpec into the `.keras` file and the export into ONNX `metadata_props`; the
runtime reads it back and takes the crop, frame rate and the decoders' vocabulary from it, and refuses
a normalisation other than the one it applies.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from realtime.crop import CropSpec
from realtime.grid import GRID_FPS
from realtime.vocab import Vocabulary

NORMALISATION = "per_frame_standardise"
_PREFIX = "lipstream."
# Keys the export adds beside the spec's own, in each of its three files:
EXPORT_ID = _PREFIX + "export"  # the digest of the weights they were made from
FORM = _PREFIX + "form"  # which of them a file is: full, step or back

# The exported graphs' tensor names, which export/ writes and the runtime feeds and reads (logp: the first output).
FRAMES = "frames"  # the full model's input: normalised crops (batch, time, H, W, C)
FEATURES = "features"  # the front end's per-frame features: the full model's second output, the back end's input
LOGP = "logp"  # per-frame log-probabilities over the vocabulary
STEP, FRAME, STATE = "step", "frame", "state"  # the step model's inputs: frame index, one frame, state0, state1…
STD_FLOOR = 0.255  # added to a frame's standard deviation (of 0-255 pixel values), so that a flat frame stays finite
FRAMES_READ = ("mouth crops of the crop's size, RGB (grey with channels 1), turned level with the eyes, face_width "
               "outer-eye-corner distances wide and centred below_nose of them below the base of the nose "
               "(realtime/crop.py), fps frames a second; each frame standardised over height, width and channels "
               f"together, (x - mean) / (std + {STD_FLOOR}) on 0-255 pixel values ({NORMALISATION})")
LOGP_READ = "per-frame log-softmax over the charset's characters, then the blank"
# For a reader of one ONNX file alone: what each of the export's three graphs (FORM) takes and gives.
GRAPH_IO = {
    "full": (f"{FRAMES}: float32 (batch, time, height, width, channels), {FRAMES_READ}",
             f"{LOGP}: float32 (batch, time, classes), {LOGP_READ}; {FEATURES}: float32 (batch, time, F), the "
             "front end's per-frame features, the back part's input"),
    "step": (f"{STEP}: int64, the frame's index in the stream from 0; {FRAME}: float32 (1, 1, height, width, "
             f"channels), one frame as {FRAMES} holds them; {STATE}0..: each convolution's contributions of its two "
             "newest final inputs, zeros at the stream's start, then the next_state0.. the step before gave",
             f"{FEATURES}: float32 (1, L + 1, F), the front end's features at frames step - L .. step (L "
             "convolutions), the first final, the others as a window ending at this frame reads them; "
             f"next_{STATE}0..: the states for the next frame"),
    "back": (f"{FEATURES}: float32 (batch, time, F), the front end's per-frame features",
             f"{LOGP}: float32 (batch, time, classes), {LOGP_READ}"),
}
INPUT, OUTPUT = _PREFIX + "input", _PREFIX + "output"  # the keys GRAPH_IO's descriptions are written under


class ModelSpecError(ValueError):
    """A model that does not describe itself (missing or malformed lipstream metadata)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model reads and writes, as its metadata records it: the one source of the runtime's settings."""

    context: int  # frames of temporal context each side in the convolutional front end (its configuration's)
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    fps: float = GRID_FPS
    crop: CropSpec = field(default_factory=CropSpec)
    normalisation: str = NORMALISATION
    config: str = ""
    version: str = ""
    val_cer: float | None = None  # greedy, on the clips `validation` names, as training last measured them
    val_wer: float | None = None
    # The keys (speaker folder/clip name) of the clips the model's training run held out: evaluation's --split
    # goes by them wherever the model is copied or exported to (a renamed data folder matches none of them).
    validation: tuple[str, ...] = ()

    def to_metadata(self) -> dict[str, str]:
        """Flat string key/values, as ONNX metadata_props hold them."""
        values = {
            "charset": self.vocabulary.charset,
            "blank": str(self.vocabulary.blank),
            "fps": repr(self.fps),
            "crop": json.dumps(asdict(self.crop)),
            "normalisation": self.normalisation,
            "context": str(self.context),
            "config": self.config,
            "version": self.version,
            "val_cer": "" if self.val_cer is None else repr(self.val_cer),
            "val_wer": "" if self.val_wer is None else repr(self.val_wer),
            "validation": json.dumps(list(self.validation)),
        }
        return {_PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> "ModelSpec":
        values = {k[len(_PREFIX):]: v for k, v in metadata.items() if k.startswith(_PREFIX)}
        required = ("charset", "blank", "fps", "crop", "normalisation", "context")
        missing = [k for k in required if k not in values]
        if missing:
            raise ModelSpecError(f"{source} has no lipstream metadata ({', '.join(missing)} missing): "
                                 "export it with `python -m export`")
        try:
            vocabulary = Vocabulary(values["charset"])
            if int(values["blank"]) != vocabulary.blank:
                raise ModelSpecError(f"{source}: blank index {values['blank']} is not after the charset")
            crop = CropSpec.from_json(values["crop"])
            fps, context = float(values["fps"]), int(values["context"])
            if not 0 < fps <= 1000 or context < 0:  # NaN fails the first test too
                raise ValueError(f"fps {values['fps']!r} and context {values['context']!r} are not a video's")
            if values["normalisation"] != NORMALISATION:
                raise ModelSpecError(f"{source}: unknown normalisation {values['normalisation']!r}")
            return cls(
                vocabulary=vocabulary, fps=fps, crop=crop,
                normalisation=values["normalisation"], context=context, config=values.get("config", ""),
                version=values.get("version", ""),
                val_cer=float(values["val_cer"]) if values.get("val_cer") else None,
                val_wer=float(values["val_wer"]) if values.get("val_wer") else None,
                validation=_keys(values.get("validation") or "[]"),
            )
        except (ValueError, TypeError, KeyError) as e:
            if isinstance(e, ModelSpecError):
                raise
            raise ModelSpecError(f"{source}: malformed lipstream metadata ({e})") from None


def _keys(text: str) -> tuple[str, ...]:
    keys = json.loads(text)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("validation is not a list of clip names")
    return tuple(keys)


def normalise(crops: np.ndarray) -> np.ndarray:
    """uint8 crops (..., H, W, C) -> float32, each frame standardised to zero mean and unit variance.

    Per frame, so that a stream needs no statistics from frames it has not seen yet, and so that
    webcam exposure and contrast changes cancel out.
    """
    x = crops.astype(np.float32)
    axes = (-3, -2, -1)
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    return (x - mean) / (std + STD_FLOOR)
