"""Tests of the region providers (evalsuite.regions)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import anonymizers  # noqa: F401  (registers the built-ins)
from evalsuite.data.types import Sample
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS
from evalsuite.regions import BODY_DILATION, REGIONS, dilate, region_mask, region_masks

H, W = 64, 32


def write_body_mask(tmp_path, name: str = "0001_c1s1_000001_00.png", mode: str = "L") -> str:
    """A person-like silhouette: an ellipse for the body and a disc for the head."""
    yy, xx = np.mgrid[0:H, 0:W]
    body = ((yy - 40) / 20.0) ** 2 + ((xx - 16) / 9.0) ** 2 <= 1
    head = (yy - 12) ** 2 + (xx - 16) ** 2 <= 36
    array = ((body | head) * 255).astype(np.uint8)
    if mode == "RGB":
        array = np.stack([array, np.zeros_like(array), np.zeros_like(array)], axis=2)
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return str(path)


def make_sample(tmp_path=None, name: str = "0001_c1s1_000001_00.jpg", **annotations) -> Sample:
    root = tmp_path if tmp_path is not None else "/data"
    return Sample(path=f"{root}/bounding_box_train/{name}", pid=1, camid=0, split="train", annotations=annotations)


def front(tmp_path) -> Sample:
    return make_sample(tmp_path, head_box=[8, 2, 24, 20], face_box=[10, 5, 22, 18], body_mask=write_body_mask(tmp_path), view="front")


def test_regions_constant():
    assert REGIONS == ("face", "head", "body", "image")


def test_image_region_is_everything():
    mask = region_mask(make_sample(), "image", H, W)
    assert mask.dtype == bool and mask.shape == (H, W) and mask.all()


@pytest.mark.parametrize("region,key", [("face", "face_box"), ("head", "head_box")])
def test_box_regions(tmp_path, region, key):
    sample = front(tmp_path)
    x0, y0, x1, y1 = sample.annotations[key]
    mask = region_mask(sample, region, H, W)
    expected = np.zeros((H, W), dtype=bool)
    expected[y0:y1, x0:x1] = True
    assert np.array_equal(mask, expected)


def test_box_dilation_grows_each_side():
    sample = make_sample(face_box=[10, 5, 22, 18])
    mask = region_mask(sample, "face", H, W, dilation=2)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (3, 20, 8, 24)
    assert mask.sum() == (20 - 3) * (24 - 8)


def test_fractional_box_widened_to_whole_pixels():
    mask = region_mask(make_sample(face_box=[10.5, 5.2, 21.5, 17.9]), "face", H, W)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (5, 18, 10, 22)


def test_box_partly_outside_is_clipped():
    mask = region_mask(make_sample(head_box=[-5, -3, 10, 8]), "head", H, W)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (0, 8, 0, 10)


@pytest.mark.parametrize("box,words", [([40, 70, 50, 80], "outside"), ([10, 5, 10, 18], "empty"),
                                       ([22, 5, 10, 18], "empty"), ([1, 2, 3], "4 numbers"), ("10,5,22,18", "4 numbers")])
def test_bad_boxes_raise_naming_image_and_box(box, words):
    sample = make_sample(face_box=box)
    with pytest.raises(UserError) as info:
        region_mask(sample, "face", H, W)
    message = str(info.value)
    assert words in message and sample.relpath in message and "face_box" in message and repr(box) in message


def test_face_none_means_nothing_to_anonymize():
    back = make_sample(head_box=[8, 2, 24, 20], face_box=None, view="back")
    assert not region_mask(back, "face", H, W).any()
    assert region_mask(back, "head", H, W).any()


def test_no_face_annotations_in_dataset_raises_with_hint():
    market = [make_sample(name=f"000{i}_c1s1_000001_00.jpg") for i in range(3)]  # real Market: no annotations
    for region in ("face", "head"):
        with pytest.raises(UserError, match="dataset.annotations=FILE"):
            region_masks(market, region, H, W)


def test_one_sample_without_face_key_raises_naming_it():
    samples = [make_sample(face_box=[10, 5, 22, 18]), make_sample(name="0002_c2s1_000001_00.jpg")]
    with pytest.raises(UserError, match="bounding_box_train/0002_c2s1_000001_00.jpg.*dataset.annotations=FILE"):
        region_masks(samples, "face", H, W)


def test_body_mask_read_and_default_dilation(tmp_path):
    sample = front(tmp_path)
    raw = np.asarray(Image.open(sample.annotations["body_mask"])) != 0
    assert np.array_equal(region_mask(sample, "body", H, W, dilation=0), raw)
    default = region_mask(sample, "body", H, W)
    assert np.array_equal(default, region_mask(sample, "body", H, W, dilation=BODY_DILATION))
    assert BODY_DILATION > 0 and default.sum() > raw.sum() and default[raw].all()


def test_dilation_grows_monotonically(tmp_path):
    sample = front(tmp_path)
    sizes = [region_mask(sample, "body", H, W, dilation=d).sum() for d in (0, 1, 3, 6)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    single = np.zeros((9, 9), dtype=bool)
    single[4, 4] = True
    grown = dilate(single, 2)
    assert 9 < grown.sum() < 25 and grown[4, 2] and grown[2, 4] and not grown[2, 2]  # cv2's ellipse, not a square


def test_rgb_body_mask_png(tmp_path):
    sample = make_sample(tmp_path, body_mask=write_body_mask(tmp_path, "rgb.png", mode="RGB"))
    grey = make_sample(tmp_path, body_mask=write_body_mask(tmp_path, "grey.png"))
    assert np.array_equal(region_mask(sample, "body", H, W), region_mask(grey, "body", H, W))


def test_body_fallback(tmp_path):
    market = make_sample(tmp_path)
    assert region_mask(market, "body", H, W).all()  # whole crop
    assert region_mask(market, "body", H, W, fallback="image").all()
    with pytest.raises(UserError, match="body_mask"):
        region_mask(market, "body", H, W, fallback="error")


def test_body_mask_missing_or_unreadable_names_the_file(tmp_path):
    missing = make_sample(tmp_path, body_mask=str(tmp_path / "nope.png"))
    with pytest.raises(UserError, match="nope.png"):
        region_mask(missing, "body", H, W)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    with pytest.raises(UserError, match="garbage.png"):
        region_mask(make_sample(tmp_path, body_mask=str(garbage)), "body", H, W)


def test_body_mask_of_wrong_size(tmp_path):
    sample = front(tmp_path)
    with pytest.raises(UserError, match="32x64"):
        region_mask(sample, "body", 128, 64)


def test_unknown_region_and_bad_arguments():
    sample = make_sample()
    with pytest.raises(UserError) as info:
        region_mask(sample, "torso", H, W)
    assert all(name in str(info.value) for name in REGIONS)
    with pytest.raises(UserError, match="fallback"):
        region_mask(sample, "image", H, W, fallback="skip")
    with pytest.raises(UserError, match="dilation"):
        region_mask(sample, "image", H, W, dilation=-1)


def test_region_masks_batch(tmp_path):
    samples = [front(tmp_path), make_sample(tmp_path, head_box=[8, 2, 24, 20], face_box=None, view="back")]
    masks = region_masks(samples, "face", H, W)
    assert masks.dtype == torch.bool and masks.shape == (2, 1, H, W)
    assert masks[0].any() and not masks[1].any()
    for b, sample in enumerate(samples):
        assert np.array_equal(masks[b, 0].numpy(), region_mask(sample, "face", H, W))
    assert region_masks([], "body", H, W).shape == (0, 1, H, W)


def test_regions_drive_anonymizers(tmp_path):
    samples = [front(tmp_path), make_sample(tmp_path)]  # second: no body mask -> whole crop
    masks = region_masks(samples, "body", H, W)
    images = torch.randint(0, 256, (2, 3, H, W), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = ANONYMIZERS.build("mask").anonymize(images, masks)
    outside = ~masks.expand_as(images)
    assert torch.equal(out[outside], images[outside])
    assert (out[masks.expand_as(images)] == 127).all()
    assert (out[1] == 127).all()
