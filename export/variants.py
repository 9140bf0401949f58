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
import onnx.utils
from onnx import numpy_helper

from realtime.backend import streaming_paths
from realtime.spec import FEATURES, LOGP


def family(path: Path, tag: str = "") -> tuple[Path, Path, Path]:
    """The full model and its streaming halves, for the fp32 model or a variant tagged e.g. int8."""
    full = Path(path).with_suffix(f".{tag}.onnx") if tag else Path(path)
    return (full, *streaming_paths(full))


def _copy_metadata(source: Path, target: Path) -> None:
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    proto.metadata_props.extend(onnx.load(str(source), load_external_data=False).metadata_props)
    onnx.save(proto, str(target))


def _rounded_as(step: onnx.ModelProto, full: onnx.ModelProto) -> None:
    """Make the float step model round what the quantised full model's convolution of the same layer
    rounds, with its scales: the input (a QuantizeLinear/DequantizeLinear pair) and the weights (stored
    rounded). The step's convolution yields the layer's three temporal taps side by side (output channel
    t * C + c), each a slice of the full kernel, whose channel c has one scale over all three; the taps'
    sum stays in float, as the full model's convolution sums them before rounding its output."""
    made_by = {o: n for n in full.graph.node for o in n.output}
    constant = {i.name: numpy_helper.to_array(i) for i in full.graph.initializer}
    weights = {i.name: i for i in step.graph.initializer}
    layers = [n for n in full.graph.node if n.op_type == "Conv"]
    convolutions = [n for n in step.graph.node if n.op_type == "Conv"]
    for i, (node, layer) in enumerate(zip(convolutions, layers, strict=True)):
        rounding = made_by[layer.input[0]].input[1:]  # the layer input's scale and zero point
        rounded = f"conv{i}_rounded_input"
        step.graph.initializer.extend(numpy_helper.from_array(constant[name], f"{rounded}_{kind}")
                                      for name, kind in zip(rounding, ("scale", "zero_point")))
        at = list(step.graph.node).index(node)
        for op, source, target in (("QuantizeLinear", node.input[0], f"{rounded}_q"),
                                   ("DequantizeLinear", f"{rounded}_q", rounded)):
            step.graph.node.insert(at, onnx.helper.make_node(op, [source, f"{rounded}_scale", f"{rounded}_zero_point"],
                                                             [target]))
            at += 1
        node.input[0] = rounded
        scale, zero = (np.tile(constant[name], 3)[:, None, None, None] for name in made_by[layer.input[1]].input[1:])
        w = numpy_helper.to_array(weights[node.input[1]])
        w = (np.clip(np.rint(w / scale) + zero, -128, 127) - zero) * scale
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), node.input[1]))


def _back_end(full: onnx.ModelProto, back: onnx.ModelProto) -> onnx.ModelProto:
    """The quantised full model's back end, from its front end's features (before they are rounded to
    int8, which it does) to the log-probabilities, taking the float back end's input."""
    made_by = {o: n for n in full.graph.node for o in n.output}
    name = made_by[FEATURES].input[0]  # the features output is an Identity of the rounded features
    while made_by[name].op_type in ("QuantizeLinear", "DequantizeLinear"):
        name = made_by[name].input[0]
    typed = onnx.ModelProto()  # the Extractor asks for the type of its new input
    typed.CopyFrom(full)
    typed.graph.value_info.append(onnx.helper.make_value_info(name, back.graph.input[0].type))
    extracted = onnx.utils.Extractor(typed).extract_model([name], [LOGP])
    extracted.graph.input[0].name = FEATURES
    extracted.graph.node.insert(0, onnx.helper.make_node("Identity", [FEATURES], [name]))
    return extracted


def int8(path: Path, calibration: list[np.ndarray]) -> list[Path]:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on real clips (uint8 crops). The
    graph is first optimised as ONNX Runtime's quantiser asks (its pre-processing, without the symbolic
    shape pass, which needs sympy and adds nothing to these fixed-rank graphs). What stays in float: the
    recurrent GRU ops (ONNX Runtime has no int8 GRU), and the character Dense and log-softmax (one small
    product a frame, whose logits rounded to int8 steps of 0.13 tied letters). Weights take 7 bits, as
    ONNX Runtime advises for CPUs without VNNI: on AVX2 its int8 convolution saturates pairs of 8-bit
    products, and the features strayed from the graph's own arithmetic by up to ten rounding steps (the
    bundled model read a word more than fp32 on its validation clips, and now reads as fp32 does).

    The streaming parts round what the full model rounds, where and as it rounds it, so that they stream
    as it reads a window (quantised on their own, they rounded other tensors with other ranges, and
    streamed up to 0.36 apart in a probability): the back end is the full model's own, from its features
    on; the step model is the float one with the full model's rounding at its convolutions (_rounded_as),
    and costs a frame what the float one does."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from realtime.spec import FRAMES, normalise

    class Reader(CalibrationDataReader):
        def __init__(self, feeds: list[dict[str, np.ndarray]]):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    source, targets = family(path), family(path, "int8")
    with tempfile.TemporaryDirectory() as scratch:
        optimised = Path(scratch) / source[0].name
        quant_pre_process(str(source[0]), str(optimised), skip_symbolic_shape=True)
        quantize_static(str(optimised), str(targets[0]), Reader([{FRAMES: normalise(c)[None]} for c in calibration]),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, reduce_range=True,
                        nodes_to_exclude=[n.name for n in onnx.load(str(optimised)).graph.node
                                          if n.op_type in ("MatMul", "Add", "LogSoftmax")])
    full = onnx.load(str(targets[0]))
    step = onnx.load(str(source[1]))
    _rounded_as(step, full)
    onnx.save(step, str(targets[1]))
    onnx.save(_back_end(full, onnx.load(str(source[2]))), str(targets[2]))
    for s, t in zip(source, targets):
        _copy_metadata(s, t)
    return list(targets)


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
