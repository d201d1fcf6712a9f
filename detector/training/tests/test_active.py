"""Active learning: selection criterion, budget, annotation batch round trip."""
import json
import os

import numpy as np
import pytest

from detector.training import active


def test_dispersion_range():
    flat = np.ones((8, 8))
    peak = np.zeros((8, 8))
    peak[3, 3] = 1
    assert active.dispersion(flat) == pytest.approx(1.0, abs=1e-6)
    assert active.dispersion(peak) < 0.05


def test_select_prefers_missed_fakes_and_spreads_families():
    peak = np.zeros((4, 4)) + 1e-3
    peak[0, 0] = 1
    fams = ["a", "a", "a", "b", "b"]
    scores = np.array([0.9, 0.1, 0.5, 0.95, 0.3])
    heats = np.stack([peak] * 5)
    picks = active.select(fams, scores, heats, 3)
    pos = [p["pool_pos"] for p in picks]
    # best of family a (p=0.1), best of b (p=0.3), then next of a (p=0.5)
    assert pos == [1, 4, 2]
    assert all("p_fake" in p and "reason" in p and p["reason"] for p in picks)
    assert "missed" in picks[0]["reason"]


def test_select_uses_dispersion_as_tie_breaker():
    peak = np.zeros((4, 4)) + 1e-3
    peak[0, 0] = 1
    flat = np.ones((4, 4))
    picks = active.select(["a", "a"], np.array([0.6, 0.6]), np.stack([peak, flat]), 1)
    assert picks[0]["pool_pos"] == 1


def test_budget():
    assert active.budget(4000) == 120
    assert active.budget(10, 0.03) == 0
    assert active.select(["a"], np.array([0.1]), np.ones((1, 2, 2)), 0) == []


def _batch(n=4):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((n, 16, 16), np.float32)
    masks[:, 4:10, 4:10] = 1.0
    return x, masks


def test_annotation_batch_round_trip(tmp_path):
    x, masks = _batch()
    picks = [{"index": 1, "id": "s1", "reason": "r"}, {"index": 3, "id": "s3", "reason": "r"}]
    path = active.export_batch(x, picks, str(tmp_path))
    batch = json.load(open(path))
    assert [it["id"] for it in batch["items"]] == ["s1", "s3"]
    assert "image" not in picks[0], "the caller's picks are not modified"
    # an exported mask is empty: importing before painting is refused with a clear error
    with pytest.raises(ValueError, match="s1.*empty"):
        active.import_batch(str(tmp_path))
    active.oracle_paint(masks, str(tmp_path))
    got = active.import_batch(str(tmp_path))
    assert set(got) == {"s1", "s3"}
    assert got["s1"][5, 5] == 1.0 and got["s1"][0, 0] == 0.0


def test_import_rejects_wrong_size(tmp_path):
    import cv2
    x, _ = _batch()
    active.export_batch(x, [{"index": 0, "id": "s0"}], str(tmp_path))
    cv2.imwrite(os.path.join(str(tmp_path), "masks", "s0.png"), np.full((8, 8), 255, np.uint8))
    with pytest.raises(ValueError, match="s0.*8x8"):
        active.import_batch(str(tmp_path))
