"""The CI smoke run: the whole pipeline end to end on a tiny dataset, under two minutes."""
import json
import os
import time

import onnx

from detector.training import smoke


def test_smoke_pipeline(tmp_path):
    t = time.time()
    card = smoke.run(str(tmp_path))
    took = time.time() - t
    assert took < 120, f"smoke run took {took:.0f}s"
    models = tmp_path / "models"
    m = onnx.load(str(models / "lae-smoke.onnx"))
    onnx.checker.check_model(m)
    assert card["eval"]["mask_fraction"] <= 0.03
    assert set(card["eval"]["unseen"]) >= {"lae", "baseline"}
    # both val-calibrated operating points are reported; the shipped one flags <= 5 % of val reals
    th = card["thresholds"]
    assert th["shipped"] == "fpr_5pct" and abs(card["threshold"] - th["fpr_5pct"]["threshold"]) < 1e-4
    assert th["fpr_5pct"]["val"]["fpr"] <= 0.05
    assert th["balanced_accuracy"]["threshold"] == card["eval"]["release"]["threshold_balanced_accuracy"]
    meta = {p.key: p.value for p in m.metadata_props}
    assert abs(float(meta["lae.threshold"]) - card["threshold"]) < 1e-6
    picks = [json.loads(l) for l in open(tmp_path / "al_picks.jsonl")]
    assert all(p["reason"] and "p_fake" in p for p in picks)
    assert os.path.exists(tmp_path / "annotation_round1" / "batch.json")
