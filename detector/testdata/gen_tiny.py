#!/usr/bin/env python3
"""Generate the tiny ONNX fixtures the Go runtime tests load.

These are NOT detectors: the weights are fixed by hand so that the outputs are a known
function of the input, which lets the Go tests check preprocessing exactly:

    d(x)    = K * (x[:, 0] - x[:, 2])          (normalised red minus normalised blue)
    score   = sigmoid(mean over pixels of d)   shape [N]
    heatmap = sigmoid(avgpool4x4(d))           shape [N, 1, S/4, S/4]

A pure red crop therefore scores high and a pure blue one low only when the Go side turns
BGR into RGB; the exact value checks mean/std; the heatmap checks where hot pixels land.

Run with Debian's python (needs python3-onnx only):
    /usr/bin/python3 detector/testdata/gen_tiny.py
The output is byte-for-byte deterministic, so regenerating leaves git clean.
"""
import os

import onnx
from onnx import TensorProto, helper

SIZE = 64
K = 0.5
MEAN = "0.485,0.456,0.406"
STD = "0.229,0.224,0.225"
HERE = os.path.dirname(os.path.abspath(__file__))


def graph(input_name="input", score_name="score", heat_name="heatmap", batch="N"):
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [K, 0.0, -K])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Conv", [input_name, "w"], ["d"]),
        helper.make_node("AveragePool", ["d"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Sigmoid", ["pooled"], [heat_name]),
        helper.make_node("GlobalAveragePool", ["d"], ["g"]),
        helper.make_node("Flatten", ["g"], ["gf"], axis=1),
        helper.make_node("Squeeze", ["gf", "axes"], ["gs"]),
        helper.make_node("Sigmoid", ["gs"], [score_name]),
    ]
    return helper.make_graph(
        nodes,
        "lae_tiny_fixture",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info(score_name, TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info(heat_name, TensorProto.FLOAT, [batch, 1, SIZE // 4, SIZE // 4]),
        ],
        initializer=[w, axes],
    )


def save(g, name, meta):
    m = helper.make_model(g, producer_name="lae-testdata", opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(HERE, name))


META = {
    "lae.name": "tiny-fixture",
    "lae.version": "tiny-fixture-1",
    "lae.input_size": str(SIZE),
    "lae.mean": MEAN,
    "lae.std": STD,
    "lae.color": "RGB",
    "lae.threshold": "0.5",
}

if __name__ == "__main__":
    save(graph(), "tiny.onnx", META)
    # Same graph without the lae.* metadata: Load must refuse it.
    save(graph(), "tiny_nometa.onnx", {})
    # Wrong tensor names: Load must name what it expected.
    save(graph(input_name="image", score_name="prob", heat_name="cam"), "tiny_badio.onnx", META)
    # Exported without a dynamic batch axis: Load must say so instead of failing on batch 2.
    save(graph(batch=1), "tiny_fixedbatch.onnx", META)
