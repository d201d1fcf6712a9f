"""ONNX export: checker, I/O names, dynamic batch, metadata, the parity file."""
import numpy as np
import onnx
import pytest
import torch

from detector.training import common, export
from detector.training.model import Exported, build



def test_export_contract(tmp_path):
    torch.manual_seed(0)
    net = build("lae-v2", latent=8).eval()
    p = str(tmp_path / "m.onnx")
    m = export.export_onnx(net, p, export.metadata("lae-test", "0.0.1", 0.42, 64), 64)
    onnx.checker.check_model(onnx.load(p))
    assert [i.name for i in m.graph.input] == ["input"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    shapes = export.output_shapes(m)
    assert shapes["score"] == [dims[0].dim_param]
    assert shapes["heatmap"][1:] == [1, 8, 8]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["lae.input_size"] == "64" and meta["lae.mean"] == "0.5,0.5,0.5"
    assert meta["lae.std"] == "0.5,0.5,0.5" and meta["lae.color"] == "RGB"
    assert float(meta["lae.threshold"]) == pytest.approx(0.42) and meta["lae.name"] == "lae-test"
    assert m.opset_import[0].version >= 13


def test_exported_outputs_and_parity_file(tmp_path):
    torch.manual_seed(0)
    net = build("lae-v2", latent=8).eval()
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    rec = export.parity_file(net, x, str(tmp_path / "p.json"))
    assert rec["shape"] == [3, 3, 64, 64] and len(rec["input"]) == 3 * 3 * 64 * 64
    assert len(rec["score"]) == 3 and len(rec["heatmap"]) == 3 * 8 * 8
    s, h = Exported(net)(common.to_tensor(x))
    assert torch.all((s >= 0) & (s <= 1)) and torch.all((h >= 0) & (h <= 1))
    # the score is the pooled heatmap evidence: it is monotone in the map's logits
    np.testing.assert_allclose(rec["score"], s.detach().numpy(), rtol=1e-6)


def test_normalisation_matches_contract():
    px = np.zeros((1, 2, 2, 3), np.uint8)
    px[..., 2] = 255  # BGR red
    t = common.to_tensor(px)
    assert t.shape == (1, 3, 2, 2)
    assert torch.allclose(t[0, 0], torch.ones(2, 2)) and torch.allclose(t[0, 2], -torch.ones(2, 2))
