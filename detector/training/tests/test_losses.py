"""Losses: the locality term measures and reduces evidence outside the mask."""
import torch

from detector.training.losses import LossWeights, locality_loss, mask_to_grid, outside_mass, total_loss
from detector.training.model import build


def _mask():
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:5, 2:5] = 1
    return m


def test_outside_mass_bounds():
    m = _mask()
    inside = torch.where(m > 0, torch.tensor(10.0), torch.tensor(-10.0))
    outside = -inside
    assert outside_mass(inside, m).item() < 0.01
    assert outside_mass(outside, m).item() > 0.99


def test_locality_gradient_moves_evidence_into_mask():
    m = _mask()
    lm = torch.zeros(1, 1, 8, 8, requires_grad=True)
    opt = torch.optim.SGD([lm], lr=50.0)
    before = outside_mass(lm, m).item()
    for _ in range(100):
        loss = locality_loss(lm, m, w_cov=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = outside_mass(lm, m).item()
    assert after < before * 0.5
    assert torch.sigmoid(lm)[m > 0].mean() > torch.sigmoid(lm)[m == 0].mean() + 0.3


def test_mask_to_grid_averages():
    m = torch.zeros(1, 1, 128, 128)
    m[..., :64, :] = 1
    g = mask_to_grid(m, 32)
    assert g.shape == (1, 1, 32, 32)
    assert torch.allclose(g[..., :16, :], torch.ones(1)) and torch.allclose(g[..., 16:, :], torch.zeros(1))


def test_total_loss_baseline_ignores_masks():
    torch.manual_seed(0)
    net = build("lae-v2", latent=8)
    x = torch.randn(4, 3, 64, 64)
    y = torch.tensor([0, 1, 1, 0])
    masks = torch.zeros(4, 1, 64, 64)
    masks[1, :, 16:40, 16:40] = 1
    has = torch.tensor([False, True, False, False])
    out = net(x)
    w = LossWeights()
    base = total_loss(out, x, y, masks, has, w, use_masks=False)
    lae = total_loss(out, x, y, masks, has, w, use_masks=True)
    assert base["loc"].item() == 0
    assert lae["loc"].item() > 0
    assert torch.isclose(lae["total"], base["total"] + w.loc * lae["loc"], atol=1e-5)
    # reconstruction and classification terms are the same in both
    assert torch.isclose(lae["cls"], base["cls"]) and torch.isclose(lae["rec"], base["rec"])


def test_cls_selection_excludes_oversampled_masks():
    torch.manual_seed(0)
    net = build("lae-v2", latent=8)
    x = torch.randn(3, 3, 64, 64)
    y = torch.tensor([0, 1, 1])
    out = net(x)
    sel = torch.tensor([True, True, False])
    a = total_loss(out, x, y, None, None, LossWeights(), use_masks=False, cls_sel=sel)
    want = torch.nn.functional.binary_cross_entropy_with_logits(out["logit"][:2], y[:2].float())
    assert torch.isclose(a["cls"], want)
