"""The model's input contract and image helpers shared by training and export.

Serving (detector/model/preprocess.go) resizes an 8-bit BGR crop with cv::resize, INTER_AREA when
shrinking and INTER_LINEAR when enlarging, converts to RGB and normalises with (v/255-mean)/std.
Training must make exactly the same calls, so every image enters the training set through
``resize_like_serving``.
"""
from __future__ import annotations

import os
import random

import cv2
import numpy as np
import torch

INPUT_SIZE = 192
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
COLOR = "RGB"


def set_threads(n: int | None = None) -> None:
    """Bound torch and OpenCV threads. Default 1 (env LAE_THREADS overrides): on the shared
    2-core development machine a 2-thread OpenMP step measured 5x slower than a 1-thread one
    (threads spin waiting for each other when other processes hold the cores)."""
    n = n or int(os.environ.get("LAE_THREADS", "1"))
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def seed_everything(seed: int) -> None:
    """Make synthesis and training repeatable."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resize_like_serving(bgr: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize an 8-bit BGR crop to size x size with the serving path's interpolation rule."""
    h, w = bgr.shape[:2]
    if h == size and w == size:
        return bgr
    interp = cv2.INTER_AREA if (w >= size and h >= size) else cv2.INTER_LINEAR
    return cv2.resize(bgr, (size, size), interpolation=interp)


def read_bgr(path: str) -> np.ndarray:
    """Read an image as 8-bit BGR or raise a clear error."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise IOError(f"read image {path}: unreadable or missing")
    return img


def read_mask(path: str, size: int | None = None) -> np.ndarray:
    """Read a mask PNG as float32 in [0,1] (soft masks keep their blend weights)."""
    m = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise IOError(f"read mask {path}: unreadable or missing")
    if size is not None and m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    return m.astype(np.float32) / 255.0


def write_png(path: str, img: np.ndarray) -> None:
    """Write a PNG (lossless: synthesized traces must not be altered by storage)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not cv2.imwrite(path, img):
        raise IOError(f"write {path}: failed")


def to_tensor(bgr_batch: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] BGR -> float32 [N,3,H,W] RGB normalised with MEAN/STD."""
    x = torch.from_numpy(np.ascontiguousarray(bgr_batch[..., ::-1])).float().div_(255.0)
    x = x.permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std
