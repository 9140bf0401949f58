"""The convolutional front end as TF functions of the Keras weights (batch norm folded in), in the
forms ONNX Runtime runs fastest: the whole window, and one new frame at a time with per-layer state.

Whole window: the first convolution reads few input channels (3 for RGB, 1 for grey), where ONNX
Runtime's Conv3D kernel is slow; stacking each frame with its two neighbours on the channel axis turns
it into one 2D convolution of three times as many (9 for RGB) over every frame, the same arithmetic at
about twice the speed.

One frame at a time: each 3D convolution (temporal kernel 3, 'same' padding) is
y[p] = z0(x[p-1]) + z1(x[p]) + z2(x[p+1]), where z_k is a 2D convolution of one frame with the kernel's k-th
temporal slice. So an input frame's three contributions are computed once, when the frame arrives, and kept
as state.

With frames up to n, layer l's output is final up to n - l; later outputs are provisional, computed as
the full window ending at n computes them (zeros after n). At each frame layer l convolves its l new
or changed inputs once (the newly final one and the provisional ones) and assembles its last l + 1
outputs from them and from the state: the z of its two newest final inputs. Outputs at negative
positions are zeroed: the zero padding a full window sees at its start. For three layers a new frame
costs 1 + 2 + 3 frame-convolutions, where recomputing a 75-frame window costs 3 x 75 x 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np

from realtime.spec import FRAME, FRAMES, STATE, STEP

if TYPE_CHECKING:
    import tensorflow as tf

    TracedFunction = tuple[tf.types.experimental.PolymorphicFunction, Sequence[tf.TensorSpec]]


def _blocks(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per convolution: kernel (3, kh, kw, cin, cout) with batch norm folded in, bias, spatial stride."""
    blocks = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv3D):
            if layer.kernel_size[0] != 3 or layer.use_bias:
                raise ValueError(f"{layer.name}: streaming export needs temporal kernels of 3 and no bias")
            blocks.append([layer.kernel.numpy(), None, layer.strides[1]])
        elif isinstance(layer, keras.layers.BatchNormalization) and blocks:
            gamma, beta, mean, var = (w.numpy() for w in (layer.gamma, layer.beta, layer.moving_mean,
                                                          layer.moving_variance))
            scale = gamma / np.sqrt(var + layer.epsilon)
            blocks[-1][0] = blocks[-1][0] * scale
            blocks[-1][1] = beta - mean * scale
        elif isinstance(layer, keras.layers.Reshape):
            break
    return [(k.astype(np.float32), b.astype(np.float32), s) for k, b, s in blocks]


def state_shapes(model: keras.Model) -> list[tuple[int, ...]]:
    """Per layer: the z (three temporal taps stacked on channels) of its two newest final inputs."""
    shapes: list[tuple[int, ...]] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv3D):
            _, _, h, w, c = layer.output.shape
            shapes.append((2, h, w, 3 * c))
    return shapes


def _stacked_taps(kernel: np.ndarray) -> np.ndarray:
    """(3, kh, kw, cin, cout) -> (kh, kw, 3 * cin, cout): temporal taps k on channels k * cin + c."""
    kt, kh, kw, cin, cout = kernel.shape
    return np.ascontiguousarray(kernel.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kt * cin, cout))


def window_function(model: keras.Model) -> TracedFunction:
    """A tf.function, and its input signature: `frames` (batch, time, H, W, C) -> features (batch,
    time, F), as the Keras front end computes them in inference (zero padding in time at the window's
    ends)."""
    import tensorflow as tf

    blocks = _blocks(model)
    height, width, channels = model.inputs[0].shape[2:]
    signature = (tf.TensorSpec((None, None, height, width, channels), tf.float32, name=FRAMES),)

    @tf.function(input_signature=signature)
    def window(frames):
        batch, time = tf.shape(frames)[0], tf.shape(frames)[1]
        x = frames
        for i, (kernel, bias, stride) in enumerate(blocks):
            if i == 0:
                padded = tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0]])
                taps = tf.concat([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], axis=-1)
                y = tf.nn.conv2d(tf.reshape(taps, (-1, height, width, 3 * channels)),
                                 tf.constant(_stacked_taps(kernel)), strides=stride, padding="SAME")
                y = tf.nn.max_pool2d(tf.nn.relu(y + bias), 2, 2, "VALID")
                x = tf.reshape(y, (batch, time, *y.shape[1:]))
            else:
                y = tf.nn.conv3d(x, tf.constant(kernel), strides=(1, 1, stride, stride, 1), padding="SAME")
                x = tf.nn.max_pool3d(tf.nn.relu(y + bias), (1, 2, 2), (1, 2, 2), "VALID")
        _, _, h, w, c = x.shape
        return tf.reshape(x, (batch, time, h * w * c))

    return window, signature


def step_function(model: keras.Model) -> TracedFunction:
    """A tf.function, and its input signature: (step, frame, *states) -> (features at positions
    step-L .. step, *new states), L the number of convolutions; the first feature is final, the others
    provisional."""
    import tensorflow as tf

    blocks = _blocks(model)
    shapes = state_shapes(model)
    signature = [tf.TensorSpec((), tf.int64, name=STEP),
                 tf.TensorSpec((1, 1, *model.inputs[0].shape[2:]), tf.float32, name=FRAME)]
    signature += [tf.TensorSpec(s, tf.float32, name=f"{STATE}{i}") for i, s in enumerate(shapes)]
    # The three temporal slices side by side: one 2D convolution gives all three contributions.
    stacked = [np.concatenate(list(k), axis=-1) for k, _, _ in blocks]

    @tf.function(input_signature=signature)
    def step(n, frame, *states):
        fresh = frame[0]  # inputs of layer 1 that are new at this step: just the frame
        new_states = []
        for level, ((_, bias, stride), kernel, state) in enumerate(zip(blocks, stacked, states), start=1):
            z = tf.nn.conv2d(fresh, tf.constant(kernel), strides=stride, padding="SAME")
            zs = tf.concat([state, z], axis=0)  # z of inputs at positions n-level-1 .. n
            prev, cur, nxt = tf.split(zs, 3, axis=-1)
            nxt = tf.concat([nxt[2:], tf.zeros_like(nxt[:1])], axis=0)
            y = tf.nn.relu(prev[:-1] + cur[1:] + nxt + bias)  # outputs at positions n-level .. n
            y = tf.nn.max_pool2d(y, 2, 2, "VALID")
            positions = n - level + tf.range(level + 1, dtype=tf.int64)
            fresh = y * tf.cast(positions >= 0, y.dtype)[:, None, None, None]
            new_states.append(tf.concat([state[1:], z[:1]], axis=0))
        features = tf.reshape(fresh, (1, len(blocks) + 1, -1))
        return (features, *new_states)

    return step, signature
