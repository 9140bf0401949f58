"""The recurrent back end as native ONNX ops, written from the Keras weights.

tf2onnx turns Keras GRUs into ONNX `Loop`s, five times slower in ONNX Runtime than its native `GRU`
op. Keras' GRU (reset_after=True) is ONNX GRU with linear_before_reset=1 and the same z, r, h gate
order; Keras' kernel is (input, 3H) where ONNX wants (3H, input), and its bias row pair is ONNX's
input bias and recurrent bias.
"""

from __future__ import annotations

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from realtime.spec import FEATURES, LOGP


def _gru_weights(bidirectional: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """ONNX GRU's W, R and B (both directions stacked, gates z, r, h as Keras orders them) and the hidden
    size; a GRU ONNX's op does not compute is refused by name, not left to the parity gate's numbers."""
    if bidirectional.merge_mode != "concat":
        raise ValueError(f"{bidirectional.name}: only merge_mode='concat' maps to ONNX GRU")
    ws, rs, bs = [], [], []
    for direction in (bidirectional.forward_layer, bidirectional.backward_layer):
        cell = direction.cell
        if not (cell.reset_after and cell.use_bias and cell.activation is keras.activations.tanh
                and cell.recurrent_activation is keras.activations.sigmoid):
            raise ValueError(f"{bidirectional.name}: only GRUs with reset_after, biases, tanh and sigmoid map to "
                             f"ONNX GRU")
        kernel, recurrent, bias = (v.numpy() for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
        ws.append(kernel.T)
        rs.append(recurrent.T)
        bs.append(bias.reshape(-1))  # [input bias (3H), recurrent bias (3H)]
    return np.stack(ws), np.stack(rs), np.stack(bs), int(ws[0].shape[0] // 3)


def back_end(model: keras.Model, front_end_layer: str, opset: int, ir_version: int) -> onnx.ModelProto:
    """ONNX graph `features` (batch, time, F) -> `logp` (batch, time, classes) for the layers after the
    front end: bidirectional GRUs, the character Dense and log-softmax (dropout is inference-free)."""
    nodes, inits = [], []
    names = [layer.name for layer in model.layers]
    after = model.layers[names.index(front_end_layer) + 1:]
    feature_size = int(model.get_layer(front_end_layer).output.shape[-1])
    x = "x_tbf"
    nodes.append(helper.make_node("Transpose", [FEATURES], [x], perm=[1, 0, 2]))
    batch_shape = None
    for layer in after:
        if isinstance(layer, keras.layers.Bidirectional):
            w, r, b, hidden = _gru_weights(layer)
            p = layer.name
            inits += [numpy_helper.from_array(w.astype(np.float32), f"{p}_W"),
                      numpy_helper.from_array(r.astype(np.float32), f"{p}_R"),
                      numpy_helper.from_array(b.astype(np.float32), f"{p}_B")]
            nodes.append(helper.make_node("GRU", [x, f"{p}_W", f"{p}_R", f"{p}_B"], [f"{p}_Y"],
                                          direction="bidirectional", hidden_size=hidden,
                                          linear_before_reset=1, name=p))
            # Y: (time, 2, batch, hidden) -> (time, batch, 2 * hidden), forward then backward as Keras concat.
            nodes.append(helper.make_node("Transpose", [f"{p}_Y"], [f"{p}_Yt"], perm=[0, 2, 1, 3]))
            if batch_shape is None:
                batch_shape = "shape_tb0"
                inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), batch_shape))
            nodes.append(helper.make_node("Reshape", [f"{p}_Yt", batch_shape], [f"{p}_out"]))
            x = f"{p}_out"
        elif isinstance(layer, keras.layers.Dense) and layer.name == "char_logits":
            if layer.activation is not keras.activations.linear:  # the log-softmax below is its activation
                raise ValueError(f"{layer.name}: only a linear Dense maps to the ONNX back end")
            kernel, bias = (v.numpy() for v in (layer.kernel, layer.bias))
            inits += [numpy_helper.from_array(kernel.astype(np.float32), "dense_W"),
                      numpy_helper.from_array(bias.astype(np.float32), "dense_B")]
            nodes.append(helper.make_node("MatMul", [x, "dense_W"], ["logits_mm"]))
            nodes.append(helper.make_node("Add", ["logits_mm", "dense_B"], ["logits_tbc"]))
            nodes.append(helper.make_node("Transpose", ["logits_tbc"], ["logits"], perm=[1, 0, 2]))
            nodes.append(helper.make_node("LogSoftmax", ["logits"], [LOGP], axis=-1))
            classes = int(kernel.shape[1])
            break
        elif isinstance(layer, (keras.layers.Dropout,)):
            continue
        else:
            raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no ONNX back-end mapping")
    else:
        raise ValueError("the model has no char_logits layer after its front end")
    graph = helper.make_graph(
        nodes, "lipstream_back_end",
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", "time", feature_size])],
        [helper.make_tensor_value_info(LOGP, TensorProto.FLOAT, ["batch", "time", classes])],
        inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lipstream",
                              ir_version=ir_version)
    onnx.checker.check_model(proto)
    return proto
