"""Metrics: AUC, threshold calibration, localisation."""
import numpy as np
import pytest

from detector.training.metrics import accuracy, auc, calibrate_threshold, localisation


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
