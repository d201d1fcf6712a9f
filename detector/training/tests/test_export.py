"""ONNX export: checker, I/O names, dynamic batch, metadata; the shipped model and its card."""
import json
import os

import numpy as np
import onnx
import pytest
import torch

from detector.training import common, export
from detector.training.model import LAE, Exported

MODELS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "models"))


@pytest.mark.parametrize("stem", ["rgb", "residual"])
def test_export_contract(tmp_path, stem):
    torch.manual_seed(0)
    net = LAE((8, 8, 8), stem=stem).eval()
    p = str(tmp_path / "m.onnx")
    m = export.export_onnx(net, p, export.metadata("lae-test", "0.0.1", 0.42))
    onnx.checker.check_model(onnx.load(p))
    assert [i.name for i in m.graph.input] == ["input"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 128, 128]
    shapes = export.output_shapes(m)
    assert shapes["score"] == [dims[0].dim_param]
    assert shapes["heatmap"][1:] == [1, 32, 32]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["lae.input_size"] == "128" and meta["lae.mean"] == "0.5,0.5,0.5"
    assert meta["lae.std"] == "0.5,0.5,0.5" and meta["lae.color"] == "RGB"
    assert float(meta["lae.threshold"]) == pytest.approx(0.42) and meta["lae.name"] == "lae-test"
    assert m.opset_import[0].version >= 13


def test_exported_outputs_and_parity_file(tmp_path):
    torch.manual_seed(0)
    net = LAE((8, 8, 8)).eval()
    x = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    rec = export.parity_file(net, x, str(tmp_path / "p.json"))
    assert rec["shape"] == [3, 3, 128, 128] and len(rec["input"]) == 3 * 3 * 128 * 128
    assert len(rec["score"]) == 3 and len(rec["heatmap"]) == 3 * 32 * 32
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


@pytest.mark.skipif(not os.path.exists(os.path.join(MODELS, "lae-v1.onnx")), reason="no shipped model yet")
def test_shipped_model_and_card():
    m = onnx.load(os.path.join(MODELS, "lae-v1.onnx"))
    onnx.checker.check_model(m)
    meta = {p.key: p.value for p in m.metadata_props}
    for k in ("lae.input_size", "lae.mean", "lae.std", "lae.color", "lae.version", "lae.threshold", "lae.name"):
        assert k in meta, k
    assert os.path.getsize(os.path.join(MODELS, "lae-v1.onnx")) < 20 * 2**20
    card = json.load(open(os.path.join(MODELS, "lae-v1.card.json")))
    for k in ("name", "version", "input_size", "mean", "std", "color", "outputs"):
        assert k in card["model"], k
    assert float(meta["lae.threshold"]) == pytest.approx(card["threshold"], abs=1e-5)
    for grp in ("seen", "unseen"):
        for arm in ("lae", "baseline"):
            assert {"auc", "acc"} <= set(card["eval"][grp][arm])
    assert "attention_iou" in card["eval"] and "mask_fraction" in card["eval"]
    assert card["eval"]["mask_fraction"] <= 0.03 + 1e-9
    assert card["data"] and card["protocol"] and card["training"]
    par = json.load(open(os.path.join(MODELS, "lae-v1.parity.json")))
    n = len(par["score"])
    assert 2 <= n <= 4 and len(par["input"]) == n * 3 * 128 * 128
    # the parity reference is reproducible from the checkpoint shipped beside the ONNX file
    from detector.training.evaluate import load_checkpoint
    net, _ = load_checkpoint(os.path.join(MODELS, "lae-v1.pt"))
    x = torch.tensor(par["input"], dtype=torch.float32).view(n, 3, 128, 128)
    s, h = Exported(net)(x)
    np.testing.assert_allclose(s.detach().numpy(), par["score"], atol=1e-5)
    np.testing.assert_allclose(h.detach().numpy().ravel(), par["heatmap"], atol=1e-5)
