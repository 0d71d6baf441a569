"""Full-reference image quality: PSNR, SSIM and mask-SSIM (scikit-image).

mask-SSIM (Sun et al. 2018) is SSIM restricted to the anonymized region: the mean of the
per-pixel SSIM map over the region's pixels. Whole-image SSIM is scikit-image's
``structural_similarity`` (7x7 uniform window, its defaults), averaged over RGB.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["QUALITY_METRICS", "image_quality_scores", "psnr", "ssim_and_mask_ssim"]

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


register_metric(MetricSpec("psnr", "Peak signal-to-noise ratio (dB) of the anonymized image against the original", higher_is_better=True, category="quality", unit="score", decimals=2, label="PSNR"))
register_metric(MetricSpec("ssim", "Structural similarity (scikit-image, 7x7 window) of the whole anonymized image to the original", higher_is_better=True, category="quality", unit="score", decimals=3, label="SSIM"))
register_metric(MetricSpec("mask_ssim", "SSIM restricted to the anonymized region (mean SSIM map inside the mask; Sun et al.)", higher_is_better=True, category="quality", unit="score", decimals=3, label="mask-SSIM"))
