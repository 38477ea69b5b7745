"""Rewrites Silero VAD's sequence export so that each convolution is one matrix product.

onnxruntime runs a 1-D convolution once per frame of a batch, each a product only four time
steps wide; a hop's 16 frames then cost 0.83 ms, of which the STFT and the first two encoder
layers took 0.62. The same arithmetic laid out channels-last, with the frames of the call
stacked into one matrix product per layer, took 0.33 ms, and its probabilities and LSTM states
differ from the original's by at most 5e-5 (tests/test_vad.py). The weights are Silero's,
untouched; only how the products are grouped changes.

Run: ``python tools/silero_as_matmuls.py`` (needs the ``onnx`` package of the ``[dev]`` extra).
It reads ``streamer/silero/silero_vad_16k_sequence.onnx`` and writes the model the daemon runs,
``streamer/silero/silero_vad_16k_sequence_matmul.onnx``; the same input gives the same bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

SILERO = Path(__file__).resolve().parent.parent / "streamer" / "silero"
UPSTREAM = SILERO / "silero_vad_16k_sequence.onnx"
REWRITTEN = SILERO / "silero_vad_16k_sequence_matmul.onnx"

INPUT_SAMPLES = 576
"""Samples per scored frame: 512 and the 64 before them."""
STFT_HOP = 128
"""The STFT's stride: its 256-sample kernel spans two such chunks."""
FRAMES = 4
"""STFT frames per input that the encoder sees (the export drops a fifth, padded one)."""
BINS = 129
"""Frequency bins of the 256-point STFT: the basis holds their real parts, then imaginary."""
ENCODER_STRIDES = {"encoder.0": 1, "encoder.1": 2, "encoder.2": 2, "encoder.3": 1}
"""The encoder's kernel-3, pad-1 convolutions and their strides, as the export has them."""


