"""Real faces for lae-v2: which inputs, which person split, the codec in the loop, packed crops.

Person split (identity-disjoint; a group never spans two splits):

* videos/talking: one group per clip, except repositories whose clips may share a speaker
  (LipNet's GRID samples, EDTalk's sources), which are one group each; groups are hashed into
  train / val / test (60 / 20 / 20);
* videos/asl: one group, validation (threshold choice). SOURCES.md calls it one signer; the
  crops show five people, so one group is conservative (no person spans two splits);
* faces/lfw (by name), faces/utkface and faces/celeba (distinct people): hashed 70 / 15 / 15;
* photos/deepface, photos/crowd, videos/hamilton_short.mp4, videos/crowd_1080p.mp4: never
  trained on; they are the held-out false-alarm checks (``fieldeval``).

The codec in the loop: every training and validation video is re-encoded with libx264 at
``VARIANTS_PER_VIDEO`` random (CRF in 18-35, scale in {1, 0.75, 0.5}) settings besides the
original, and crops are taken from each encoding, so the real class carries every compression
and resolution the forgeries are later made from and judged at (both classes share them: the
fakes are synthesized from these same crops).

Crops come from the product's own ingest (``lae crops``: YuNet, 5-landmark alignment, 256x256,
468 Face Mesh landmarks per crop). ``pack`` stores each split as one ``.npz``: images uint8
[N,256,256,3] BGR, landmarks float32 [N,468,2], and per-crop identity, source and source scale.

CLI: /usr/bin/python3 -m detector.training.realdata --data ../shared/data --lae bin/lae --out RUN/real
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .forge import N_LANDMARKS

SPLITS = ("train", "val", "test")
VARIANTS_PER_VIDEO = 2
CRF_RANGE = (18, 35)
SCALES = (1.0, 0.75, 0.5)
MIN_SIDE = 160  # a re-encode never goes below this height
PHOTO_SAMPLE = {"faces/lfw": 2600, "faces/utkface": 1500, "faces/celeba": 400}
VIDEO_FPS = {"talking": 2.0, "asl": 3.0}
MIN_MESH_SCORE = 0.5  # crops whose landmarks are unreliable are not trained on
HELD_OUT = ("photos/deepface", "photos/crowd", "videos/hamilton_short.mp4", "videos/crowd_1080p.mp4")


def _hash_split(key: str, fractions: Tuple[float, float, float]) -> str:
    h = int(hashlib.sha1(("lae-v2:" + key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < fractions[0] else ("val" if h < fractions[0] + fractions[1] else "test")


def talking_group(path: str) -> str:
    """Person group of a videos/talking clip (file name REPO__COMMIT__PATH)."""
    base = os.path.basename(path)
    repo = base.split("__")[0]
    if repo in ("LipNet", "EDTalk"):
        return "talking:" + repo
    return "talking:" + os.path.splitext(base)[0]


def photo_group(path: str) -> str:
    """Person group of a face photo (LFW by name; UTKFace/CelebA files are distinct people)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if "/lfw/" in path:
        return "lfw:" + stem.rsplit("_", 1)[0]
    return ("utkface:" if "/utkface/" in path else "celeba:") + stem


def split_of_group(group: str) -> str:
    """train / val / test of a person group (see module doc)."""
    if group == "video:asl":
        return "val"
    if group.startswith("talking:"):
        return _hash_split(group, (0.6, 0.2, 0.2))
    return _hash_split(group, (0.7, 0.15, 0.15))


def plan(data: str, seed: int = 7) -> Dict:
    """Inputs per split: {"videos": [{path, group, split, fps}], "photos": [{path, group, split}]}."""
    rnd = random.Random(seed)
    videos = []
    tdir = os.path.join(data, "videos", "talking")
    for f in sorted(os.listdir(tdir)) if os.path.isdir(tdir) else []:
        g = talking_group(f)
        videos.append({"path": os.path.join(tdir, f), "group": g, "split": split_of_group(g),
                       "fps": VIDEO_FPS["talking"]})
    adir = os.path.join(data, "videos", "asl")
    for f in sorted(os.listdir(adir)) if os.path.isdir(adir) else []:
        videos.append({"path": os.path.join(adir, f), "group": "video:asl", "split": "val", "fps": VIDEO_FPS["asl"]})
    photos = []
    for sub, n in PHOTO_SAMPLE.items():
        d = os.path.join(data, sub)
        if not os.path.isdir(d):
            continue
        fs = sorted(os.listdir(d))
        rnd.shuffle(fs)
        for f in fs[:n]:
            p = os.path.join(d, f)
            g = photo_group(p)
            photos.append({"path": p, "group": g, "split": split_of_group(g)})
    return {"videos": videos, "photos": photos}


