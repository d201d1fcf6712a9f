"""Forged videos from real ones, for testing the whole product on video rather than on crops.

A forgery family of forge.py is applied to the face of every frame of a real video, in the frame
itself, and the result is re-encoded with H.264 like any upload:

1. ``lae crops --fps 0 --max-faces 1`` finds and aligns the face of every frame with the ingest
   code and records each crop's crop->frame affine and its 468 Face Mesh landmarks;
2. each 256x256 crop is forged through its own landmarks (one random generator seeded per video
   and re-seeded per frame, so the forgery's parameters and donor stay the same from frame to
   frame while the mask follows the face, as in a real face-swap video rather than a flickering
   one);
3. the forged crop and its mask are warped back into the frame with that affine and blended by
   the mask (pixels outside it are untouched);
4. the frames go to ffmpeg (libx264, ``--crf``, yuv420p), so the traces have to survive the
   warps and lossy video coding that a real deepfake goes through.

Beside OUT.mp4, OUT.json records per frame the forged region's bounding box in frame pixels, for
checking that the product's evidence points at it.

CLI (repo root): /usr/bin/python3 -m detector.training.fakevideo --lae bin/lae --video IN
  --family swap --donor-photo PHOTO.jpg --out OUT.mp4 [--crf 23] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from . import forge, realdata

# Families that need a face of another person.
NEEDS_DONOR = {"swap"}


def affine(rec: Dict) -> np.ndarray:
    """crop->frame affine of a `lae crops` index row as a 2x3 matrix (row-major, x' = a x + b y + c)."""
    return np.array(rec["crop_to_frame"], np.float64).reshape(2, 3)


def paste(frame: np.ndarray, forged: np.ndarray, mask: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Warp a forged crop and its blend mask into the frame with the crop->frame affine m and
    blend; frame pixels the warped mask does not reach are returned unchanged."""
    h, w = frame.shape[:2]
    f = cv2.warpAffine(forged, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(mask.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = frame.astype(np.float32) * (1 - a[..., None]) + f.astype(np.float32) * a[..., None]
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    keep = a <= 0
    out[keep] = frame[keep]
    return out


def bbox(mask: np.ndarray, m: np.ndarray, thresh: float = 0.5) -> Optional[List[int]]:
    """Bounding box [x, y, w, h] in frame pixels of the mask's >= thresh part."""
    ys, xs = np.nonzero(mask >= thresh)
    if len(xs) == 0:
        return None
    pts = np.array([[xs.min(), ys.min(), 1], [xs.max() + 1, ys.min(), 1],
                    [xs.min(), ys.max() + 1, 1], [xs.max() + 1, ys.max() + 1, 1]], np.float64)
    fp = pts @ m.T
    x0, y0 = np.floor(fp.min(axis=0)).astype(int)
    x1, y1 = np.ceil(fp.max(axis=0)).astype(int)
    return [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def run_crops(lae: str, path: str, *flags: str) -> List[tuple]:
    """[(index row, 256x256 crop)] that `lae crops FLAGS path` makes (the ingest's detector and
    alignment); empty when it finds no face."""
    with tempfile.TemporaryDirectory(prefix="lae-crops-") as tmp:
        realdata.run_crops(lae, tmp, [path], *flags)
        index = os.path.join(tmp, "index.jsonl")
        rows = [json.loads(line) for line in open(index)] if os.path.exists(index) else []
        return [(row, cv2.imread(os.path.join(tmp, row["path"]))) for row in rows]


def face_crops(lae: str, video: str) -> Dict[int, tuple]:
    """{frame index: (index row, 256x256 crop)} for the largest face of every frame."""
    return {int(row["frame_index"]): (row, img) for row, img in run_crops(lae, video, "--fps", "0", "--max-faces", "1")}


def as_face(row: Dict, crop: np.ndarray) -> Optional[forge.Face]:
    """The crop with its Face Mesh landmarks, None when the row has none."""
    lm = row.get("landmarks")
    if crop is None or not lm or len(lm) != forge.N_LANDMARKS:
        return None
    return forge.Face(crop, np.asarray(lm, np.float32))


def donor_face(lae: str, photo: str) -> forge.Face:
    """The aligned crop and landmarks of the largest face in photo, made by `lae crops`."""
    for row, crop in run_crops(lae, photo, "--max-faces", "1"):
        face = as_face(row, crop)
        if face is not None:
            return face
    raise RuntimeError(f"donor {photo}: no face found")


def forge_video(lae: str, video: str, family: str, out: str, donor: Optional[forge.Face] = None,
                crf: int = 23, seed: int = 0, crops: Optional[Dict[int, tuple]] = None) -> Dict:
    """Write OUT (H.264) and OUT.json (per-frame forged boxes); returns the JSON summary.
    crops (from face_crops) saves re-running `lae crops` when one video is forged several ways."""
    if family not in forge.FAMILIES:
        raise ValueError(f"unknown forgery family {family!r}; want one of {sorted(forge.FAMILIES)}")
    if family in NEEDS_DONOR and donor is None:
        raise ValueError(f"{family} needs --donor-photo (a photo of another person)")
    if crops is None:
        crops = face_crops(lae, video)
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise RuntimeError(f"open {video}: OpenCV cannot read it")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    enc = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
                            "-r", f"{fps:.6f}", "-i", "-", "-c:v", "libx264", "-crf", str(crf), "-preset", "medium",
                            "-pix_fmt", "yuv420p", out], stdin=subprocess.PIPE)
    frames: List[Dict] = []
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            rec = {"frame_index": i, "forged": False}
            face = as_face(*crops[i]) if i in crops else None
            if face is not None:
                row = crops[i][0]
                f = forge.synthesize(family, face, np.random.default_rng(seed), donor)
                m = affine(row)
                frame = paste(frame, f.image, f.mask, m)
                rec.update({"forged": True, "box": bbox(f.mask, m), "face_box": row.get("box")})
            frames.append(rec)
            enc.stdin.write(np.ascontiguousarray(frame).tobytes())
            i += 1
    finally:
        cap.release()
        enc.stdin.close()
        rc = enc.wait()
    if rc != 0:
        raise RuntimeError(f"ffmpeg encode {out}: exit {rc}")
    summary = {"source": os.path.abspath(video), "family": family, "crf": crf, "seed": seed, "fps": fps,
               "frames": len(frames), "forged_frames": sum(f["forged"] for f in frames), "per_frame": frames}
    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump(summary, fh)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lae", default="bin/lae", help="the lae binary (for `lae crops`)")
    ap.add_argument("--video", required=True)
    ap.add_argument("--family", required=True, choices=sorted(forge.FAMILIES))
    ap.add_argument("--donor-photo", help="photo of another person (swap; part uses it when given)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    donor = donor_face(a.lae, a.donor_photo) if a.donor_photo else None
    s = forge_video(a.lae, a.video, a.family, a.out, donor, a.crf, a.seed)
    print(json.dumps({k: v for k, v in s.items() if k != "per_frame"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
