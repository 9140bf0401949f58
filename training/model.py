"""LipNet-family models in Keras 3: a 3D-convolution front end, bidirectional GRUs, CTC over characters.

The time axis is dynamic, so one set of weights reads windows of any length; each frame is flattened
with Reshape((-1, features)), which keeps it so.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from realtime.cli import Parser
from realtime.crop import CropSpec
from realtime.files import run_command
from realtime.grid import WORD_CLASSES
from realtime.spec import FRAMES, ModelSpec, ModelSpecError
from realtime.vocab import Vocabulary

FRONT_END = "front_end"  # name of the front end's output layer (per-frame features)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    filters: tuple[int, int, int]
    kernels: tuple[tuple[int, int, int], ...]
    gru_units: int
    gru_layers: int = 2
    dropout: float = 0.5
    spatial_dropout: float = 0.1
    bn_momentum: float = 0.99  # batch-norm moving averages: lower follows the weights in fewer steps


CONFIGS: dict[str, ModelConfig] = {
    # LipNet (Assael et al. 2016): 32/64/96 filters, two BiGRU(256).
    "lipnet": ModelConfig("lipnet", (32, 64, 96), ((3, 5, 5), (3, 5, 5), (3, 3, 3)), 256),
    # The bundled model: narrower convolutions and GRUs for CPU training and real-time CPU inference.
    # No dropout after its GRUs: with 0.5 its training CER stood as high as its validation CER, and
    # from the same weights 0.0 read 0.8 CER points better than 0.2 after 4 epochs (docs/experiments.md).
    "lite": ModelConfig("lite", (16, 32, 48), ((3, 5, 5), (3, 3, 3), (3, 3, 3)), 128, dropout=0.0),
    # LipNet's front-end width with lite's GRUs: measured 20 epochs slower to converge than lite (docs/experiments.md).
    "wide": ModelConfig("wide", (32, 64, 96), ((3, 5, 5), (3, 3, 3), (3, 3, 3)), 128, dropout=0.0),
    # For tests: trains in seconds, and its inference-mode statistics catch up within ~100 steps.
    "tiny": ModelConfig("tiny", (8, 16, 16), ((3, 5, 5), (3, 3, 3), (3, 3, 3)), 32, dropout=0.0,
                        spatial_dropout=0.0, bn_momentum=0.9),
}


def context_frames(config: ModelConfig) -> int:
    """Frames of temporal context each side that the front end reads (its receptive field's half-width)."""
    return sum(k[0] // 2 for k in config.kernels)


def build(config: ModelConfig, height: int, width: int, channels: int,
          vocabulary: Vocabulary = Vocabulary(), speech_dims: int = 0) -> keras.Model:
    """The training model: outputs `ctc` (log-probabilities over characters + blank) and training
    signals only: `words` (per-frame word-class logits), `chars` (the same log-probabilities, for a
    per-frame character loss) and, with `speech_dims`, `speech` (the sound predicted from the lips:
    training.speech)."""
    # Training pads a batch's shorter samples with zero frames (training.dataset.pad_batch), which the
    # runtime never does. Masking them out (batch norm, convolution edges, the backward GRUs' start) made the
    # recipe's first stage learn more slowly and gained nothing measured (docs/experiments.md): they are frames.
    frames = keras.Input((None, height, width, channels), name=FRAMES)
    x = frames
    for i, (filters, kernel) in enumerate(zip(config.filters, config.kernels)):
        strides = (1, 2, 2) if i == 0 else (1, 1, 1)
        x = layers.Conv3D(filters, kernel, strides=strides, padding="same", use_bias=False,
                          kernel_initializer="he_normal", name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum, name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        if config.spatial_dropout:
            x = layers.SpatialDropout3D(config.spatial_dropout, name=f"drop{i + 1}")(x)
        x = layers.MaxPooling3D((1, 2, 2), name=f"pool{i + 1}")(x)
    _, _, h, w, c = x.shape
    x = layers.Reshape((-1, h * w * c), name=FRONT_END)(x)
    for i in range(config.gru_layers):
        x = layers.Bidirectional(
            layers.GRU(config.gru_units, return_sequences=True, reset_after=True,
                       kernel_initializer="orthogonal", name=f"gru{i + 1}"),
            merge_mode="concat", name=f"bigru{i + 1}")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, name=f"gru_drop{i + 1}")(x)
    logits = layers.Dense(vocabulary.size, name="char_logits")(x)
    ctc = layers.Activation("log_softmax", name="ctc", dtype="float32")(logits)
    outputs = {"ctc": ctc, "words": layers.Dense(len(WORD_CLASSES), name="words")(x),
               "chars": layers.Identity(name="chars")(ctc)}
    if speech_dims:
        outputs["speech"] = layers.Dense(speech_dims, name="speech", dtype="float32")(x)
    return keras.Model(frames, outputs, name=config.name)


def inference_model(model: keras.Model) -> keras.Model:
    """The part the runtime uses: frames -> character log-probabilities. A training model (dict outputs,
    as last.keras holds) is cut to it; a model that is that part already (best.keras, models/) is itself."""
    if not isinstance(model.output, dict):
        return model
    return keras.Model(model.inputs, model.get_layer("ctc").output, name=model.name)


def forward(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The inference model's log-probabilities for a batch of normalised windows of any length, from one
    graph with a dynamic time axis: Keras' predict_on_batch traces a graph for each new length (a
    fine-tune's recordings are of many), and warns that it does."""
    import tensorflow as tf

    runtime = inference_model(model)
    step = tf.function(lambda x: runtime(x, training=False),
                       input_signature=[tf.TensorSpec((None, *runtime.input_shape[1:]), tf.float32)])
    return lambda x: step(tf.constant(x, tf.float32)).numpy()


def count_params(model: keras.Model) -> int:
    return int(sum(w.numpy().size for w in inference_model(model).weights if w.trainable))


SPEC_ENTRY = "lipstream.json"  # the ModelSpec, stored inside the .keras zip beside Keras' own files


def save(model: keras.Model, path: Path, spec: ModelSpec) -> None:
    """Save a .keras file that carries its ModelSpec, written to a temporary name and renamed: a failed
    save (a full disk, Ctrl-C) leaves the earlier file as it was, and no partial one beside it."""
    staged = stage(model, path, spec)
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def stage(model: keras.Model, path: Path, spec: ModelSpec) -> Path:
    """`save`'s first half: the whole file, written beside `path` under a temporary name, which it returns
    for the caller to rename (training renames an epoch's files once all are written); a failed write
    leaves no partial file."""
    tmp = Path(path).with_name(Path(path).stem + ".tmp.keras")
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(SPEC_ENTRY, json.dumps(spec.to_metadata(), indent=1))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def read_spec(path: Path) -> ModelSpec:
    if Path(path).is_dir():
        raise IsADirectoryError(f"{path} is a folder: name the .keras model in it")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model at {path}")
    try:
        with zipfile.ZipFile(path) as z:
            if SPEC_ENTRY not in z.namelist():
                raise ModelSpecError(f"{path} has no lipstream metadata: it was not saved by lipstream")
            return ModelSpec.from_metadata(json.loads(z.read(SPEC_ENTRY)), str(path))
    except zipfile.BadZipFile:
        raise ModelSpecError(f"{path} is not a .keras model (not a zip archive)") from None


def load(path: Path, compile: bool = False) -> tuple[keras.Model, ModelSpec]:
    """A lipstream .keras model and its spec; loaded with Keras' safe_mode (nothing is unpickled)."""
    spec = read_spec(path)
    if compile:
        import training.losses  # noqa: F401  (registers the losses a compiled checkpoint names)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True), spec
    except Exception as e:  # a damaged archive raises many types (KeyError, TypeError, ...): one line
        reason = (str(e).splitlines() or [""])[0][:120]
        raise ValueError(f"{path} is not a loadable Keras model ({type(e).__name__}: {reason})") from None


def macs_per_frame(model: keras.Model) -> int:
    """Multiply-adds the inference model spends per video frame (convolutions, GRUs, the output layer)."""
    total = 0
    for layer in inference_model(model).layers:
        if isinstance(layer, layers.Conv3D):
            _, _, h, w, c_out = layer.output.shape
            kt, kh, kw, c_in, _ = layer.kernel.shape
            total += h * w * c_out * kt * kh * kw * c_in
        elif isinstance(layer, layers.Bidirectional):
            cell = layer.forward_layer.cell
            n_in, units = cell.kernel.shape[0], cell.units
            total += 2 * 3 * units * (n_in + units)
        elif isinstance(layer, layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def main(argv: list[str] | None = None) -> None:
    """Print each configuration's size: `python -m training.model`."""
    Parser(prog="python -m training.model", description=main.__doc__).parse_args(argv)
    print(f"{'config':<8} {'parameters':>12} {'MACs/frame':>12}")
    crop = CropSpec()  # the crop prepare cuts unless told otherwise
    for config in CONFIGS.values():
        model = build(config, crop.height, crop.width, crop.channels)
        print(f"{config.name:<8} {count_params(model):>12,} {macs_per_frame(model):>12,}")


if __name__ == "__main__":
    sys.exit(run_command(main))
