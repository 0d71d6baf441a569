"""Synthetic Market-1501-layout generator: determinism, layout, annotations, identities, caching."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalsuite.data import load_market1501, read_image
from evalsuite.data.synthetic import MARKER_NAME, SyntheticConfig, config_hash, generate_synthetic_market
from evalsuite.data.types import SIDECAR_NAME
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

TINY = dict(num_train_ids=5, num_test_ids=5, num_cameras=4, num_distractors=4, num_junk=2)
NAME = re.compile(r"^(-1|\d{4})_c(\d)s([1-6])_(\d{6})_(\d{2,})\.jpg$")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_market(tmp_path_factory.mktemp("synth") / "a", SyntheticConfig(seed=3, **TINY))


@pytest.fixture(scope="module")
def tiny_ds(tiny: Path):
    return load_market1501(tiny)


def test_deterministic_per_seed(tiny: Path, tmp_path: Path) -> None:
    again = generate_synthetic_market(tmp_path / "b", SyntheticConfig(seed=3, **TINY))
    first, second = _files(tiny), _files(again)
    assert sorted(first) == sorted(second)
    assert first == second  # byte-identical
    other = _files(generate_synthetic_market(tmp_path / "c", SyntheticConfig(seed=4, **TINY)))
    jpgs = lambda files: [v for k, v in sorted(files.items()) if k.endswith(".jpg")]  # noqa: E731
    assert jpgs(first) != jpgs(other)
    assert config_hash(SyntheticConfig(seed=3, **TINY)) != config_hash(SyntheticConfig(seed=4, **TINY))


def test_layout_and_names(tiny: Path) -> None:
    assert (tiny / SIDECAR_NAME).is_file() and (tiny / MARKER_NAME).is_file()
    cams, pids = set(), defaultdict(set)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        names = [p.name for p in (tiny / folder).glob("*.jpg")]
        assert names, folder
        for name in names:
            match = NAME.match(name)
            assert match, name
            cams.add(int(match.group(2)))
            pids[folder].add(int(match.group(1)))
    assert cams <= {1, 2, 3, 4} and len(cams) > 1
    assert {0, -1} <= pids["bounding_box_test"]  # distractors and junk
    assert not ({0, -1} & (pids["bounding_box_train"] | pids["query"]))
    assert not (pids["bounding_box_train"] & pids["query"])  # disjoint train / test identities
    assert len(pids["bounding_box_train"]) == 5 and len(pids["query"]) == 5


def test_loader_reads_it(tiny_ds) -> None:
    ds = tiny_ds
    assert ds.num_train_pids == 5 and sorted({s.pid for s in ds.train}) == list(range(5))
    assert all(s.pid != -1 for s in ds.train + ds.query + ds.gallery)
    assert sum(s.pid == 0 for s in ds.gallery) == 4
    gallery = defaultdict(set)
    for s in ds.gallery:
        gallery[s.pid].add(s.camid)
    for q in ds.query:  # every query has a match in another camera, as the protocol needs
        assert gallery[q.pid] - {q.camid}, q.path
    # one query per (test id, camera)
    assert len({(q.pid, q.camid) for q in ds.query}) == len(ds.query)


def test_annotations_are_consistent(tiny_ds) -> None:
    samples = tiny_ds.train + tiny_ds.query + tiny_ds.gallery
    views = set()
    for s in samples:
        a = s.annotations
        img = read_image(s.path)
        height, width = img.shape[:2]
        assert (height, width) == (128, 64)
        mask = cv2.imread(a["body_mask"], cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
        assert (mask > 0).mean() > 0.03, s.path  # a person is drawn
        boxes = [a["head_box"]] + ([a["face_box"]] if a["face_box"] is not None else [])
        if s.pid == 0 and a["head_box"] is None:
            continue
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        hx0, hy0, hx1, hy1 = a["head_box"]
        assert mask[hy0:hy1, hx0:hx1].any()  # the head is part of the body mask
        assert len(a["keypoints"]) == 17
        for x, y, v in a["keypoints"]:
            assert v in (0, 1, 2) and (v == 0 or (0 <= x < width and 0 <= y < height))
        visible = [(x, y) for x, y, v in a["keypoints"] if v == 2]
        inside = [mask[min(int(y), height - 1), min(int(x), width - 1)] > 0 for x, y in visible]
        assert np.mean(inside) > 0.8, s.path  # visible keypoints lie on the drawn person
        views.add(a["view"])
        if a["view"] == "back":
            assert a["face_box"] is None and a["landmarks"] is None
        elif s.pid != 0:
            assert a["face_box"] is not None and len(a["landmarks"]) == 5
            fx0, fy0, fx1, fy1 = a["face_box"]
            for x, y in a["landmarks"]:
                assert fx0 <= x <= fx1 and fy0 <= y <= fy1
        assert isinstance(a["attributes"], dict) and "upper_colour" in a["attributes"]
    assert views == {"front", "back", "side"}


def test_identities_are_consistent_and_distinct(tiny_ds) -> None:
    attrs = defaultdict(set)
    for s in tiny_ds.train + tiny_ds.query + [g for g in tiny_ds.gallery if g.pid > 0]:
        attrs[(s.split == "train", s.pid)].add(json.dumps(s.annotations["attributes"], sort_keys=True))
    assert all(len(v) == 1 for v in attrs.values())  # one appearance per identity
    looks = [next(iter(v)) for v in attrs.values()]
    assert len(set(looks)) == len(looks) == 10  # all identities differ
    # the same person in two images is not a pixel copy
    by_pid = defaultdict(list)
    for s in tiny_ds.train:
        by_pid[s.pid].append(read_image(s.path).astype(int))
    a, b = by_pid[0][:2]
    assert np.abs(a - b).mean() > 5


def test_back_views_only(tmp_path: Path) -> None:
    cfg = SyntheticConfig(num_train_ids=2, num_test_ids=2, num_cameras=3, num_distractors=0, num_junk=0,
                          back_view_probability=1.0, side_view_probability=0.0)
    ds = load_market1501(generate_synthetic_market(tmp_path / "back", cfg))
    samples = ds.train + ds.query + ds.gallery
    assert all(s.annotations["view"] == "back" and s.annotations["face_box"] is None for s in samples)
    assert all(s.annotations["keypoints"][0][2] == 1 for s in samples)  # nose occluded


def test_registered_factory_caches_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    settings = dict(seed=1, num_train_ids=2, num_test_ids=2, num_cameras=3, num_distractors=1, num_junk=1)
    ds = DATASETS.build("synthetic", **settings)
    folder = tmp_path / "cache" / "datasets" / f"synthetic-{config_hash(SyntheticConfig(**settings))}"
    assert Path(ds.root) == folder and ds.name == "synthetic"
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left behind
    stamp = (folder / MARKER_NAME).stat().st_mtime_ns
    again = DATASETS.build("synthetic", **settings)
    assert (folder / MARKER_NAME).stat().st_mtime_ns == stamp  # reused, not regenerated
    assert [s.path for s in again.query] == [s.path for s in ds.query]


def test_bad_settings_and_roots(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="num_cameras"):
        SyntheticConfig(num_cameras=12)
    with pytest.raises(UserError, match="num_train_ids"):
        DATASETS.build("synthetic", root=str(tmp_path / "x"), num_train_id=3)
    with pytest.raises(UserError, match="seed"):
        SyntheticConfig(seed="abc")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an evalsuite synthetic dataset"):
        generate_synthetic_market(occupied, SyntheticConfig(**TINY))
    made = generate_synthetic_market(tmp_path / "made", SyntheticConfig(num_train_ids=1, num_test_ids=1, num_cameras=3,
                                                                        num_distractors=0, num_junk=0))
    with pytest.raises(UserError, match="other settings"):
        generate_synthetic_market(made, SyntheticConfig(seed=9, num_train_ids=1, num_test_ids=1, num_cameras=3))


def test_default_sizes() -> None:
    from evalsuite.data.synthetic import plan_dataset

    specs = plan_dataset(SyntheticConfig())
    count = defaultdict(int)
    for spec in specs:
        count[spec.split] += 1
    assert 300 <= count["train"] <= 450 and 100 <= count["query"] <= 160 and 300 <= count["gallery"] <= 500
    assert len({spec.relpath for spec in specs}) == len(specs)  # unique file names


def test_images_do_not_depend_on_generation_order(tiny: Path) -> None:
    from evalsuite.data.synthetic import _encode, jpeg_params, plan_dataset, render_spec, sample_camera

    config = SyntheticConfig(seed=3, **TINY)
    specs = plan_dataset(config)
    cameras = [sample_camera(config.seed, c, config) for c in range(config.num_cameras)]
    for spec in [specs[-1], specs[len(specs) // 2], specs[0]]:  # out of order, alone
        img, _, _ = render_spec(spec, config, cameras)
        assert _encode(".jpg", img[:, :, ::-1], jpeg_params(config)) == (tiny / spec.relpath).read_bytes()
