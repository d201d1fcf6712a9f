"""Crop listing, identities, identity-disjoint preparation."""
import json
import os

import numpy as np
import pytest

from detector.training import common
from detector.training.crops import identity_of, list_crops
from detector.training.data import load_arrays
from detector.training.manifest import load_manifest
from detector.training.prepare import prepare, split_of
from detector.training.smoke import make_toy_crops
from detector.training.trainer import make_units


@pytest.mark.parametrize("src,want", [
    ("/d/faces/lfw/George_W_Bush_0012.jpg", "lfw:George_W_Bush"),
    ("/d/faces/utkface/20_1_0_2017.jpg.chip.jpg", "utkface:20_1_0_2017"),
    ("/d/photos/deepface/img12.jpg", "deepface"),
    ("/d/videos/asl/milk.mkv", "video:asl"),
    ("/d/videos/hamilton_short.mp4", "video:hamilton_short"),
    ("/x/toy003_0002.png", "toy003"),
])
def test_identity_of(src, want):
    assert identity_of(src) == want


def test_list_crops_index(tmp_path):
    common.write_png(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    rows = [{"path": "a.png", "source": "/d/faces/lfw/Ann_0001.jpg", "frame_index": 0, "face_index": 0,
             "eyes_aligned": True, "box": [0, 0, 4, 4]}]
    (tmp_path / "index.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = list_crops(str(tmp_path))
    assert len(got) == 1 and got[0].identity == "lfw:Ann" and got[0].path == str(tmp_path / "a.png")
    (tmp_path / "index.jsonl").write_text("{bad\n")
    with pytest.raises(ValueError, match="index.jsonl:1: bad JSON"):
        list_crops(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        list_crops(str(tmp_path / "nope"))


def test_split_of_is_deterministic_and_balanced():
    ids = [f"id{i}" for i in range(2000)]
    s = [split_of(i) for i in ids]
    assert s == [split_of(i) for i in ids]
    frac = {k: s.count(k) / len(s) for k in ("train", "val", "test")}
    assert abs(frac["train"] - 0.7) < 0.05 and abs(frac["val"] - 0.1) < 0.03 and abs(frac["test"] - 0.2) < 0.04


def test_prepare_identity_disjoint_with_pairs(tmp_path):
    crops = make_toy_crops(str(tmp_path / "crops"), n_ids=30, per_id=2)
    man = prepare([crops], str(tmp_path / "ds"), n_train=20, n_val=6, n_test=6, test_fakes_per_family=2,
                  log=lambda *_: None)
    samples = load_manifest(man)  # raises if identities leak across splits
    fams = {s.family for s in samples if s.split == "test" and s.label == 1}
    assert {"face_swap", "self_blend", "inpaint_ns", "gan_upsample"} <= fams
    assert all(s.seen for s in samples if s.split == "train" and s.label == 1)
    assert not any(s.family in ("self_blend", "inpaint_ns") for s in samples if s.split == "train")
    assert all(s.mask for s in samples if s.label == 1)
    data = load_arrays(man)
    units = make_units(data, data.idx("train"))
    pairs = [u for u in units if len(u) == 2]
    assert len(pairs) == len(data.idx("train", 1))
    for r, f in pairs:
        assert data.y[r] == 0 and data.y[f] == 1 and data.samples[r].identity == data.samples[f].identity
