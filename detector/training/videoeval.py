"""Video-level evaluation of the product: real videos against forged copies of the same videos.

For every real video and forgery family, fakevideo.py forges the face in every frame and
re-encodes with H.264; then the built ``lae scan --json`` (the whole product: FFmpeg decoding,
face detection, alignment, NATS, ONNX Runtime, aggregation) scans originals and forgeries alike.
Reported per family and overall:

* verdict rates: share of forged videos called ``fake`` (detection) and of real ones called
  ``fake`` (false alarms), at the model card's shipped threshold and the default rule;
* video AUC of the verdict score, forged vs real;
* evidence localisation on forged videos: for each evidence frame the product reports, whether
  the centre of its hot region lies inside the forged region of that frame (pointing game), and
  the hot region's IoU with the forged region's bounding box.

CLI (repo root):
  /usr/bin/python3 -m detector.training.videoeval --videos ../shared/data/videos/asl \
      --donor-photo ../shared/data/faces/lfw/.../x.jpg --out /tmp/videoeval [--families face_swap,...]
Writes OUT/report.json and prints it.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import forge
from .fakevideo import donor_face, face_crops, forge_video
from .fieldeval import scan
from .metrics import auc

VIDEO_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm")
DEFAULT_FAMILIES = ("swap", "self_blend", "inpaint", "upsample")


def list_videos(paths: Sequence[str]) -> List[str]:
    """Video files named or found (recursively) under the given paths, sorted."""
    out: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += [f for f in glob.glob(os.path.join(p, "**", "*"), recursive=True) if f.lower().endswith(VIDEO_EXT)]
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"video {p}: not found")
    return sorted(out)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def localisation(verdict: Dict, forged: Dict) -> Dict:
    """Pointing game and IoU of the verdict's evidence hot regions against the forged boxes."""
    boxes = {f["frame_index"]: f["box"] for f in forged["per_frame"] if f.get("forged") and f.get("box")}
    hits, ious = [], []
    for ev in verdict.get("evidence") or []:
        box = boxes.get(ev["frame_index"])
        hr = ev.get("hot_region") or {}
        if box is None or not hr:
            continue
        cx, cy = hr["x"] + hr["w"] / 2, hr["y"] + hr["h"] / 2
        hits.append(box[0] <= cx <= box[0] + box[2] and box[1] <= cy <= box[1] + box[3])
        ious.append(_iou([hr["x"], hr["y"], hr["w"], hr["h"]], box))
    return {"evidence": len(hits), "pointing": hits, "iou": ious}


