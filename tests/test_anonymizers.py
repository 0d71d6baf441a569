"""Tests of the traditional anonymizers: none, blur, pixelate, mask."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import anonymizers  # noqa: F401  (registers the built-ins)
from anonymizers.blur import GaussianBlur, cv2_default_sigma, gaussian_kernel1d, kernel_size_for
from anonymizers.mask import MaskOut
from anonymizers.pixelate import Pixelate, mask_boxes
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

BUILTINS = ["none", "blur", "blur5", "blur15", "blur25", "pixelate", "pixelate8", "pixelate16",
            "pixelate5", "pixelate15", "pixelate25", "mask", "mask_black", "mask_mean"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def make_images(batch: int = 4, height: int = 64, width: int = 40, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random images (noise on a gradient), uint8 (B, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (batch, 3, height, width), generator=g).float()
    ramp = torch.linspace(0, 255, width).expand(batch, 3, height, width)
    return ((noise + ramp) / 2).round().to(torch.uint8)


def make_masks(batch: int = 4, height: int = 64, width: int = 40) -> torch.Tensor:
    """A different mask per image: full, box, ellipse, empty, small box..."""
    masks = torch.zeros(batch, 1, height, width, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    shapes = [
        torch.ones(height, width, dtype=torch.bool),
        (yy >= 5) & (yy < 30) & (xx >= 3) & (xx < 27),
        ((yy - height / 2) / (height / 3)) ** 2 + ((xx - width / 2) / (width / 4)) ** 2 <= 1,
        torch.zeros(height, width, dtype=torch.bool),
        (yy >= height - 7) & (xx >= width - 5),
    ]
    for b in range(batch):
        masks[b, 0] = shapes[b % len(shapes)]
    return masks


def hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> contiguous (H, W, 3) numpy uint8."""
    return np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())


# --- common contract ------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTINS)
def test_registered_and_params_roundtrip(name):
    anonymizer = ANONYMIZERS.build(name)
    params = anonymizer.get_params()
    assert set(params) == set(type(anonymizer).param_names)
    assert type(anonymizer)(**params).get_params() == params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BUILTINS)
def test_outside_mask_unchanged_and_deterministic(name, device):
    images, masks = make_images(5).to(device), make_masks(5).to(device)
    anonymizer = ANONYMIZERS.build(name)
    out = anonymizer.anonymize(images, masks)
    assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
    outside = ~masks.expand_as(images)
    assert torch.equal(out[outside], images[outside])
    assert torch.equal(out, anonymizer.anonymize(images, masks))
    assert torch.equal(images, make_images(5).to(device)), "the input must not be modified"


@pytest.mark.parametrize("name", BUILTINS)
def test_batch_equals_per_image(name):
    images, masks = make_images(5), make_masks(5)
    anonymizer = ANONYMIZERS.build(name)
    batched = anonymizer.anonymize(images, masks)
    single = torch.cat([anonymizer.anonymize(images[b:b + 1], masks[b:b + 1]) for b in range(5)])
    assert torch.equal(batched, single)


