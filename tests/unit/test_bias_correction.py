"""Weights rounded the way ONNX Runtime's quantizer rounds them, and biases that undo the mean
shift the rounding causes (`autoinfer.predictors.bias_correction`), on a small real ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from autoinfer.predictors.bias_correction import correct_biases, round_weights


def _two_convs(rng: np.random.Generator) -> onnx.ModelProto:
    """input (N, 3, 16, 16) → Conv 3×3 (8) → Relu → depthwise Conv 3×3 (8) → output."""
    first = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    first[0, 0, 0, 0] = 4.0  # one large weight: the rest of its channel rounds coarsely
    depthwise = rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="first", pads=[1] * 4),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
            helper.make_node(
                "Conv", ["r1", "w2"], ["output"], name="depthwise", group=8, pads=[1] * 4
            ),
        ],
        "two-convs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 8, 16, 16])],
        [
            numpy_helper.from_array(first, "w1"),
            numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
            numpy_helper.from_array(depthwise, "w2"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _means(model: onnx.ModelProto, batch: np.ndarray, name: str) -> np.ndarray:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([name], {"input": batch})[0]).mean(axis=(0, 2, 3))


def test_rounded_weights_lie_on_the_symmetric_per_channel_int8_grid() -> None:
    weights = np.random.default_rng(1).normal(0, 1, (16, 4, 3, 3)).astype(np.float32)
    rounded = round_weights(weights)
    scale = np.abs(weights).max(axis=(1, 2, 3), keepdims=True) / 127
    steps = rounded / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3)
    assert np.abs(np.round(steps)).max() == 127  # every channel's largest weight is kept exactly
    assert np.array_equal(round_weights(rounded), rounded)  # rounding again changes nothing
    assert not np.array_equal(rounded, weights)


def test_the_corrected_model_keeps_each_layers_mean_output() -> None:
    rng = np.random.default_rng(7)
    model = _two_convs(rng)
    batches = [rng.uniform(0.0, 1.0, (4, 3, 16, 16)).astype(np.float32) for _ in range(3)]
    corrected = correct_biases(model, batches, input_name="input")
    batch = np.concatenate(batches)
    for name in ("c1", "output"):
        want = _means(model, batch, name)
        assert np.allclose(_means(corrected, batch, name), want, atol=1e-4), name
    # Rounding alone would have moved the first layer's means (the test can fail).
    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    w1 = next(init for init in rounded.graph.initializer if init.name == "w1")
    w1.CopyFrom(numpy_helper.from_array(round_weights(numpy_helper.to_array(w1)), "w1"))
    assert not np.allclose(_means(rounded, batch, "c1"), _means(model, batch, "c1"), atol=1e-4)
    # The depthwise layer had no bias: it got one.
    assert len(next(n for n in corrected.graph.node if n.name == "depthwise").input) == 3


def test_onnx_runtimes_quantizer_keeps_the_rounded_weights(tmp_path: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(3)
    model = _two_convs(rng)
    batches = [rng.uniform(0.0, 1.0, (2, 3, 16, 16)).astype(np.float32) for _ in range(2)]
    corrected = correct_biases(model, batches, input_name="input", keep_float=["first"])
    source, quantized = tmp_path / "corrected.onnx", tmp_path / "int8.onnx"
    onnx.save(corrected, str(source))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"input": batch}

    quantize_static(
        str(source),
        str(quantized),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=["first"],
    )
    made = onnx.load(str(quantized))
    weights = {init.name: numpy_helper.to_array(init) for init in made.graph.initializer}
    depthwise = next(node for node in made.graph.node if node.name == "depthwise")
    dequantize = next(node for node in made.graph.node if depthwise.input[1] in node.output)
    int8, scale = weights[dequantize.input[0]], weights[dequantize.input[1]]
    assert int8.dtype == np.int8
    kept = numpy_helper.to_array(next(i for i in corrected.graph.initializer if i.name == "w2"))
    assert np.allclose(int8 * scale.reshape(-1, 1, 1, 1), kept, atol=1e-6)
    # `keep_float` layers keep their float weights, untouched.
    assert np.array_equal(weights["w1"], numpy_helper.to_array(model.graph.initializer[0]))
