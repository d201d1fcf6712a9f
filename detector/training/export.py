"""ONNX export of the serving graph with metadata, and the PyTorch parity file.

The graph: input ``input`` float32 [N,3,S,S] (RGB, (v/255-0.5)/0.5), outputs ``score`` [N]
(P(fake)) and ``heatmap`` [N,1,S/8,S/8] in [0,1]; dynamic batch; opset 13. metadata_props carry
lae.name, lae.version, lae.input_size, lae.mean, lae.std, lae.color, lae.threshold, which the Go
detector (detector/model/metadata.go) reads.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

import numpy as np
import onnx
import torch

from . import common
import torch.nn as nn

from .model import Exported

OPSET = 13


def metadata(name: str, version: str, threshold: float, size: int = common.INPUT_SIZE) -> Dict[str, str]:
    """The metadata_props of the exported model."""
    return {"lae.name": name, "lae.version": version, "lae.input_size": str(size),
            "lae.mean": ",".join(str(v) for v in common.MEAN), "lae.std": ",".join(str(v) for v in common.STD),
            "lae.color": common.COLOR, "lae.threshold": f"{threshold:.6f}"}


def export_onnx(net: nn.Module, path: str, meta: Dict[str, str], size: int = common.INPUT_SIZE) -> onnx.ModelProto:
    """Export net's serving graph to path, attach metadata, check the model; returns it."""
    ex = Exported(net).eval()
    dummy = torch.zeros(2, 3, size, size)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(ex, dummy, path, input_names=["input"], output_names=["score", "heatmap"],
                          dynamic_axes={"input": {0: "N"}, "score": {0: "N"}, "heatmap": {0: "N"}},
                          opset_version=OPSET, do_constant_folding=True)
    m = onnx.load(path)
    del m.metadata_props[:]
    for k, v in sorted(meta.items()):
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "lae-training"
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return m


def output_shapes(m: onnx.ModelProto) -> Dict[str, list]:
    """Declared output shapes (symbolic dims as strings) after shape inference."""
    inf = onnx.shape_inference.infer_shapes(m)
    out = {}
    for o in inf.graph.output:
        dims = [d.dim_param if d.dim_param else d.dim_value for d in o.type.tensor_type.shape.dim]
        out[o.name] = dims
    return out


def parity_file(net: nn.Module, x_bgr: np.ndarray, path: str) -> Dict:
    """Write PyTorch reference outputs for crops x_bgr (uint8 [N,S,S,3] BGR) as JSON:
    {"input": flat normalised [N,3,S,S], "shape", "score": [N], "heatmap": flat, "heatmap_shape"}."""
    x = common.to_tensor(x_bgr)
    with torch.no_grad():
        s, h = Exported(net).eval()(x)
    rec = {"input": x.numpy().ravel(), "shape": list(x.shape), "score": s.numpy().ravel(),
           "heatmap": h.numpy().ravel(), "heatmap_shape": list(h.shape)}
    # float32 values written with their shortest round-trip repr: exact for the Go reader and
    # about half the size of Python float reprs.
    def arr(a):
        return "[" + ",".join(np.format_float_positional(v, unique=True, trim="0") if abs(v) >= 1e-4 or v == 0
                              else np.format_float_scientific(v, unique=True) for v in a.astype(np.float32)) + "]"
    with open(path, "w") as f:
        f.write("{" + ", ".join(f'"{k}": {arr(v) if isinstance(v, np.ndarray) else json.dumps(v)}'
                                for k, v in rec.items()) + "}\n")
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rec.items()}
