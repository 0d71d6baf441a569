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


def coffee() -> np.ndarray:
    """scikit-image's ``coffee()``: a cup of coffee, no face (400x600)."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.coffee())


def _variant(image: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size`` x ``size`` photo of ``image``: a square crop around ``box`` with a random margin and
    shift, a random horizontal flip and brightness / contrast change (an LFW-like 250x250 photo)."""
    import cv2

    x0, y0, x1, y1 = box
    side = int(max(x1 - x0, y1 - y0) * rng.uniform(1.9, 2.4))
    cx = (x0 + x1) // 2 + int(rng.integers(-side // 12, side // 12 + 1))
    cy = (y0 + y1) // 2 + int(rng.integers(-side // 12, side // 12 + 1))
    padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REFLECT)
    top, left = cy - side // 2 + side, cx - side // 2 + side
    crop = cv2.resize(padded[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = crop.astype(np.float32) * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20)
    return np.ascontiguousarray(out.clip(0, 255).astype(np.uint8))


def write_photo_folder(root, per_identity: int = 4, size: int = 250, seed: int = 0, faceless: bool = False):
    """An LFW-layout face folder of real photos (``root/<identity>/<identity>_NNNN.jpg``): augmented
    crops of the astronaut and of Grace Hopper, ``per_identity`` each; ``faceless`` adds a photo of a
    coffee cup to the astronaut's folder (a photo in which no face is found). Returns ``root``."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for name, image, box in (("Eileen_Collins", astronaut(), ASTRONAUT_FACE), ("Grace_Hopper", grace_hopper(), GRACE_FACE)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(1, per_identity + 1):
            Image.fromarray(_variant(image, box, rng, size)).save(folder / f"{name}_{index:04d}.jpg", quality=92)
    if faceless:
        cup = coffee()
        Image.fromarray(np.ascontiguousarray(cup[:, 100:500])).resize((size, size)).save(root / "Eileen_Collins" / f"Eileen_Collins_{per_identity + 1:04d}.jpg", quality=92)
    return root
