"""Recognizer attention: gradient saliency and the "head contribution" of Sun et al. (2018).

Sun et al., section 4.3.3, follow Simonyan et al.: "compute the gradient of the neural
network prediction with respect to the input image; take maximal absolute values along the
RGB channel; and then smooth with Gaussian blurring", then

    head contrib. = P[max attention is inside head region]

over the test samples. Here the "prediction" is the score of the predicted class (the
largest output of ``score_fn``), the gradient is taken with respect to the raw pixel values
(0..255) as stored, and the smoothing is a Gaussian of standard deviation ``sigma`` pixels
(kernel radius ``ceil(3 * sigma)``, borders reflected as ``cv2.BORDER_REFLECT_101``). Sun et
al. do not give their sigma; the default 2 pixels is about a ninth of a synthetic head's
height (heads are 15-23 pixels tall in the 128x64 crops), enough to merge single-pixel
gradient spikes into blobs without spreading a blob over a whole head. ``sigma=0`` skips
the smoothing. When a map has several maxima, the first in row-major order counts.

Direction of ``head_contribution``: Sun et al. read a high value as the recognizer basing
its decision on the head; an obfuscation that keeps attention on the head while changing
its identity fools the recognizer (their inpainting: 71% vs 72% for the original), whereas
blurred or blacked heads drive attention to the body (3.2%, 14.0%), which then carries the
recognition. It is registered with ``higher_is_better=True`` accordingly (from the
anonymizer's point of view), but it is an explanation of the accuracy columns rather than a
privacy measure by itself: read it next to ``body_head_accuracy``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from anonymizers.blur import blur_matrix, gaussian_kernel1d
from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["ATTENTION_METRICS", "DEFAULT_SIGMA", "argmax_inside", "gaussian_smooth", "head_contribution", "saliency_maps"]

ATTENTION_METRICS: tuple[str, ...] = ("head_contribution",)
DEFAULT_SIGMA = 2.0

ScoreFn = Callable[..., torch.Tensor]


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smooth float (B, H, W) maps (radius ``ceil(3 * sigma)``, reflected borders)."""
    if sigma <= 0:
        return maps
    taps = gaussian_kernel1d(2 * math.ceil(3 * sigma) + 1, float(sigma), maps.device)
    rows = blur_matrix(maps.shape[-2], taps)
    cols = blur_matrix(maps.shape[-1], taps)
    return rows @ maps.float() @ cols.T


def saliency_maps(
    score_fn: ScoreFn,
    images: torch.Tensor,
    *aux: torch.Tensor,
    sigma: float = DEFAULT_SIGMA,
    batch_size: int = 64,
) -> torch.Tensor:
    """Smoothed saliency (B, H, W) on the CPU: max over RGB of |d score[predicted] / d pixel|.

    ``score_fn(x, *aux_batch)`` maps float images (b, 3, H, W) with values 0..255 (and the
    matching rows of each ``aux`` tensor, e.g. head boxes) to class scores (b, C); it must be
    differentiable. ``images`` are uint8 or float in that range.
    """
    maps = []
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        x = images[start:stop].detach().float().requires_grad_(True)
        with torch.enable_grad():
            scores = score_fn(x, *(a[start:stop] for a in aux))
            predicted = scores.argmax(dim=1, keepdim=True)
            gradient, = torch.autograd.grad(scores.gather(1, predicted).sum(), x)
        maps.append(gaussian_smooth(gradient.abs().amax(dim=1), sigma).detach().cpu())
    if not maps:
        return torch.empty(0, *images.shape[-2:])
    return torch.cat(maps)


def argmax_inside(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Bool (B,): whether each map's maximum lies inside its region mask ((B, H, W) or (B, 1, H, W))."""
    masks = masks.reshape(maps.shape[0], -1).cpu()
    index = maps.reshape(maps.shape[0], -1).argmax(dim=1)
    return masks.gather(1, index[:, None])[:, 0].numpy().astype(bool)


def head_contribution(maps: torch.Tensor, head_masks: torch.Tensor) -> float:
    """Share of maps whose maximum lies inside the head mask (nan for no maps)."""
    if maps.shape[0] == 0:
        return math.nan
    return float(argmax_inside(maps, head_masks).mean())


register_metric(MetricSpec(
    "head_contribution",
    "Recognizer attention (Sun et al.): share of test images whose smoothed saliency maximum of the body+head recognizer lies in the head box",
    higher_is_better=True, category="privacy", unit="rate", label="head contrib.",
))
