"""Rounding a model's convolution weights to int8 ahead of time, and correcting the bias it causes.

Rounding each weight to the int8 grid is small noise per weight, but not zero-mean per output
channel: every channel's mean output moves a little, and through forty-odd layers the moves add
up and flip close calls. The empirical bias correction of Nagel et al. (2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction") removes it: the weights are
rounded here exactly as ONNX Runtime's quantizer will round them (symmetric, per output channel,
[-127, 127], scale = max |w| / 127, so its own rounding later changes nothing), and then, layer by
layer in graph order, each convolution's bias absorbs the difference between its mean output in
the float model and in the rounded one on the calibration images. Layer by layer, so each layer
corrects only its own error, with every layer above it already corrected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

INT8_MAX = 127


def round_weights(weights: np.ndarray) -> np.ndarray:
    """`weights` (output channel first) on the symmetric per-channel int8 grid, as float32."""
    axes = tuple(range(1, weights.ndim))
    largest = np.abs(weights).max(axis=axes, keepdims=True)
    scale = np.where(largest == 0, 1.0, largest / INT8_MAX)
    steps = np.clip(np.round(weights / scale), -INT8_MAX, INT8_MAX)
    return (steps * scale).astype(np.float32)


def correct_biases(
    original: ModelProto,
    batches: Sequence[np.ndarray],
    *,
    input_name: str,
    keep_float: Iterable[str] = (),
) -> ModelProto:
    """A copy of `original` with every Conv's weights, except those of the nodes named in
    `keep_float`, rounded to int8 and its bias corrected on `batches` (the model's input)."""
    import onnx
    from onnx import numpy_helper

    rounded = onnx.ModelProto()
    rounded.CopyFrom(original)
    skip = set(keep_float)
    convs = [n for n in rounded.graph.node if n.op_type == "Conv" and n.name not in skip]
    targets = _channel_means(original, [n.output[0] for n in convs], batches, input_name)
    initializers = {init.name: init for init in rounded.graph.initializer}
    for node in convs:
        weights = initializers[node.input[1]]
        weights.CopyFrom(
            numpy_helper.from_array(round_weights(numpy_helper.to_array(weights)), weights.name)
        )
    for node, target in zip(convs, targets, strict=True):
        [got] = _channel_means(rounded, [node.output[0]], batches, input_name)
        bias = _bias(rounded, node, initializers, len(target))
        corrected = numpy_helper.to_array(bias) + (target - got)
        bias.CopyFrom(numpy_helper.from_array(corrected.astype(np.float32), bias.name))
    return rounded


def _bias(
    model: ModelProto, node: NodeProto, initializers: dict[str, TensorProto], channels: int
) -> TensorProto:
    """The Conv's bias initializer (a zero one added when it has none)."""
    from onnx import numpy_helper

    if len(node.input) > 2 and node.input[2]:
        return initializers[node.input[2]]
    name = f"{node.name}.corrected_bias"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(channels, np.float32), name))
    node.input.append(name)
    initializers[name] = model.graph.initializer[-1]
    return initializers[name]


def _channel_means(
    model: ModelProto, names: list[str], batches: Sequence[np.ndarray], input_name: str
) -> list[np.ndarray]:
    """Per-channel means of the tensors `names` over `batches`, computing only what they need."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        _upstream_of(model, names).SerializeToString(),
        options,
        providers=["CPUExecutionProvider"],
    )
    sums = [np.zeros(1)] * len(names)
    for batch in batches:
        outputs = session.run(names, {input_name: batch})
        sums = [
            total + np.asarray(out).mean(axis=(0, 2, 3), dtype=np.float64)
            for total, out in zip(sums, outputs, strict=True)
        ]
    return [total / len(batches) for total in sums]


def _upstream_of(model: ModelProto, names: list[str]) -> ModelProto:
    """A copy of `model` whose outputs are `names`, holding only the nodes and weights they need."""
    import onnx

    producers = {out: node for node in model.graph.node for out in node.output}
    needed: set[str] = set()
    pending = list(names)
    while pending:
        tensor = pending.pop()
        node = producers.get(tensor)
        if node is None or node.output[0] in needed:
            continue
        needed.add(node.output[0])
        pending.extend(node.input)
    nodes = [node for node in model.graph.node if node.output[0] in needed]
    used = {name for node in nodes for name in node.input}
    graph = onnx.helper.make_graph(
        nodes,
        model.graph.name,
        list(model.graph.input),
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names],
        [init for init in model.graph.initializer if init.name in used],
    )
    return onnx.helper.make_model(
        graph, opset_imports=model.opset_import, ir_version=model.ir_version
    )
