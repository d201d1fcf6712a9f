"""Training degradations: same shape, label-independent, masks untouched, and they really lose detail."""
import numpy as np

from detector.training.degrade import Degrade


def _noise(n=1):
    return np.random.default_rng(0).integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)


def test_chain_keeps_shape_and_loses_high_frequencies():
    x = _noise()[0]
    d = Degrade(p_resize=1, p_blur=1, p_jpeg=1)
    out = d.apply(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.uint8 and out is not x
    # noise is all high frequency: resize + blur + JPEG must flatten it a lot
    assert out.astype(np.float32).std() < 0.6 * x.astype(np.float32).std()


def test_nothing_applied_returns_an_equal_copy():
    x = _noise()[0]
    out = Degrade(p_resize=0, p_blur=0, p_jpeg=0).apply(x, np.random.default_rng(0))
    assert np.array_equal(out, x) and out is not x
