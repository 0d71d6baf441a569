"""evalsuite: privacy evaluation and attack benchmarking for image anonymizers.

``evalsuite.load_results(paths)`` reads run folders into a tidy pandas DataFrame (see
``evalsuite.analysis``); it is imported on first use, so ``import evalsuite`` stays light.
"""
from __future__ import annotations

from typing import Any

__all__ = ["load_results"]


def __getattr__(name: str) -> Any:
    if name == "load_results":
        from evalsuite.analysis import load_results

        return load_results
    raise AttributeError(f"module 'evalsuite' has no attribute {name!r}")
