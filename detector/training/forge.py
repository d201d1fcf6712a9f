"""Landmark-driven forgeries for lae-v2: every mask comes from the 468 MediaPipe Face Mesh points
that ``lae crops`` writes per crop (``landmarks``, in crop pixels), so masks sit on the face that
is actually there, not on a template.

Families (each returns the forged crop and its exact blend mask; pixels with mask 0 are
untouched):

==============  ======  ==========================================================================
family          split   what it does
==============  ======  ==========================================================================
self_blend      seen    SBI (Shiohara & Yamasaki, CVPR 2022): the face blended into itself after
                        colour, frequency (down/up-scale or sharpen) and small geometry changes
                        of one copy, through a randomly deformed landmark-hull mask with a random
                        blur and blend ratio -- blending seams and statistical mismatch without
                        any identity cue, the recipe that generalizes best across datasets
swap            seen    another identity's face (landmark-aligned by a similarity on the mesh),
                        colour matched, blended through the deformed hull of the target
part            seen    eyes, brows, mouth or nose region of another face (or of a changed copy
                        of the same face) blended through the part's polygon
inpaint         unseen  a part region filled by OpenCV inpainting
upsample        unseen  the hull region replaced by a down-scaled copy up-sampled with
                        zero insertion + kernel (generator checkerboard)
recompress      unseen  the hull region replaced by a strongly JPEG-recompressed copy
==============  ======  ==========================================================================

"seen" families train the detector; "unseen" ones only evaluate it (the LAE-vs-baseline
generalization protocol).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# MediaPipe Face Mesh 468 topology (the index lists of mediapipe's face_mesh_connections).
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
EYE_R = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
EYE_L = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
BROW_R = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
BROW_L = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64]
# The inner face, brows to chin without the forehead: what face-swap tools replace.
INNER = [i for i in FACE_OVAL if i not in (10, 338, 297, 332, 109, 67, 103)] + BROW_L + BROW_R

PARTS: Dict[str, List[int]] = {"eyes": EYE_R + EYE_L + BROW_R + BROW_L, "eye_r": EYE_R + BROW_R,
                               "eye_l": EYE_L + BROW_L, "mouth": LIPS, "nose": NOSE}

FAMILIES: Dict[str, str] = {"self_blend": "seen", "swap": "seen", "part": "seen",
                            "inpaint": "unseen", "upsample": "unseen", "recompress": "unseen"}
SEEN = [f for f, s in FAMILIES.items() if s == "seen"]
UNSEEN = [f for f, s in FAMILIES.items() if s == "unseen"]
N_LANDMARKS = 468


@dataclass
class Forgery:
    """A forged crop, its exact blend mask, and its real counterpart (``base``: the image the
    forgery was blended into; pixels with mask 0 equal base)."""

    base: np.ndarray
    image: np.ndarray
    mask: np.ndarray
    family: str = ""


@dataclass
class Face:
    """One aligned crop and its landmarks ([468, 2] float32, crop pixels)."""

    image: np.ndarray
    landmarks: np.ndarray
    identity: str = ""


# ------------------------------------------------------------------------------------- masks

def hull_mask(shape: Tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Filled convex hull of pts as float32 {0,1}."""
    m = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    cv2.fillConvexPoly(m, hull, 1)
    return m.astype(np.float32)


