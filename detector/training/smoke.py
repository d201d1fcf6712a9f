"""CI smoke run (well under two minutes): prepare a tiny dataset, run the whole release
pipeline (warm start, baseline, AL rounds with annotation export/import, all-mask arm,
evaluation, ONNX export, card, parity file) with a tiny network into a temporary folder.

Uses ../shared/data/faces/lfw when present, otherwise procedurally drawn toy faces, so it runs
on any clean checkout.

CLI: /usr/bin/python3 -m detector.training.smoke [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Optional, Sequence

import cv2
import numpy as np

from . import common
from .train import SHARED, main as train_main


def make_toy_crops(out_dir: str, n_ids: int = 24, per_id: int = 2, size: int = 128, seed: int = 0) -> str:
    """Draw simple face-like crops (skin ellipse, eyes, mouth, textured background)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    for k in range(n_ids):
        skin = rng.uniform(90, 220, 3)
        for j in range(per_id):
            img = (rng.uniform(0, 255, 3) + rng.normal(0, 12, (size, size, 3))).clip(0, 255).astype(np.uint8)
            img = cv2.GaussianBlur(img, (5, 5), 1.5)
            c = (size // 2 + int(rng.integers(-3, 4)), int(size * 0.55))
            cv2.ellipse(img, c, (int(size * 0.3), int(size * 0.4)), 0, 0, 360, tuple(float(v) for v in skin), -1)
            for ex in (0.36, 0.64):
                cv2.circle(img, (int(size * ex), int(size * 0.42)), 5, (40, 30, 30), -1)
            cv2.ellipse(img, (size // 2, int(size * 0.72)), (14, 5), 0, 0, 360, (60, 60, 150), -1)
            noise = rng.normal(0, 4, img.shape)
            img = (img + noise).clip(0, 255).astype(np.uint8)
            common.write_png(os.path.join(out_dir, f"toy{k:03d}_{j + 1:04d}.png"), img)
    return out_dir


def run(work: str) -> dict:
    """Run the smoke pipeline in work; returns the card."""
    lfw = os.path.join(SHARED, "faces", "lfw")
    crops = lfw if os.path.isdir(lfw) else make_toy_crops(os.path.join(work, "toy"))
    models = os.path.join(work, "models")
    rc = train_main(["--crops", crops, "--work", work, "--models-dir", models, "--name", "lae-smoke",
                     "--version", "smoke", "--n-train", "40", "--n-val", "12", "--n-test", "12",
                     "--test-fakes-per-family", "3", "--widths", "8,8,8", "--warm-epochs", "1",
                     "--rounds", "2", "--round-epochs", "0.5", "--budget", "0.03"])
    if rc != 0:
        raise RuntimeError(f"smoke training exited {rc}")
    with open(os.path.join(models, "lae-smoke.card.json")) as f:
        return json.load(f)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default=None)
    a = ap.parse_args(argv)
    t = time.time()
    work = a.work or tempfile.mkdtemp(prefix="lae-smoke-")
    card = run(work)
    print(json.dumps({"seconds": round(time.time() - t, 1), "work": work,
                      "targets": card["eval"]["targets"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
