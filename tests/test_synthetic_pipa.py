"""The synthetic album set: PIPA's layout read by the real PIPA loader, determinism, head boxes
on the drawn faces, clothes per photoset, bad settings, and a tiny person-recognition run."""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.data.market1501 import read_image
from evalsuite.data.pipa import INDEX_RELPATH, load_pipa, read_index
from evalsuite.data.pipa_faces import face_detection_rate
from evalsuite.data.synthetic_pipa import SIDECAR, PipaSyntheticConfig, generate_synthetic_pipa, plan_photos
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS, load_all

TINY = {"num_train_ids": 4, "num_test_ids": 4, "photosets_per_id": [2, 3], "people_per_photoset": 2, "photos_per_photoset": [2, 3],
        "photo_height": 240, "photo_width": 320, "head_height": [60, 100]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate_synthetic_pipa(tmp_path_factory.mktemp("pipa") / "set", PipaSyntheticConfig(**TINY))


def _sidecar(root: Path) -> list[dict]:
    return json.loads((root / SIDECAR).read_text())["instances"]


def _digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return sha.hexdigest()


def test_the_pipa_loader_reads_the_tree_with_its_subsets_and_ids(root: Path) -> None:
    entries = read_index(root / INDEX_RELPATH)
    assert {e.subset for e in entries} <= {0, 1, 3} and {1, 3} <= {e.subset for e in entries}
    train_ids = {e.identity for e in entries if e.subset == 1}
    test_ids = {e.identity for e in entries if e.subset == 3}
    assert train_ids == {0, 1, 2, 3} and test_ids == {4, 5, 6, 7}
    for entry in entries:  # <subset folder>/<photoset>_<photo>.jpg; a stranger (subset 0) stands in a train or test photo
        folders = {1: ["train"], 3: ["test"], 0: ["train", "test"]}[entry.subset]
        assert sum((root / folder / f"{entry.photoset}_{entry.photo}.jpg").is_file() for folder in folders) == 1
    assert all((root / folder).is_dir() for folder in ("train", "val", "test", "leftover"))

    dataset = load_pipa(root)  # the real loader, with PIPA's defaults (train subset 1, test subset 3)
    assert len(dataset.train) == sum(e.subset == 1 for e in entries)
    assert len(dataset.gallery) + len(dataset.query) == sum(e.subset == 3 for e in entries)
    assert sorted({s.pid for s in dataset.train}) == [0, 1, 2, 3]  # relabelled train ids
    assert {s.pid for s in dataset.gallery} == {s.pid for s in dataset.query} == test_ids
    image = dataset.train[0]
    assert read_image(image.path).shape == (240, 320, 3)

    registered = DATASETS.get("synthetic-pipa").build(root=str(root), **TINY)
    assert registered.name == "synthetic-pipa"
    assert [s.relpath for s in registered.query] == [s.relpath for s in dataset.query]


def test_every_test_identity_spans_photosets_and_the_halves_cross_albums(root: Path) -> None:
    albums: dict[int, set[int]] = defaultdict(set)
    for inst in _sidecar(root):
        albums[inst["identity"]].add(inst["photoset"])
    assert all(len(albums[i]) >= 2 for i in range(8))
    photoset_of = {(inst["photo"], inst["head_box"][0], inst["head_box"][1]): inst["photoset"] for inst in _sidecar(root)}
    dataset = load_pipa(root)

    def album(sample) -> int:
        x, y = (int(v) for v in sample.photo_box[:2])
        return photoset_of[(f"{Path(sample.path).parent.name}/{Path(sample.path).name}", x, y)]

    gallery = defaultdict(set)
    for s in dataset.gallery:
        gallery[s.pid].add(album(s))
    assert any(album(q) not in gallery[q.pid] for q in dataset.query)  # some queries come from an album not enrolled


def test_generation_is_deterministic_per_seed(root: Path, tmp_path: Path) -> None:
    again = generate_synthetic_pipa(tmp_path / "again", PipaSyntheticConfig(**TINY))
    assert _digest(again) == _digest(root)
    other = PipaSyntheticConfig(**{**TINY, "seed": 1})
    assert plan_photos(other) != plan_photos(PipaSyntheticConfig(**TINY))
    assert _digest(generate_synthetic_pipa(tmp_path / "other", other)) != _digest(root)


def test_head_boxes_hold_the_drawn_faces(root: Path) -> None:
    for inst in _sidecar(root):
        x, y, w, h = inst["head_box"]
        points = np.array(inst["landmarks68"])
        assert (points[:, 0] >= x - 1).all() and (points[:, 0] <= x + w + 1).all()
        assert (points[:, 1] >= y - 1).all() and (points[:, 1] <= y + h + 1).all()
        assert 0.4 * h <= points[:, 1].max() - points[:, 1].min() <= h  # the face fills the head box, hair above
    # dlib finds faces in the head boxes and nowhere else (every drawn face is annotated)
    found = face_detection_rate(root, upsample=1)
    assert found.rate >= 0.5, found
    assert found.unmatched == 0, found


def _torso_colour(photo: np.ndarray, inst: dict) -> np.ndarray:
    points = np.array(inst["landmarks68"])
    x, y, w, h = inst["head_box"]
    chin_x, chin_y = points[8]
    top, bottom = int(chin_y + 0.6 * h), int(chin_y + 1.0 * h)
    left, right = int(chin_x - 0.25 * w), int(chin_x + 0.25 * w)
    patch = photo[max(top, 0) : min(bottom, photo.shape[0]), max(left, 0) : min(right, photo.shape[1])]
    return patch.reshape(-1, 3).mean(axis=0) if patch.size else np.full(3, np.nan)


def test_clothes_stay_within_a_photoset_and_change_between_photosets(root: Path) -> None:
    by_identity: dict[int, list[dict]] = defaultdict(list)
    for inst in _sidecar(root):
        if inst["subset"] != 0:
            by_identity[inst["identity"]].append(inst)
    photos = {}
    within, across = [], []
    for instances in by_identity.values():
        for a, b in combinations(instances, 2):
            if a["photoset"] == b["photoset"]:
                assert a["outfit"] == b["outfit"]
            else:
                assert a["outfit"] != b["outfit"]
            for inst in (a, b):
                photos.setdefault(inst["photo"], read_image(str(root / inst["photo"])))
            ca, cb = _torso_colour(photos[a["photo"]], a), _torso_colour(photos[b["photo"]], b)
            if np.isfinite(ca).all() and np.isfinite(cb).all():
                (within if a["photoset"] == b["photoset"] else across).append(float(np.abs(ca - cb).sum()))
    assert within and across
    # in the pixels: one person's chest looks alike within an album and differs across albums
    assert np.median(within) < 0.5 * np.median(across), (np.median(within), np.median(across))


@pytest.mark.parametrize("settings, fragment", [
    ({"photosets_per_id": [1, 2]}, "photosets_per_id"),
    ({"head_height": [10, 20]}, "head_height"),
    ({"num_test_ids": 1}, "num_test_ids"),
    ({"appearance_probability": 1.5}, "appearance_probability"),
    ({"photo_width": "wide"}, "photo_width"),
    ({"num_test_id": 5}, "num_test_ids"),  # unknown key: a did-you-mean
])
def test_bad_settings_are_one_user_error_line(tmp_path: Path, settings: dict, fragment: str) -> None:
    with pytest.raises(UserError) as error:
        DATASETS.get("synthetic-pipa").build(cache_dir=tmp_path, **settings)
    message = str(error.value)
    assert fragment in message and "\n" not in message
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_bad_setting_on_the_command_line_exits_2_before_writing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["run", "protocol=person-recognition", "dataset=synthetic-pipa", "dataset.head_height=[10,20]", f"out={out}", f"cache_dir={tmp_path / 'cache'}"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evalsuite: error:")]
    assert code == 2 and len(lines) == 1 and "head_height" in lines[0]
    assert not out.exists()


def test_listed_and_checked(tmp_path: Path, capsys, monkeypatch) -> None:
    load_all()
    assert "synthetic-pipa" in DATASETS.names()
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    args = [f"dataset.{k}=[{v[0]},{v[1]}]" if isinstance(v, list) else f"dataset.{k}={v}" for k, v in TINY.items()]
    code = main(["data", "check", "dataset=synthetic-pipa", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "train: " in out and "4 identities" in out and "person-recognition" in out and "result: OK" in out


def test_tiny_person_recognition_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [f"dataset.{k}=[{v[0]},{v[1]}]" if isinstance(v, list) else f"dataset.{k}={v}" for k, v in TINY.items()]
    code = main(["run", "protocol=person-recognition", "dataset=synthetic-pipa", *args, "attacker.epochs=2", "attacker.channels=4",
                 "attacker.embedding_dim=16", "anonymizers=[none,blackhead]", "attacks=[naive]", f"out={out}", f"cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["anonymizer"] for r in rows} == {"none", "blackhead"}
    assert all(r["num_identities"] == 4 and 0.0 <= r["metrics"]["head_accuracy"] <= 1.0 for r in rows)
    assert "synthetic-pipa" in (out / "table.md").read_text()
