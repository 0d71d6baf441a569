"""Real face photographs that installed packages ship (offline), for the dlib-based tests.

- scikit-image's ``astronaut()`` (Eileen Collins, 512x512), face box about [170, 70, 276, 186];
- matplotlib's ``grace_hopper.jpg`` (Grace Hopper, 600x512), face box about [150, 120, 395, 365].

The boxes are hand-drawn (brow to chin, ear to ear) and overlap dlib's HOG detections with
IoU 0.63 and 0.78.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

ASTRONAUT_FACE = (170, 70, 276, 186)
GRACE_FACE = (150, 120, 395, 365)


@functools.lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


@functools.lru_cache(maxsize=1)
def grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        return np.array(Image.open(handle).convert("RGB"))


def tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].contiguous()


def face_crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.25, dx: int = 0, dy: int = 0, size: int | None = None) -> torch.Tensor:
    """(3, S, S) uint8 crop around ``box`` with ``margin`` of its size on each side, shifted by (dx, dy)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = (x0 + x1) // 2 + dx, (y0 + y1) // 2 + dy
    top, left = max(0, cy - side // 2), max(0, cx - side // 2)
    crop = torch.from_numpy(np.ascontiguousarray(image[top:top + side, left:left + side])).permute(2, 0, 1)
    if size is not None:
        crop = torch.nn.functional.interpolate(crop[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        crop = crop.round().clamp(0, 255).to(torch.uint8)
    return crop.contiguous()
