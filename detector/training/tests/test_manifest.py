"""Manifest loading: good rows load, bad rows fail with file:line and the reason."""
import json
import os

import numpy as np
import pytest

from detector.training import common
from detector.training.manifest import ManifestError, Sample, load_manifest, write_manifest


@pytest.fixture
def files(tmp_path):
    for n in ("a.png", "b.png", "c.png", "m.png"):
        common.write_png(str(tmp_path / n), np.zeros((8, 8, 3), np.uint8))
    return tmp_path


def _write(tmp, rows):
    p = tmp / "manifest.jsonl"
    with open(p, "w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(p)


GOOD = [
    {"path": "a.png", "label": "real", "identity": "x", "split": "train"},
    {"path": "b.png", "label": 1, "mask": "m.png", "family": "swap", "identity": "x", "split": "train"},
    {"path": "c.png", "label": "fake", "family": "other", "identity": "y", "split": "test"},
]


def test_good_manifest(files):
    s = load_manifest(_write(files, GOOD))
    assert [x.label for x in s] == [0, 1, 1]
    assert s[1].mask == str(files / "m.png") and s[0].family == "real"
    assert s[1].seen is True and s[2].seen is False  # seen = family occurs in train
    out = str(files / "out" / "m.jsonl")
    write_manifest(out, s)
    again = load_manifest(out)
    assert [x.path for x in again] == [x.path for x in s]


@pytest.mark.parametrize("bad,msg", [
    ("{not json", r"manifest.jsonl:2: bad JSON"),
    ({"path": "a.png", "label": 0, "split": "train"}, r":2: missing required field 'identity'"),
    ({"path": "a.png", "label": "maybe", "identity": "z", "split": "train"}, r":2: label 'maybe'"),
    ({"path": "a.png", "label": 0, "identity": "z", "split": "dev"}, r":2: split 'dev'"),
    ({"path": "nope.png", "label": 0, "identity": "z", "split": "train"}, r":2: image .*nope.png does not exist"),
    ({"path": "a.png", "label": 1, "mask": "nomask.png", "identity": "z", "split": "train"}, r"mask .*nomask.png does not exist"),
    ({"path": "a.png", "label": 0, "mask": "m.png", "identity": "z", "split": "train"}, r"real sample .* cannot have a forgery mask"),
    ({"path": "a.png", "label": 0, "family": "swap", "identity": "z", "split": "train"}, r"real sample has family 'swap'"),
    ({"path": "a.png", "label": 1, "identity": "y", "split": "train"}, r"identity 'y' is in both"),
    ([1, 2], r":2: row is list"),
])
def test_bad_rows(files, bad, msg):
    rows = [GOOD[0], bad, GOOD[2]]
    with pytest.raises(ManifestError, match=msg):
        load_manifest(_write(files, rows))


def test_duplicate_id_and_empty(files):
    rows = [dict(GOOD[0], id="k"), dict(GOOD[1], id="k")]
    with pytest.raises(ManifestError, match="duplicate sample id 'k'"):
        load_manifest(_write(files, rows))
    with pytest.raises(ManifestError, match="no samples"):
        load_manifest(_write(files, []))
    with pytest.raises(ManifestError, match="open manifest"):
        load_manifest(str(files / "missing.jsonl"))
