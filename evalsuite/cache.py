"""A content-addressed cache of anonymized sets and trained attackers.

Keys are hashes of the full configuration that produced an entry (dataset fingerprint,
component names and parameters, seed, ...), so a changed parameter never reuses a stale
entry. Entries are written through a temporary file and ``os.replace``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


class Cache:
    """Files under ``root/<kind>/<key><suffix>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def load_array(self, kind: str, key: str) -> np.ndarray | None:
        path = self.path(kind, key, ".npy")
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            path.unlink(missing_ok=True)  # a damaged entry is recomputed
            return None

    def save_array(self, kind: str, key: str, array: np.ndarray) -> Path:
        path = self.path(kind, key, ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
