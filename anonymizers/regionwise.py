"""CPU fast path of the pixel filters (blur, pixelate, mask): each image's region box only, with OpenCV / numpy.

The batched torch versions of the filters compute over every pixel of every image and then
keep the pixels inside the mask; on CPU most of that work is thrown away (a body mask
covers about a third of a Market crop, a face a few percent of a photo) and the banded-matrix
blur is O(H + W) per pixel, which on a 3872 x 3264 photo is 47x slower than
``cv2.GaussianBlur``. On CPU the filters therefore loop over the images instead: each one
works on the bounding box of its mask (plus what its filter reads around it), writes only
inside the mask, and leaves the rest of the output a copy of the input. On CUDA the
batched torch versions stay.

OpenCV runs with as many threads as torch has (``torch.get_num_threads()``, which follows
``OMP_NUM_THREADS`` and the suite's deterministic mode): see :func:`opencv_threads`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import cv2
import numpy as np
import torch

__all__ = ["mask_boxes", "opencv_threads", "region_boxes", "round_to_uint8"]


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bounding boxes (B, 4) as ``[y0, y1, x0, x1]`` (exclusive ends) of bool (B, 1, H, W) masks.

    An empty mask gets the whole image (its output is discarded anyway).
    """

    def span(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = occupied.shape[1]
        index = torch.arange(n, device=occupied.device)
        first = torch.where(occupied, index, n).amin(dim=1)
        end = torch.where(occupied, index + 1, 0).amax(dim=1)
        empty = first == n
        return torch.where(empty, 0, first), torch.where(empty, n, end)

    as_bytes = masks[:, 0].view(torch.uint8)  # amax over uint8 is faster than any() over bool
    y0, y1 = span(as_bytes.amax(dim=2) > 0)
    x0, x1 = span(as_bytes.amax(dim=1) > 0)
    return torch.stack([y0, y1, x0, x1], dim=1)


def region_boxes(masks: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """``(b, y0, y1, x0, x1)`` (exclusive ends) of every non-empty mask of bool (B, 1, H, W) numpy masks.

    The same boxes as :func:`mask_boxes`, computed with numpy for the CPU loop; images with
    an empty mask are left out.
    """
    height, width = masks.shape[2:]
    planes = masks[:, 0]
    rows, cols = planes.any(axis=2), planes.any(axis=1)
    occupied = rows.any(axis=1)
    y0, y1 = rows.argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    return [(int(b), int(y0[b]), int(y1[b]), int(x0[b]), int(x1[b])) for b in np.flatnonzero(occupied)]


@contextlib.contextmanager
def opencv_threads(threads: int | None = None) -> Iterator[None]:
    """Run OpenCV with ``threads`` threads (default: ``torch.get_num_threads()``), restored afterwards."""
    wanted = torch.get_num_threads() if threads is None else threads
    previous = cv2.getNumThreads()
    if wanted != previous:
        cv2.setNumThreads(wanted)
    try:
        yield
    finally:
        if wanted != previous:
            cv2.setNumThreads(previous)


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float values rounded half to even and saturated to uint8, like ``round_().clamp_(0, 255).to(uint8)``.

    ``cv2.convertScaleAbs`` does it in one pass (``saturate_cast`` rounds half to even; the
    absolute value only maps -0.0 and values above -0.5 to 0, which rounding does too), so the
    values must be >= -0.5: true of every filter here, whose outputs are convex combinations
    of pixels.
    """
    flat = values.reshape(-1, values.shape[-1])  # OpenCV reads 3-D arrays as channels: keep it 2-D
    return cv2.convertScaleAbs(flat).reshape(values.shape)
