"""Evaluation of a model on a manifest: accuracy and AUC overall, per family, seen vs unseen;
localisation of the heatmap against the true masks of fakes; JSON output.

CLI: /usr/bin/python3 -m detector.training.evaluate --manifest DIR/manifest.jsonl
        [--model detector/models/lae-v1.pt] [--split test] [--threshold T]
prints the JSON report (the threshold defaults to the one stored in the checkpoint).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from . import common
from .data import Arrays, load_arrays
from .metrics import accuracy, auc, calibrate_threshold, fpr_threshold, localisation
from .model import LAE
from .trainer import predict


def _r(v):
    return None if v is None else round(float(v), 4)


def report(data: Arrays, idx: Sequence[int], scores: np.ndarray, heats: np.ndarray, thr: float,
           mask_fraction: Optional[float] = None) -> Dict:
    """Metrics for samples idx given their scores and heatmaps."""
    idx = np.asarray(idx)
    y = data.y[idx]
    fam = np.array([data.samples[i].family for i in idx])
    seen = np.array([bool(data.samples[i].seen) for i in idx])
    real = y == 0
    out: Dict = {"n": int(len(idx)), "threshold": _r(thr),
                 "overall": {"auc": _r(auc(y, scores)), "acc": _r(accuracy(y, scores, thr))}}
    for name, sel in (("seen", real | ((y == 1) & seen)), ("unseen", real | ((y == 1) & ~seen))):
        if (y[sel] == 1).any():
            out[name] = {"auc": _r(auc(y[sel], scores[sel])), "acc": _r(accuracy(y[sel], scores[sel], thr)),
                         "n_fake": int((y[sel] == 1).sum()), "n_real": int((y[sel] == 0).sum())}
    pf = {}
    for f in sorted(set(fam[y == 1])):
        sel = real | (fam == f)
        fk = fam == f
        pf[f] = {"auc": _r(auc(y[sel], scores[sel])), "acc": _r(accuracy(y[sel], scores[sel], thr)),
                 "recall": _r((scores[fk] >= thr).mean()), "n": int(fk.sum()),
                 "seen": bool(seen[fk][0]), "task": data.samples[idx[fk][0]].task}
    out["per_family"] = pf
    out["real_specificity"] = _r((scores[real] < thr).mean()) if real.any() else None
    loc = defaultdict(list)
    for k, i in enumerate(idx):
        if y[k] == 1 and data.has_mask_file[i]:
            m = data.masks[i].astype(np.float32) / 255.0
            if (m >= 0.5).any():
                l = localisation(heats[k], m)
                grp = "seen" if seen[k] else "unseen"
                for key, v in l.items():
                    loc[f"{grp}/{key}"].append(v)
                    loc[f"all/{key}"].append(v)
                    loc[f"{data.samples[i].family}/{key}"].append(v)
    att = defaultdict(dict)
    for key, vs in loc.items():
        g, m = key.split("/")
        att[g][m] = _r(np.mean(vs))
    out["localisation"] = dict(att)
    out["attention_iou"] = att.get("all", {}).get("iou_rel")
    if mask_fraction is not None:
        out["mask_fraction"] = _r(mask_fraction)
    return out


def evaluate_model(model: LAE, data: Arrays, split: str = "test", thr: float = 0.5,
                   mask_fraction: Optional[float] = None) -> Dict:
    """Predict and report on a split."""
    idx = data.idx(split)
    if len(idx) == 0:
        raise ValueError(f"no samples in split {split!r}")
    s, h = predict(model, data, idx)
    return report(data, idx, s, h, thr, mask_fraction)


def val_threshold(model: LAE, data: Arrays) -> float:
    """Calibrate the decision threshold on the validation split."""
    idx = data.idx("val")
    if len(idx) == 0:
        return 0.5
    s, _ = predict(model, data, idx)
    return calibrate_threshold(data.y[idx], s)


def val_fpr_threshold(model: LAE, data: Arrays, max_fpr: float = 0.05) -> float:
    """Threshold that flags at most max_fpr of the validation split's real crops."""
    idx = data.idx("val")
    s, _ = predict(model, data, idx)
    reals = s[data.y[idx] == 0]
    return fpr_threshold(reals, max_fpr) if len(reals) else 0.5


def operating_point(model: LAE, data: Arrays, thr: float) -> Dict:
    """What a threshold does: the share of real crops flagged (false-positive rate) and of fakes
    caught (true-positive rate) on val and on test (overall, seen, unseen, per family)."""
    out: Dict = {"threshold": _r(thr)}
    for split in ("val", "test"):
        idx = data.idx(split)
        if len(idx) == 0:
            continue
        s, _ = predict(model, data, idx)
        y = data.y[idx]
        flag = s >= thr
        seen = np.array([bool(data.samples[i].seen) for i in idx])
        fam = np.array([data.samples[i].family for i in idx])
        d = {"fpr": _r(flag[y == 0].mean()) if (y == 0).any() else None,
             "tpr": _r(flag[y == 1].mean()) if (y == 1).any() else None,
             "acc": _r(accuracy(y, s, thr))}
        if split == "test":
            for name, sel in (("tpr_seen", (y == 1) & seen), ("tpr_unseen", (y == 1) & ~seen)):
                d[name] = _r(flag[sel].mean()) if sel.any() else None
            d["tpr_per_family"] = {f: _r(flag[(y == 1) & (fam == f)].mean()) for f in sorted(set(fam[y == 1]))}
        out[split] = d
    return out


def save_checkpoint(path: str, model: LAE, extra: Dict) -> None:
    """Save weights and what is needed to rebuild/evaluate the model."""
    torch.save({"state_dict": model.state_dict(), "widths": list(model.widths),
                "lse_r": model.lse_r, "stem": model.stem_kind, **extra}, path)


def load_checkpoint(path: str):
    """Rebuild a model from save_checkpoint's file; returns (model, checkpoint dict)."""
    ck = torch.load(path, map_location="cpu")
    m = LAE(tuple(ck["widths"]), ck.get("lse_r", 4.0), ck.get("stem", "rgb"))
    m.load_state_dict(ck["state_dict"])
    m.eval()
    return m, ck


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="manifest.jsonl (or a folder holding one)")
    ap.add_argument("--model", default=os.path.join(here, "..", "models", "lae-v1.pt"))
    ap.add_argument("--split", default="test", help="split to evaluate, or 'all'")
    ap.add_argument("--threshold", type=float, default=None)
    a = ap.parse_args(argv)
    common.set_threads()
    man = a.manifest
    if os.path.isdir(man):
        man = os.path.join(man, "manifest.jsonl")
    model, ck = load_checkpoint(a.model)
    data = load_arrays(man)
    thr = a.threshold if a.threshold is not None else float(ck.get("threshold", 0.5))
    if a.split == "all":
        idx = np.arange(len(data.samples))
        s, h = predict(model, data, idx)
        rep = report(data, idx, s, h, thr)
    else:
        rep = evaluate_model(model, data, a.split, thr)
    rep["model"] = os.path.abspath(a.model)
    rep["manifest"] = os.path.abspath(man)
    print(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
