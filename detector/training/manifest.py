"""The dataset manifest: one JSON object per line, so users can train and evaluate on their own
data (for example FaceForensics++ frames with their masks).

Fields (paths are relative to the manifest file's folder unless absolute):

=========  ========  ==========================================================================
field      required  meaning
=========  ========  ==========================================================================
path       yes       image file (any size; resized to the model input like serving does)
label      yes       0/"real" or 1/"fake"
mask       no        mask image (white = manipulated; grey = blend weight); fakes only
family     no        manipulation family ("real" for reals; default "unknown" for fakes)
identity   yes       person/source identity; splits must be identity-disjoint
split      yes       "train", "val" or "test"
seen       no        true if the family is used in training (default: family appears in train)
task       no        task group of the family (swap / attributes / inpainting / ...)
donor      no        identity of a second face used by the manipulation
=========  ========  ==========================================================================

``load_manifest`` checks every row and raises ``ManifestError`` naming the file, line and
problem; it also refuses identities that appear in more than one split.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional

SPLITS = ("train", "val", "test")
_LABELS = {0: 0, 1: 1, "0": 0, "1": 1, "real": 0, "fake": 1, False: 0, True: 1}


class ManifestError(ValueError):
    """A manifest row is malformed; the message says which file, line and field."""


@dataclass
class Sample:
    """One manifest row, with paths resolved."""

    path: str
    label: int
    identity: str
    split: str
    mask: Optional[str] = None
    family: str = "real"
    task: str = ""
    seen: Optional[bool] = None
    donor: Optional[str] = None
    id: str = ""
    extra: Dict = field(default_factory=dict)

    def to_row(self, base: str) -> dict:
        """The JSONL row of this sample with paths relative to base."""
        def rel(p):
            return os.path.relpath(os.path.abspath(p), base) if p else p
        row = {"path": rel(self.path), "label": self.label, "mask": rel(self.mask),
               "family": self.family, "identity": self.identity, "split": self.split}
        if self.task:
            row["task"] = self.task
        if self.seen is not None:
            row["seen"] = self.seen
        if self.donor:
            row["donor"] = self.donor
        if self.id:
            row["id"] = self.id
        row.update(self.extra)
        return row


def _err(src: str, n: int, msg: str) -> ManifestError:
    return ManifestError(f"{src}:{n}: {msg}")


def parse_row(row: dict, base: str, src: str = "<manifest>", n: int = 0,
              check_files: bool = True) -> Sample:
    """Validate one decoded row and build its Sample."""
    if not isinstance(row, dict):
        raise _err(src, n, f"row is {type(row).__name__}, want a JSON object")
    for k in ("path", "label", "identity", "split"):
        if k not in row or row[k] in (None, ""):
            raise _err(src, n, f"missing required field {k!r}")
    lab = row["label"]
    if isinstance(lab, str):
        lab = lab.strip().lower()
    if isinstance(lab, float) and lab in (0.0, 1.0):
        lab = int(lab)
    if lab not in _LABELS:
        raise _err(src, n, f"label {row['label']!r}: want 0/1 or 'real'/'fake'")
    label = _LABELS[lab]
    split = str(row["split"]).strip().lower()
    if split not in SPLITS:
        raise _err(src, n, f"split {row['split']!r}: want one of {', '.join(SPLITS)}")
    if not isinstance(row["path"], str):
        raise _err(src, n, "path must be a string")
    path = os.path.normpath(row["path"] if os.path.isabs(row["path"]) else os.path.join(base, row["path"]))
    mask = row.get("mask")
    if mask is not None and not isinstance(mask, str):
        raise _err(src, n, "mask must be a string path or null")
    if mask:
        mask = os.path.normpath(mask if os.path.isabs(mask) else os.path.join(base, mask))
        if label == 0:
            raise _err(src, n, "a real sample (label 0) cannot have a forgery mask")
    else:
        mask = None
    if check_files:
        if not os.path.isfile(path):
            raise _err(src, n, f"image {path} does not exist")
        if mask and not os.path.isfile(mask):
            raise _err(src, n, f"mask {mask} does not exist")
    family = str(row.get("family") or ("real" if label == 0 else "unknown"))
    if label == 0 and family != "real":
        raise _err(src, n, f"a real sample has family {family!r}; use 'real'")
    if label == 1 and family == "real":
        raise _err(src, n, "a fake sample has family 'real'")
    seen = row.get("seen")
    if seen is not None and not isinstance(seen, bool):
        raise _err(src, n, "seen must be true/false")
    known = {"path", "label", "mask", "family", "identity", "split", "task", "seen", "donor", "id"}
    return Sample(path=path, label=label, identity=str(row["identity"]), split=split, mask=mask,
                  family=family, task=str(row.get("task") or ""), seen=seen,
                  donor=(str(row["donor"]) if row.get("donor") else None),
                  id=str(row.get("id") or os.path.relpath(path, base)),
                  extra={k: v for k, v in row.items() if k not in known})


def load_manifest(path: str, check_files: bool = True, splits: Optional[Iterable[str]] = None) -> List[Sample]:
    """Read and validate a JSONL manifest; optionally keep only some splits."""
    base = os.path.dirname(os.path.abspath(path))
    out: List[Sample] = []
    try:
        f = open(path)
    except OSError as e:
        raise ManifestError(f"open manifest {path}: {e}") from e
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise _err(path, n, f"bad JSON: {e.msg} at column {e.colno}") from e
            out.append(parse_row(row, base, path, n, check_files))
    if not out:
        raise ManifestError(f"{path}: no samples")
    check_identity_disjoint(out, path)
    ids = [s.id for s in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ManifestError(f"{path}: duplicate sample id {dup!r}")
    # 'seen' default: a fake family is seen if it occurs in the training split.
    train_fams = {s.family for s in out if s.split == "train" and s.label == 1}
    for s in out:
        if s.seen is None and s.label == 1:
            s.seen = s.family in train_fams
    if splits is not None:
        keep = set(splits)
        out = [s for s in out if s.split in keep]
    return out


def check_identity_disjoint(samples: List[Sample], src: str = "<manifest>") -> None:
    """Raise if an identity (or a donor identity) occurs in more than one split."""
    where: Dict[str, str] = {}
    for s in samples:
        for ident in filter(None, (s.identity, s.donor)):
            prev = where.setdefault(ident, s.split)
            if prev != s.split:
                raise ManifestError(f"{src}: identity {ident!r} is in both {prev!r} and {s.split!r} "
                                    "splits; splits must be identity-disjoint")


def write_manifest(path: str, samples: Iterable[Sample]) -> None:
    """Write samples as JSONL with paths relative to the manifest's folder."""
    base = os.path.dirname(os.path.abspath(path))
    os.makedirs(base, exist_ok=True)
    with open(path, "w") as f:
        for s in samples:
            f.write(json.dumps(s.to_row(base), sort_keys=True) + "\n")