@pytest.mark.parametrize("name", [n for n in BUILTINS if n != "none"])
def test_changes_the_region(name):
    images, masks = make_images(1), make_masks(1)
    out = ANONYMIZERS.build(name).anonymize(images, masks)
    assert not torch.equal(out, images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", BUILTINS)
def test_cuda_matches_cpu(name):
    images, masks = make_images(5), make_masks(5)
    anonymizer = ANONYMIZERS.build(name)
    cpu = anonymizer.anonymize(images, masks)
    gpu = anonymizer.anonymize(images.cuda(), masks.cuda()).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1


def test_none_is_identity():
    images, masks = make_images(), make_masks()
    assert torch.equal(ANONYMIZERS.build("none").anonymize(images, masks), images)


def test_empty_masks_return_input():
    images = make_images()
    masks = torch.zeros(4, 1, 64, 40, dtype=torch.bool)
    for name in BUILTINS:
        assert torch.equal(ANONYMIZERS.build(name).anonymize(images, masks), images)


# --- blur -----------------------------------------------------------------------------------

def test_blur_kernel_choices():
    assert kernel_size_for(7.0) == 21  # Paper F: 3 * sigma
    assert kernel_size_for(2.0) == 7  # 6 -> next odd
    assert kernel_size_for(2.3) == 7  # 6.9 -> 7
    assert [cv2_default_sigma(k) for k in (5, 15, 25)] == [1.1, 2.6, 4.1]
    assert GaussianBlur().effective_kernel_size == 21
    assert ANONYMIZERS.build("blur15").get_params() == {"sigma": 2.6, "kernel_size": 15}


@pytest.mark.parametrize("ksize,sigma", [(21, 7.0), (5, 1.1), (15, 2.6), (25, 4.1), (9, 3.0)])
def test_gaussian_taps_match_cv2(ksize, sigma):
    ours = gaussian_kernel1d(ksize, sigma).double().numpy()
    theirs = cv2.getGaussianKernel(ksize, sigma)[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


@pytest.mark.parametrize("ksize,sigma", [(None, 7.0), (5, 1.1), (15, 2.6), (25, 4.1)])
@pytest.mark.parametrize("size", [(128, 64), (64, 40), (20, 11)])
def test_blur_matches_cv2_everywhere(ksize, sigma, size):
    """Whole-image mask: every pixel, borders included (BORDER_REFLECT_101), within 1 level."""
    height, width = size
    images = make_images(2, height, width, seed=3)
    masks = torch.ones(2, 1, height, width, dtype=torch.bool)
    anonymizer = GaussianBlur(sigma=sigma, kernel_size=ksize)
    out = anonymizer.anonymize(images, masks)
    k = anonymizer.effective_kernel_size
    for b in range(2):
        ref = cv2.GaussianBlur(hwc(images[b]), (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
        assert np.abs(hwc(out[b]).astype(int) - ref).max() <= 1


def test_blur_pastes_only_inside_the_mask():
    images, masks = make_images(1), make_masks(3)[2:3]
    out = GaussianBlur().anonymize(images, masks)
    ref = torch.from_numpy(cv2.GaussianBlur(hwc(images[0]), (21, 21), 7.0)).permute(2, 0, 1)
    inside = masks[0].expand(3, -1, -1)
    assert (out[0][inside].int() - ref[inside].int()).abs().max() <= 1
    assert torch.equal(out[0][~inside], images[0][~inside])


# --- pixelate -------------------------------------------------------------------------------

def test_mask_boxes():
    masks = make_masks(5)
    boxes = mask_boxes(masks).tolist()
    assert boxes[0] == [0, 64, 0, 40]
    assert boxes[1] == [5, 30, 3, 27]
    assert boxes[3] == [0, 64, 0, 40]  # empty mask: whole image (output discarded)
    assert boxes[4] == [57, 64, 35, 40]


@pytest.mark.parametrize("grid", [8, 16])
def test_pixelate_grid_matches_cv2_resize(grid):
    images, masks = make_images(5, 128, 64), make_masks(5, 128, 64)
    out = Pixelate(grid=grid).anonymize(images, masks)
    for b, (y0, y1, x0, x1) in enumerate(mask_boxes(masks).tolist()):
        if not masks[b].any():
            continue
        crop = hwc(images[b, :, y0:y1, x0:x1])
        small = cv2.resize(crop, (grid, grid), interpolation=cv2.INTER_LINEAR)
        ref = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        inside = masks[b, 0, y0:y1, x0:x1].numpy()
        diff = np.abs(hwc(out[b, :, y0:y1, x0:x1]).astype(int) - ref)[inside]
        assert diff.max() <= 2


def test_pixelate_grid_matches_torch_interpolate():
    images, masks = make_images(5, 128, 64), make_masks(5, 128, 64)
    out = Pixelate(grid=8).anonymize(images, masks)
    for b, (y0, y1, x0, x1) in enumerate(mask_boxes(masks).tolist()):
        crop = images[b:b + 1, :, y0:y1, x0:x1].float()
        small = F.interpolate(crop, size=(8, 8), mode="bilinear", align_corners=False, antialias=False)
        ref = F.interpolate(small, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False, antialias=False)
        inside = masks[b, :, y0:y1, x0:x1].expand(3, -1, -1)
        diff = (out[b, :, y0:y1, x0:x1].float() - ref[0])[inside]
        assert diff.numel() == 0 or diff.abs().max() <= 0.5 + 1e-3


@pytest.mark.parametrize("block", [5, 8, 15, 25])
def test_pixelate_blocks_are_block_means(block):
    images, masks = make_images(5, 128, 64), make_masks(5, 128, 64)
    out = Pixelate(block_size=block).anonymize(images, masks)
    for b, (y0, y1, x0, x1) in enumerate(mask_boxes(masks).tolist()):
        if not masks[b].any():
            continue
        for by in range(y0, y1, block):
            for bx in range(x0, x1, block):
                region = (slice(None), slice(by, min(by + block, y1)), slice(bx, min(bx + block, x1)))
                inside = masks[b][region].expand(3, -1, -1)
                if not inside.any():
                    continue
                mean = images[b][region].float().mean(dim=(1, 2), keepdim=True).expand_as(inside)
                assert (out[b][region].float() - mean)[inside].abs().max() <= 0.5 + 1e-4


def test_pixelate_default_is_block_size_8():
    images, masks = make_images(), make_masks()
    assert Pixelate().get_params() == {"block_size": None, "grid": None, "blocks": "anchored"}
    assert torch.equal(Pixelate().anonymize(images, masks), Pixelate(block_size=8).anonymize(images, masks))


# --- mask -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fill,colour", [("gray", (127, 127, 127)), ("black", (0, 0, 0)), (200, (200, 200, 200)),
                                         ([10, 20, 30], (10, 20, 30)), ((1, 2, 3), (1, 2, 3))])
def test_mask_constant_fills(fill, colour):
    images, masks = make_images(), make_masks()
    out = MaskOut(fill=fill).anonymize(images, masks)
    for c in range(3):
        assert (out[:, c:c + 1][masks] == colour[c]).all()


def test_mask_mean_fill_is_region_mean_per_image():
    images, masks = make_images(5), make_masks(5)
    out = MaskOut(fill="mean").anonymize(images, masks)
    for b in range(5):
        m = masks[b, 0]
        if not m.any():
            continue
        for c in range(3):
            expected = images[b, c][m].float().mean()
            values = out[b, c][m].float()
            assert (values == values[0]).all() and abs(values[0] - expected) <= 0.5 + 1e-4


def test_mask_presets():
    assert ANONYMIZERS.build("mask").get_params() == {"fill": "gray"}
    assert ANONYMIZERS.build("mask_black").get_params() == {"fill": "black"}
    assert ANONYMIZERS.build("mask_mean").get_params() == {"fill": "mean"}


# --- invalid parameters ---------------------------------------------------------------------

@pytest.mark.parametrize("name,params,words", [
    ("blur", {"sigma": -1.0}, ["blur", "sigma"]),
    ("blur", {"sigma": 0}, ["blur", "sigma"]),
    ("blur", {"sigma": "7"}, ["blur", "sigma"]),
    ("blur", {"kernel_size": 4}, ["blur", "kernel_size"]),
    ("blur", {"kernel_size": 0}, ["blur", "kernel_size"]),
    ("blur", {"kernel_size": 5.0}, ["blur", "kernel_size"]),
    ("pixelate", {"block_size": 0}, ["pixelate", "block_size"]),
    ("pixelate", {"grid": -8}, ["pixelate", "grid"]),
    ("pixelate", {"grid": True}, ["pixelate", "grid"]),
    ("pixelate", {"block_size": 5, "grid": 8}, ["pixelate", "block_size", "grid"]),
    ("pixelate8", {"block_size": 5}, ["pixelate", "block_size", "grid"]),
    ("mask", {"fill": "white"}, ["mask", "fill"]),
    ("mask", {"fill": 256}, ["mask", "fill"]),
    ("mask", {"fill": [1, 2]}, ["mask", "fill"]),
])
def test_invalid_params_raise_user_error(name, params, words):
    with pytest.raises(UserError) as info:
        ANONYMIZERS.build(name, **params)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_params_are_keyword_only():
    for cls in (GaussianBlur, Pixelate, MaskOut):
        with pytest.raises(TypeError):
            cls(1)


# --- CPU fast path (one region box at a time) against the batched path -----------------------

def region_path(anonymizer, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The generic path: the filter over whole images (``_anonymize_region``), kept inside the masks."""
    return torch.where(masks.expand_as(images), anonymizer._anonymize_region(images, masks, None, None), images)


def random_masks(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Random ellipses and boxes anywhere (touching the borders too), some empty."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    masks = torch.zeros(batch, 1, height, width, dtype=torch.bool)
    for b in range(batch):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([height, width])
        ry, rx = 1 + torch.rand(2, generator=g) * torch.tensor([height, width]) / 2
        shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if b % 3 == 1:
            shape = (yy >= cy - ry) & (yy < cy + ry) & (xx >= cx - rx) & (xx < cx + rx)
        masks[b, 0] = shape if b % 5 != 4 else False
    return masks


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (64, 40), (128, 64), (90, 200), (61, 333)])
@pytest.mark.parametrize("ksize,sigma", [(None, 7.0), (5, 1.1), (25, 4.1), (41, 13.0)])
def test_blur_regions_are_bit_for_bit_the_whole_image_blur(size, ksize, sigma):
    """The box crops (aligned to CROP_ALIGN columns) give exactly gaussian_blur's pixels inside the mask."""
    from anonymizers.blur import gaussian_blur, gaussian_blur_matmul

    height, width = size
    images, masks = make_images(10, height, width, seed=height), random_masks(10, height, width, seed=width)
    anonymizer = GaussianBlur(sigma=sigma, kernel_size=ksize)
    fast = anonymizer.anonymize(images, masks)
    assert torch.equal(fast, region_path(anonymizer, images, masks))
    whole = gaussian_blur(images, anonymizer.effective_kernel_size, sigma)
    assert torch.equal(fast, torch.where(masks.expand_as(images), whole, images))
    matmul = gaussian_blur_matmul(images, anonymizer.effective_kernel_size, sigma)
    assert (whole.int() - matmul.int()).abs().max() <= 1


def test_blur_regions_on_a_large_photo():
    """A 1500 x 2100 photo with a small face-like region: only its box is filtered, same pixels as cv2."""
    from anonymizers.blur import CROP_ALIGN

    g = torch.Generator().manual_seed(1)
    photo = torch.randint(0, 256, (1, 3, 1500, 2100), generator=g, dtype=torch.uint8)
    masks = torch.zeros(1, 1, 1500, 2100, dtype=torch.bool)
    masks[0, 0, 700:900, 1000 + CROP_ALIGN // 2:1160] = True
    out = GaussianBlur().anonymize(photo, masks)
    taps = gaussian_kernel1d(21, 7.0).numpy()
    for c in range(3):
        ref = cv2.sepFilter2D(photo[0, c].numpy(), -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)
        assert np.array_equal(out[0, c].numpy()[masks[0, 0].numpy()], ref[masks[0, 0].numpy()])
    assert torch.equal(out[~masks.expand_as(photo)], photo[~masks.expand_as(photo)])


@pytest.mark.parametrize("name", ["pixelate8", "pixelate16", "pixelate", "pixelate5", "pixelate25"])
@pytest.mark.parametrize("size", [(128, 64), (61, 333), (5, 3)])
def test_pixelate_regions_match_the_batched_path(name, size):
    """Per-image boxes on CPU against the batched matrices (the CUDA path): the same bytes, up to float order."""
    height, width = size
    images, masks = make_images(12, height, width, seed=2), random_masks(12, height, width, seed=3)
    anonymizer = ANONYMIZERS.build(name)
    fast = anonymizer.anonymize(images, masks)
    batched = region_path(anonymizer, images, masks)
    difference = (fast.int() - batched.int()).abs()
    assert difference.max() <= 1
    assert (difference > 0).float().mean() < 1e-3  # observed: none for grids, about 1e-4 for blocks


@pytest.mark.parametrize("name", ["mask", "mask_black", "mask_mean"])
def test_mask_fast_path_gives_the_base_path_bytes(name):
    images, masks = make_images(12, 61, 90, seed=4), random_masks(12, 61, 90, seed=5)
    anonymizer = ANONYMIZERS.build(name)
    assert torch.equal(anonymizer.anonymize(images, masks), region_path(anonymizer, images, masks))


def test_region_boxes_match_mask_boxes():
    from anonymizers.regionwise import region_boxes

    masks = random_masks(20, 37, 70, seed=6)
    boxes = mask_boxes(masks).tolist()
    listed = region_boxes(masks.numpy())
    assert [b for b, *_ in listed] == [b for b in range(20) if masks[b].any()]
    for b, *box in listed:
        assert box == boxes[b]


def test_opencv_threads_follow_torch_and_are_restored():
    from anonymizers.regionwise import opencv_threads

    before = cv2.getNumThreads()
    with opencv_threads(1):
        assert cv2.getNumThreads() == 1
    with opencv_threads():
        assert cv2.getNumThreads() == torch.get_num_threads()
    assert cv2.getNumThreads() == before


def test_subclass_overriding_the_region_filter_keeps_the_base_path():
    class Inverted(GaussianBlur):
        def _anonymize_region(self, images, masks, annotations, generator):
            return 255 - images

    images, masks = make_images(), make_masks()
    out = Inverted().anonymize(images, masks)
    assert torch.equal(out, torch.where(masks.expand_as(images), 255 - images, images))


@pytest.mark.parametrize("name", ["blur", "pixelate8", "pixelate", "mask"])
def test_cpu_path_does_not_depend_on_the_thread_count(name):
    """for_each_box splits the boxes over torch's threads: the same bytes with 1 and 3 threads."""
    images, masks = make_images(40, 70, 90, seed=7), random_masks(40, 70, 90, seed=8)
    anonymizer = ANONYMIZERS.build(name)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = anonymizer.anonymize(images, masks)
        torch.set_num_threads(3)
        threaded = anonymizer.anonymize(images, masks)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(single, threaded)
