"""``blur``: Gaussian blur of the region (DeepPrivacy2 / Paper F; UP-GAN "Gaussian-k").

The blurred image is pasted inside the mask, as DeepPrivacy2 does
(``I_new = I * (1 - M) + M * I_blur``); on CPU only the mask's box (plus the kernel radius)
is blurred, with the same pixels as blurring the whole image (see Implementation).

Parameter choices:
- default ``sigma = 7`` (DeepPrivacy2, Paper F) with ``kernel_size = None``, meaning the
  Paper F kernel "k-size = 3 * sigma", rounded up to the next odd integer (sigma 7 -> 21).
  DeepPrivacy2's own code calls ``torchvision.transforms.functional.gaussian_blur`` with
  ``kernel_size = min(3 * sigma, width)``. Note the kernel is short (a radius of 1.5 sigma);
  OpenCV's automatic size for uint8 would be ``round(6 * sigma + 1) | 1`` (43 for sigma 7).
- presets ``blur5`` / ``blur15`` / ``blur25`` are UP-GAN's "Gaussian-5/15/25": the paper
  gives only the kernel sizes (5, 15, 25), so sigma is what ``cv2.GaussianBlur(img, (k, k), 0)``
  would use: ``sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8`` (1.1, 2.6, 4.1). For k <= 7 OpenCV's
  sigma=0 path uses a fixed binomial table instead ([1 4 6 4 1] / 16 for k = 5), which differs
  from the sampled Gaussian by under 0.01 per tap; we always sample the Gaussian.
- borders reflect without repeating the edge pixel (``cv2.BORDER_REFLECT_101``, cv2's
  default, also torchvision's "reflect"), for any kernel size, even one larger than the image.

Implementation, on CPU: OpenCV's separable filter ``cv2.sepFilter2D`` with the float32 taps
(float arithmetic, rounded half to even and saturated to uint8 once at the end) on each
channel plane, and only on each mask's bounding box plus the kernel radius
(:mod:`anonymizers.regionwise`). It matches ``cv2.GaussianBlur`` within one gray level
(which uses fixed-point arithmetic for uint8). OpenCV's SIMD loops run from the first column
of the array they are given, and their scalar tail can round a float differently, so a crop
starts at a multiple of ``CROP_ALIGN`` columns and is a multiple of it wide (or ends at the
image's right edge): then every pixel of the box is computed exactly as in the whole image
(:func:`gaussian_blur`), which the tests check bit for bit.

On CUDA: a separable convolution written as two products with banded (n x n) matrices that
hold the 1-D kernel and the border reflection, ``Bh @ image @ Bw.T`` in float32, then
rounded to nearest and saturated to uint8 (:func:`gaussian_blur_matmul`); it does O(H + W)
rather than O(k) work per pixel, which suits a GPU and not a CPU. The two differ by at most
one gray level, where float sums in another order round to the other side of .5 (22 of the
6.3 million values of the 256-crop benchmark batch).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch

from anonymizers.base import Anonymizer
from anonymizers.regionwise import for_each_box, opencv_threads, output_copy, paste, region_boxes
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

DEFAULT_SIGMA = 7.0
#: columns: a CPU crop starts at a multiple of this and is a multiple of it wide (or ends at the right edge)
CROP_ALIGN = 64


def kernel_size_for(sigma: float) -> int:
    """Paper F's kernel size ``3 * sigma``, rounded up to an odd integer."""
    k = math.ceil(3 * sigma - 1e-9)
    return k if k % 2 == 1 else k + 1


def cv2_default_sigma(kernel_size: int) -> float:
    """The sigma ``cv2.getGaussianKernel`` uses for ``sigma <= 0`` (rounded to 6 decimals)."""
    return round(0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8, 6)