def deform(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random smooth deformation of a binary mask (SBI's elastic mask jitter): a coarse random
    displacement field, up-sampled, warps the mask; then a random erosion or dilation."""
    h, w = mask.shape
    g = 4
    amp = rng.uniform(0.0, 0.04) * w
    dx = cv2.resize(rng.normal(0, amp, (g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(rng.normal(0, amp, (g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(mask, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    k = int(rng.integers(0, max(2, w // 40)))
    if k > 0:
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        out = cv2.erode(out, ker) if rng.random() < 0.5 else cv2.dilate(out, ker)
    return (out > 0.5).astype(np.float32)


def soften(mask: np.ndarray, rng: np.random.Generator, ratio: bool = True) -> np.ndarray:
    """Blur the mask edge by a random kernel and scale it by a random blend ratio (SBI)."""
    w = mask.shape[1]
    out = mask
    for _ in range(int(rng.integers(1, 3))):
        k = int(rng.integers(1, max(3, w // 25))) * 2 + 1
        out = cv2.GaussianBlur(out, (k, k), 0)
    if ratio:
        out = out * float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def face_region(face: Face, rng: np.random.Generator) -> np.ndarray:
    """The blend region of a whole-face forgery: hull of the whole oval or of the inner face
    (brows to chin), deformed."""
    idx = FACE_OVAL if rng.random() < 0.5 else INNER
    return deform(hull_mask(face.image.shape[:2], face.landmarks[idx]), rng)


def part_region(face: Face, part: str, rng: np.random.Generator) -> np.ndarray:
    """A part's polygon hull, grown by a random margin."""
    m = hull_mask(face.image.shape[:2], face.landmarks[PARTS[part]])
    k = int(rng.integers(1, max(2, face.image.shape[1] // 30)))
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return m


def blend(base: np.ndarray, src: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """base*(1-m) + src*m in uint8; the returned mask is zero wherever the pixel did not change,
    so it is exactly the set of manipulated pixels (weighted by the blend ratio)."""
    m = mask[..., None]
    out = np.clip(base.astype(np.float32) * (1 - m) + src.astype(np.float32) * m + 0.5, 0, 255).astype(np.uint8)
    changed = np.any(out != base, axis=2)
    return out, np.where(changed, mask, 0.0).astype(np.float32)


# ------------------------------------------------------------------------------ transforms

def colour_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue/saturation/value shift, brightness/contrast and RGB shift (SBI's source transforms)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
    hsv[..., 1] *= rng.uniform(0.85, 1.15)
    hsv[..., 2] *= rng.uniform(0.9, 1.1)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    out = out * rng.uniform(0.9, 1.1) + rng.uniform(-12, 12) + rng.uniform(-8, 8, 3)
    return np.clip(out, 0, 255).astype(np.uint8)


def frequency(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down-scale and back (a generator's lower resolution) or sharpen."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        s = rng.uniform(0.25, 0.6)
        small = cv2.resize(img, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    blur = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 1.5))
    a = rng.uniform(0.3, 1.0)
    return np.clip(img.astype(np.float32) * (1 + a) - blur.astype(np.float32) * a, 0, 255).astype(np.uint8)


def small_affine(img: np.ndarray, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A few percent of translation and scale about the face centre."""
    h, w = img.shape[:2]
    s = rng.uniform(0.95, 1.05)
    tx, ty = rng.uniform(-0.03, 0.03, 2) * w
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, s)
    m[:, 2] += (tx, ty)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def colour_transfer(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer in Lab, statistics taken inside the mask."""
    sel = mask > 0.5
    if sel.sum() < 16:
        return src
    s = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).astype(np.float32)
    r = cv2.cvtColor(ref, cv2.COLOR_BGR2LAB).astype(np.float32)
    for c in range(3):
        sm, ss = s[..., c][sel].mean(), s[..., c][sel].std() + 1e-3
        rm, rs = r[..., c][sel].mean(), r[..., c][sel].std() + 1e-3
        s[..., c] = (s[..., c] - sm) * (rs / ss) + rm
    return cv2.cvtColor(np.clip(s, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def align_to(donor: Face, target: Face) -> np.ndarray:
    """The donor image warped so its landmarks fit the target's (least-squares similarity)."""
    m, _ = cv2.estimateAffinePartial2D(donor.landmarks.astype(np.float32), target.landmarks.astype(np.float32))
    if m is None:
        return donor.image.copy()
    h, w = target.image.shape[:2]
    return cv2.warpAffine(donor.image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _altered(img: np.ndarray, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SBI's source: colour and/or frequency change, then a small affine."""
    out = img
    if rng.random() < 0.8:
        out = colour_jitter(out, rng)
    if rng.random() < 0.8:
        out = frequency(out, rng)
    if rng.random() < 0.7:
        out = small_affine(out, centre, rng)
    if out is img:
        out = frequency(img, rng)
    return out


# -------------------------------------------------------------------------------- families

def self_blend(face: Face, rng: np.random.Generator, donor: Optional[Face] = None):
    """SBI: the face blended into itself (see module doc). Half the time the altered copy is
    the background rather than the face; the real counterpart of the pair is then that altered
    background (``Forgery.base``), so a global colour or sharpness change is never a fake cue."""
    centre = face.landmarks.mean(0)
    if rng.random() < 0.5:
        dst, src = face.image, _altered(face.image, centre, rng)
    else:
        dst, src = _altered(face.image, centre, rng), face.image
    img, mask = blend(dst, src, soften(face_region(face, rng), rng))
    return Forgery(dst, img, mask)


def swap(face: Face, rng: np.random.Generator, donor: Optional[Face] = None):
    """Another identity's face, landmark-aligned and colour matched, in the target's hull."""
    if donor is None:
        return self_blend(face, rng)
    region = face_region(face, rng)
    src = colour_transfer(align_to(donor, face), face.image, region)
    if rng.random() < 0.5:
        src = frequency(src, rng)
    return Forgery(face.image, *blend(face.image, src, soften(region, rng, ratio=False)))


def part(face: Face, rng: np.random.Generator, donor: Optional[Face] = None):
    """One facial part from a donor (aligned, colour matched) or from a changed copy."""
    name = str(rng.choice(list(PARTS)))
    region = part_region(face, name, rng)
    if donor is not None and rng.random() < 0.6:
        src = colour_transfer(align_to(donor, face), face.image, region)
    else:
        src = _altered(face.image, face.landmarks[PARTS[name]].mean(0), rng)
    return Forgery(face.image, *blend(face.image, src, soften(region, rng, ratio=False)))


def inpaint(face: Face, rng: np.random.Generator, donor: Optional[Face] = None):
    """A part filled by OpenCV inpainting (Telea or Navier-Stokes)."""
    name = str(rng.choice(list(PARTS)))
    region = part_region(face, name, rng)
    flag = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    src = cv2.inpaint(face.image, (region > 0.5).astype(np.uint8), 5, flag)
    return Forgery(face.image, *blend(face.image, src, soften(region, rng, ratio=False)))


def upsample(face: Face, rng: np.random.Generator, donor: Optional[Face] = None):
    """The face region replaced by a 2x zero-insertion up-sampling of a half-size copy (the
    transposed-convolution checkerboard of generators)."""
    h, w = face.image.shape[:2]
    small = cv2.resize(face.image, (w // 2, h // 2), interpolation=cv2.INTER_AREA).astype(np.float32)
    up = np.zeros((h // 2 * 2, w // 2 * 2, 3), np.float32)
    up[::2, ::2] = small * 4
    k = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]).astype(np.float32) * rng.uniform(0.9, 1.1)
    src = cv2.filter2D(up, -1, k, borderType=cv2.BORDER_REFLECT)
    src = cv2.resize(np.clip(src, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return Forgery(face.image, *blend(face.image, src, soften(face_region(face, rng), rng, ratio=False)))


def recompress(face: Face, rng: np.random.Generator, donor: Optional[Face] = None):
    """The face region replaced by a JPEG copy at low quality on a shifted grid."""
    dx, dy = (int(v) for v in rng.integers(0, 8, 2))
    shifted = np.roll(face.image, (dy, dx), axis=(0, 1))
    ok, buf = cv2.imencode(".jpg", shifted, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(10, 35))])
    src = np.roll(cv2.imdecode(buf, cv2.IMREAD_COLOR), (-dy, -dx), axis=(0, 1)) if ok else face.image
    return Forgery(face.image, *blend(face.image, src, soften(face_region(face, rng), rng, ratio=False)))


SYNTH: Dict[str, Callable] = {"self_blend": self_blend, "swap": swap, "part": part, "inpaint": inpaint,
                              "upsample": upsample, "recompress": recompress}
# How often each seen family is drawn for training: SBI carries generalization.
TRAIN_MIX = {"self_blend": 0.6, "swap": 0.2, "part": 0.2}


def synthesize(family: str, face: Face, rng: np.random.Generator, donor: Optional[Face] = None) -> Forgery:
    """One forgery of the family; one that changed too few pixels (a degenerate mask) falls
    back to self-blending, so every fake is a real fake."""
    if family not in SYNTH:
        raise ValueError(f"unknown forgery family {family!r}; want one of {sorted(SYNTH)}")
    f = SYNTH[family](face, rng, donor)
    f.family = family
    if (f.mask > 0.1).sum() < 0.01 * f.mask.size:
        f = self_blend(face, rng)
        f.family = "self_blend"
    return f


def pick_family(rng: np.random.Generator, mix: Dict[str, float] = TRAIN_MIX) -> str:
    """A family drawn with the mix's probabilities."""
    names = list(mix)
    p = np.array([mix[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]
