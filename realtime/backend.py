"""The inference backend: ONNX Runtime sessions, and per-frame log-probabilities over a sliding window.

The backend only produces probabilities; what becomes a caption is the policy's business
(realtime.captions). Streaming keeps the convolutional front end's features of past frames, so a
new frame costs the front end on a few frames plus one pass of the recurrent back end over the window.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realtime.spec import (EXPORT_ID, FEATURES, FORM, FRAME, FRAMES, STATE, STEP, ModelSpec, ModelSpecError,
                           normalise)

if TYPE_CHECKING:
    import onnxruntime as ort

PROVIDERS = ("auto", "cuda", "cpu")
MOST_THREADS = 256  # ONNX Runtime reserves memory per thread: a mistyped count must not take the machine


def _bundled_model() -> Path:
    """The shipped model: installed beside this module by a wheel (realtime/models/), else in the
    checkout's models/ folder."""
    here = Path(__file__).resolve().parent
    installed = here / "models" / "lipstream-lite.onnx"
    return installed if installed.exists() else here.parent / "models" / installed.name


BUNDLED_MODEL = _bundled_model()


def find_model(path: Path) -> Path:
    """`path`; or, for a bare file name that is not in the current folder, the bundled model of that
    name (`--model lipstream-lite.int8.onnx` from any folder, in a checkout or an installed package)."""
    path = Path(path)
    if path.exists() or path.parent != Path("."):
        return path
    bundled = BUNDLED_MODEL.parent / path.name
    return bundled if bundled.is_file() else path


def model_path(text: str) -> Path:
    """An argparse type: a model's path, a bare name finding the bundled model of that name (find_model),
    as every command that reads a model takes it."""
    from realtime.cli import named_path

    return find_model(named_path(text))


def streaming_paths(path: Path) -> tuple[Path, Path]:
    """Where the streaming parts of `model.onnx` live: `model.step.onnx` (the front end, one frame at a
    time) and `model.back.onnx` (the recurrent back end)."""
    path = Path(path)
    return path.with_suffix(".step.onnx"), path.with_suffix(".back.onnx")


class ModelLoadError(Exception):
    """A missing, unreadable or non-lipstream model; the message is one line for the user."""


@dataclass(frozen=True)
class ProviderChoice:
    providers: tuple[str, ...]
    name: str  # "cuda" or "cpu"
    reason: str


def _session(path: Path, providers: list[str], threads: int, spin: bool = True) -> ort.InferenceSession:
    """`spin=False` for sessions run once per paced frame: ORT's idle workers would otherwise spin
    between frames (when it was measured: live CPU 126 % instead of 27 %, and a worse glass-to-caption
    p95). Whole-window reads keep spinning, which saves about a quarter of their time (docs/latency.md)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3  # no wall of provider errors: the choice is reported in one line
    return ort.InferenceSession(str(path), options, providers=providers)


def choose_provider(requested: str, probe: Path) -> ProviderChoice:
    """CUDA when a CUDA session can really be created on `probe`, else CPU, with the reason why."""
    import onnxruntime as ort

    if requested not in PROVIDERS:
        raise ValueError(f"unknown provider {requested!r} (choose from {', '.join(PROVIDERS)})")
    cpu = ProviderChoice(("CPUExecutionProvider",), "cpu", "")
    if requested == "cpu":
        return ProviderChoice(cpu.providers, "cpu", "CPU requested")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ProviderChoice(cpu.providers, "cpu", "this ONNX Runtime build has no CUDA provider")
    ort.set_default_logger_severity(4)  # the probe's failure is told in our words, not ONNX Runtime's
    try:
        session = _session(probe, ["CUDAExecutionProvider", "CPUExecutionProvider"], 0)
        active = session.get_providers()
    except Exception as e:  # a broken CUDA install raises many kinds of errors; all mean "use the CPU"
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        return ProviderChoice(cpu.providers, "cpu", f"CUDA session failed ({first_line[:80]})")
    finally:
        ort.set_default_logger_severity(2)  # its default (there is no getter to read it back)
    if "CUDAExecutionProvider" not in active:
        return ProviderChoice(cpu.providers, "cpu", "no usable CUDA device or libraries")
    return ProviderChoice(("CUDAExecutionProvider", "CPUExecutionProvider"), "cuda", "CUDA session created")


def unreadable_reason(error: Exception) -> str:
    """ONNX Runtime's reason a file would not load, in a few words: its message without the error code
    and the path before "failed:" ("Protobuf parsing failed.", "Unsupported model IR version: 11, max
    supported IR version: 10"), or the error's type when it says nothing."""
    text = " ".join(str(error).split())
    reason = (text.split("failed:", 1)[-1] if "failed:" in text
              else re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text))
    reason = reason.strip()
    return (reason[:200] + "…" if len(reason) > 200 else reason) or type(error).__name__


