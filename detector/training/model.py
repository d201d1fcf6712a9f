"""The LAE network: a convolutional autoencoder whose latent map also carries the fake decision.

Architecture (input 3xSxS, S=128, normalised RGB):

* stem: pixel-unshuffle by 4 (lossless space-to-depth: every pixel reaches the encoder, which
  matters for high-frequency traces, at 1/16 of the spatial cost; 2 CPU cores train this);
* encoder: 5 conv3x3-BN-ReLU layers at S/4 with dilations 1,2,1,2,4 (receptive field ~88 px)
  -> latent map z (C x S/4 x S/4);
* decoder: 2 conv3x3-BN-ReLU + conv3x3 to 48 channels + pixel-shuffle -> reconstruction of x
  (the autoencoder part: the latent must keep fine detail, Du et al. 2020 "Towards Generalizable
  Deepfake Detection with Locality-aware AutoEncoder", following ForensicTransfer, Cozzolino et
  al. 2018);
* decision head (CAM-style over the latent, the variant DESIGN.md allows): a 1x1 conv gives a
  fake-evidence logit per latent cell, L (1 x S/4 x S/4). The interpretation map is
  heat = sigmoid(L), and the image logit is log-sum-exp pooling of L,
  s = (1/r) * log(mean(exp(r * L))), r = 4 (between mean and max pooling, so a local forgery
  can carry the decision). Because s is a monotone pooling of L, the heatmap is exactly the
  local evidence behind the score and is computed in the forward graph (no backward pass).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cbr(i: int, o: int, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, 1, d, dilation=d, bias=False), nn.BatchNorm2d(o),
                         nn.ReLU(inplace=True))


STEMS = ("rgb", "residual")


class ResidualStem(nn.Module):
    """Fixed high-pass residuals beside the pixels: per colour channel the image itself, a 3x3
    Laplacian residual and the 5x5 "KV" residual of the SRM steganalysis filters (Fridrich &
    Kodovsky 2012, used for manipulation traces by RGB-N, Zhou et al. 2018). Blending seams,
    inpainting, resampling and recompression live in these residuals, while the pixels are
    dominated by face content; a small network trained from scratch on CPU picks the traces up far
    sooner when they are handed to it than when its first layer has to discover them. A
    BatchNorm scales the residuals (tiny next to pixel values) to the pixels' range."""

    def __init__(self):
        super().__init__()
        lap = torch.tensor([[0., 0., 0., 0., 0.], [0., -1., 2., -1., 0.], [0., 2., -4., 2., 0.],
                            [0., -1., 2., -1., 0.], [0., 0., 0., 0., 0.]]) / 4.0
        kv = torch.tensor([[-1., 2., -2., 2., -1.], [2., -6., 8., -6., 2.], [-2., 8., -12., 8., -2.],
                           [2., -6., 8., -6., 2.], [-1., 2., -2., 2., -1.]]) / 12.0
        ident = torch.zeros(5, 5)
        ident[2, 2] = 1.0
        k = torch.stack([ident, lap, kv]).unsqueeze(1)  # [3,1,5,5]: per input channel, 3 outputs
        self.register_buffer("kernel", k.repeat(3, 1, 1, 1))  # [9,1,5,5], groups=3
        self.norm = nn.BatchNorm2d(9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.conv2d(x, self.kernel, padding=2, groups=3))


class LAE(nn.Module):
    """Locality-aware autoencoder with a CAM head over the latent map."""

    def __init__(self, widths: Tuple[int, int, int] = (32, 48, 64), lse_r: float = 4.0, stem: str = "rgb"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; want one of {STEMS}")
        a, b, c = widths
        self.widths = widths
        self.lse_r = lse_r
        self.stem_kind = stem
        self.stem = ResidualStem() if stem == "residual" else nn.Identity()
        cin = 9 if stem == "residual" else 3
        self.unshuffle = nn.PixelUnshuffle(4)
        self.encoder = nn.Sequential(_cbr(cin * 16, a), _cbr(a, a, 2), _cbr(a, b), _cbr(b, b, 2), _cbr(b, c, 4))
        self.head = nn.Conv2d(c, 1, 1)
        self.decoder = nn.Sequential(_cbr(c, b), _cbr(b, a), nn.Conv2d(a, 48, 3, 1, 1), nn.PixelShuffle(4))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent map z [N,C,S/4,S/4]."""
        return self.encoder(self.unshuffle(self.stem(x)))

    def pool(self, logit_map: torch.Tensor) -> torch.Tensor:
        """Log-sum-exp pooling of the evidence map to one logit per image."""
        flat = logit_map.flatten(1) * self.lse_r
        # log(mean(exp(v))) computed stably without the cell count as a traced constant
        top = flat.max(dim=1, keepdim=True)[0].detach()
        return (top[:, 0] + torch.log(torch.exp(flat - top).mean(dim=1))) / self.lse_r

    def forward(self, x: torch.Tensor, reconstruct: bool = True) -> Dict[str, torch.Tensor]:
        """Returns logit_map [N,1,h,w], logit [N] and (if reconstruct) recon [N,3,S,S]."""
        z = self.encode(x)
        lm = self.head(z)
        out = {"logit_map": lm, "logit": self.pool(lm)}
        if reconstruct:
            out["recon"] = self.decoder(z)
        return out


class Exported(nn.Module):
    """The serving graph: input -> (score [N] = P(fake), heatmap [N,1,S/4,S/4] in [0,1])."""

    def __init__(self, net: LAE):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        lm = self.net.head(self.net.encode(x))
        return torch.sigmoid(self.net.pool(lm)), torch.sigmoid(lm)


def n_params(m: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------------------------
# lae-v2: the LAE on an ImageNet-pretrained MobileNetV2 trunk.

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
    a few thousand faces is what capped lae-v1 (see detector/training/README.md).
    """

    def __init__(self, latent: int = 64, lse_r: float = 4.0, pretrained: Optional[str] = None):
        super().__init__()
        import torchvision  # imported here so lae-v1 code paths need no torchvision
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

    pool = LAE.pool

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
REGISTRY = {"lae-v1": LAE, "lae-v2": MobileLAE}


def build(name: str, **kw) -> nn.Module:
    """The network registered under name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown network {name!r}; want one of {sorted(REGISTRY)}")
    return REGISTRY[name](**kw)
