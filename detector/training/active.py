"""Active learning: which training fakes are worth asking a person to paint a mask for.

Criterion (documented in the card): the pool is every training fake whose mask has not been
revealed. The current model scores each candidate; its priority is

    priority = (1 - p_fake) + 0.5 * dispersion

where p_fake is the predicted probability of "fake" (a fake with low p_fake is a missed or
uncertain detection: the most challenging for the model) and dispersion is the normalised
entropy of its heatmap (1 = evidence spread evenly over the crop, i.e. the model does not know
*where* the manipulation is; 0 = evidence on one cell). Picks are spread over the manipulation
families (round-robin over families, best priority first within each) so one easy-to-miss family
does not take the whole budget. The total budget is at most ``budget_frac`` (3 %) of the
training samples (reals + fakes). Every pick is logged with its numbers and a reason.

Human annotation: ``export_batch`` writes the picks as image PNG + an all-black mask PNG of the
same size + batch.json; annotators paint the manipulated pixels white; ``import_batch`` reads the
painted masks back (and refuses unpainted/mis-sized ones with a clear message). The synthetic
loop uses the same path: the "oracle" paints the known synthetic mask into the batch.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from . import common


def dispersion(heat: np.ndarray) -> float:
    """Normalised entropy of a heatmap seen as a distribution over cells, in [0,1]."""
    p = heat.astype(np.float64).ravel() + 1e-12
    p /= p.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(p)))


def priorities(scores: np.ndarray, heats: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-candidate p_fake, dispersion and priority (see module doc)."""
    disp = np.array([dispersion(h) for h in heats])
    return {"p_fake": scores, "dispersion": disp, "priority": (1 - scores) + 0.5 * disp}


def reason(p: float, d: float) -> str:
    """Human-readable reason for a pick."""
    what = "missed (p_fake<0.5)" if p < 0.5 else ("uncertain (p_fake<0.8)" if p < 0.8 else "detected")
    where = "diffuse evidence" if d > 0.9 else ("spread evidence" if d > 0.75 else "focused evidence")
    return f"{what}, {where}: p_fake={p:.3f}, dispersion={d:.3f}"


def select(families: Sequence[str], scores: np.ndarray, heats: np.ndarray, k: int) -> List[Dict]:
    """Choose k candidates by priority, round-robin over families. Inputs are aligned arrays
    over the pool; returns pick records with 'pool_pos' (position in the pool) and the numbers."""
    if k <= 0 or len(scores) == 0:
        return []
    pr = priorities(scores, heats)
    by_fam: Dict[str, List[int]] = defaultdict(list)
    for pos in np.argsort(-pr["priority"], kind="mergesort"):
        by_fam[families[pos]].append(int(pos))
    picks: List[Dict] = []
    fams = sorted(by_fam)
    ranks = {f: 0 for f in fams}
    while len(picks) < min(k, len(scores)):
        for f in fams:
            if len(picks) >= k:
                break
            if ranks[f] < len(by_fam[f]):
                pos = by_fam[f][ranks[f]]
                ranks[f] += 1
                picks.append({"pool_pos": pos, "family": f, "rank_in_family": ranks[f],
                              "p_fake": round(float(pr["p_fake"][pos]), 4),
                              "dispersion": round(float(pr["dispersion"][pos]), 4),
                              "priority": round(float(pr["priority"][pos]), 4),
                              "reason": reason(float(pr["p_fake"][pos]), float(pr["dispersion"][pos]))})
    return picks


def budget(n_train: int, frac: float = 0.03) -> int:
    """Maximum number of masks for a training set of n_train samples."""
    return int(np.floor(n_train * frac))


def export_batch(images: np.ndarray, picks: Sequence[Dict], out_dir: str) -> str:
    """Write an annotation batch: images/<id>.png, masks/<id>.png (all black, to be painted
    white where manipulated), batch.json (picks with reasons). Each pick names its image by
    "index" (into images) and "id". Returns batch.json's path."""
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
    items = []
    for p in picks:
        img = images[int(p["index"])]
        ip = os.path.join("images", f"{p['id']}.png")
        mp = os.path.join("masks", f"{p['id']}.png")
        common.write_png(os.path.join(out_dir, ip), img)
        common.write_png(os.path.join(out_dir, mp), np.zeros(img.shape[:2], np.uint8))
        items.append({**p, "image": ip, "mask": mp})
    path = os.path.join(out_dir, "batch.json")
    with open(path, "w") as f:
        json.dump({"instructions": "Paint the manipulated pixels of each image white (255) in its "
                                   "mask PNG; leave everything else black. Keep the mask size.",
                   "items": items}, f, indent=1)
    return path


def import_batch(batch_dir: str, allow_empty: bool = False) -> Dict[str, np.ndarray]:
    """Read painted masks back: {id: float32 mask [H,W] in [0,1]}. Raises ValueError naming the
    item when a mask is missing, has the wrong size, or is still empty (unless allow_empty)."""
    with open(os.path.join(batch_dir, "batch.json")) as f:
        batch = json.load(f)
    out = {}
    for it in batch["items"]:
        mp = os.path.join(batch_dir, it["mask"])
        img = cv2.imread(os.path.join(batch_dir, it["image"]), cv2.IMREAD_COLOR)
        m = cv2.imread(mp, cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise ValueError(f"annotation {it['id']}: mask {mp} missing or unreadable")
        if img is not None and m.shape != img.shape[:2]:
            raise ValueError(f"annotation {it['id']}: mask is {m.shape[1]}x{m.shape[0]}, "
                             f"image is {img.shape[1]}x{img.shape[0]}")
        if not allow_empty and not (m >= 128).any():
            raise ValueError(f"annotation {it['id']}: mask {mp} is empty (not painted yet)")
        out[it["id"]] = m.astype(np.float32) / 255.0
    return out


def oracle_paint(masks: np.ndarray, batch_dir: str) -> None:
    """Synthetic annotator: paint each item's known synthetic mask (masks[index], float in
    [0,1]) into the batch, standing in for the person."""
    with open(os.path.join(batch_dir, "batch.json")) as f:
        batch = json.load(f)
    for it in batch["items"]:
        m = np.round(masks[int(it["index"])].astype(np.float32) * 255).astype(np.uint8)
        common.write_png(os.path.join(batch_dir, it["mask"]), m)
