"""The training loop and batched prediction.

Masked samples (fakes whose mask is revealed) are few under active learning (<= 3 %), so every
batch carries up to ``mask_per_batch`` of them drawn with replacement; the locality loss is
averaged over them, so its weight does not depend on how many masks there are.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from . import common
from .data import Arrays
from .degrade import Degrade
from .losses import LossWeights, total_loss
from .model import LAE


@dataclass
class TrainConfig:
    """Optimisation settings (copied into the model card)."""

    epochs: float = 3.0
    batch: int = 32
    lr: float = 2e-3
    lr_min_frac: float = 0.1
    weight_decay: float = 1e-4
    mask_per_batch: int = 8
    flip: bool = True
    degrade: bool = True  # degrade.Degrade() on every training crop (see degrade.py)
    seed: int = 0
    time_budget_s: Optional[float] = None

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def _batch(data: Arrays, idx: np.ndarray, flip: np.ndarray, degrade: Optional[Degrade] = None,
           rng: Optional[np.random.Generator] = None):
    x = data.x[idx]
    m = data.masks[idx]
    if degrade is not None:
        x = np.stack([degrade.apply(im, rng) for im in x])
    if flip.any():
        x = x.copy()
        m = m.copy()
        x[flip] = x[flip, :, ::-1]
        m[flip] = m[flip, :, ::-1]
    xt = common.to_tensor(x)
    mt = torch.from_numpy(m.astype(np.float32) / 255.0).unsqueeze(1)
    return xt, mt


def make_units(data: Arrays, train_idx: Sequence[int]) -> List[np.ndarray]:
    """Group each training forgery with the real crop it was made from (manifest field
    "base"): the pair goes into the same batch with the same flip, so the network sees the
    manipulation against its own original (the pairing of self-blended-image training), which
    made the classifier start learning far sooner on this small CPU budget."""
    pos = {data.samples[i].id: int(i) for i in train_idx}
    used = set()
    units: List[np.ndarray] = []
    for i in train_idx:
        base = data.samples[i].extra.get("base")
        if data.y[i] == 1 and base in pos and pos[base] not in used:
            units.append(np.array([pos[base], int(i)]))
            used.update((pos[base], int(i)))
    units.extend(np.array([int(i)]) for i in train_idx if int(i) not in used)
    return units


def _epoch_order(units: List[np.ndarray], rng: np.random.Generator, flip: bool):
    perm = rng.permutation(len(units))
    order = np.concatenate([units[k] for k in perm])
    fl = np.concatenate([np.full(len(units[k]), flip and rng.random() < 0.5) for k in perm])
    return order, fl


def train(model: LAE, data: Arrays, train_idx: Sequence[int], mask_idx: Sequence[int],
          cfg: TrainConfig, weights: LossWeights, use_masks: bool,
          log: Callable[[str], None] = print, tag: str = "") -> Dict:
    """Train model in place on train_idx; masks are used only for samples in mask_idx (and only
    if use_masks). Returns a summary (steps, seconds, last losses)."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_idx = np.asarray(train_idx, np.int64)
    mask_idx = np.asarray([i for i in mask_idx if data.has_mask_file[i]], np.int64)
    mask_set = set(mask_idx.tolist())
    steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch))
    total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    t0 = time.time()
    step = 0
    hist = []
    units = make_units(data, train_idx)
    order, flip_all = _epoch_order(units, rng, cfg.flip)
    pos = 0
    while step < total_steps:
        if cfg.time_budget_s and time.time() - t0 > cfg.time_budget_s:
            log(f"{tag} time budget reached at step {step}/{total_steps}")
            break
        if pos + cfg.batch > len(order):
            order, flip_all = _epoch_order(units, rng, cfg.flip)
            pos = 0
        b = order[pos:pos + cfg.batch]
        flip = flip_all[pos:pos + cfg.batch]
        pos += cfg.batch
        n_regular = len(b)
        if use_masks and len(mask_idx):
            extra = rng.choice(mask_idx, min(cfg.mask_per_batch, cfg.batch // 2), replace=True)
            b = np.concatenate([b, extra])
            flip = np.concatenate([flip, rng.random(len(extra)) < 0.5 if cfg.flip else np.zeros(len(extra), bool)])
        x, m = _batch(data, b, flip, Degrade() if cfg.degrade else None, rng)
        y = torch.from_numpy(data.y[b])
        has = torch.tensor([int(i) in mask_set for i in b])
        frac = step / max(1, total_steps - 1)
        lr = cfg.lr * (cfg.lr_min_frac + (1 - cfg.lr_min_frac) * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        out = model(x)
        # Over-sampled masked fakes feed the locality (and reconstruction) terms only: in the
        # classification term they would tilt the class balance and, with a 3 % budget, be
        # memorised (each one recurs dozens of times).
        cls_sel = torch.arange(len(b)) < n_regular
        ls = total_loss(out, x, y, m, has, weights, use_masks, cls_sel)
        opt.zero_grad()
        ls["total"].backward()
        opt.step()
        hist.append([float(ls[k]) for k in ("total", "cls", "rec", "loc")])
        step += 1
        if step % 25 == 0 or step == total_steps:
            h = np.mean(hist[-25:], axis=0)
            log(f"{tag} step {step}/{total_steps} loss {h[0]:.3f} cls {h[1]:.3f} rec {h[2]:.3f} "
                f"loc {h[3]:.3f} lr {lr:.1e} {time.time() - t0:.0f}s")
    model.eval()
    return {"steps": step, "seconds": round(time.time() - t0, 1), "masks_used": int(len(mask_idx)) if use_masks else 0,
            "last_loss": [round(v, 4) for v in np.mean(hist[-25:], axis=0).tolist()] if hist else None}


@torch.no_grad()
def predict(model: LAE, data: Arrays, idx: Sequence[int], batch: int = 64):
    """Scores (P(fake)) [n] and heatmaps [n,h,w] for samples idx."""
    model.eval()
    idx = np.asarray(idx, np.int64)
    scores, heats = [], []
    for k in range(0, len(idx), batch):
        b = idx[k:k + batch]
        x = common.to_tensor(data.x[b])
        out = model(x, reconstruct=False)
        scores.append(torch.sigmoid(out["logit"]).numpy())
        heats.append(torch.sigmoid(out["logit_map"])[:, 0].numpy())
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, 1, 1), np.float32)
    return np.concatenate(scores), np.concatenate(heats)
