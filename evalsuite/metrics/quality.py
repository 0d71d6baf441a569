"""Full-reference image quality: PSNR, SSIM, mask-SSIM (scikit-image) and MS-SSIM (pytorch-msssim).

mask-SSIM (Sun et al. 2018) is SSIM restricted to the anonymized region: the mean of the
per-pixel SSIM map over the region's pixels. Whole-image SSIM is scikit-image's
``structural_similarity`` (7x7 uniform window, its defaults), averaged over RGB.

MS-SSIM (Wang et al. 2003) is pytorch-msssim's ``ms_ssim``: 11x11 Gaussian window
(sigma 1.5), five scales weighted (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Its valid
(unpadded) filtering needs the smaller image side to exceed ``(11 - 1) * 2**4 = 160``
pixels at five scales. For smaller images (Market-1501 crops are 128x64) we keep the
window and use fewer scales: the largest ``L`` with ``min(H, W) > 10 * 2**(L - 1)``
(3 scales for 64 px), with the first ``L`` weights renormalised to sum to 1 (so that the
value stays a weighted geometric mean). pytorch-msssim's public function asserts
five scales, so for ``L < 5`` the scales are combined here from its per-scale ``_ssim``,
exactly as its ``ms_ssim`` does (tests check both paths against it and against an
independent NumPy implementation). The number of scales used is reported by
:func:`ms_ssim_levels`; values from different scale counts are not comparable. The window is
pytorch-msssim's, renormalised in float64: its float32 taps sum to 1 only within ~1e-7,
which SSIM's ``E[x^2] - mu^2`` turns into differences of ~1e-5 on uint8 images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = [
    "MS_SSIM_WEIGHTS", "QUALITY_METRICS", "image_quality_scores", "mean_psnr", "ms_ssim", "ms_ssim_levels", "psnr",
    "ssim_and_mask_ssim",
]

QUALITY_METRICS: tuple[str, ...] = ("psnr", "ssim", "mask_ssim")


def _hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """A uint8 HxWx3 array from a HxWx3 array or a 3xHxW tensor."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image)


def psnr(original: np.ndarray | torch.Tensor, anonymized: np.ndarray | torch.Tensor) -> float:
    """PSNR in dB over the whole image (inf for identical images)."""
    a, b = _hwc(original), _hwc(anonymized)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim_and_mask_ssim(
    original: np.ndarray | torch.Tensor,
    anonymized: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
) -> tuple[float, float]:
    """(SSIM of the whole image, mean SSIM map inside ``mask``); mask-SSIM is nan for an empty mask."""
    a, b = _hwc(original), _hwc(anonymized)
    value, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    if mask is None:
        return float(value), float(value)
    region = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool).reshape(a.shape[:2])
    if not region.any():
        return float(value), math.nan
    return float(value), float(full[region].mean())


