"""Listing aligned face crops and the identity each belongs to.

Two layouts are accepted:

* the output of ``lae crops --out DIR INPUT...`` (the product's own ingest alignment): DIR/index.jsonl
  with one row per crop: {"path", "source", "frame_index", "face_index", "eyes_aligned", "box"};
* a plain folder of images (e.g. LFW deep-funneled), identity taken from the file name
  (``Name_0001.jpg`` -> ``Name``).

Identities decide the identity-disjoint splits, so they are conservative: a source whose people
are not labelled (a group of press photos, a set of videos of one signer) is one identity group.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import List, Optional

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class CropRecord:
    """One aligned crop on disk."""

    path: str          # absolute path of the crop image
    identity: str      # identity group used for identity-disjoint splits
    source: str        # where the crop came from (photo/video path)
    frame_index: int = 0
    face_index: int = 0
    eyes_aligned: bool = True


_NUM_SUFFIX = re.compile(r"^(.*?)[_-]?\d+$")


def identity_of(source: str) -> str:
    """Identity group of a crop source path (see module doc for the rules)."""
    p = source.replace("\\", "/")
    base = os.path.basename(p)
    stem = base.split(".")[0]
    if "/lfw/" in p or p.startswith("lfw/"):
        m = _NUM_SUFFIX.match(stem)
        return "lfw:" + (m.group(1) if m else stem)
    if "/utkface/" in p:
        return "utkface:" + stem  # web photos of effectively distinct people
    if "/celeba/" in p:
        return "celeba:" + stem  # no identity labels; the 2,000 files are treated as distinct
    if "/photos/deepface/" in p:
        return "deepface"  # ~14 unlabelled people: one group, never split across splits
    if "/photos/" in p:
        return "photos:" + p.split("/photos/")[1].split("/")[0]
    if "/videos/asl/" in p:
        return "video:asl"  # the same signer in every clip
    if "/videos/" in p:
        return "video:" + stem
    m = _NUM_SUFFIX.match(stem)
    return (m.group(1) if m and m.group(1) else stem)


def list_crops(root: str, limit: Optional[int] = None) -> List[CropRecord]:
    """List the crops under root (``lae crops`` output with index.jsonl, or an image folder)."""
    root = os.path.abspath(root)
    index = os.path.join(root, "index.jsonl")
    out: List[CropRecord] = []
    if os.path.exists(index):
        with open(index) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{index}:{n}: bad JSON: {e}") from e
                if "path" not in row:
                    raise ValueError(f"{index}:{n}: row has no 'path'")
                path = row["path"] if os.path.isabs(row["path"]) else os.path.join(root, row["path"])
                src = str(row.get("source", path))
                out.append(CropRecord(path, identity_of(src), src, int(row.get("frame_index", 0)),
                                      int(row.get("face_index", 0)), bool(row.get("eyes_aligned", True))))
    elif os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            if name.lower().endswith(IMAGE_EXT):
                p = os.path.join(root, name)
                out.append(CropRecord(p, identity_of(p), p))
    else:
        raise FileNotFoundError(f"crops directory {root} does not exist")
    if limit is not None:
        out = out[:limit]
    return out
