"""The network: the residual stem's fixed filters, shapes, and the checkpoint round trip."""
import numpy as np
import pytest
import torch

from detector.training.evaluate import load_checkpoint, save_checkpoint
from detector.training.model import LAE, ResidualStem


def _raw_residuals(x: torch.Tensor) -> torch.Tensor:
    stem = ResidualStem()
    return torch.nn.functional.conv2d(x, stem.kernel, padding=2, groups=3)


def test_residual_stem_sees_only_local_changes():
    x = torch.full((1, 3, 32, 32), 0.3)
    r = _raw_residuals(x)
    # channel order per colour: pixels, Laplacian residual, KV residual
    assert torch.allclose(r[0, 0], x[0, 0])
    inner = r[0, :, 4:-4, 4:-4]
    assert inner[[1, 2, 4, 5, 7, 8]].abs().max() < 1e-6, "flat content must give zero residuals"
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    assert _raw_residuals(ramp)[0, [1, 2], 4:-4, 4:-4].abs().max() < 1e-5, "smooth shading is not a trace"
    y = x.clone()
    y[0, 1, 16, 16] += 0.5  # one altered green pixel
    d = (_raw_residuals(y) - r)[0]
    assert d[[4, 5]].abs().max() > 0.05
    assert d[[1, 2, 7, 8]].abs().max() < 1e-6, "a change in one colour must not leak into the others"
    assert torch.count_nonzero(d[5].abs() > 1e-6) <= 25, "the residual stays local (5x5)"


def test_residual_stem_filters_are_fixed():
    net = LAE((8, 8, 8), stem="residual")
    names = [n for n, _ in net.named_parameters()]
    assert not any("kernel" in n for n in names)
    assert "stem.kernel" in dict(net.named_buffers())


@pytest.mark.parametrize("stem", ["rgb", "residual"])
def test_checkpoint_round_trip_keeps_stem(tmp_path, stem):
    torch.manual_seed(0)
    net = LAE((8, 8, 8), stem=stem).eval()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 128, 128)).astype(np.float32))
    p = str(tmp_path / "m.pt")
    save_checkpoint(p, net, {"threshold": 0.5})
    back, ck = load_checkpoint(p)
    assert back.stem_kind == stem and ck["stem"] == stem
    with torch.no_grad():
        assert torch.equal(net(x, reconstruct=False)["logit"], back(x, reconstruct=False)["logit"])


def test_unknown_stem_is_refused():
    with pytest.raises(ValueError, match="unknown stem"):
        LAE((8, 8, 8), stem="srm")