def variants(video: Dict, rnd: random.Random, height: int) -> List[Dict]:
    """The original plus VARIANTS_PER_VIDEO random (crf, scale) re-encodes of a video."""
    out = [{"crf": None, "scale": 1.0}]
    for _ in range(VARIANTS_PER_VIDEO):
        s = rnd.choice([s for s in SCALES if height * s >= MIN_SIDE] or [1.0])
        out.append({"crf": rnd.randint(*CRF_RANGE), "scale": s})
    return out


def encode(src: str, dst: str, crf: int, scale: float) -> None:
    """Re-encode src with libx264 at crf, scaled (even dimensions), no audio."""
    vf = f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2" if scale != 1.0 else "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src, "-an", "-vf", vf, "-c:v", "libx264",
           "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", dst]
    subprocess.run(cmd, check=True)


def _height(path: str) -> int:
    cap = cv2.VideoCapture(path)
    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    cap.release()
    return h or 480


def run_crops(lae: str, out: str, inputs: Sequence[str], *flags: str) -> None:
    """lae crops over inputs into out (index.jsonl is appended to)."""
    if not inputs:
        return
    cmd = [lae, "crops", "--out", out, *flags, *inputs]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"lae crops into {out} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def _cropped(d: str) -> bool:
    """Whether a crops directory already holds a non-empty index (its step is done)."""
    idx = os.path.join(d, "index.jsonl")
    return os.path.exists(idx) and os.path.getsize(idx) > 0


def make_crops(p: Dict, lae: str, out: str, seed: int = 7, log=print) -> None:
    """Encode the video variants and run lae crops for every planned input; a finished step
    (its index.jsonl present and non-empty) is not repeated."""
    rnd = random.Random(seed)
    enc_dir = os.path.join(out, "enc")
    os.makedirs(enc_dir, exist_ok=True)
    for split in SPLITS:
        vdir = os.path.join(out, "crops", f"videos-{split}")
        if _cropped(vdir):
            continue
        by_fps: Dict[float, List[str]] = {}
        for v in p["videos"]:
            if v["split"] != split:
                continue
            base = os.path.splitext(os.path.basename(v["path"]))[0]
            for var in variants(v, rnd, _height(v["path"])):
                if var["crf"] is None:
                    path = v["path"]
                else:
                    path = os.path.join(enc_dir, f"{base}__crf{var['crf']}_s{int(var['scale'] * 100)}.mp4")
                    if not os.path.exists(path):
                        encode(v["path"], path, var["crf"], var["scale"])
                by_fps.setdefault(v["fps"], []).append(path)
        for fps, inputs in by_fps.items():
            log(f"realdata: {split}: lae crops of {len(inputs)} videos at {fps} fps")
            run_crops(lae, vdir, inputs, "--fps", str(fps), "--max-faces", "1")
    for split in SPLITS:
        pdir = os.path.join(out, "crops", f"photos-{split}")
        if _cropped(pdir):
            continue
        inputs = [ph["path"] for ph in p["photos"] if ph["split"] == split]
        log(f"realdata: {split}: lae crops of {len(inputs)} photos")
        for k in range(0, len(inputs), 500):  # bounded argument lists
            run_crops(lae, pdir, inputs[k:k + 500], "--max-faces", "1")


def _groups(p: Dict) -> Dict[str, str]:
    """Input path or video base name -> person group."""
    out = {ph["path"]: ph["group"] for ph in p["photos"]}
    for v in p["videos"]:
        out[v["path"]] = v["group"]
        out[os.path.splitext(os.path.basename(v["path"]))[0]] = v["group"]
    return out


