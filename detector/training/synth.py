"""Forgery synthesis with pixel masks on aligned real face crops.

Every family takes aligned 8-bit BGR crops of one size and returns a ``Forgery``: the manipulated
image, a float mask in [0,1] that is exactly the per-pixel blend weight of the manipulation
(pixels with mask 0 are bit-identical to the input, so the mask *is* the set of changed pixels),
the family name and the identities involved.

Families and the task they belong to (mirroring the LAE paper's three tasks: face swap, facial
attributes, inpainting); "seen" families are used for training, "unseen" ones only in evaluation:

========  ===============  ======  =========================================================
task      family           split   what it does
========  ===============  ======  =========================================================
swap      face_swap        seen    another identity's face, Reinhard colour transfer, soft
                                   ellipse or convex-hull mask, small misalignment
swap      self_blend       unseen  same face altered in colour/sharpness/scale/position,
                                   blended back through a hull/ellipse mask (SBI-style)
attrs     attr_edit        seen    eyes or mouth from another face (colour matched) or a
                                   local bulge/pinch warp of that region
attrs     gan_upsample     unseen  region replaced by a down-scaled copy re-up-sampled with a
                                   transposed-conv-like (zero insertion + kernel) step:
                                   checkerboard artefacts typical of generators
attrs     recompress       unseen  region replaced by a strongly JPEG-recompressed copy (grid
                                   possibly shifted): local double compression
inpaint   inpaint_telea    seen    region filled by cv2.inpaint INPAINT_TELEA
inpaint   inpaint_ns       unseen  region filled by cv2.inpaint INPAINT_NS (Navier-Stokes)
========  ===============  ======  =========================================================

Facial regions come from a ``FaceTemplate`` (fractions of the crop side) because the crops are
aligned (eyes level, fixed scale); ``estimate_template`` fits it to a crop source with OpenCV's
cascades, and every family jitters it, so masks are right by construction even where a face is
not exactly at the template position.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# family -> (task, "seen"|"unseen")
FAMILIES: Dict[str, Tuple[str, str]] = {
    "face_swap": ("swap", "seen"),
    "self_blend": ("swap", "unseen"),
    "attr_edit": ("attributes", "seen"),
    "gan_upsample": ("attributes", "unseen"),
    "recompress": ("attributes", "unseen"),
    "inpaint_telea": ("inpainting", "seen"),
    "inpaint_ns": ("inpainting", "unseen"),
}
SEEN = [f for f, (_, s) in FAMILIES.items() if s == "seen"]
UNSEEN = [f for f, (_, s) in FAMILIES.items() if s == "unseen"]
# Families that need a second face (donor) of another identity.
NEEDS_DONOR = {"face_swap", "attr_edit"}


@dataclass
class FaceTemplate:
    """Facial landmarks of an aligned crop, as fractions of the crop side (x, y)."""

    left_eye: Tuple[float, float] = (0.36, 0.42)
    right_eye: Tuple[float, float] = (0.64, 0.42)
    nose: Tuple[float, float] = (0.50, 0.56)
    mouth: Tuple[float, float] = (0.50, 0.70)
    face_center: Tuple[float, float] = (0.50, 0.55)
    face_axes: Tuple[float, float] = (0.27, 0.34)  # half width, half height

    def to_dict(self) -> dict:
        """JSON-friendly form (for the model card)."""
        return dataclasses.asdict(self)


@dataclass
class Forgery:
    """A synthesized fake: image (uint8 BGR), mask (float32 [0,1], blend weight), metadata."""

    image: np.ndarray
    mask: np.ndarray
    family: str
    identity: str
    donor: Optional[str] = None
    region: str = ""


# ---------------------------------------------------------------------------------------------
# geometry and blending helpers


def _quantize(mask: np.ndarray) -> np.ndarray:
    """Quantize a mask to the 8-bit steps it is stored with, so the stored PNG reproduces the
    exact blend weights (and mask == 0 means unchanged)."""
    return np.round(np.clip(mask, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def blend(base: np.ndarray, src: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Alpha-blend src into base with mask; returns (image, quantized mask). Pixels whose mask
    is 0 are copied from base bit-exactly."""
    m = _quantize(mask)
    out = base.astype(np.float32) * (1.0 - m[..., None]) + src.astype(np.float32) * m[..., None]
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    out[m == 0] = base[m == 0]
    return out, m


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return mask.astype(np.float32)
    k = int(2 * round(3 * sigma) + 1)
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), sigma)


def _pt(t: Tuple[float, float], s: int, rng: np.random.Generator, jitter: float) -> Tuple[float, float]:
    return (t[0] * s + rng.normal(0, jitter * s), t[1] * s + rng.normal(0, jitter * s))


