"""A content-addressed cache of anonymized sets and trained attackers.

Keys are hashes of the full configuration that produced an entry (dataset fingerprint,
component names and parameters, seed, ...), so a changed parameter never reuses a stale
entry. Settings that change every entry's bytes without being part of any component's
config (the thread count: it changes the order of float sums) are the cache's *context*,
folded into every key here, so that no protocol has to remember them. Entries are written
through a temporary file and ``os.replace``; temporary files of killed writers are removed
when the next entry of that kind is saved.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.store import atomic_path, remove_stale_temps

log = logging.getLogger(__name__)


class Cache:
    """Files under ``root/<kind>/<key><suffix>`` (``key`` folded with ``context`` when one is given)."""

    def __init__(self, root: Path, context: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.context = dict(context or {})
        self._cleaned: set[str] = set()

    @classmethod
    def for_config(cls, cfg: Any) -> "Cache":
        """The cache a run of ``cfg`` uses: ``cache_dir`` with the thread count and deterministic mode as context."""
        from evalsuite.config import cache_dir

        deterministic = bool(cfg.get("deterministic", False))
        return cls(cache_dir(cfg), context={"num_threads": 1 if deterministic else int(cfg.num_threads), "deterministic": deterministic})

    def file_key(self, key: str) -> str:
        """The file name stem of ``key``: ``key`` itself, or a hash of it and the context."""
        if not self.context:
            return key
        from evalsuite.config import stable_hash

        return stable_hash({"key": key, "context": self.context})

    def path(self, kind: str, key: str, suffix: str) -> Path:
        if kind not in self._cleaned:  # once per kind and process
            self._cleaned.add(kind)
            remove_stale_temps(self.root / kind)
        return self.root / kind / f"{self.file_key(key)}{suffix}"

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