class GraphBuilder:
    """Nodes and initialisers of the new graph, each node named after its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        """An initialiser holding ``value``; returns its name for a node's inputs."""
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def integers(self, *values: int) -> str:
        """An int64 initialiser (shapes, pads, slice bounds), named by its position."""
        return self.constant(f"integers_{len(self.initializers)}", np.array(values, np.int64))

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        """Appends one node; returns its output's name, the next node's input."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        """``relu(x @ weight + bias)`` over the last axis."""
        product = self.node(
            "MatMul", [x, self.constant(f"{name}.weight", weight)], f"{name}_product"
        )
        biased = self.node("Add", [product, self.constant(f"{name}.bias", bias)], f"{name}_biased")
        return self.node("Relu", [biased], f"{name}_out")

    def convolution(
        self, x: str, steps: int, weight: np.ndarray, bias: np.ndarray, stride: int, name: str
    ) -> tuple[str, int]:
        """A kernel-3, pad-1 convolution over time of ``x`` ((frames, steps, channels)) as one
        product: the three taps side by side, against the kernel flattened tap by tap."""
        padded = self.node("Pad", [x, self.integers(0, 1, 0, 0, 1, 0)], f"{name}_padded")
        out_steps = (steps - 1) // stride + 1
        taps = [
            self.node(
                "Slice",
                [
                    padded,
                    self.integers(k),
                    self.integers(k + stride * (out_steps - 1) + 1),
                    self.integers(1),
                    self.integers(stride),
                ],
                f"{name}_tap{k}",
            )
            for k in range(3)
        ]
        columns = self.node("Concat", taps, f"{name}_columns", axis=2)
        return self.dense(columns, tap_major(weight, range(3)), bias, name), out_steps


def tap_major(weight: np.ndarray, taps: Sequence[int]) -> np.ndarray:
    """A Conv1d kernel ((out, in, taps)) as a product's right side: row ``t * in + i`` weighs
    input channel ``i`` at tap ``t``."""
    return np.concatenate([weight[:, :, t].T for t in taps]).astype(np.float32)


def check_layout(upstream: onnx.ModelProto) -> None:
    """Fails, naming the node, where the export differs from what the rewrite assumes: the
    rewrite spells out the strides and paddings instead of reading them back."""
    expected = {"/stft/Conv": {"kernel_shape": [2 * STFT_HOP], "strides": [STFT_HOP]}}
    for layer, stride in ENCODER_STRIDES.items():
        expected[f"/{layer}/Conv"] = {"kernel_shape": [3], "strides": [stride], "pads": [1, 1]}
    convolutions = {
        node.name: {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for node in upstream.graph.node
        if node.op_type == "Conv"
    }
    for name, attributes in expected.items():
        found = convolutions.get(name)
        if found is None or any(found.get(key) != value for key, value in attributes.items()):
            raise ValueError(f"{name}: expected {attributes}, found {found}")
    width = upstream.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    if width != INPUT_SAMPLES:
        raise ValueError(f"input: expected {INPUT_SAMPLES} samples per frame, found {width}")


def rewrite(upstream: onnx.ModelProto) -> onnx.ModelProto:
    """The same network, every convolution a matrix product over all the call's frames."""
    check_layout(upstream)
    weights = {i.name: numpy_helper.to_array(i) for i in upstream.graph.initializer}
    graph = GraphBuilder()
    # STFT: the export pads 128 reflected samples on each side and drops the first frame, so
    # the frames it keeps read the input and the reflected samples after it, as five chunks.
    # Frame t is chunk t against the kernel's first half plus chunk t + 1 against its second.
    basis = weights["stft.forward_basis_buffer"][:, 0, :]
    halves = np.concatenate([basis[:, :STFT_HOP].T, basis[:, STFT_HOP:].T], axis=1)
    after = (FRAMES + 1) * STFT_HOP - INPUT_SAMPLES
    x = graph.node("Pad", ["input", graph.integers(0, 0, 0, after)], "stft_padded", mode="reflect")
    x = graph.node("Reshape", [x, graph.integers(-1, FRAMES + 1, STFT_HOP)], "stft_chunks")
    x = graph.node("MatMul", [x, graph.constant("stft.halves", halves)], "stft_chunk_products")
    width = basis.shape[0]
    first = graph.node(
        "Slice",
        [x, graph.integers(0, 0), graph.integers(FRAMES, width), graph.integers(1, 2)],
        "stft_first_halves",
    )
    second = graph.node(
        "Slice",
        [x, graph.integers(1, width), graph.integers(FRAMES + 1, 2 * width), graph.integers(1, 2)],
        "stft_second_halves",
    )
    x = graph.node("Add", [first, second], "stft_spectra")
    x = graph.node("Mul", [x, x], "stft_squares")
    # The first 129 columns are the real parts, the rest the imaginary: summed as a pair axis.
    x = graph.node("Reshape", [x, graph.integers(0, FRAMES, 2, BINS)], "stft_square_pairs")
    x = graph.node("ReduceSum", [x, graph.integers(2)], "stft_power", keepdims=0)
    x = graph.node("Sqrt", [x], "stft_magnitude")
    steps = FRAMES
    for layer, stride in list(ENCODER_STRIDES.items())[:3]:
        x, steps = graph.convolution(
            x, steps, weights[f"{layer}.weight"], weights[f"{layer}.bias"], stride, layer
        )
    if steps != 1:
        raise ValueError(f"expected one step before encoder.3, got {steps}")
    # One step, padded on both sides: only the middle tap meets data.
    x = graph.dense(
        x, tap_major(weights["encoder.3.weight"], [1]), weights["encoder.3.bias"], "encoder.3"
    )
    # (frames, 1, 128) is (sequence, batch, features): the frames run through the LSTM in order.
    lstm = next(n for n in upstream.graph.node if n.op_type == "LSTM")
    hidden = next(helper.get_attribute_value(a) for a in lstm.attribute if a.name == "hidden_size")
    for name in lstm.input[1:4]:
        graph.constant(name, weights[name])
    recurrent = helper.make_node(
        "LSTM", [x, *lstm.input[1:4], "", "h", "c"], ["lstm_out", "hn", "cn"], name="lstm"
    )
    recurrent.attribute.extend(lstm.attribute)
    graph.nodes.append(recurrent)
    x = graph.node("Reshape", ["lstm_out", graph.integers(-1, hidden)], "lstm_flat")
    x = graph.node("Relu", [x], "lstm_relu")
    x = graph.node(
        "MatMul",
        [x, graph.constant("output.weight", weights["output.weight"][:, :, 0].T)],
        "output_product",
    )
    x = graph.node(
        "Add", [x, graph.constant("output.bias", weights["output.bias"])], "output_biased"
    )
    x = graph.node("Sigmoid", [x], "output_probability")
    graph.node("Reshape", [x, graph.integers(-1)], "speech_probs")
    rewritten = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "silero_vad_16k_sequence_matmul",
            list(upstream.graph.input),
            list(upstream.graph.output),
            graph.initializers,
        ),
        opset_imports=upstream.opset_import,
        ir_version=upstream.ir_version,
        producer_name="emostream tools/silero_as_matmuls.py",
    )
    onnx.checker.check_model(rewritten)
    return rewritten


def main(source: Path = UPSTREAM, target: Path = REWRITTEN) -> None:
    """Writes the rewrite of ``source`` to ``target``."""
    onnx.save(rewrite(onnx.load(source)), target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
