"""In-memory arrays of a manifest (the whole dataset fits: ~50 KB per 128x128 sample)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from . import common
from .manifest import Sample, load_manifest


@dataclass
class Arrays:
    """Images (uint8 BGR [N,S,S,3]), masks (uint8 [N,S,S], 0 where none), labels, metadata."""

    samples: List[Sample]
    x: np.ndarray
    masks: np.ndarray
    has_mask_file: np.ndarray
    y: np.ndarray

    def idx(self, split: Optional[str] = None, label: Optional[int] = None) -> np.ndarray:
        """Indices of samples in a split (and with a label)."""
        keep = [i for i, s in enumerate(self.samples)
                if (split is None or s.split == split) and (label is None or s.label == label)]
        return np.array(keep, dtype=np.int64)


def load_arrays(manifest: str, size: int = common.INPUT_SIZE, cache_dir: Optional[str] = None,
                splits=None) -> Arrays:
    """Load every image (resized like serving) and mask of a manifest into memory. With
    cache_dir, the arrays are cached in an .npz keyed by the manifest's content."""
    samples = load_manifest(manifest, splits=splits)
    key = None
    if cache_dir:
        h = hashlib.sha1(open(manifest, "rb").read() + f"{size}{splits}".encode()).hexdigest()[:16]
        key = os.path.join(cache_dir, f"arrays-{h}.npz")
        if os.path.exists(key):
            z = np.load(key)
            return Arrays(samples, z["x"], z["masks"], z["has_mask_file"], z["y"])
    n = len(samples)
    x = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    has = np.zeros(n, bool)
    for i, s in enumerate(samples):
        x[i] = common.resize_like_serving(common.read_bgr(s.path), size)
        if s.mask:
            masks[i] = np.round(common.read_mask(s.mask, size) * 255).astype(np.uint8)
            has[i] = True
    y = np.array([s.label for s in samples], np.int64)
    if key:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(key, x=x, masks=masks, has_mask_file=has, y=y)
    return Arrays(samples, x, masks, has, y)
