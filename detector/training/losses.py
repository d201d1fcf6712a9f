"""Losses of LAE training (weights live in LossWeights and are copied into the model card).

Total loss for a batch (Du et al. 2020, LAE; reconstruction as in ForensicTransfer):

    L = L_cls + w_rec * L_rec + w_loc * L_loc

* L_cls: binary cross-entropy between the pooled image logit and the label (1 = fake).
* L_rec: mean absolute error between the reconstruction and the (normalised) input, all samples.
* L_loc (locality), only over fakes whose mask is revealed (active learning) or known (all-mask
  runs); M is the mask average-pooled to the heatmap grid, H = sigmoid(logit map):
    - outside mass: sum(H * (1 - M)) / (sum(H) + eps) -- the share of fake evidence lying
      outside the manipulated region, the LAE attention constraint;
    - coverage: BCE(logit map, M) weighted by w_cov -- keeps the evidence on the whole region
      rather than on one cell, so the map is usable as a localisation (attention IoU).
  L_loc = outside + w_cov * coverage, averaged over the masked samples of the batch.
The baseline uses the same network and loss with w_loc = 0 (no mask ever used).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F


@dataclass
class LossWeights:
    """Loss weights (see module doc)."""

    rec: float = 0.5
    loc: float = 1.0
    cov: float = 0.5

    def to_dict(self) -> dict:
        """JSON form for the model card."""
        return asdict(self)


def mask_to_grid(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool masks [N,1,S,S] (float [0,1]) to the heatmap grid [N,1,grid,grid]."""
    return F.adaptive_avg_pool2d(mask, grid)


def outside_mass(logit_map: torch.Tensor, mask_grid: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample share of interpretation mass outside the mask, in [0,1]."""
    h = torch.sigmoid(logit_map)
    return (h * (1 - mask_grid)).flatten(1).sum(1) / (h.flatten(1).sum(1) + eps)


def locality_loss(logit_map: torch.Tensor, mask_grid: torch.Tensor, w_cov: float) -> torch.Tensor:
    """Mean over samples of outside mass + w_cov * BCE coverage (see module doc)."""
    out = outside_mass(logit_map, mask_grid)
    cov = F.binary_cross_entropy_with_logits(logit_map, mask_grid, reduction="none").flatten(1).mean(1)
    return (out + w_cov * cov).mean()


def total_loss(out: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               masks: Optional[torch.Tensor], has_mask: Optional[torch.Tensor],
               w: LossWeights, use_masks: bool, cls_sel: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """All loss terms for a batch; has_mask selects the samples whose mask may be used and
    cls_sel (default all) the samples that count for the classification term."""
    if cls_sel is None:
        cls = F.binary_cross_entropy_with_logits(out["logit"], y.float())
    else:
        cls = F.binary_cross_entropy_with_logits(out["logit"][cls_sel], y[cls_sel].float())
    rec = (out["recon"] - x).abs().mean() if "recon" in out else torch.zeros(())
    loc = torch.zeros(())
    if use_masks and masks is not None and has_mask is not None and bool(has_mask.any()):
        lm = out["logit_map"][has_mask]
        mg = mask_to_grid(masks[has_mask], lm.shape[-1])
        loc = locality_loss(lm, mg, w.cov)
    total = cls + w.rec * rec + (w.loc * loc if use_masks else 0.0)
    return {"total": total, "cls": cls.detach(), "rec": rec.detach(), "loc": loc.detach()}
