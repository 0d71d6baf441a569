"""CPU fast path of the pixel filters (blur, pixelate, mask): each image's region box only, with OpenCV / numpy.

The batched torch versions of the filters compute over every pixel of every image and then
keep the pixels inside the mask; on CPU most of that work is thrown away (a body mask
covers about a third of a Market crop, a face a few percent of a photo) and the banded-matrix
blur is O(H + W) per pixel, which on a 3872 x 3264 photo is 47x slower than
``cv2.GaussianBlur``. On CPU the filters therefore loop over the images instead: each one
works on the bounding box of its mask (plus what its filter reads around it), writes only
inside the mask, and leaves the rest of the output a copy of the input. On CUDA the
batched torch versions stay.

Threads follow the process's setting, ``torch.get_num_threads()`` (``OMP_NUM_THREADS``, the
suite's deterministic mode): a batch of boxes is split over that many threads
(:func:`for_each_box`; numpy and OpenCV release the GIL), and OpenCV itself gets that many
threads for one large box (:func:`opencv_threads`). Every box is computed on its own and
written to its own pixels, so the result never depends on the thread count.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch

__all__ = ["for_each_box", "mask_boxes", "opencv_threads", "output_copy", "paste", "region_boxes", "round_to_uint8"]

Box = tuple[int, int, int, int, int]
#: a thread takes at least this many boxes (fewer: the loop stays on the calling thread)
MIN_BOXES_PER_THREAD = 8


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
    """``(b, y0, y1, x0, x1)`` (exclusive ends) of every non-empty mask of (B, 1, H, W) numpy masks (bool or 0/1).

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


def output_copy(images: torch.Tensor, masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """``(src, masks as uint8, out, result)``: numpy views of the inputs, and a copy of the images to write into.

    The copy is made by numpy and shared with the returned tensor: on large images numpy's
    copy is 2-3x faster than ``torch.clone`` (numpy asks for huge pages).
    """
    src = images.contiguous().numpy()
    out = src.copy()
    return src, masks.contiguous().numpy().view(np.uint8), out, torch.from_numpy(out)


#: boxes of at least this many pixels are pasted with OpenCV, smaller ones with numpy arithmetic
LARGE_BOX = 32768


def paste(target: np.ndarray, values: np.ndarray, inside: np.ndarray) -> None:
    """Copy ``values`` into ``target`` where the 0/1 uint8 ``inside`` is set; (C, h, w) with (1, h, w) ``inside``.

    Large boxes: ``cv2.copyTo`` per plane, writing into the given view (2-3x faster than
    ``np.copyto(..., where=)`` on a photo). Small boxes: ``target += (values - target) * inside``
    in uint8 (exact: modular arithmetic), fewer and cheaper calls than either.
    """
    if target.shape[-1] * target.shape[-2] >= LARGE_BOX:
        plane_mask = inside.reshape(inside.shape[-2:])
        for channel in range(target.shape[0]):
            cv2.copyTo(values[channel], plane_mask, target[channel])
        return
    difference = np.subtract(values, target)
    np.multiply(difference, inside, out=difference)
    np.add(target, difference, out=target)


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="evalsuite-regionwise")
        return _pools[threads]


def for_each_box(boxes: Sequence[Box], work: Callable[[Sequence[Box]], None], threads: int | None = None) -> None:
    """``work(part)`` over contiguous parts of ``boxes``, one per thread (``torch.get_num_threads()``).

    With one thread, or too few boxes to share, ``work(boxes)`` runs on the calling thread;
    otherwise OpenCV runs single-threaded inside the workers (no nested oversubscription).
    """
    threads = torch.get_num_threads() if threads is None else threads
    threads = min(threads, len(boxes) // MIN_BOXES_PER_THREAD)
    if threads <= 1 or threading.current_thread().name.startswith("evalsuite-regionwise"):
        with opencv_threads():
            work(boxes)
        return
    step = -(-len(boxes) // threads)
    parts = [boxes[start : start + step] for start in range(0, len(boxes), step)]
    with opencv_threads(1):
        for future in [_pool(threads).submit(work, part) for part in parts]:
            future.result()


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
