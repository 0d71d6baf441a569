"""Synthetic CelebA-layout faces: determinism, the layout the CelebA reader reads, landmarks, attributes."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalsuite.data.faces import CELEBA_ATTRIBUTES, load_celeba, read_face_image
from evalsuite.data.synthetic import MARKER_NAME
from evalsuite.data.synthetic_faces import FaceSyntheticConfig, default_faces_root, generate_synthetic_faces, landmarks_3d, sample_face_identity, sample_shot
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

TINY = dict(num_identities=6, images_per_identity=(3, 5), size=48)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_faces(tmp_path_factory.mktemp("faces") / "a", FaceSyntheticConfig(seed=4, **TINY))


def test_same_seed_gives_byte_identical_files(tiny: Path, tmp_path: Path) -> None:
    again = generate_synthetic_faces(tmp_path / "b", FaceSyntheticConfig(seed=4, **TINY))
    first, second = _files(tiny), _files(again)
    assert sorted(first) == sorted(second) and first == second
    other = _files(generate_synthetic_faces(tmp_path / "c", FaceSyntheticConfig(seed=5, **TINY)))
    assert other["img_align_celeba/000001.jpg"] != first["img_align_celeba/000001.jpg"]


def test_celeba_reader_reads_the_generated_layout(tiny: Path) -> None:
    ds = load_celeba(tiny, name="synthetic-faces")
    ids = ds.identities()
    assert len(ids) == 6 and all(3 <= len(v) <= 5 for v in ids.values())
    assert sorted(p.name for p in (tiny / "img_align_celeba").iterdir()) == [f"{i + 1:06d}.jpg" for i in range(len(ds.samples))]
    # CelebA-like: identities split into partitions, file order does not group identities
    by_identity = {s.identity: s.split for s in ds.samples}
    assert all(s.split == by_identity[s.identity] for s in ds.samples) and set(by_identity.values()) <= {"train", "val", "test"}
    assert [s.identity for s in ds.samples] != sorted(s.identity for s in ds.samples)
    for s in ds.samples:
        assert set(CELEBA_ATTRIBUTES) <= set(s.attributes) and {s.attributes[a] for a in CELEBA_ATTRIBUTES} <= {0, 1}
        assert 18 <= s.attributes["age"] <= 85 and s.attributes["gender"] in ("male", "female")
        assert s.attributes["Male"] == int(s.attributes["gender"] == "male")
        assert s.attributes["Young"] == int(s.attributes["age"] < 40)
        assert sorted(s.landmarks) == [5, 7, 68]
        pts = np.array(s.landmarks[68])
        assert ((pts > 0) & (pts < 48)).all()
        assert read_face_image(s.path).shape == (48, 48, 3)


def test_landmark_lists_agree(tiny: Path) -> None:
    ds = load_celeba(tiny)
    rows = (tiny / "list_landmarks_align_celeba.txt").read_text().splitlines()
    assert rows[0] == str(len(ds.samples)) and rows[1].split()[0] == "lefteye_x"
    listed = {r.split()[0]: [int(v) for v in r.split()[1:]] for r in rows[2:]}
    for s in ds.samples:
        five, seven, full = (np.array(s.landmarks[n]) for n in (5, 7, 68))
        assert listed[Path(s.path).name] == [int(round(v)) for p in five for v in p]  # the list rounds, the sidecar is exact
        np.testing.assert_allclose(five[0], full[36:42].mean(axis=0), atol=0.02)  # image-left eye centre
        np.testing.assert_allclose(five[2], full[30], atol=0.02)  # nose tip
        np.testing.assert_allclose(five[3:], full[[48, 54]], atol=0.02)  # mouth corners
        np.testing.assert_allclose(seven[[0, 1, 2, 3, 5]], five, atol=0.02)
        assert five[0][0] < five[1][0] and five[3][0] < five[4][0]  # "left" = image left
        x0, y0, x1, y1 = s.annotations["face_box"]
        assert x0 <= full[:, 0].min() + 0.01 and x1 >= full[:, 0].max() - 0.01 and y1 >= full[:, 1].max() - 0.01
        assert y0 < full[17:27, 1].min()  # the box reaches above the brows


def test_ibug_order_of_the_68_point_model() -> None:
    ident = sample_face_identity(0, 7)
    lm = landmarks_3d(ident, sample_shot(ident, np.random.default_rng(1)))
    assert lm[0, 0] < lm[8, 0] < lm[16, 0] and lm[8, 1] == lm[:17, 1].max()  # jaw: image-left ear, chin, right ear
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]  # eye corners left to right
    assert lm[17:22, 1].max() < lm[36:48, 1].min()  # brows above the eyes
    assert lm[27, 1] < lm[30, 1] < lm[51, 1] < lm[57, 1] < lm[8, 1]  # nose above the mouth above the chin
    assert lm[48, 0] < lm[54, 0] and lm[31, 0] < lm[35, 0]


def test_attribute_list_matches_sidecar_and_varies(tiny: Path) -> None:
    rows = (tiny / "list_attr_celeba.txt").read_text().splitlines()
    assert rows[1].split() == list(CELEBA_ATTRIBUTES)
    values = np.array([[int(v) for v in r.split()[1:]] for r in rows[2:]])
    assert set(np.unique(values)) <= {-1, 1}
    ds = load_celeba(tiny)
    np.testing.assert_array_equal((values + 1) // 2, [[s.attributes[a] for a in CELEBA_ATTRIBUTES] for s in ds.samples])
    sidecar = json.loads((tiny / "evalsuite_faces.json").read_text())
    assert sidecar["format"] == "evalsuite-faces/1" and len(sidecar["images"]) == len(ds.samples)
    big = load_celeba(generate_synthetic_faces(tiny.parent / "big", FaceSyntheticConfig(seed=0, num_identities=40, images_per_identity=(2, 2), size=32)))
    share = {a: np.mean([s.attributes[a] for s in big.samples]) for a in CELEBA_ATTRIBUTES}
    assert sum(0 < v < 1 for v in share.values()) >= 30  # most attributes occur and not everywhere
    assert 0.25 < share["Male"] < 0.75 and 0.2 < share["Smiling"] < 0.7


def test_identity_is_learnable_from_pixels(tiny: Path) -> None:
    """Nearest identity mean on small grey thumbnails beats chance by far: identity is in the pixels."""
    ds = load_celeba(tiny)
    groups = ds.identities()

    def thumb(s) -> np.ndarray:
        return cv2.resize(read_face_image(s.path), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()

    means = {k: np.mean([thumb(s) for s in v[1:]], axis=0) for k, v in groups.items()}
    names = sorted(means)
    hits = [names[int(np.argmin([np.linalg.norm(thumb(v[0]) - means[n]) for n in names]))] == k for k, v in groups.items()]
    assert np.mean(hits) >= 0.5  # chance is 1/6


def test_images_of_one_person_differ(tiny: Path) -> None:
    ds = load_celeba(tiny)
    first = next(iter(ds.identities().values()))
    a, b = (read_face_image(s.path).astype(int) for s in first[:2])
    assert np.abs(a - b).mean() > 5


def test_registered_dataset_generates_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    config = FaceSyntheticConfig(seed=1, num_identities=3, images_per_identity=(2, 2), size=32)
    ds = DATASETS.build("synthetic-faces", seed=1, num_identities=3, images_per_identity=[2, 2], size=32)
    root = default_faces_root(config)
    assert ds.root == str(root) and root.parent == tmp_path / "datasets" and root.name.startswith("synthetic-faces-")
    assert json.loads((root / MARKER_NAME).read_text())["config"]["face_generator_version"] >= 1
    stamp = (root / "img_align_celeba" / "000001.jpg").stat().st_mtime_ns
    DATASETS.build("synthetic-faces", seed=1, num_identities=3, images_per_identity=[2, 2], size=32)
    assert (root / "img_align_celeba" / "000001.jpg").stat().st_mtime_ns == stamp  # reused, not rewritten


@pytest.mark.parametrize("settings, fragment", [
    (dict(num_identities=1), "num_identities=1"),
    (dict(images_per_identity=(3, 2)), "images_per_identity"),
    (dict(size=16), "size=16"),
    (dict(seed="x"), "seed='x'"),
])
def test_bad_settings_are_user_errors(settings: dict, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        FaceSyntheticConfig(**settings)


def test_unknown_setting_and_foreign_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean 'num_identities'"):
        DATASETS.build("synthetic-faces", root=str(tmp_path / "x"), num_identity=3)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not an evalsuite synthetic-faces dataset"):
        generate_synthetic_faces(tmp_path / "busy", FaceSyntheticConfig(num_identities=2, images_per_identity=(1, 1), size=32))
