"""Turn aligned real crops into a synthesized, identity-disjoint dataset with a manifest.

``prepare(crops_dirs, out_dir, ...)`` is the single data-preparation step: it reads crops (the
output of ``lae crops`` -- the product's own alignment -- or an image folder for development),
resizes them exactly like serving does, splits identities into train/val/test, and writes
real images, forgeries (seen families in train/val; every family in test) and their masks as
PNG plus ``manifest.jsonl`` (see manifest.py) and ``dataset.json`` (template, counts).

CLI: /usr/bin/python3 -m detector.training.prepare --crops DIR [--crops DIR2] --out OUT
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import common, synth
from .crops import CropRecord, list_crops
from .manifest import Sample, write_manifest


def split_of(identity: str, fractions=(0.7, 0.1, 0.2), salt: str = "lae") -> str:
    """Deterministic identity -> split assignment (identity-disjoint by construction)."""
    h = int(hashlib.sha1(f"{salt}:{identity}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < fractions[0]:
        return "train"
    if h < fractions[0] + fractions[1]:
        return "val"
    return "test"


def _select(records: List[CropRecord], n: int, per_identity: int, rng: np.random.Generator) -> List[CropRecord]:
    by_id: Dict[str, List[CropRecord]] = defaultdict(list)
    for r in records:
        by_id[r.identity].append(r)
    pool: List[CropRecord] = []
    for ident in sorted(by_id):
        rs = by_id[ident]
        if len(rs) > per_identity:
            # spread picks over the source (video frames next to each other are near-duplicates)
            idx = np.linspace(0, len(rs) - 1, per_identity).round().astype(int)
            rs = [rs[i] for i in idx]
        pool.extend(rs)
    if len(pool) > n:
        pick = rng.choice(len(pool), n, replace=False)
        pool = [pool[i] for i in sorted(pick)]
    return pool


def prepare(crops_dirs: Sequence[str], out_dir: str, size: int = common.INPUT_SIZE,
            n_train: int = 2000, n_val: int = 300, n_test: int = 500, test_fakes_per_family: int = 150,
            per_identity: int = 40, seed: int = 0, fractions=(0.7, 0.1, 0.2),
            log=print) -> str:
    """Build the dataset under out_dir; returns the manifest path.

    n_train/n_val/n_test are numbers of *real* crops per split; train and val get one forgery
    of a seen family per real (balanced classes); test gets test_fakes_per_family forgeries of
    every family (seen and unseen)."""
    rng = np.random.default_rng(seed)
    records: List[CropRecord] = []
    for d in crops_dirs:
        rs = list_crops(d)
        log(f"prepare: {len(rs)} crops in {d}")
        records.extend(rs)
    if not records:
        raise ValueError(f"no crops found in {list(crops_dirs)}")
    by_split: Dict[str, List[CropRecord]] = defaultdict(list)
    for r in records:
        by_split[split_of(r.identity, fractions)].append(r)
    want = {"train": n_train, "val": n_val, "test": n_test}
    chosen = {sp: _select(by_split[sp], want[sp], per_identity, rng) for sp in want}
    for sp in want:
        if len(chosen[sp]) < 2:
            raise ValueError(f"split {sp} has {len(chosen[sp])} crops; need at least 2 identities' worth")

    images: Dict[str, List[np.ndarray]] = {}
    for sp, rs in chosen.items():
        images[sp] = [common.resize_like_serving(common.read_bgr(r.path), size) for r in rs]
    tpl = synth.estimate_template(images["train"][:200])
    log(f"prepare: template {tpl}")

    os.makedirs(os.path.join(out_dir, "img"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "mask"), exist_ok=True)
    samples: List[Sample] = []
    counts: Dict[str, int] = defaultdict(int)

    def add(sp, img, label, ident, family="real", mask=None, donor=None, region="", base=None):
        sid = f"{sp}-{len(samples):06d}"
        ip = os.path.join(out_dir, "img", sid + ".png")
        common.write_png(ip, img)
        mp = None
        if mask is not None:
            mp = os.path.join(out_dir, "mask", sid + ".png")
            common.write_png(mp, np.round(mask * 255).astype(np.uint8))
        task, seen = synth.FAMILIES.get(family, ("", None)) if label else ("", None)
        extra = {"region": region} if region else {}
        if base:
            extra["base"] = base  # the real sample this forgery was made from (pairs in training)
        samples.append(Sample(path=ip, label=label, identity=ident, split=sp, mask=mp,
                              family=family, task=task, seen=(seen == "seen") if label else None,
                              donor=donor, id=sid, extra=extra))
        counts[f"{sp}/{family}"] += 1

    def fake(sp, fam, i, base=None):
        rs, ims = chosen[sp], images[sp]
        donor, donor_id = None, ""
        if fam in synth.NEEDS_DONOR:
            # donor from the same split and another identity (keeps splits identity-disjoint)
            for _ in range(20):
                j = int(rng.integers(len(rs)))
                if rs[j].identity != rs[i].identity:
                    donor, donor_id = ims[j], rs[j].identity
                    break
            if donor is None and fam == "face_swap":
                fam = "self_blend" if sp == "test" else "inpaint_telea"
        f = synth.synthesize(fam, ims[i], tpl, rng, rs[i].identity, donor, donor_id)
        add(sp, f.image, 1, rs[i].identity, f.family, f.mask, f.donor, f.region, base)

    for sp in ("train", "val"):
        for i, r in enumerate(chosen[sp]):
            add(sp, images[sp][i], 0, r.identity)
            fake(sp, synth.SEEN[i % len(synth.SEEN)], i, samples[-1].id)
    for i, r in enumerate(chosen["test"]):
        add("test", images["test"][i], 0, r.identity)
    for fam in synth.FAMILIES:
        for k in range(test_fakes_per_family):
            fake("test", fam, int(rng.integers(len(chosen["test"]))))

    manifest = os.path.join(out_dir, "manifest.jsonl")
    write_manifest(manifest, samples)
    info = {"crops_dirs": [os.path.abspath(d) for d in crops_dirs], "size": size, "seed": seed,
            "template": tpl.to_dict(), "counts": dict(sorted(counts.items())),
            "identities": {sp: len({r.identity for r in rs}) for sp, rs in chosen.items()},
            "families": {f: {"task": t, "split": s} for f, (t, s) in synth.FAMILIES.items()}}
    with open(os.path.join(out_dir, "dataset.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"prepare: wrote {len(samples)} samples to {manifest}")
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", action="append", required=True, help="crops dir (lae crops output or image folder)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--test-fakes-per-family", type=int, default=150)
    ap.add_argument("--per-identity", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    common.set_threads()
    prepare(a.crops, a.out, n_train=a.n_train, n_val=a.n_val, n_test=a.n_test,
            test_fakes_per_family=a.test_fakes_per_family, per_identity=a.per_identity, seed=a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
