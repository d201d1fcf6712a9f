"""Training and evaluation samples for lae-v2, synthesized on the fly from packed real crops.

Every real crop yields a pair: itself (label 0) and a forgery of itself (label 1, with its exact
mask), the self-blended-image pairing that makes the network look at the manipulation rather
than at who is in the picture. Both go through the same random degradation chain (the chain
never sees the label) and then through ``common.resize_like_serving`` to the model input, the
exact resize the Go detector makes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from . import common, forge
from .degrade import Degrade
from .realdata import RealSet

# Between the forger and the detector (both classes alike): the face smaller in the frame than
# the crop (down-scale to 30-100 % and back), blur, block coding. The codec proper (H.264 at
# CRF 18-35) is already in the real crops (realdata re-encodes the videos).
FIELD = Degrade(p_resize=0.6, scale=(0.3, 1.0), p_blur=0.2, sigma=(0.3, 1.2), p_jpeg=0.8, quality=(35, 95))


@dataclass
class Item:
    """One prepared sample at the model input size."""

    image: np.ndarray          # uint8 [S,S,3] BGR
    mask: np.ndarray           # float32 [S,S], zeros for reals
    label: int
    family: str                # "real" or a forge family


class Sampler:
    """Makes real/fake items from a RealSet."""

    def __init__(self, real: RealSet, size: int, degrade: Optional[Degrade] = FIELD):
        self.real = real
        self.size = size
        self.degrade = degrade

    def face(self, i: int) -> forge.Face:
        """Crop i with its landmarks."""
        return forge.Face(self.real.images[i], self.real.landmarks[i].astype(np.float32), str(self.real.identity[i]))

    def donor(self, i: int, rng: np.random.Generator) -> forge.Face:
        """A crop of another person."""
        ids, n = self.real.identity, len(self.real)
        for _ in range(20):
            j = int(rng.integers(n))
            if ids[j] != ids[i]:
                return self.face(j)
        return self.face(int(rng.integers(n)))

    def finish(self, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, flip: bool) -> Tuple[np.ndarray, np.ndarray]:
        """Degrade (label-blind), resize like serving, optionally mirror."""
        if self.degrade is not None:
            img = self.degrade.apply(img, rng)
        img = common.resize_like_serving(img, self.size)
        if mask.shape[0] != self.size:
            mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if flip:
            img, mask = img[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(mask, dtype=np.float32)

    def real_item(self, i: int, rng: np.random.Generator, flip: bool = False) -> Item:
        """Crop i as a real sample."""
        img = self.real.images[i]
        x, m = self.finish(img, np.zeros(img.shape[:2], np.float32), rng, flip)
        return Item(x, m, 0, "real")

    def forgery(self, i: int, rng: np.random.Generator, family: Optional[str] = None) -> forge.Forgery:
        """A forgery of crop i (family drawn from the training mix when not given)."""
        fam = family or forge.pick_family(rng)
        donor = self.donor(i, rng) if fam in ("swap", "part") else None
        return forge.synthesize(fam, self.face(i), rng, donor)

    def fake_item(self, i: int, rng: np.random.Generator, family: Optional[str] = None, flip: bool = False) -> Item:
        """A forgery of crop i as a fake sample."""
        f = self.forgery(i, rng, family)
        x, m = self.finish(f.image, f.mask, rng, flip)
        return Item(x, m, 1, f.family)

    def pairs(self, idx: Sequence[int], rng: np.random.Generator) -> List[Item]:
        """For each index, a forgery of the crop and its real counterpart (same mirror)."""
        out: List[Item] = []
        for i in idx:
            flip = bool(rng.random() < 0.5)
            f = self.forgery(int(i), rng)
            x, m = self.finish(f.base, np.zeros(f.base.shape[:2], np.float32), rng, flip)
            out.append(Item(x, m, 0, "real"))
            x, m = self.finish(f.image, f.mask, rng, flip)
            out.append(Item(x, m, 1, f.family))
        return out


def to_batch(items: Sequence[Item]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [N,3,S,S] normalised, y [N], masks [N,1,S,S]) tensors."""
    x = common.to_tensor(np.stack([it.image for it in items]))
    y = torch.tensor([it.label for it in items])
    m = torch.from_numpy(np.stack([it.mask for it in items])).unsqueeze(1)
    return x, y, m


@dataclass
class EvalSet:
    """A fixed evaluation set: images, labels, masks, families, identities."""

    x: np.ndarray
    y: np.ndarray
    masks: np.ndarray
    family: np.ndarray

    def subset(self, sel: np.ndarray) -> "EvalSet":
        """Rows where sel is true."""
        return EvalSet(self.x[sel], self.y[sel], self.masks[sel], self.family[sel])


def build_eval(sampler: Sampler, families: Sequence[str], n_real: int, n_per_family: int, seed: int) -> EvalSet:
    """n_real reals and n_per_family forgeries of each family from distinct crops (seeded)."""
    rng = np.random.default_rng(seed)
    n = len(sampler.real)
    items: List[Item] = []
    for i in rng.choice(n, min(n, n_real), replace=False):
        items.append(sampler.real_item(int(i), rng))
    for fam in families:
        for i in rng.choice(n, min(n, n_per_family), replace=False):
            items.append(sampler.fake_item(int(i), rng, fam))
    return EvalSet(np.stack([it.image for it in items]), np.array([it.label for it in items]),
                   np.stack([it.mask for it in items]).astype(np.float16), np.array([it.family for it in items]))


@torch.no_grad()
def predict(model, x: np.ndarray, batch: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Scores [n] and heatmaps [n,h,w] for uint8 BGR images [n,S,S,3]."""
    model.eval()
    dev = next(model.parameters()).device
    scores, heats = [], []
    for k in range(0, len(x), batch):
        xb = common.to_tensor(x[k:k + batch]).to(dev).contiguous(memory_format=torch.channels_last)
        out = model(xb, reconstruct=False)
        scores.append(torch.sigmoid(out["logit"]).cpu().numpy())
        heats.append(torch.sigmoid(out["logit_map"])[:, 0].cpu().numpy())
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, 1, 1), np.float32)
    return np.concatenate(scores), np.concatenate(heats)