def gaussian_kernel1d(kernel_size: int, sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float32), computed in float64 like cv2."""
    x = torch.arange(kernel_size, dtype=torch.float64, device=device) - (kernel_size - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return (taps / taps.sum()).float()


def reflect101_indices(n: int, pad: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Source index of each position in ``[-pad, n + pad)`` under BORDER_REFLECT_101."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.abs() % period
    return torch.where(idx >= n, period - idx, idx)


def blur_matrix(n: int, taps: torch.Tensor) -> torch.Tensor:
    """(n, n) matrix applying the 1-D filter ``taps`` along an axis of length n, borders reflected."""
    k = taps.numel()
    cols = reflect101_indices(n, k // 2, taps.device).unfold(0, k, 1).reshape(-1)
    rows = torch.arange(n, device=taps.device).repeat_interleave(k)
    matrix = torch.zeros(n, n, dtype=taps.dtype, device=taps.device)
    return matrix.index_put_((rows, cols), taps.repeat(n), accumulate=True)


def gaussian_blur_matmul(images: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Blur uint8 (B, C, H, W) images with banded matrices (any device; the CUDA path)."""
    taps = gaussian_kernel1d(kernel_size, sigma, images.device)
    rows = blur_matrix(images.shape[-2], taps)
    cols = blur_matrix(images.shape[-1], taps)
    out = rows @ images.float() @ cols.T
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _filter_plane(plane: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """One uint8 (H, W) plane through OpenCV's separable filter, borders BORDER_REFLECT_101."""
    return cv2.sepFilter2D(plane, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)


def gaussian_blur(images: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Blur uint8 (B, C, H, W) images like ``cv2.GaussianBlur(img, (k, k), sigma)`` (within one level).

    CPU: ``cv2.sepFilter2D`` per channel plane; other devices: :func:`gaussian_blur_matmul`.
    """
    if images.device.type != "cpu":
        return gaussian_blur_matmul(images, kernel_size, sigma)
    taps = gaussian_kernel1d(kernel_size, sigma).numpy()
    src = images.contiguous().numpy()
    out = np.empty_like(src)
    with opencv_threads():
        for b in range(src.shape[0]):
            for c in range(src.shape[1]):
                out[b, c] = _filter_plane(src[b, c], taps)
    return torch.from_numpy(out)


def blur_regions(images: torch.Tensor, masks: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """CPU: ``images`` with the pixels inside ``masks`` blurred as :func:`gaussian_blur` blurs them.

    Only each mask's bounding box is filtered, from a crop that adds the kernel radius (real
    neighbours, or the reflected border at the image's edges) and is aligned to
    ``CROP_ALIGN`` columns, so the pixels are bit for bit those of the whole-image blur.
    """
    taps = gaussian_kernel1d(kernel_size, sigma).numpy()
    radius = kernel_size // 2
    src, inside_all, out, result = output_copy(images, masks)
    height, width = src.shape[2:]

    def work(boxes: Sequence[tuple[int, int, int, int, int]]) -> None:
        for b, y0, y1, x0, x1 in boxes:
            top, bottom = max(y0 - radius, 0), min(y1 + radius, height)
            left = max(x0 - radius, 0) // CROP_ALIGN * CROP_ALIGN
            right = min(width, left + -(-(x1 + radius - left) // CROP_ALIGN) * CROP_ALIGN)
            blurred = np.stack([_filter_plane(src[b, c, top:bottom, left:right], taps) for c in range(src.shape[1])])
            paste(out[b, :, y0:y1, x0:x1], blurred[:, y0 - top : y1 - top, x0 - left : x1 - left], inside_all[b, :, y0:y1, x0:x1])

    for_each_box(region_boxes(inside_all), work)
    return result


def _check_sigma(sigma: object) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise UserError(f"anonymizer 'blur': parameter sigma must be a positive number, got {sigma!r}")
    return float(sigma)


def _check_kernel_size(kernel_size: object) -> int | None:
    if kernel_size is None:
        return None
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise UserError(f"anonymizer 'blur': parameter kernel_size must be a positive odd integer or None, got {kernel_size!r}")
    return kernel_size


@ANONYMIZERS.register("blur", description="Gaussian blur of the region (sigma 7, kernel 3*sigma as DeepPrivacy2 / Paper F)")
class GaussianBlur(Anonymizer):
    """Gaussian blur; ``kernel_size=None`` derives the kernel from sigma (3 * sigma, odd)."""

    param_names = ("sigma", "kernel_size")

    def __init__(self, *, sigma: float = DEFAULT_SIGMA, kernel_size: int | None = None) -> None:
        _check_sigma(sigma)
        _check_kernel_size(kernel_size)
        self.sigma = sigma
        self.kernel_size = kernel_size

    @property
    def effective_kernel_size(self) -> int:
        """The kernel size actually used."""
        return self.kernel_size if self.kernel_size is not None else kernel_size_for(self.sigma)

    def _anonymize_region(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return gaussian_blur(images, self.effective_kernel_size, float(self.sigma))

    def _anonymize_regions_cpu(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return blur_regions(images, masks, self.effective_kernel_size, float(self.sigma))


for _k in (5, 15, 25):
    ANONYMIZERS.register_preset(
        f"blur{_k}",
        "blur",
        description=f"UP-GAN 'Gaussian-{_k}': {_k}x{_k} Gaussian kernel, sigma {cv2_default_sigma(_k)} (cv2's default for that size)",
        kernel_size=_k,
        sigma=cv2_default_sigma(_k),
    )