def ellipse_mask(size: int, center, axes, angle: float = 0.0) -> np.ndarray:
    """Hard filled ellipse (float 0/1)."""
    m = np.zeros((size, size), np.uint8)
    c = (int(round(center[0])), int(round(center[1])))
    a = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
    cv2.ellipse(m, c, a, angle, 0, 360, 255, -1, lineType=cv2.LINE_AA)
    return m.astype(np.float32) / 255.0


def hull_mask(size: int, points: Sequence[Tuple[float, float]]) -> np.ndarray:
    """Hard filled convex hull of points (float 0/1)."""
    pts = np.array(points, np.float32).reshape(-1, 1, 2)
    hull = cv2.convexHull(pts).astype(np.int32)
    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, hull, 255, lineType=cv2.LINE_AA)
    return m.astype(np.float32) / 255.0


def face_mask(size: int, tpl: FaceTemplate, rng: np.random.Generator) -> np.ndarray:
    """A soft whole-face mask: elliptical or convex hull of jittered landmarks, feathered."""
    cx, cy = _pt(tpl.face_center, size, rng, 0.015)
    ax = tpl.face_axes[0] * size * rng.uniform(0.8, 1.05)
    ay = tpl.face_axes[1] * size * rng.uniform(0.8, 1.05)
    if rng.random() < 0.5:
        m = ellipse_mask(size, (cx, cy), (ax, ay), rng.uniform(-8, 8))
    else:
        # convex hull of points on the inner face (eyebrows, cheeks, chin) like a landmark hull
        pts = []
        for ang in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            r = rng.uniform(0.8, 1.0)
            pts.append((cx + r * ax * np.cos(ang), cy + r * ay * np.sin(ang)))
        m = hull_mask(size, pts)
    return _feather(m, rng.uniform(0.02, 0.05) * size)


REGIONS = ("eyes", "left_eye", "right_eye", "mouth", "nose")


def region_mask(size: int, tpl: FaceTemplate, region: str, rng: np.random.Generator,
                feather: bool = True) -> np.ndarray:
    """Mask of a facial part (eyes, one eye, mouth, nose), jittered; soft unless feather=False."""
    if region == "eyes":
        le = _pt(tpl.left_eye, size, rng, 0.01)
        re = _pt(tpl.right_eye, size, rng, 0.01)
        c = ((le[0] + re[0]) / 2, (le[1] + re[1]) / 2)
        ax = (re[0] - le[0]) / 2 + size * rng.uniform(0.08, 0.12)
        ay = size * rng.uniform(0.05, 0.08)
    elif region in ("left_eye", "right_eye"):
        c = _pt(getattr(tpl, region), size, rng, 0.01)
        ax, ay = size * rng.uniform(0.08, 0.11), size * rng.uniform(0.05, 0.07)
    elif region == "mouth":
        c = _pt(tpl.mouth, size, rng, 0.01)
        ax, ay = size * rng.uniform(0.11, 0.15), size * rng.uniform(0.05, 0.08)
    elif region == "nose":
        c = _pt(tpl.nose, size, rng, 0.01)
        ax, ay = size * rng.uniform(0.06, 0.08), size * rng.uniform(0.08, 0.11)
    else:
        raise ValueError(f"unknown region {region!r}")
    m = ellipse_mask(size, c, (ax, ay), rng.uniform(-6, 6))
    return _feather(m, rng.uniform(0.015, 0.03) * size) if feather else m