@dataclass(frozen=True)
class StreamingParts:
    """The sessions StreamingBackend runs: the front end a frame at a time (`step`), the full model again
    for a window's start (`per_frame`), and the recurrent back end (`back`)."""

    step: ort.InferenceSession
    per_frame: ort.InferenceSession
    back: ort.InferenceSession


class OnnxModel:
    """A lipstream ONNX model: the full form, and the streaming halves when they sit beside it."""

    def __init__(self, path: Path, provider: str = "auto", threads: int = 0):
        path = Path(path)
        if path.is_dir():
            raise ModelLoadError(f"{path} is a folder: name the .onnx model in it")
        if not path.is_file():
            raise ModelLoadError(f"no model at {path}")
        if path.suffix == ".keras":
            onnx = path.with_suffix(".onnx")
            beside = sorted(p for p in path.parent.glob("*.onnx") if "." not in p.stem)  # no part or variant
            make = f"python -m export --model {path} --out {onnx} --cache CACHE, CACHE being a cache cut with " \
                "the crop the model reads"
            hint = f"use --model {onnx}, its export beside it" if onnx.is_file() else \
                f"use --model {beside[0]} if that is its export (training.finetune writes one), or make one with " \
                f"{make}" if len(beside) == 1 else f"make it with {make}"
            raise ModelLoadError(f"{path} is a Keras model: the runtime reads its ONNX export; {hint}")
        try:
            meta = _session(path, ["CPUExecutionProvider"], 1).get_modelmeta().custom_metadata_map
        except Exception as e:  # ORT raises several types for a file that is not a model
            raise ModelLoadError(f"{path} is not a readable ONNX model ({unreadable_reason(e)})") from None
        if meta.get(FORM, "full") != "full":  # one of the streaming parts: a model of its own only in name
            full = path.with_suffix("").with_suffix(".onnx")
            raise ModelLoadError(f"{path} is the {meta[FORM]} part of a streaming export, not a model: name {full}")
        try:
            self.spec = ModelSpec.from_metadata(meta, str(path))
        except ModelSpecError as e:
            raise ModelLoadError(str(e)) from None
        self.path = path
        self.choice = choose_provider(provider, path)
        providers = list(self.choice.providers)
        self.full = _session(path, providers, threads)
        step, back = streaming_paths(path)
        self.export_id = meta.get(EXPORT_ID)  # the digest of the weights it was exported from
        step_part = self._part(step, {STEP, FRAME}, self.export_id, providers, threads)
        back_part = self._part(back, {FEATURES}, self.export_id, providers, threads)
        self._check_graph(step_part)
        # The full model again, for the streaming backend's reads once per paced frame (a window's start, a
        # short window): without spinning, as the parts run, since spinning workers would take the cores
        # between frames (right-context and local-agreement read it on every frame once the window slides).
        self.parts: StreamingParts | None = None
        if step_part is not None and back_part is not None and FEATURES in [o.name for o in self.full.get_outputs()]:
            self.parts = StreamingParts(step_part, _session(path, providers, threads, spin=False), back_part)

    def _check_graph(self, step: ort.InferenceSession | None) -> None:
        """The metadata's crop, classes and context against the graph's own shapes: a model whose
        metadata was edited or mixed up would otherwise load, then fail at the first face."""
        crop, classes = self.spec.crop, self.spec.vocabulary.size
        frames = next((i.shape for i in self.full.get_inputs() if i.name == FRAMES), None)
        if frames is None or list(frames[2:]) != [crop.height, crop.width, crop.channels]:
            raise ModelLoadError(f"{self.path} takes frames of shape {frames}, but its metadata says "
                                 f"{crop.height}x{crop.width}x{crop.channels} crops: re-export with python -m export")
        if isinstance(frames[1], int):  # live slides and grows windows, so no one length can be fixed
            raise ModelLoadError(f"{self.path} reads windows of {frames[1]} frames only, and lipstream reads "
                                 "windows of any length: re-export with python -m export, which leaves time free")
        if (read := self.full.get_outputs()[0].shape[-1]) != classes:
            raise ModelLoadError(f"{self.path} reads {read} classes, but its metadata's "
                                 f"charset makes {classes}: re-export with python -m export")
        if step is not None:
            features = next((o.shape for o in step.get_outputs() if o.name == FEATURES), [None, None])
            if features[1] != self.spec.context + 1:
                raise ModelLoadError(f"{streaming_paths(self.path)[0]} gives {features[1]} frames of features a step, "
                                     f"but the model's metadata says context {self.spec.context} (so "
                                     f"{self.spec.context + 1}): re-export with python -m export")

    @staticmethod
    def _part(path: Path, inputs: set[str], source: str | None, providers: list[str],
              threads: int) -> ort.InferenceSession | None:
        """A streaming part's session (None when absent): refused, in one line, when it is broken, was
        exported from other weights than the full model (`source`), or does not take the inputs its part
        takes (besides the step model's states)."""
        if not path.is_file():
            return None
        try:
            session = _session(path, providers, threads, spin=False)
        except Exception as e:  # as for the full model: ORT raises several types
            raise ModelLoadError(f"{path} is not a readable ONNX model ({unreadable_reason(e)})") from None
        if session.get_modelmeta().custom_metadata_map.get(EXPORT_ID) != source:
            raise ModelLoadError(f"{path} was exported from other weights than the model beside it: re-export "
                                 "with python -m export")
        if {i.name for i in session.get_inputs() if not i.name.startswith(STATE)} != inputs:
            raise ModelLoadError(f"{path} is not this model's streaming part: re-export with python -m export")
        return session

    def window_logp(self, crops: np.ndarray) -> np.ndarray:
        """Log-probabilities (T, classes) for uint8 crops (T, H, W, C): the full-window recompute."""
        return self.full.run(None, {FRAMES: normalise(crops)[None]})[0][0]

    def batch_logp(self, frames: np.ndarray) -> np.ndarray:
        """Log-probabilities for already normalised frames (B, T, H, W, C)."""
        return self.full.run(None, {FRAMES: frames})[0]