def _group_of_source(src: str, groups: Dict[str, str]) -> Optional[str]:
    if src in groups:
        return groups[src]
    base = os.path.basename(src)
    return groups.get(base.split("__crf")[0]) if "__crf" in base else None


def pack(p: Dict, out: str, log=print) -> Dict[str, int]:
    """Pack each split's crops (with good landmarks) into out/<split>.npz; returns counts."""
    counts = {}
    groups = _groups(p)
    for split in SPLITS:
        imgs, lms, ids, srcs, scales = [], [], [], [], []
        for kind in ("videos", "photos"):
            d = os.path.join(out, "crops", f"{kind}-{split}")
            idx = os.path.join(d, "index.jsonl")
            if not os.path.exists(idx):
                continue
            for line in open(idx):
                row = json.loads(line)
                lm = row.get("landmarks")
                if not lm or len(lm) != N_LANDMARKS or row.get("mesh_score", 0) < MIN_MESH_SCORE:
                    continue
                g = _group_of_source(row["source"], groups)
                if g is None:
                    continue
                img = cv2.imread(os.path.join(d, row["path"]), cv2.IMREAD_COLOR)
                if img is None:
                    continue
                imgs.append(img)
                lms.append(np.asarray(lm, np.float32))
                ids.append(g)
                srcs.append(os.path.basename(row["source"]))
                scales.append(float(row.get("source_scale", 1.0)))
        if not imgs:
            continue
        np.savez(os.path.join(out, f"{split}.npz"), images=np.stack(imgs), landmarks=np.stack(lms),
                 identity=np.array(ids), source=np.array(srcs), source_scale=np.array(scales, np.float32))
        counts[split] = len(imgs)
        log(f"realdata: {split}: {len(imgs)} crops of {len(set(ids))} people")
    with open(os.path.join(out, "counts.json"), "w") as f:
        json.dump(counts, f, indent=1)
    return counts


def data_block(data: str) -> Dict:
    """The card's record of the data: the SOURCES.md rows (what, licence and origin) of every
    folder used, and what each was used for. The data itself never ships."""
    use = {"faces/lfw": "train/val/test (by person)", "faces/utkface": "train/val/test (by person)",
           "faces/celeba": "train/val/test (by person)", "videos/talking": "train/val/test (by person)",
           "videos/asl": "validation (threshold choice)", "photos/deepface": "false-alarm check only (photo clips)",
           "videos/hamilton_short.mp4": "false-alarm check only", "videos/crowd_1080p.mp4": "false-alarm check only",
           "deepfakes-dev": "validation and threshold choice only, never trained on",
           "models/backbones": "MobileNetV2 ImageNet weights (encoder initialisation)",
           "models/yunet": "face detector (ingest)", "models/facemesh": "landmarks for forgery masks (lae crops)"}
    rows = []
    path = os.path.join(data, "SOURCES.md")
    if os.path.exists(path):
        for line in open(path):
            cols = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cols) < 4 or not line.startswith("| "):
                continue
            folder = cols[0].split(" ")[0].rstrip("/")
            if folder in use:
                rows.append({"folder": folder, "what": cols[1], "count": cols[2], "from": cols[3], "used_for": use[folder]})
    return {"sources": rows, "note": "research-use face data: only the trained weights ship, never the data"}


class RealSet:
    """One packed split, loaded into memory."""

    def __init__(self, path: str):
        z = np.load(path)
        self.images = z["images"]
        self.landmarks = z["landmarks"]
        self.identity = z["identity"]
        self.source = z["source"]
        self.source_scale = z["source_scale"]

    def __len__(self) -> int:
        return len(self.images)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="../shared/data")
    ap.add_argument("--lae", required=True, help="the built lae binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    p = plan(a.data, a.seed)
    if not p["videos"] and not p["photos"]:
        print(f"realdata: no inputs under {a.data}", file=sys.stderr)
        return 1
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "plan.json"), "w") as f:
        json.dump(p, f, indent=1)
    make_crops(p, a.lae, a.out, a.seed)
    counts = pack(p, a.out)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
