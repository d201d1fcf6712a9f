"""Degradations between a forger and the detector, applied to training crops of both classes.

A forged face reaches the detector after the video has been scaled and lossy-coded (H.264 at
typical upload quality), then warped by the ingest's alignment. Traces that only survive in
lossless images (the synthesized training set is stored as PNG) are worthless in the field: the
lae-v1 network with the residual stem scored 0.99 AUC on lossless test crops and 0.08-0.72 video
AUC on forged real videos re-encoded at CRF 23 (detector/training/README.md). So each training crop,
real or fake alike (the chain never depends on the label, so it carries no class cue), goes
through a random chain of:

* resolution loss: down-scaled (INTER_AREA) and back (INTER_LINEAR), the face having been
  smaller in the frame than the crop;
* blur: Gaussian, sigma 0.3-1.0 (camera, deblocking filter, scaling in the player);
* block-transform coding: JPEG quality 30-95 with 4:2:0 chroma (a stand-in for H.264 intra coding,
  which OpenCV cannot run per crop).

Masks are unchanged: none of these moves a pixel.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


def _rescale(img: np.ndarray, s: float) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


@dataclass
class Degrade:
    """Probabilities and ranges of the chain (copied into the model card)."""

    p_resize: float = 0.5
    scale: tuple = (0.4, 0.9)
    p_blur: float = 0.3
    sigma: tuple = (0.3, 1.0)
    p_jpeg: float = 0.7
    quality: tuple = (30, 95)

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)

    def apply(self, bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random chain on an 8-bit BGR crop; returns a new array of the same shape."""
        img = bgr
        if rng.random() < self.p_resize:
            img = _rescale(img, rng.uniform(*self.scale))
        if rng.random() < self.p_blur:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*self.sigma))
        if rng.random() < self.p_jpeg:
            img = _jpeg(img, int(rng.integers(self.quality[0], self.quality[1] + 1)))
        return img if img is not bgr else bgr.copy()