class StreamingBackend:
    """Per-frame log-probabilities over the last `window` frames, doing only the new work per frame.

    The front end's step model takes one frame and its per-layer state and returns the features of
    the last context + 1 frames: the oldest now final, the newer ones provisional (as the full window
    ending here computes them), replacing the provisional ones of the previous frame. The back end
    then reads the last `window` features.

    Once the window slides, its first `context` features have seen frames before the window, where
    the model, trained on windows, always saw zero padding. They are recomputed as the window's own
    start (the full model's front end over the window's first 2 x context frames; a window no longer
    than that is read whole by the full model), so every window reads exactly as the same frames read
    as one offline window: what the model was trained on.
    """

    def __init__(self, model: OnnxModel, window: int):
        if model.parts is None:
            missing = [p.name for p in streaming_paths(model.path) if not p.is_file()]
            if missing:  # most often a model copied without the two files its export wrote beside it
                raise ModelLoadError(f"{model.path} has no {' or '.join(missing)} beside it: copy the export's "
                                     "three files together, or re-export it with python -m export")
            raise ModelLoadError(f"{model.path} has no features output for streaming: re-export it with "
                                 "python -m export")
        self.model = model
        self.parts = model.parts
        self.window = window
        self.context = model.spec.context
        inputs = self.parts.step.get_inputs()
        self._state_names = [i.name for i in inputs if i.name.startswith(STATE)]
        self._state_shapes = [tuple(i.shape) for i in inputs if i.name.startswith(STATE)]
        self.features: deque[np.ndarray] = deque(maxlen=window)
        self.frames: deque[np.ndarray] = deque(maxlen=window)  # normalised, for the window's start
        self.reset()

    def reset(self) -> None:
        self.features.clear()
        self.frames.clear()
        self.states = self._zero_states()
        self.count = 0  # frames pushed since the last reset
        self._start: tuple[int, np.ndarray] | None = None  # (stream frame, features) of the last window start

    def _zero_states(self) -> list[np.ndarray]:
        return [np.zeros(s, np.float32) for s in self._state_shapes]

    def push(self, crop: np.ndarray) -> None:
        """Add one uint8 crop: one frame of front-end work."""
        frame = normalise(crop[None, None])
        feed = {STEP: np.array(self.count, np.int64), FRAME: frame, **dict(zip(self._state_names, self.states))}
        features, *self.states = self.parts.step.run(None, feed)
        self.frames.append(frame)
        for _ in range(min(self.context, self.count)):  # the previous frame's provisional features
            self.features.pop()
        for feature in features[0, -min(self.context + 1, self.count + 1):]:
            self.features.append(feature)
        self.count += 1

    def _window_start(self, first: int) -> np.ndarray:
        """The `context` features from index `first` on, as if the window began the stream there: the
        full model's front end over the 2 x context frames they read, in one run. Kept while the
        window's start stays put (the pause policy holds it for a whole phrase)."""
        frame = self.count - len(self.features) + first
        if self._start is None or self._start[0] != frame:
            frames = np.concatenate([self.frames[first + n] for n in range(2 * self.context)], axis=1)
            features = self.parts.per_frame.run([FEATURES], {FRAMES: frames})[0][0]
            self._start = (frame, features[:self.context])
        return self._start[1]

    def logp(self, first: int = 0) -> np.ndarray:
        """Log-probabilities (T, classes) of the window's frames from index `first` on, oldest first."""
        features = np.stack(list(self.features)[first:])
        if not (first == 0 and self.count <= self.window):  # not the stream's own start: recompute the window's
            if len(features) <= 2 * self.context:  # too short to hold a recomputed start: the full model
                frames = np.concatenate(list(self.frames)[first:], axis=1)
                return self.parts.per_frame.run(None, {FRAMES: frames})[0][0]  # reads it whole
            features[:self.context] = self._window_start(first)
        return self.parts.back.run(None, {FEATURES: features[None]})[0][0]
