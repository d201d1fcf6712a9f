"""Metrics: AUC, threshold calibration, localisation."""
import numpy as np
import pytest

from detector.training.metrics import accuracy, auc, calibrate_threshold, fpr_threshold, localisation


def test_auc():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    assert auc([0, 0, 1, 1], [0.1, 0.6, 0.5, 0.9]) == 0.75
    assert auc([1, 1], [0.1, 0.2]) is None


def test_threshold_and_accuracy():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    t = calibrate_threshold(y, s)
    assert 0.3 < t <= 0.6
    assert accuracy(y, s, t) == 1.0


@pytest.mark.parametrize("reals,max_fpr,flagged", [
    (np.arange(20) / 20, 0.05, 1),           # exactly 5 % may be flagged: the top score
    (np.arange(20) / 20, 0.0, 0),            # nothing flagged
    (np.arange(100) / 100, 0.05, 5),
    (np.full(10, 0.5), 0.05, 0),             # a tie at the cut stays unflagged
    (np.array([0.1, 0.9, 0.9, 0.9]), 0.5, 0),  # flagging the tie would exceed the rate
    (np.random.default_rng(0).random(300), 0.05, 15),
])
def test_fpr_threshold(reals, max_fpr, flagged):
    t = fpr_threshold(reals, max_fpr)
    assert int((np.asarray(reals) >= t).sum()) == flagged
    assert (np.asarray(reals) >= t).mean() <= max_fpr + 1e-12


def test_fpr_threshold_is_above_balanced_when_classes_overlap():
    rng = np.random.default_rng(1)
    reals, fakes = rng.normal(0.4, 0.1, 500), rng.normal(0.6, 0.1, 500)
    y = np.r_[np.zeros(500), np.ones(500)]
    assert fpr_threshold(reals, 0.05) > calibrate_threshold(y, np.r_[reals, fakes])


def test_localisation():
    mask = np.zeros((128, 128), np.float32)
    mask[32:64, 32:64] = 1
    heat = np.zeros((32, 32), np.float32)
    heat[8:16, 8:16] = 0.9
    loc = localisation(heat, mask)
    assert loc["iou_rel"] > 0.7 and loc["iou_abs"] > 0.7 and loc["pointing"] == 1.0
    assert loc["outside"] < 0.2
    off = localisation(np.roll(heat, 14, axis=0), mask)
    assert off["iou_rel"] < 0.1 and off["pointing"] == 0.0
