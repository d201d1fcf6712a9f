"""Which files of ../shared/data go into ``lae crops`` for the release model.

Photos: a seeded sample of faces/lfw (1,800), faces/utkface (1,300), faces/celeba (700) and every
photos/deepface image (one face per photo: --max-faces 1); videos: every videos/asl clip,
hamilton_short.mp4 and crowd_1080p.mp4 (5 fps, up to 3 faces per frame). The sample keeps the
crop step (~5 crops/s on the shared machine) and training inside the hour the issue allows.

CLI: /usr/bin/python3 -m detector.training.inputs --data ../shared/data --out RUN
     writes RUN/photos.txt and RUN/videos.txt (one path per line).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from typing import List, Optional, Sequence, Tuple

PHOTO_SAMPLE = (("faces/lfw", 1800), ("faces/utkface", 1300), ("faces/celeba", 700))


def select_inputs(data: str, seed: int = 7) -> Tuple[List[str], List[str]]:
    """(photos, videos) absolute paths under data."""
    rnd = random.Random(seed)
    photos: List[str] = []
    for sub, n in PHOTO_SAMPLE:
        d = os.path.join(data, sub)
        if not os.path.isdir(d):
            continue
        fs = sorted(os.listdir(d))
        rnd.shuffle(fs)
        photos += [os.path.join(d, f) for f in fs[:n]]
    dp = os.path.join(data, "photos", "deepface")
    if os.path.isdir(dp):
        photos += [os.path.join(dp, f) for f in sorted(os.listdir(dp))]
    videos: List[str] = []
    asl = os.path.join(data, "videos", "asl")
    if os.path.isdir(asl):
        videos += [os.path.join(asl, f) for f in sorted(os.listdir(asl))]
    for v in ("hamilton_short.mp4", "crowd_1080p.mp4"):
        p = os.path.join(data, "videos", v)
        if os.path.exists(p):
            videos.append(p)
    return [os.path.abspath(p) for p in photos], [os.path.abspath(p) for p in videos]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    photos, videos = select_inputs(a.data, a.seed)
    if not photos and not videos:
        print(f"no inputs under {a.data}", file=sys.stderr)
        return 1
    os.makedirs(a.out, exist_ok=True)
    for name, lst in (("photos.txt", photos), ("videos.txt", videos)):
        with open(os.path.join(a.out, name), "w") as f:
            f.write("\n".join(lst) + "\n")
    print(f"{len(photos)} photos, {len(videos)} videos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
