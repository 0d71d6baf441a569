"""Face folders: every image format Pillow decodes (AT&T's PGM included) and ``face_box: null``."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite.data.faces import FACE_SIDECAR, load_celeba, load_face_folder, read_face_image
from evalsuite.errors import UserError


def _gray(value: int) -> Image.Image:
    pixels = np.full((28, 23), value, np.uint8)
    pixels[5:10, 4:19] = 255 - value  # something that is not flat
    return Image.fromarray(pixels, mode="L")


def test_pgm_and_other_pillow_formats_are_read(tmp_path: Path) -> None:
    # AT&T layout: s1/1.pgm ... (8-bit grayscale PGM)
    for person, value in (("s1", 40), ("s2", 90)):
        for i in (1, 2):
            (tmp_path / person).mkdir(exist_ok=True)
            _gray(value + i).save(tmp_path / person / f"{i}.pgm")
    formats = {"x.ppm": "PPM", "x.bmp": "BMP", "x.tif": "TIFF", "x.tiff": "TIFF", "x.webp": "WEBP", "x.PGM": "PPM"}
    (tmp_path / "s3").mkdir()
    for name, fmt in formats.items():
        image = _gray(150) if name.lower().endswith(".pgm") else _gray(150).convert("RGB")
        image.save(tmp_path / "s3" / name, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    (tmp_path / "s3" / "notes.txt").write_text("not an image")
    ds = load_face_folder(tmp_path)
    assert sorted(Path(s.path).name for s in ds.samples if s.identity == "s3") == sorted(formats)
    assert len(ds.identities()["s1"]) == 2 and len(ds.samples) == 4 + len(formats)
    att = read_face_image(tmp_path / "s1" / "1.pgm")
    assert att.shape == (28, 23, 3) and att.dtype == np.uint8
    assert (att[..., 0] == att[..., 2]).all() and att[0, 0, 0] == 41 and att[6, 6, 1] == 255 - 41
    for name in formats:  # all lossless: the same pixels back, as RGB
        image = read_face_image(tmp_path / "s3" / name)
        assert image.shape == (28, 23, 3) and image[0, 0].tolist() == [150] * 3 and image[6, 6].tolist() == [105] * 3, name


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    wide = (np.arange(28 * 23).reshape(28, 23) * 101).astype(np.uint16)  # up to 65,002
    for name in ("a.pgm", "a.tif"):
        Image.fromarray(wide).save(tmp_path / name)
        image = read_face_image(tmp_path / name)
        expected = np.round(wide * (255 / 65535)).astype(np.uint8)
        assert image.shape == (28, 23, 3) and (image[..., 1] == expected).all(), name


def _face_tree(root: Path) -> None:
    for person in ("ann", "bob"):
        for i in range(3):
            (root / person).mkdir(parents=True, exist_ok=True)
            _gray(60 + i).convert("RGB").save(root / person / f"{i}.jpg")


def test_face_box_null_drops_the_photo_with_one_count_line(tmp_path: Path, caplog) -> None:
    _face_tree(tmp_path)
    sidecar = {"format": "evalsuite-faces/1", "images": {
        "ann/1.jpg": {"face_box": None}, "bob/2.jpg": {"face_box": None, "attributes": {"age": 3}},
        "bob/0.jpg": {"face_box": [2, 2, 20, 25]}, "ann/0.jpg": {"attributes": {"age": 30}}}}
    (tmp_path / FACE_SIDECAR).write_text(json.dumps(sidecar))
    with caplog.at_level(logging.WARNING, logger="evalsuite.data.faces"):
        ds = load_face_folder(tmp_path)
    assert sorted(s.relpath for s in ds.samples) == ["ann/0.jpg", "ann/2.jpg", "bob/0.jpg", "bob/1.jpg"]
    lines = [r.getMessage() for r in caplog.records if "no face" in r.getMessage()]
    assert len(lines) == 1 and "skipped 2 of 6 photos" in lines[0]
    by_key = {s.relpath: s for s in ds.samples}
    assert by_key["bob/0.jpg"].annotations["face_box"] == [2.0, 2.0, 20.0, 25.0]
    assert "face_box" not in by_key["ann/0.jpg"].annotations  # no key: not given (not "no face")
    # a user's sidecar given later overrides the folder's "no face" with a box
    override = tmp_path / "mine.json"
    override.write_text(json.dumps({"format": "evalsuite-faces/1", "images": {"ann/1.jpg": {"face_box": [1, 1, 9, 9]}}}))
    assert len(load_face_folder(tmp_path, sidecar=override).samples) == 5


def test_every_photo_without_a_face_is_one_clear_error(tmp_path: Path) -> None:
    _face_tree(tmp_path)
    entries = {f"{p}/{i}.jpg": {"face_box": None} for p in ("ann", "bob") for i in range(3)}
    (tmp_path / FACE_SIDECAR).write_text(json.dumps({"format": "evalsuite-faces/1", "images": entries}))
    with pytest.raises(UserError, match="no face") as info:
        load_face_folder(tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_celeba_reader_drops_faceless_photos_too(tmp_path: Path) -> None:
    (tmp_path / "img_align_celeba").mkdir()
    for i in range(1, 4):
        _gray(50).convert("RGB").save(tmp_path / "img_align_celeba" / f"{i:06d}.jpg")
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 7\n000002.jpg 7\n000003.jpg 9\n")
    (tmp_path / FACE_SIDECAR).write_text(json.dumps({"format": "evalsuite-faces/1", "images": {"img_align_celeba/000002.jpg": {"face_box": None}}}))
    ds = load_celeba(tmp_path)
    assert [Path(s.path).name for s in ds.samples] == ["000001.jpg", "000003.jpg"]
