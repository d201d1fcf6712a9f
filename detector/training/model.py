"""The LAE network (lae-v2): a locality-aware autoencoder whose encoder is the ImageNet
MobileNetV2 trunk and whose latent map carries the fake decision.

* encoder: MobileNetV2 ``features[:7]`` (stride 8) and ``features[7:14]`` (stride 16), fused
  FPN-style into the latent z (C x S/8 x S/8);
* decoder (training only): reconstructs the input from z, the autoencoder part of the LAE (Du et
  al. 2020, "Towards Generalizable Deepfake Detection with Locality-aware AutoEncoder");
* decision head (CAM-style over the latent): a 1x1 conv gives a fake-evidence logit per latent
  cell, L (1 x S/8 x S/8). The interpretation map is heat = sigmoid(L), and the image logit is
  log-sum-exp pooling of L, s = (1/r) * log(mean(exp(r * L))), r = 4 (between mean and max
  pooling, so a local forgery can carry the decision). Because s is a monotone pooling of L, the
  heatmap is exactly the local evidence behind the score and is computed in the forward graph.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cbr(i: int, o: int, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, 1, d, dilation=d, bias=False), nn.BatchNorm2d(o),
                         nn.ReLU(inplace=True))


def lse_pool(logit_map: torch.Tensor, r: float) -> torch.Tensor:
    """Log-sum-exp pooling of the evidence map [N,1,h,w] to one logit per image."""
    flat = logit_map.flatten(1) * r
    # log(mean(exp(v))) computed stably without the cell count as a traced constant
    top = flat.max(dim=1, keepdim=True)[0].detach()
    return (top[:, 0] + torch.log(torch.exp(flat - top).mean(dim=1))) / r


MOBILENET_V2 = "models/backbones/mobilenet_v2_imagenet.pth"  # relative to ../shared/data


class MobileLAE(nn.Module):
    """LAE whose encoder is the ImageNet MobileNetV2 trunk (torchvision layout).

    * encoder: MobileNetV2 ``features[:7]`` (stride 8, 32 channels) and ``features[7:14]``
      (stride 16, 96 channels); the stride-16 map is up-sampled and added to the stride-8 one
      (1x1 projections, FPN-style), then one conv3x3-BN-ReLU: the latent z (C x S/8 x S/8)
      keeps spatial detail (a 24x24 map at S=192) while seeing the semantics of stride 16;
    * decoder (training only): conv3x3-BN-ReLU, conv3x3 to 3*8*8 channels, pixel-shuffle(8):
      reconstructs the normalised input from z (the autoencoder part of the LAE);
    * decision: CAM-style 1x1 conv over z gives the per-cell evidence logit L, pooled by
      log-sum-exp (r) into the image logit, as in ``LAE``; heatmap = sigmoid(L).

    Pretrained weights matter more than anything else here: training a detector from scratch on
    a few thousand faces is what capped lae-v1 (detector/training/README.md, "History").
    """

    def __init__(self, latent: int = 64, lse_r: float = 4.0, pretrained: Optional[str] = None):
        super().__init__()
        import torchvision
        mb = torchvision.models.mobilenet_v2()
        if pretrained:
            mb.load_state_dict(torch.load(pretrained, map_location="cpu"))
        self.s8 = mb.features[:7]
        self.s16 = mb.features[7:14]
        self.p8 = nn.Conv2d(32, latent, 1)
        self.p16 = nn.Conv2d(96, latent, 1)
        self.fuse = _cbr(latent, latent)
        self.head = nn.Conv2d(latent, 1, 1)
        self.decoder = nn.Sequential(_cbr(latent, latent), nn.Conv2d(latent, 3 * 64, 3, 1, 1), nn.PixelShuffle(8))
        self.lse_r = lse_r
        self.latent = latent
        self.stem_kind = "mobilenet_v2"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent map z [N,C,S/8,S/8]."""
        f8 = self.s8(x)
        f16 = self.s16(f8)
        up = F.interpolate(self.p16(f16), size=f8.shape[-2:], mode="nearest")
        return self.fuse(self.p8(f8) + up)

    def pool(self, logit_map: torch.Tensor) -> torch.Tensor:
        """Image logit from the evidence map (lse_pool)."""
        return lse_pool(logit_map, self.lse_r)

    def train(self, mode: bool = True) -> "MobileLAE":
        """Training mode everywhere except the trunk's BatchNorms: their statistics stay the
        pretrained ones (folded to identity in the shipped weights), because batch statistics
        of small face batches would replace what ImageNet taught and wreck the features at the
        first step."""
        super().train(mode)
        for mod in list(self.s8.modules()) + list(self.s16.modules()):
            if isinstance(mod, nn.BatchNorm2d):
                mod.eval()
        return self

    def forward(self, x: torch.Tensor, reconstruct: bool = True) -> Dict[str, torch.Tensor]:
        """Returns logit_map [N,1,S/8,S/8], logit [N] and (if reconstruct) recon [N,3,S,S]."""
        z = self.encode(x)
        lm = self.head(z)
        out = {"logit_map": lm, "logit": self.pool(lm)}
        if reconstruct:
            out["recon"] = self.decoder(z)
        return out


# name -> constructor; checkpoints store the name and the constructor's keyword arguments.
REGISTRY = {"lae-v2": MobileLAE}


def build(name: str, **kw) -> nn.Module:
    """The network registered under name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown network {name!r}; want one of {sorted(REGISTRY)}")
    return REGISTRY[name](**kw)


class Exported(nn.Module):
    """The serving graph: input -> (score [N] = P(fake), heatmap [N,1,h,w] in [0,1])."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        lm = self.net.head(self.net.encode(x))
        return torch.sigmoid(self.net.pool(lm)), torch.sigmoid(lm)


def n_params(m: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in m.parameters())