def evaluate(lae: str, videos: Sequence[str], donor: forge.Face, families: Sequence[str], out: str,
             model: Optional[str] = None, crf: int = 23, log=print, reuse: bool = False,
             report: str = "report.json") -> Dict:
    """Forge, scan and score (see module doc); writes OUT/report.json. With reuse, forged videos
    already in OUT (same crf) are scanned again rather than re-made (comparing models)."""
    os.makedirs(out, exist_ok=True)
    forged: Dict[str, List] = {f: [] for f in families}
    for v in videos:
        stem = os.path.splitext(os.path.basename(v))[0]
        crops = None
        for fam in families:
            dst = os.path.join(out, f"{stem}.{fam}.mp4")
            seed = zlib.crc32(f"{stem}/{fam}".encode())
            done = os.path.splitext(dst)[0] + ".json"
            if reuse and os.path.exists(done) and json.load(open(done)).get("crf") == crf:
                meta = json.load(open(done))
            else:
                crops = crops if crops is not None else face_crops(lae, v)
                meta = forge_video(lae, v, fam, dst, donor, crf, seed, crops=crops)
            if meta["forged_frames"] == 0:
                log(f"{v}: no face found, skipped for {fam}")
                continue
            forged[fam].append((v, dst, meta))
        log(f"forged {v}")
    fakes = [dst for fam in families for _, dst, _ in forged[fam]]
    verdicts = scan(lae, list(videos) + fakes, model, max_duration=None)
    real_scores = [verdicts[v]["score"] for v in videos if verdicts[v]["verdict"] in ("real", "fake")]
    real_fake = [verdicts[v]["verdict"] == "fake" for v in videos]
    rep: Dict = {"videos": len(videos), "crf": crf, "families": {}, "real": {
        "called_fake": int(sum(real_fake)), "false_alarm_rate": round(float(np.mean(real_fake)), 4),
        "scores": {os.path.basename(v): round(verdicts[v]["score"], 4) for v in videos},
        "verdicts": {os.path.basename(v): verdicts[v]["verdict"] for v in videos}}}
    all_f, all_hits, all_ious = [], [], []
    for fam in families:
        sc, called, hits, ious = [], [], [], []
        for _, dst, meta in forged[fam]:
            vd = verdicts[dst]
            sc.append(vd["score"])
            called.append(vd["verdict"] == "fake")
            loc = localisation(vd, meta)
            hits += loc["pointing"]
            ious += loc["iou"]
        all_f += sc
        all_hits += hits
        all_ious += ious
        rep["families"][fam] = {
            "videos": len(sc), "detected": int(sum(called)),
            "detection_rate": round(float(np.mean(called)), 4) if called else None,
            "auc": round(auc(np.array([0] * len(real_scores) + [1] * len(sc)), np.array(real_scores + sc)), 4)
            if sc and real_scores else None,
            "evidence_frames": len(hits),
            "pointing": round(float(np.mean(hits)), 4) if hits else None,
            "hot_region_iou": round(float(np.mean(ious)), 4) if ious else None}
    rep["overall"] = {
        "auc": round(auc(np.array([0] * len(real_scores) + [1] * len(all_f)), np.array(real_scores + all_f)), 4)
        if all_f and real_scores else None,
        "detection_rate": round(float(np.mean([verdicts[d]["verdict"] == "fake" for d in fakes])), 4) if fakes else None,
        "pointing": round(float(np.mean(all_hits)), 4) if all_hits else None,
        "hot_region_iou": round(float(np.mean(all_ious)), 4) if all_ious else None}
    rep["model"] = {k: next(iter(verdicts.values())).get(k) for k in ("model", "model_version", "threshold", "rule")}
    with open(os.path.join(out, report), "w") as f:
        json.dump(rep, f, indent=1)
    return rep


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lae", default="bin/lae")
    ap.add_argument("--videos", nargs="+", required=True, help="real videos or folders of them")
    ap.add_argument("--donor-photo", required=True, help="photo of another person (face swap donor)")
    ap.add_argument("--families", default=",".join(DEFAULT_FAMILIES))
    ap.add_argument("--model", help="ONNX model for lae scan (default: the shipped one)")
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reuse", action="store_true", help="scan forged videos already in OUT instead of re-making them")
    ap.add_argument("--report", default="report.json", help="report file name inside OUT")
    ap.add_argument("--card", help="also record the results in this model card's eval.forged_video block")
    a = ap.parse_args(argv)
    fams = [f for f in a.families.split(",") if f]
    rep = evaluate(a.lae, list_videos(a.videos), donor_face(a.lae, a.donor_photo), fams, a.out, a.model, a.crf,
                   log=lambda m: print(m, file=sys.stderr, flush=True), reuse=a.reuse, report=a.report)
    print(json.dumps(rep, indent=1))
    if a.card:
        record_in_card(a.card, rep, {"videos": a.videos, "donor_photo": a.donor_photo, "families": fams})
    return 0


def record_in_card(card_path: str, rep: Dict, how: Dict) -> None:
    """Write the report (without per-video scores) into the card's eval.forged_video block, refusing a
    report made with another model version than the card's."""
    card = json.load(open(card_path))
    want = card.get("model", {}).get("version")
    if rep.get("model", {}).get("model_version") != want:
        raise ValueError(f"report is of model {rep.get('model')}, card {card_path} is version {want}")
    block = {k: v for k, v in rep.items() if k != "real"}
    block["real"] = {k: v for k, v in rep["real"].items() if k != "scores"}
    block["protocol"] = {**how, "what": "every frame of each real video forged in the frame (fakevideo.py), "
                                        "re-encoded with libx264; originals and forgeries scanned with lae scan"}
    card.setdefault("eval", {})["forged_video"] = block
    with open(card_path, "w") as f:
        json.dump(card, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
