"""Keras -> ONNX: the convolutional front end through tf2onnx (in the forms of export.front_end), the
recurrent back end as native ONNX GRU ops, the two composed into the full model; and for streaming,
the front end's per-frame step beside the back end. Each carries the ModelSpec in its metadata."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import onnx
import onnx.compose

from export import OPSET
from export.front_end import step_function, window_function
from export.onnx_gru import back_end
from realtime.backend import streaming_paths
from realtime.files import native_stderr
from realtime.spec import EXPORT_ID, FEATURES, FORM, FRAMES, GRAPH_IO, INPUT, LOGP, OUTPUT, ModelSpec
from training.model import FRONT_END

if TYPE_CHECKING:
    from export.front_end import TracedFunction


@dataclass(frozen=True)
class Exported:
    """The full model, and the streaming runtime's two parts: the front end's step and the back end."""

    full: onnx.ModelProto
    step: onnx.ModelProto
    back: onnx.ModelProto


def _rename(proto: onnx.ModelProto, old: str, new: str) -> None:
    for node in proto.graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    for value in list(proto.graph.input) + list(proto.graph.output):
        if value.name == old:
            value.name = new


# An INFO line of absl's C++ logging, and its note that it logs to stderr until it is set up.
_ABSL_INFO = re.compile(r"I\d{4} \S+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\)")


def _traced(traced: TracedFunction, opset: int) -> onnx.ModelProto:
    import tf2onnx

    function, signature = traced
    # tf2onnx runs grappler, whose INFO lines go through absl
    with native_stderr(keep=lambda line: not _ABSL_INFO.match(line)):
        return tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)[0]


def window_front_end(model: keras.Model, opset: int = OPSET) -> onnx.ModelProto:
    """`frames` (batch, time, H, W, C) -> `features` (batch, time, F) through tf2onnx."""
    proto = _traced(window_function(model), opset)
    _rename(proto, proto.graph.input[0].name, FRAMES)
    _rename(proto, proto.graph.output[0].name, FEATURES)
    name_batch_and_time(proto)
    proto.graph.name = "lipstream_front_end"
    return proto


def name_batch_and_time(proto: onnx.ModelProto) -> None:
    """The dynamic axes of `frames` and `features` named batch and time, as the back end's are, where tf2onnx
    names them unk__N: a reader of the graph sees which axis is which (the front end keeps the time axis)."""
    names: dict[str, str] = {}
    for value in (proto.graph.input[0], *(o for o in proto.graph.output if o.name == FEATURES)):
        for dim, name in zip(value.type.tensor_type.shape.dim, ("batch", "time")):
            if dim.dim_param:
                names[dim.dim_param] = name
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def streaming_step(model: keras.Model, opset: int = OPSET) -> onnx.ModelProto:
    """(step, frame, state0..) -> (features, next_state0..) through tf2onnx; see export.front_end."""
    proto = _traced(step_function(model), opset)
    outputs = [o.name for o in proto.graph.output]
    _rename(proto, outputs[0], FEATURES)
    for i, name in enumerate(outputs[1:]):
        _rename(proto, name, f"next_state{i}")
    proto.graph.name = "lipstream_streaming_front_end"
    return proto


def weights_digest(model: keras.Model) -> str:
    """Names the weights an export was made from, so the runtime can tell its three files belong together."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(f"{weight.dtype}{weight.shape}".encode())
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def with_metadata(proto: onnx.ModelProto, spec: ModelSpec, form: str, source: str) -> onnx.ModelProto:
    del proto.metadata_props[:]
    described = dict(zip((INPUT, OUTPUT), GRAPH_IO[form]))
    for key, value in {**spec.to_metadata(), FORM: form, EXPORT_ID: source, **described}.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    proto.producer_name = "lipstream"
    return proto


def convert(model: keras.Model, spec: ModelSpec, opset: int = OPSET) -> Exported:
    front = window_front_end(model, opset)
    back = back_end(model, FRONT_END, opset, front.ir_version)
    # Both halves must use the same default-domain opset to compose.
    full = onnx.compose.merge_models(front, back, io_map=[(FEATURES, FEATURES)],
                                     prefix1="front/", prefix2="back/")
    _rename(full, f"front/{FRAMES}", FRAMES)
    _rename(full, f"back/{LOGP}", LOGP)
    # The front end's features as a second output: the streaming runtime reads a window's first frames
    # through it in one run (see realtime.backend.StreamingBackend).
    full.graph.node.append(onnx.helper.make_node("Identity", [f"front/{FEATURES}"], [FEATURES]))
    full.graph.output.extend(o for o in front.graph.output if o.name == FEATURES)
    full.graph.name = "lipstream"
    opsets = {o.domain: o.version for o in full.opset_import}  # merge_models repeats the default domain
    del full.opset_import[:]
    full.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets.items())
    onnx.checker.check_model(full)
    source = weights_digest(model)
    return Exported(with_metadata(full, spec, "full", source),
                    with_metadata(streaming_step(model, opset), spec, "step", source),
                    with_metadata(back, spec, "back", source))


def save(exported: Exported, path: Path) -> list[Path]:
    """Write the three files at `path` and beside it, as the runtime finds them; into a staging folder, which
    export/__main__ moves into place whole once they pass the gate."""
    written = [path, *streaming_paths(path)]
    for proto, p in zip((exported.full, exported.step, exported.back), written):
        onnx.save(proto, p)
    return written
