"""Detection and localisation metrics (pure numpy)."""
from __future__ import annotations

from typing import Dict, Optional

import cv2
import numpy as np


def rounded(v: Optional[float], digits: int = 4) -> Optional[float]:
    """A figure as reports and cards print it (None stays None)."""
    return None if v is None else round(float(v), digits)


def auc(y: np.ndarray, s: np.ndarray) -> Optional[float]:
    """ROC AUC by the Mann-Whitney statistic (ties count half); None if one class is missing."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, np.float64)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    ss = s[order]
    i = 0
    while i < len(ss):  # average ranks of ties
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def accuracy(y: np.ndarray, s: np.ndarray, thr: float) -> Optional[float]:
    """Share of samples whose (s >= thr) equals the label."""
    if len(y) == 0:
        return None
    return float(((np.asarray(s) >= thr).astype(int) == np.asarray(y)).mean())


def calibrate_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """Threshold maximising balanced accuracy on a validation split (midpoint between the two
    scores around the best cut, so it does not sit on a sample)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, np.float64)
    if y.all() or (~y).all():
        return 0.5
    cand = np.unique(s)
    best, thr = -1.0, 0.5
    for k, t in enumerate(cand):
        pred = s >= t
        bacc = 0.5 * (pred[y].mean() + (~pred[~y]).mean())
        if bacc > best:
            best = bacc
            thr = float(t if k == 0 else (t + cand[k - 1]) / 2)
    return thr


def fpr_threshold(s_real: np.ndarray, max_fpr: float = 0.05) -> float:
    """Lowest threshold that flags (score >= threshold) at most ``max_fpr`` of the real crops
    s_real: the operating point of a screening tool, which must not flag most real videos.
    The cut lies midway between the last real score left unflagged and the next one above,
    so it does not sit on a sample; ties at the cut stay unflagged (the rate never exceeds
    max_fpr)."""
    s = np.sort(np.asarray(s_real, np.float64))[::-1]
    if len(s) == 0:
        return 0.5
    k = int(np.floor(max_fpr * len(s) + 1e-9))  # reals allowed at or above the threshold
    if k >= len(s):
        return float(s[-1])
    above = s[k - 1] if k > 0 else None
    cut = s[k]
    if above is not None and above > cut:
        return float((above + cut) / 2)
    # a tie at the cut (or k == 0): the smallest float above it leaves the tie unflagged
    return float(np.nextafter(cut, np.inf))


def heat_to_image(heat: np.ndarray, size: int) -> np.ndarray:
    """Bilinear up-sampling of a heatmap [h,w] to [size,size]."""
    return cv2.resize(heat.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def localisation(heat: np.ndarray, mask: np.ndarray) -> Dict[str, float]:
    """Localisation of one heatmap [h,w] against one mask [S,S] in [0,1]:

    * iou_rel: IoU of (heat >= 0.5 * max heat) with (mask >= 0.5) -- the usual CAM protocol;
    * iou_abs: IoU of (heat >= 0.5) with the mask (needs a confident map);
    * pointing: 1 if the heatmap's maximum falls inside the mask (pointing game);
    * outside: share of heat mass outside the mask.
    """
    up = heat_to_image(heat, mask.shape[0])
    gt = mask >= 0.5
    def iou(pred):
        u = (pred | gt).sum()
        return float((pred & gt).sum() / u) if u else 0.0
    mx = float(up.max())
    rel = up >= 0.5 * mx if mx > 0 else np.zeros_like(gt)
    yy, xx = np.unravel_index(int(np.argmax(up)), up.shape)
    tot = float(up.sum()) + 1e-9
    return {"iou_rel": iou(rel), "iou_abs": iou(up >= 0.5), "pointing": float(mask[yy, xx] >= 0.5),
            "outside": float((up * (1 - mask)).sum() / tot)}
