"""Reduced-precision variants of an exported model: int8 for CPUs, fp16 for GPUs.

Each variant is written as a family like the fp32 one (`NAME.int8.onnx`, `.int8.step.onnx`,
`.int8.back.onnx`), so the runtime streams with it the same way.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

from realtime.backend import streaming_paths


def family(path: Path, tag: str = "") -> tuple[Path, Path, Path]:
    """The full model and its streaming halves, for the fp32 model or a variant tagged e.g. int8."""
    full = Path(path).with_suffix(f".{tag}.onnx") if tag else Path(path)
    return (full, *streaming_paths(full))


def _copy_metadata(source: Path, target: Path) -> None:
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    proto.metadata_props.extend(onnx.load(str(source), load_external_data=False).metadata_props)
    onnx.save(proto, str(target))


def int8(path: Path, calibration: list[np.ndarray]) -> list[Path]:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on real clips (uint8 crops);
    the recurrent GRU ops stay in float (ONNX Runtime has no int8 GRU). Each graph is first optimised
    as ONNX Runtime's quantiser asks (its pre-processing, without the symbolic shape pass, which needs
    sympy and adds nothing to these fixed-rank graphs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from realtime.backend import OnnxModel, StreamingBackend
    from realtime.spec import FEATURES, FRAMES, normalise

    class Reader(CalibrationDataReader):
        def __init__(self, feeds: list[dict[str, np.ndarray]]):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    model = OnnxModel(path, "cpu")
    full_feeds, step_feeds, back_feeds = [], [], []
    for clip in calibration:
        full_feeds.append({FRAMES: normalise(clip)[None]})
        stream = StreamingBackend(model, window=len(clip))
        for crop in clip:
            step_feeds.append(stream.step_feed(crop))
            stream.push(crop)
        back_feeds.append({FEATURES: np.stack(stream.features)[None]})
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for source, target, feeds in zip(family(path), family(path, "int8"), (full_feeds, step_feeds, back_feeds)):
            optimised = Path(scratch) / source.name
            quant_pre_process(str(source), str(optimised), skip_symbolic_shape=True)
            quantize_static(str(optimised), str(target), Reader(feeds), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
            _copy_metadata(source, target)
            written.append(target)
    return written


def _cast_to_float16(model: onnx.ModelProto) -> None:
    """The converter leaves Cast(to=float) nodes inside the graph (the step model's bool masks) while
    typing their outputs float16, which ONNX Runtime refuses to load: make them cast to float16."""
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Cast" and not outputs.intersection(node.output):
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16


def fp16(path: Path) -> list[Path]:
    """Weights and arithmetic in float16, inputs and outputs kept float32 (for CUDA)."""
    from onnxconverter_common.float16 import convert_float_to_float16

    written = []
    for source, target in zip(family(path), family(path, "fp16")):
        with warnings.catch_warnings():  # it warns for every weight too small for fp16; they become 0
            warnings.simplefilter("ignore", UserWarning)
            converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        _cast_to_float16(converted)
        onnx.save(converted, str(target))
        written.append(target)
    return written
