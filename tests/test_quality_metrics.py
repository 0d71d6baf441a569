"""PSNR / SSIM / mask-SSIM against scikit-image, MS-SSIM against pytorch-msssim and a NumPy reference."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evalsuite.metrics.quality import image_quality_scores, mean_psnr, ms_ssim, ms_ssim_levels, psnr, ssim_and_mask_ssim
from image_quality_helpers import tiny_synthetic  # noqa: F401  (fixture)

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def smooth_images(n, h, w, seed=0):
    """Textured uint8 (n, 3, h, w) images: smoothed noise, so SSIM has structure to compare."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, h, w, generator=g) * 255
    return F.avg_pool2d(noise, 5, 1, 2).round().to(torch.uint8)


def noisy(images, sigma, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (images.float() + torch.randn(images.shape, generator=g) * sigma).round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------- NumPy MS-SSIM (Wang et al. 2003)

def _filter(image, taps):
    return convolve2d(convolve2d(image, taps[None, :], mode="valid"), taps[:, None], mode="valid")


def reference_ms_ssim(x, y, levels):
    """MS-SSIM of one (3, H, W) pair (even sizes), 11x11 Gaussian sigma 1.5, first `levels` Wang weights renormalised."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()
    # Wang et al.'s five weights as published (they sum to 1.0001); fewer scales: renormalised
    weights = WEIGHTS if levels == 5 else WEIGHTS[:levels] / WEIGHTS[:levels].sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    per_channel = []
    for c in range(3):
        a, b, value = x[c].astype(np.float64), y[c].astype(np.float64), 1.0
        for level in range(levels):
            ma, mb = _filter(a, taps), _filter(b, taps)
            vaa, vbb, vab = _filter(a * a, taps) - ma**2, _filter(b * b, taps) - mb**2, _filter(a * b, taps) - ma * mb
            cs = (2 * vab + c2) / (vaa + vbb + c2)
            if level < levels - 1:
                value *= max(cs.mean(), 0) ** weights[level]
                a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean((1, 3))
                b = b.reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2).mean((1, 3))
            else:
                value *= max((((2 * ma * mb + c1) / (ma**2 + mb**2 + c1)) * cs).mean(), 0) ** weights[level]
        per_channel.append(value)
    return float(np.mean(per_channel))


# --------------------------------------------------------------------- identical images

def test_identical_images_give_ssim_one_and_psnr_inf():
    images = smooth_images(3, 128, 64)
    masks = torch.zeros(3, 1, 128, 64, dtype=torch.bool)
    masks[:, :, 10:40, 20:44] = True
    scores = image_quality_scores(images, images.clone(), masks)
    assert np.all(np.isinf(scores["psnr"])) and np.all(scores["psnr"] > 0)
    assert scores["ssim"] == pytest.approx(np.ones(3))
    assert scores["mask_ssim"] == pytest.approx(np.ones(3))
    assert ms_ssim(images, images.clone()) == pytest.approx(np.ones(3))
    assert mean_psnr(scores["psnr"]) == math.inf


def test_mean_psnr_skips_unchanged_images():
    assert mean_psnr(np.array([math.inf, 20.0, 30.0])) == pytest.approx(25.0)
    assert mean_psnr(np.array([math.inf, math.inf])) == math.inf
    assert math.isnan(mean_psnr(np.array([])))


# --------------------------------------------------------------------- scikit-image cross-checks

def test_psnr_and_ssim_match_scikit_image_and_the_formula():
    original = smooth_images(1, 48, 40)[0]
    changed = noisy(original[None], 12)[0]
    a, b = original.permute(1, 2, 0).numpy(), changed.permute(1, 2, 0).numpy()
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert psnr(original, changed) == pytest.approx(10 * math.log10(255**2 / mse))
    assert psnr(original, changed) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    ssim, _ = ssim_and_mask_ssim(original, changed)
    assert ssim == pytest.approx(structural_similarity(a, b, channel_axis=2, data_range=255))
    assert 0.0 < ssim < 1.0


def test_mask_ssim_is_the_ssim_map_mean_inside_the_mask():
    original = smooth_images(1, 64, 48, seed=3)[0]
    changed = original.clone()
    changed[:, 8:30, 10:30] = 127  # mask-out of a box
    a, b = original.permute(1, 2, 0).numpy(), changed.permute(1, 2, 0).numpy()
    _, ssim_map = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    mask = np.zeros((64, 48), dtype=bool)
    mask[8:30, 10:30] = True
    ssim, mask_ssim = ssim_and_mask_ssim(original, changed, torch.from_numpy(mask))
    assert mask_ssim == pytest.approx(ssim_map[mask].mean())
    assert mask_ssim < ssim  # the damage is inside the region
    _, empty = ssim_and_mask_ssim(original, changed, torch.zeros(64, 48, dtype=torch.bool))
    assert math.isnan(empty)


def test_mask_out_lowers_mask_ssim_more_than_blur(tiny_synthetic):
    """On synthetic pedestrians with head regions: mask-out destroys the region's structure, blur keeps some."""
    from anonymizers.blur import GaussianBlur
    from anonymizers.mask import MaskOut
    from evalsuite.regions import region_masks
    from evalsuite.pipeline import decode_samples as load_images

    samples = tiny_synthetic.query + tiny_synthetic.gallery
    images = load_images(samples, "load")
    masks = region_masks(samples, "head", images.shape[2], images.shape[3])
    blurred = GaussianBlur().anonymize(images, masks)
    masked = MaskOut().anonymize(images, masks)
    blur_scores = image_quality_scores(images, blurred, masks)
    mask_scores = image_quality_scores(images, masked, masks)
    assert np.nanmean(mask_scores["mask_ssim"]) < np.nanmean(blur_scores["mask_ssim"]) - 0.1
    # mask-SSIM isolates the region: its drop is far larger than whole-image SSIM's
    assert np.nanmean(blur_scores["mask_ssim"]) < np.mean(blur_scores["ssim"])
    assert np.mean(ms_ssim(images, masked)) < np.mean(ms_ssim(images, blurred))


# --------------------------------------------------------------------- MS-SSIM

def test_ms_ssim_scale_count_follows_the_image_size():
    assert ms_ssim_levels(256, 256) == 5
    assert ms_ssim_levels(161, 400) == 5
    assert ms_ssim_levels(160, 400) == 4
    assert ms_ssim_levels(128, 64) == 3  # Market-1501 crops
    assert ms_ssim_levels(11, 11) == 1
    assert ms_ssim_levels(10, 10) == 0
    assert np.isnan(ms_ssim(smooth_images(1, 10, 10), smooth_images(1, 10, 10, seed=2))).all()


def test_ms_ssim_matches_pytorch_msssim_and_numpy_on_large_images():
    import pytorch_msssim

    original = smooth_images(2, 192, 176)
    changed = noisy(original, 20)
    ours = ms_ssim(original, changed)
    library = pytorch_msssim.ms_ssim(original.double(), changed.double(), data_range=255, size_average=False).numpy()
    # pytorch-msssim's own float32 window sums to 1 only within ~1e-7 (we renormalise it in float64)
    assert ours == pytest.approx(library, abs=1e-4)
    assert ours == pytest.approx([reference_ms_ssim(original[i].numpy(), changed[i].numpy(), 5) for i in range(2)], abs=1e-9)
    assert np.all((ours > 0.3) & (ours < 1.0))


def test_ms_ssim_with_fewer_scales_matches_numpy_on_small_images():
    original = smooth_images(2, 128, 64, seed=5)
    changed = noisy(original, 20, seed=6)
    ours = ms_ssim(original, changed)
    expected = [reference_ms_ssim(original[i].numpy(), changed[i].numpy(), 3) for i in range(2)]
    assert ours == pytest.approx(expected, abs=1e-9)
    # not the same number as a 5-scale MS-SSIM with a tiny window would give
    import pytorch_msssim

    other = pytorch_msssim.ms_ssim(original.double(), changed.double(), data_range=255, size_average=False, win_size=3).numpy()
    assert not np.allclose(ours, other, atol=1e-3)


def test_pytorch_msssim_single_scale_agrees_with_scikit_image_gaussian_ssim():
    """The two libraries agree on Gaussian-window SSIM once scikit-image's padded border is cropped."""
    import pytorch_msssim

    original = smooth_images(1, 64, 48, seed=7)
    changed = noisy(original, 15, seed=8)
    a, b = original[0].permute(1, 2, 0).numpy(), changed[0].permute(1, 2, 0).numpy()
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
    expected = full[5:-5, 5:-5].mean()
    library = pytorch_msssim.ssim(original.double(), changed.double(), data_range=255).item()
    # 1e-5: pytorch-msssim normalises its window in float32, scikit-image in float64
    assert library == pytest.approx(expected, abs=1e-5)
