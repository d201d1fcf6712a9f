"""lae-v2 pieces: landmark masks, forgery families, the sampler, the MobileNetV2 LAE, the
training protocol end to end on a toy packed set."""
import json
import os

import numpy as np
import pytest
import torch

from detector.training import forge, realdata, sampler, trainv2
from detector.training.model import MobileLAE, build, Exported


def toy_face(seed=0, size=256):
    """A face-like crop with 468 landmarks: oval points on an ellipse, parts near their places,
    everything else inside the oval."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 90, np.uint8)
    img[:] = rng.integers(60, 120, 3)
    c = np.array([size / 2, size * 0.55])
    ax = np.array([size * 0.26, size * 0.33])
    import cv2
    cv2.ellipse(img, (int(c[0]), int(c[1])), (int(ax[0]), int(ax[1])), 0, 0, 360, (120, 150, 200), -1)
    img = (img.astype(np.int16) + rng.integers(-8, 8, img.shape)).clip(0, 255).astype(np.uint8)
    lm = c + (rng.random((468, 2)) - 0.5) * ax
    t = np.linspace(0, 2 * np.pi, len(forge.FACE_OVAL), endpoint=False)
    lm[forge.FACE_OVAL] = c + np.stack([np.sin(t) * ax[0], -np.cos(t) * ax[1]], 1)
    for idx, at in ((forge.EYE_R + forge.BROW_R, (0.375, 0.41)), (forge.EYE_L + forge.BROW_L, (0.625, 0.41)),
                    (forge.LIPS, (0.5, 0.72)), (forge.NOSE, (0.5, 0.56))):
        lm[idx] = np.array(at) * size + rng.normal(0, size * 0.02, (len(idx), 2))
    return forge.Face(img, lm.astype(np.float32), f"id{seed}")


@pytest.mark.parametrize("family", sorted(forge.SYNTH))
def test_family_mask_is_exactly_the_changed_pixels(family):
    face = toy_face(1)
    rng = np.random.default_rng(3)
    f = forge.synthesize(family, face, rng, donor=toy_face(2))
    img, mask = f.image, f.mask
    assert f.family in forge.SYNTH
    changed = np.any(img != f.base, axis=2)
    assert img.shape == face.image.shape and img.dtype == np.uint8
    assert mask.shape == face.image.shape[:2] and mask.dtype == np.float32
    assert (mask[~changed] == 0).all(), "mask outside the changed pixels"
    assert changed.mean() > 0.01, "a forgery must change something"
    assert (mask[changed] > 0).all()


def test_face_region_stays_on_the_face():
    face = toy_face(4)
    oval = forge.hull_mask(face.image.shape[:2], face.landmarks[forge.FACE_OVAL])
    rng = np.random.default_rng(0)
    for _ in range(10):
        m = forge.face_region(face, rng)
        assert m.sum() > 0
        # deformation and dilation move the edge by a few percent at most
        assert (m * (1 - oval)).sum() / m.sum() < 0.15


def test_part_region_is_local():
    face = toy_face(5)
    m = forge.part_region(face, "mouth", np.random.default_rng(0))
    ys, xs = np.nonzero(m)
    assert ys.mean() > 0.62 * 256 and m.mean() < 0.1


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown forgery family"):
        forge.synthesize("nope", toy_face(), np.random.default_rng(0))


def write_toy_npz(path, n=12, seed=0):
    faces = [toy_face(seed + i) for i in range(n)]
    np.savez(path, images=np.stack([f.image for f in faces]), landmarks=np.stack([f.landmarks for f in faces]),
             identity=np.array([f"p{i // 2}" for i in range(n)]), source=np.array(["toy"] * n),
             source_scale=np.ones(n, np.float32))


def test_sampler_pairs_share_the_crop_and_mirror(tmp_path):
    write_toy_npz(tmp_path / "s.npz")
    s = sampler.Sampler(realdata.RealSet(str(tmp_path / "s.npz")), 96, degrade=None)
    items = s.pairs([0, 3], np.random.default_rng(0))
    assert [it.label for it in items] == [0, 1, 0, 1]
    for real, fake in zip(items[::2], items[1::2]):
        assert real.image.shape == (96, 96, 3) and fake.mask.shape == (96, 96)
        assert real.mask.max() == 0 and fake.mask.max() > 0
        same = np.all(real.image == fake.image, axis=2)
        assert (fake.mask[same] < 0.5).mean() > 0.9, "unchanged pixels carry no mask"
    x, y, m = sampler.to_batch(items)
    assert x.shape == (4, 3, 96, 96) and y.tolist() == [0, 1, 0, 1] and m.shape == (4, 1, 96, 96)


def test_mobile_lae_shapes_and_export_graph():
    net = build("lae-v2", latent=16)
    x = torch.randn(2, 3, 96, 96)
    out = net(x)
    assert out["logit_map"].shape == (2, 1, 12, 12) and out["recon"].shape == x.shape
    s, h = Exported(net).eval()(x)
    assert s.shape == (2,) and h.shape == (2, 1, 12, 12)
    assert torch.all((s > 0) & (s < 1))


def test_trunk_batchnorm_keeps_pretrained_statistics():
    net = MobileLAE(latent=16).train()
    bns = [m for m in net.s8.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(b.training for b in bns)
    assert net.fuse[1].training


def test_group_split_keeps_speakers_together():
    a = realdata.talking_group("x/LipNet__518a07a__evaluation_samples_GRID_bbaf2n.mpg")
    b = realdata.talking_group("x/LipNet__518a07a__evaluation_samples_GRID_lbax4n.mpg")
    assert a == b and realdata.split_of_group(a) == realdata.split_of_group(b)
    assert realdata.split_of_group("video:asl") == "val"
    assert realdata.photo_group("/d/faces/lfw/Aaron_Eckhart_0001.jpg") == "lfw:Aaron_Eckhart"


def test_protocol_end_to_end(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    for k, split in enumerate(("train", "val", "test")):
        write_toy_npz(real / f"{split}.npz", n=10, seed=100 * k)
    monkeypatch.setattr(trainv2, "MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(trainv2, "SHARED", str(tmp_path / "none"))
    cfg = trainv2.Config(size=64, latent=8, pairs_per_batch=2, warm_steps=3, arm_steps=3, rounds=3, pool_size=30,
                         seeds=[0], n_val_real=4, n_val_per_family=2, n_test_real=4, n_test_per_family=2,
                         mask_frac=0.5, threads=1, ckpt_every=2)
    orig_build = trainv2.build
    monkeypatch.setattr(trainv2, "build", lambda name, **kw: orig_build(name, **{**kw, "pretrained": None}))
    card = trainv2.run(str(real), str(tmp_path / "work"), cfg, "0.0.1", log=lambda m: None)
    assert set(card["arms"]) == {"baseline-s0", "lae-s0"}
    assert 0 < card["arms"]["lae-s0"]["masks"] <= 0.5 * 20
    assert os.path.exists(tmp_path / "models" / "lae-v2.onnx")
    saved = json.load(open(tmp_path / "models" / "lae-v2.card.json"))
    assert saved["model"]["input_size"] == 64 and 0 <= saved["threshold"] <= 1
    assert os.path.exists(tmp_path / "work" / "lae-s0" / "annotation-round0" / "batch.json")


MODELS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "models"))
VIDEO_KEYS = ("deepfakes_dev_auc", "real_clips_false_alarm_rate", "photo_clips_false_alarms", "pointing_game",
              "attention_iou", "unseen_gain_auc", "mask_fraction", "crops_per_cpu_second")


@pytest.mark.skipif(not os.path.exists(os.path.join(MODELS, "lae-v2.onnx")), reason="lae-v2 not shipped yet")
def test_shipped_v2_model_card_and_parity():
    import onnx
    m = onnx.load(os.path.join(MODELS, "lae-v2.onnx"))
    onnx.checker.check_model(m)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["lae.name"] == "lae-v2"
    assert os.path.getsize(os.path.join(MODELS, "lae-v2.onnx")) <= 20 * 2**20
    card = json.load(open(os.path.join(MODELS, "lae-v2.card.json")))
    size = card["model"]["input_size"]
    assert int(meta["lae.input_size"]) == size
    video = card["eval"]["video"]
    for k in VIDEO_KEYS:
        assert k in video and video[k] is not None, k
    assert 0 < video["mask_fraction"] <= 0.03
    assert 0 <= card["threshold"] <= 1
    par = json.load(open(os.path.join(MODELS, "lae-v2.parity.json")))
    n = len(par["score"])
    ck = torch.load(os.path.join(MODELS, "lae-v2.pt"), map_location="cpu")
    net = build(ck["name"], **ck["kwargs"])
    net.load_state_dict(ck["state_dict"])
    x = torch.tensor(par["input"], dtype=torch.float32).view(n, 3, size, size)
    s, h = Exported(net.eval())(x)
    np.testing.assert_allclose(s.detach().numpy(), par["score"], atol=1e-5)
    np.testing.assert_allclose(h.detach().numpy().ravel(), par["heatmap"], atol=1e-5)


def test_data_block_lists_used_sources(tmp_path):
    (tmp_path / "SOURCES.md").write_text("| folder | what | count | from |\n|---|---|---|---|\n"
                                         "| faces/lfw | LFW | 7 | somewhere (research) |\n"
                                         "| faces/other | not used | 1 | x |\n")
    b = realdata.data_block(str(tmp_path))
    assert [r["folder"] for r in b["sources"]] == ["faces/lfw"]
    assert b["sources"][0]["from"] == "somewhere (research)" and "person" in b["sources"][0]["used_for"]


def test_active_learning_round_accepts_soft_oracle_masks(tmp_path):
    # a forgery blended at ratio 0.25 has no mask pixel >= 128; the oracle's batch must still import
    n = 6
    pool = sampler.EvalSet(np.zeros((n, 32, 32, 3), np.uint8), np.ones(n, int),
                           np.full((n, 32, 32), 0.25, np.float16), np.array(["self_blend"] * n))
    net = build("lae-v2", latent=8)
    picks = trainv2.al_round(net, pool, [], 3, 0, str(tmp_path), log=lambda m: None)
    assert len(picks) == 3 and os.path.exists(tmp_path / "annotation-round0" / "batch.json")
    for p in picks:
        assert abs(float(pool.masks[p["index"]].max()) - 0.25) < 0.01