def colour_transfer(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer in Lab: shift/scale src's statistics inside mask to ref's."""
    w = mask > 0.5
    if w.sum() < 16:
        return src.copy()
    s = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).astype(np.float32)
    r = cv2.cvtColor(ref, cv2.COLOR_BGR2LAB).astype(np.float32)
    out = s.copy()
    for c in range(3):
        ms, ss = s[..., c][w].mean(), s[..., c][w].std() + 1e-3
        mr, sr = r[..., c][w].mean(), r[..., c][w].std() + 1e-3
        out[..., c] = (s[..., c] - ms) * (sr / ss) + mr
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def _random_affine(img: np.ndarray, rng: np.random.Generator, scale=(0.96, 1.04), shift=0.02,
                   rot=4.0) -> np.ndarray:
    s = img.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-rot, rot), rng.uniform(*scale))
    m[:, 2] += rng.uniform(-shift, shift, 2) * s
    return cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _nonempty(mask: np.ndarray) -> bool:
    return bool((mask > 0.5).sum() > 0)


# ---------------------------------------------------------------------------------------------
# families


def face_swap(img, donor, tpl, rng, identity="", donor_identity=""):
    """Swap: donor face (slightly misaligned), colour-matched to the target, soft face mask."""
    s = img.shape[0]
    mask = face_mask(s, tpl, rng)
    d = _random_affine(donor, rng)
    d = colour_transfer(d, img, mask)
    out, m = blend(img, d, mask)
    return Forgery(out, m, "face_swap", identity, donor_identity, "face")


def self_blend(img, tpl, rng, identity=""):
    """Self-blending (SBI-style): the same face with altered colour, sharpness, scale and
    position, blended back through a soft hull/ellipse mask."""
    s = img.shape[0]
    src = img.copy()
    hsv = cv2.cvtColor(src, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.8, 1.25), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.85, 1.15) + rng.uniform(-10, 10), 0, 255)
    src = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    if rng.random() < 0.5:
        src = cv2.GaussianBlur(src, (0, 0), rng.uniform(0.6, 1.4))
    else:
        blur = cv2.GaussianBlur(src, (0, 0), 1.0)
        src = cv2.addWeighted(src, 1.6, blur, -0.6, 0)
    src = _random_affine(src, rng, scale=(1.01, 1.06), shift=0.015, rot=2.0)
    mask = face_mask(s, tpl, rng)
    out, m = blend(img, src, mask)
    return Forgery(out, m, "self_blend", identity, None, "face")


def _bulge(img, center, radius, strength):
    s = img.shape[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    dx, dy = xx - center[0], yy - center[1]
    r = np.sqrt(dx * dx + dy * dy) / radius
    f = np.where(r < 1, 1 - strength * (1 - r * r) ** 2, 1.0).astype(np.float32)
    mapx = (center[0] + dx * f).astype(np.float32)
    mapy = (center[1] + dy * f).astype(np.float32)
    return cv2.remap(img, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def attr_edit(img, donor, tpl, rng, identity="", donor_identity=""):
    """Local attribute edit: eyes or mouth from another face (colour matched), or warped."""
    s = img.shape[0]
    region = rng.choice(["eyes", "mouth", "left_eye", "right_eye"])
    mask = region_mask(s, tpl, region, rng)
    if donor is not None and rng.random() < 0.6:
        src = colour_transfer(_random_affine(donor, rng, shift=0.01, rot=2.0), img, mask)
        how = "paste"
    else:
        ys, xs = np.nonzero(mask > 0.5)
        c = (float(xs.mean()), float(ys.mean()))
        rad = max(xs.max() - xs.min(), ys.max() - ys.min()) * 0.6 + 2
        src = _bulge(img, c, rad, rng.choice([-1, 1]) * rng.uniform(0.25, 0.45))
        how = "warp"
        donor_identity = None
    out, m = blend(img, src, mask)
    return Forgery(out, m, "attr_edit", identity, donor_identity or None, f"{region}:{how}")


def gan_upsample(img, tpl, rng, identity=""):
    """Generator-style up-sampling artefacts in a region: downscale by 2 or 4, then up-sample
    by zero insertion followed by a fixed uneven kernel (what a stride-2 transposed convolution
    does), which leaves the periodic checkerboard pattern of generator outputs."""
    s = img.shape[0]
    region = rng.choice(["eyes", "mouth", "nose", "face"])
    mask = face_mask(s, tpl, rng) if region == "face" else region_mask(s, tpl, region, rng)
    f = int(rng.choice([2, 4]))
    small = cv2.resize(img, (s // f, s // f), interpolation=cv2.INTER_AREA).astype(np.float32)
    up = small
    k = np.array([0.5, 1.0, 0.75], np.float32)  # uneven overlap -> checkerboard
    k2 = np.outer(k, k)
    k2 *= 4.0 / k2.sum()  # unit DC gain after zero insertion (1 of 4 samples is non-zero)
    while up.shape[0] < s:
        z = np.zeros((up.shape[0] * 2, up.shape[1] * 2, 3), np.float32)
        z[::2, ::2] = up
        up = cv2.filter2D(z, -1, k2, borderType=cv2.BORDER_REFLECT)
    up = np.clip(up, 0, 255).astype(np.uint8)
    out, m = blend(img, up, mask)
    return Forgery(out, m, "gan_upsample", identity, None, region)


def recompress(img, tpl, rng, identity=""):
    """Local double compression: a region replaced by a JPEG-recompressed copy (quality 5-25,
    8x8 grid shifted by 0-7 pixels so it need not align with any earlier grid)."""
    s = img.shape[0]
    region = rng.choice(["eyes", "mouth", "nose", "face"])
    mask = face_mask(s, tpl, rng) if region == "face" else region_mask(s, tpl, region, rng)
    dx, dy = int(rng.integers(0, 8)), int(rng.integers(0, 8))
    shifted = np.roll(img, (dy, dx), axis=(0, 1))
    ok, buf = cv2.imencode(".jpg", shifted, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(5, 26))])
    if not ok:
        raise RuntimeError("recompress: JPEG encode failed")
    dec = np.roll(cv2.imdecode(buf, cv2.IMREAD_COLOR), (-dy, -dx), axis=(0, 1))
    out, m = blend(img, dec, mask)
    return Forgery(out, m, "recompress", identity, None, region)


def _inpaint(img, tpl, rng, flag, family, identity):
    s = img.shape[0]
    region = rng.choice(["eyes", "left_eye", "right_eye", "mouth", "nose"])
    hard = (region_mask(s, tpl, region, rng, feather=False) > 0.5).astype(np.uint8) * 255
    out = cv2.inpaint(img, hard, float(rng.uniform(3, 7)), flag)
    # cv2.inpaint only rewrites the pixels under the mask: the binary mask is exact.
    m = (hard > 0).astype(np.float32)
    out = out.copy()
    out[m == 0] = img[m == 0]
    return Forgery(out, m, family, identity, None, region)


def inpaint_telea(img, tpl, rng, identity=""):
    """Inpainting of a facial part with OpenCV's Telea (fast marching) method."""
    return _inpaint(img, tpl, rng, cv2.INPAINT_TELEA, "inpaint_telea", identity)


def inpaint_ns(img, tpl, rng, identity=""):
    """Inpainting of a facial part with OpenCV's Navier-Stokes method."""
    return _inpaint(img, tpl, rng, cv2.INPAINT_NS, "inpaint_ns", identity)


def synthesize(family: str, img: np.ndarray, tpl: FaceTemplate, rng: np.random.Generator,
               identity: str = "", donor: Optional[np.ndarray] = None,
               donor_identity: str = "") -> Forgery:
    """Make one forgery of the named family from img (and donor for swap-like families).

    Retries a few times if a jittered region came out empty or unchanged, so every forgery has a
    non-empty mask with changed pixels."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    if family in NEEDS_DONOR and family == "face_swap" and donor is None:
        raise ValueError("face_swap needs a donor image")
    if donor is not None and donor.shape != img.shape:
        raise ValueError(f"donor shape {donor.shape} != image shape {img.shape}")
    last = None
    for _ in range(5):
        if family == "face_swap":
            f = face_swap(img, donor, tpl, rng, identity, donor_identity)
        elif family == "attr_edit":
            f = attr_edit(img, donor, tpl, rng, identity, donor_identity)
        else:
            fn: Callable = {"self_blend": self_blend, "gan_upsample": gan_upsample,
                            "recompress": recompress, "inpaint_telea": inpaint_telea,
                            "inpaint_ns": inpaint_ns}[family]
            f = fn(img, tpl, rng, identity)
        changed = np.abs(f.image.astype(np.int16) - img.astype(np.int16)).max(axis=2) > 0
        if _nonempty(f.mask) and changed.sum() >= 8:
            return f
        last = f
    return last  # pragma: no cover - flat images only


def estimate_template(images: Sequence[np.ndarray], default: Optional[FaceTemplate] = None) -> FaceTemplate:
    """Fit the facial template to a crop source: median face box of OpenCV's frontal Haar
    cascade over the images (aligned crops share one geometry). Falls back to the default."""
    tpl = default or FaceTemplate()
    path = None
    for p in ("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml",
              cv2.data.haarcascades + "haarcascade_frontalface_default.xml" if hasattr(cv2, "data") else ""):
        if p and cv2.CascadeClassifier(p).empty() is False:
            path = p
            break
    if path is None or not images:
        return tpl
    casc = cv2.CascadeClassifier(path)
    boxes = []
    for img in images:
        s = img.shape[0]
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        det = casc.detectMultiScale(g, 1.1, 4, minSize=(s // 4, s // 4))
        if len(det):
            x, y, w, h = max(det, key=lambda d: d[2] * d[3])
            boxes.append((x / s, y / s, w / s, h / s))
    if len(boxes) < max(3, len(images) // 5):
        return tpl
    x, y, w, h = np.median(np.array(boxes), axis=0)
    cx = x + w / 2
    # Haar boxes span brows to mouth; landmark positions relative to the box are the usual
    # proportions of a frontal face.
    return FaceTemplate(
        left_eye=(cx - 0.19 * w, y + 0.38 * h),
        right_eye=(cx + 0.19 * w, y + 0.38 * h),
        nose=(cx, y + 0.60 * h),
        mouth=(cx, y + 0.80 * h),
        face_center=(cx, y + 0.55 * h),
        face_axes=(0.45 * w, 0.58 * h),
    )
