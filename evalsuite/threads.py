"""The threading policy: a fixed number of CPU threads per process (``num_threads``, default 1).

The thread count changes numbers (torch splits float reductions by thread, so sums come out
in another order), and several CPU-bound processes each using every core slow each other
down by orders of magnitude. So a run sets one count for torch's intra-op pool, for the
BLAS / OpenMP pools of numpy, scipy and scikit-learn (through threadpoolctl) and for
OpenCV, and the count is part of the config hash and of every cache key. More throughput
comes from more processes (several runs or workers on one ``out=``), not more threads.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import cv2
import torch
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)


@contextmanager
def limit_threads(num_threads: int) -> Iterator[None]:
    """Run the block with ``num_threads`` torch, BLAS/OpenMP and OpenCV threads; restore after."""
    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(num_threads)
    cv2.setNumThreads(num_threads)
    try:
        with threadpool_limits(limits=num_threads):
            log.debug("threads: torch %d, BLAS/OpenMP %d, OpenCV %d", num_threads, num_threads, num_threads)
            yield
    finally:
        torch.set_num_threads(torch_before)
        cv2.setNumThreads(cv2_before)
