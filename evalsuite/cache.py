"""A content-addressed cache of anonymized sets and trained attackers.

Keys are hashes of the full configuration that produced an entry (dataset fingerprint,
component names and parameters, seed, ...), so a changed parameter never reuses a stale
entry. Entries are written through a temporary file and ``os.replace``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.store import atomic_path

log = logging.getLogger(__name__)


class Cache:
    """Files under ``root/<kind>/<key><suffix>``.

    ``numerics`` (thread count, deterministic mode) can change the last bits of anything
    computed, so when given it is folded into every key: an attacker trained on two threads
    is never reused by a one-thread or deterministic run.
    """

    def __init__(self, root: Path, numerics: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.numerics = numerics

    def path(self, kind: str, key: str, suffix: str) -> Path:
        if self.numerics:
            from evalsuite.config import stable_hash

            key = stable_hash({"key": key, "numerics": self.numerics})
        return self.root / kind / f"{key}{suffix}"

    def load_array(self, kind: str, key: str) -> np.ndarray | None:
        path = self.path(kind, key, ".npy")
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            log.warning("cached %s %s is unreadable (%s); rebuilding it", kind, path, exc)
            path.unlink(missing_ok=True)  # a damaged entry is recomputed
            return None

    def save_array(self, kind: str, key: str, array: np.ndarray) -> Path:
        path = self.path(kind, key, ".npy")
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        return path
