"""Forged videos: pasting a forged crop back into the frame, the forged-region boxes, and a whole
forged clip made with the product's own crops and re-encoded with ffmpeg."""
import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from detector.training import fakevideo, videoeval

from .conftest import ROOT, SHARED


def _shift_scale(s: float, tx: float, ty: float) -> np.ndarray:
    return np.array([[s, 0, tx], [0, s, ty]], np.float64)


def test_paste_changes_only_the_masked_region():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    forged = np.full((64, 64, 3), 255, np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:32, 8:40] = 1.0
    m = _shift_scale(0.5, 50, 30)  # crop pixel (x, y) -> frame (50 + x/2, 30 + y/2)
    out = fakevideo.paste(frame, forged, mask, m)
    changed = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.any()
    assert xs.min() >= 50 + 8 / 2 - 1 and xs.max() <= 50 + 40 / 2 + 1
    assert ys.min() >= 30 + 16 / 2 - 1 and ys.max() <= 30 + 32 / 2 + 1
    assert np.all(out[39, 60] == 255), "the inside of the region is the forged pixel"


def test_bbox_maps_the_mask_into_the_frame():
    mask = np.zeros((64, 64), np.float32)
    mask[16:32, 8:40] = 0.9
    mask[0, 0] = 0.2  # below the threshold: not part of the region
    assert fakevideo.bbox(mask, _shift_scale(0.5, 50, 30)) == [54, 38, 16, 8]
    assert fakevideo.bbox(np.zeros((8, 8), np.float32), _shift_scale(1, 0, 0)) is None


def test_affine_reads_the_index_row():
    m = fakevideo.affine({"crop_to_frame": [0.5, 0, 10, 0, 0.5, 20]})
    np.testing.assert_allclose(m @ np.array([2.0, 4.0, 1.0]), [11.0, 22.0])


def test_localisation_scores_evidence_against_forged_boxes():
    forged = {"per_frame": [{"frame_index": 3, "forged": True, "box": [10, 10, 20, 20]},
                            {"frame_index": 4, "forged": False}]}
    verdict = {"evidence": [
        {"frame_index": 3, "hot_region": {"x": 12, "y": 12, "w": 10, "h": 10}},  # inside
        {"frame_index": 3, "hot_region": {"x": 40, "y": 40, "w": 4, "h": 4}},  # outside
        {"frame_index": 4, "hot_region": {"x": 12, "y": 12, "w": 4, "h": 4}},  # not a forged frame
    ]}
    loc = videoeval.localisation(verdict, forged)
    assert loc["evidence"] == 2 and loc["pointing"] == [True, False]
    assert loc["iou"][0] == pytest.approx(100 / 400) and loc["iou"][1] == 0.0


def test_donor_families_need_a_donor(tmp_path):
    with pytest.raises(ValueError, match="needs --donor"):
        fakevideo.forge_video("lae", "x.mp4", "swap", str(tmp_path / "o.mp4"))
    with pytest.raises(ValueError, match="unknown forgery family"):
        fakevideo.forge_video("lae", "x.mp4", "face_swap", str(tmp_path / "o.mp4"))


@pytest.fixture(scope="module")
def lae_bin(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.skip("go toolchain not found: cannot build bin/lae for lae crops")
    out = str(tmp_path_factory.mktemp("bin") / "lae")
    subprocess.run(["go", "build", "-o", out, "./cmd/lae"], cwd=ROOT, check=True)
    return out


def test_forged_clip_end_to_end(tmp_path, lae_bin):
    clip = os.path.join(SHARED, "videos", "asl", "again.mkv")
    if not os.path.exists(clip):
        pytest.skip(f"{clip} absent: ../shared/data holds the real face videos")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (deploy/scripts/setup.sh installs it)")
    out = str(tmp_path / "again.inpaint.mp4")
    meta = fakevideo.forge_video(lae_bin, clip, "inpaint", out, crf=18, seed=1)
    cap_o, cap_f = cv2.VideoCapture(clip), cv2.VideoCapture(out)
    n = int(cap_o.get(cv2.CAP_PROP_FRAME_COUNT))
    assert meta["frames"] == int(cap_f.get(cv2.CAP_PROP_FRAME_COUNT)) >= n - 1
    assert meta["forged_frames"] >= 0.9 * meta["frames"], "the signer's face is visible throughout"
    saved = json.load(open(str(tmp_path / "again.inpaint.json")))
    assert saved["forged_frames"] == meta["forged_frames"]
    # the difference to the original concentrates in the forged box, not in the rest of the frame
    rec = next(f for f in meta["per_frame"][10:] if f["forged"])
    for _ in range(rec["frame_index"] + 1):
        ok_o, fo = cap_o.read()
        ok_f, ff = cap_f.read()
    assert ok_o and ok_f
    d = np.abs(fo.astype(np.int16) - ff.astype(np.int16)).mean(axis=2)
    x, y, w, h = rec["box"]
    inside = d[max(0, y):y + h, max(0, x):x + w].mean()
    outside_mask = np.ones_like(d, bool)
    outside_mask[max(0, y - 8):y + h + 8, max(0, x - 8):x + w + 8] = False
    assert inside > 3 * d[outside_mask].mean(), (inside, d[outside_mask].mean())


def test_record_in_card_checks_the_model_version(tmp_path):
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"model": {"version": "1.2.3"}, "eval": {"seen": {}}}))
    rep = {"model": {"model_version": "1.2.3"}, "overall": {"auc": 0.7}, "families": {},
           "real": {"called_fake": 1, "scores": {"a.mkv": 0.9}, "verdicts": {"a.mkv": "fake"}}}
    videoeval.record_in_card(str(card), rep, {"videos": ["v"]})
    got = json.loads(card.read_text())["eval"]
    assert got["seen"] == {} and got["forged_video"]["overall"] == {"auc": 0.7}
    assert "scores" not in got["forged_video"]["real"] and got["forged_video"]["real"]["verdicts"] == {"a.mkv": "fake"}
    rep["model"]["model_version"] = "9.9.9"
    with pytest.raises(ValueError, match="version 1.2.3"):
        videoeval.record_in_card(str(card), rep, {})