def image_quality_scores(
    originals: torch.Tensor,
    anonymized: torch.Tensor,
    masks: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Per-image ``psnr``, ``ssim`` and ``mask_ssim`` for uint8 Bx3xHxW batches (masks Bx1xHxW bool)."""
    if originals.shape != anonymized.shape:
        raise ValueError(f"original and anonymized batches differ in shape: {tuple(originals.shape)} vs {tuple(anonymized.shape)}")
    n = originals.shape[0]
    out = {name: np.empty(n, dtype=np.float64) for name in QUALITY_METRICS}
    for i in range(n):
        out["psnr"][i] = psnr(originals[i], anonymized[i])
        out["ssim"][i], out["mask_ssim"][i] = ssim_and_mask_ssim(originals[i], anonymized[i], None if masks is None else masks[i, 0])
    return out


MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
MS_SSIM_WINDOW = 11
MS_SSIM_SIGMA = 1.5


def ms_ssim_levels(height: int, width: int, win_size: int = MS_SSIM_WINDOW) -> int:
    """Scales MS-SSIM uses for an image of this size: up to 5, as many as the window fits (0 if none)."""
    smaller = min(height, width)
    levels = 0
    for level in range(1, len(MS_SSIM_WEIGHTS) + 1):
        if smaller > (win_size - 1) * 2 ** (level - 1):
            levels = level
    return levels


def ms_ssim(
    originals: torch.Tensor,
    anonymized: torch.Tensor,
    win_size: int = MS_SSIM_WINDOW,
    win_sigma: float = MS_SSIM_SIGMA,
    batch_size: int = 64,
) -> np.ndarray:
    """Per-image MS-SSIM of uint8 (B, 3, H, W) batches (pytorch-msssim), in [0, 1].

    Five scales when ``min(H, W) > 160``; fewer otherwise (see the module docstring);
    nan for images too small for even one scale.
    """
    from pytorch_msssim import ms_ssim as library_ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    if originals.shape != anonymized.shape:
        raise ValueError(f"original and anonymized batches differ in shape: {tuple(originals.shape)} vs {tuple(anonymized.shape)}")
    n, channels, height, width = originals.shape
    levels = ms_ssim_levels(height, width, win_size)
    if levels == 0:
        return np.full(n, math.nan)
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=torch.float64)
    weights = weights / weights.sum()
    # pytorch-msssim's window, renormalised in float64: its float32 taps sum to 1 only within ~1e-7,
    # and SSIM's E[x^2] - mu^2 turns that into errors of ~1e-5 on uint8 images
    win = _fspecial_gauss_1d(win_size, win_sigma).to(torch.float64)
    win = (win / win.sum()).repeat([channels, 1, 1, 1])
    out = []
    for start in range(0, n, batch_size):
        x = originals[start:start + batch_size].to(torch.float64)
        y = anonymized[start:start + batch_size].to(torch.float64)
        if levels == len(MS_SSIM_WEIGHTS):
            out.append(library_ms_ssim(x, y, data_range=255, size_average=False, win=win))
            continue
        factors = []
        for level in range(levels):  # pytorch_msssim.ms_ssim's loop, with `levels` scales
            ssim_per_channel, cs = _ssim(x, y, data_range=255, win=win, size_average=False)
            if level < levels - 1:
                factors.append(torch.relu(cs))
                padding = [s % 2 for s in x.shape[2:]]
                x = F.avg_pool2d(x, kernel_size=2, padding=padding)
                y = F.avg_pool2d(y, kernel_size=2, padding=padding)
        stacked = torch.stack(factors + [torch.relu(ssim_per_channel)], dim=0)
        out.append(torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(1))
    return torch.cat(out).numpy()


def mean_psnr(values: np.ndarray) -> float:
    """Mean PSNR over images, skipping unchanged images (inf); inf only when every image is unchanged."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size:
        return float(finite.mean())
    return math.inf if values.size else math.nan



def mean_quality(originals: torch.Tensor, anonymized: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, float]:
    """Set means of :func:`image_quality_scores`: ``psnr`` (:func:`mean_psnr`), ``ssim``, and
    ``mask_ssim`` over the ``mask_ssim_images`` images with a non-empty region (nan when none)."""
    scores = image_quality_scores(originals, anonymized, masks)
    mask_ssim = scores["mask_ssim"][~np.isnan(scores["mask_ssim"])]
    return {"psnr": mean_psnr(scores["psnr"]), "ssim": float(np.mean(scores["ssim"])),
            "mask_ssim": float(mask_ssim.mean()) if mask_ssim.size else math.nan, "mask_ssim_images": int(mask_ssim.size)}

register_metric(MetricSpec("psnr", "Peak signal-to-noise ratio (dB) of the anonymized image against the original", higher_is_better=True, category="quality", unit="score", decimals=2, label="PSNR"))
register_metric(MetricSpec("ssim", "Structural similarity (scikit-image, 7x7 window) of the whole anonymized image to the original", higher_is_better=True, category="quality", unit="score", decimals=3, label="SSIM"))
register_metric(MetricSpec("mask_ssim", "SSIM restricted to the anonymized region (mean SSIM map inside the mask; Sun et al.)", higher_is_better=True, category="quality", unit="score", decimals=3, label="mask-SSIM"))
register_metric(MetricSpec("ms_ssim", "Multi-scale SSIM (pytorch-msssim, 11x11 Gaussian window; fewer than 5 scales below 161 px, see evalsuite.metrics.quality)", higher_is_better=True, category="quality", unit="score", decimals=3, label="MS-SSIM"))
