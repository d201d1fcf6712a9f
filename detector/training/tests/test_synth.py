"""Synthesis: every family's mask is exactly the set of changed pixels."""
import numpy as np
import pytest

from detector.training import synth


@pytest.mark.parametrize("family", sorted(synth.FAMILIES))
def test_mask_matches_changed_pixels(faces, family):
    tpl = synth.FaceTemplate()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        img, donor = faces[seed % len(faces)], faces[(seed + 1) % len(faces)]
        f = synth.synthesize(family, img, tpl, rng, "a", donor, "b")
        assert f.family == family
        assert f.image.shape == img.shape and f.image.dtype == np.uint8
        assert f.mask.shape == img.shape[:2] and f.mask.min() >= 0 and f.mask.max() <= 1
        diff = np.abs(f.image.astype(int) - img.astype(int)).max(axis=2)
        # nothing changes where the mask is 0 ...
        assert int(((diff > 0) & (f.mask == 0)).sum()) == 0
        # ... and the masked region really is manipulated
        core = f.mask >= 0.5
        assert core.sum() > 20
        assert (diff[core] > 0).mean() > 0.3, f"{family}: only {(diff[core] > 0).mean():.2f} of the mask changed"
        assert diff[core].mean() > 1.5


def test_stored_mask_reproduces_blend(faces):
    """The 8-bit stored mask is the exact blend weight: image = base*(1-m) + src*m."""
    rng = np.random.default_rng(0)
    src = np.full_like(faces[0], 200)
    out, m = synth.blend(faces[0], src, rng.uniform(0, 1, faces[0].shape[:2]).astype(np.float32))
    m8 = np.round(m * 255).astype(np.uint8).astype(np.float32) / 255
    want = np.round(faces[0] * (1 - m8[..., None]) + src * m8[..., None])
    assert np.abs(out.astype(float) - want).max() <= 1


def test_families_cover_three_tasks_with_seen_and_unseen():
    tasks = {}
    for fam, (task, split) in synth.FAMILIES.items():
        tasks.setdefault(task, set()).add(split)
    assert set(tasks) == {"swap", "attributes", "inpainting"}
    for task, splits in tasks.items():
        assert splits == {"seen", "unseen"}, task


def test_unknown_family_and_missing_donor(faces):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown family"):
        synth.synthesize("nope", faces[0], synth.FaceTemplate(), rng)
    with pytest.raises(ValueError, match="donor"):
        synth.synthesize("face_swap", faces[0], synth.FaceTemplate(), rng)


def test_inpaint_methods_differ(faces):
    """Telea and Navier-Stokes are different algorithms: same region, different pixels."""
    a = synth.synthesize("inpaint_telea", faces[0], synth.FaceTemplate(), np.random.default_rng(5))
    b = synth.synthesize("inpaint_ns", faces[0], synth.FaceTemplate(), np.random.default_rng(5))
    assert np.array_equal(a.mask, b.mask)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).sum() > 0


def test_estimate_template_is_inside_crop(faces):
    t = synth.estimate_template(faces)
    for p in (t.left_eye, t.right_eye, t.nose, t.mouth, t.face_center):
        assert 0 < p[0] < 1 and 0 < p[1] < 1
    assert t.left_eye[0] < t.right_eye[0] and t.left_eye[1] < t.mouth[1]
