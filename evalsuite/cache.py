"""A content-addressed cache of anonymized sets and trained attackers.

Keys are hashes of the full configuration that produced an entry (dataset fingerprint,
component names and parameters, seed, ...), so a changed parameter never reuses a stale
entry. Settings that change every entry's bytes without being part of any component's
config (the thread count: it changes the order of float sums) are the cache's *context*,
folded into every key here, so that no protocol has to remember them. Entries are written
through a temporary file and ``os.replace``; temporary files of killed writers are removed
when the next entry of that kind is saved. Builders hold :meth:`Cache.lock` on an entry
around get-or-build, so that several processes (runs, Ray workers) sharing the folder build
each entry once: the others wait, then read it.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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

    @contextmanager
    def lock(self, kind: str, key: str, suffix: str) -> Iterator[Path]:
        """Hold an exclusive lock on one entry while the block runs; yields the entry's path.

        An ``fcntl.flock`` on ``root/.locks/<kind>/<entry>.lock``: it blocks other processes
        and threads (each takes its own open file) until the holder leaves the block or dies.
        Lock files are kept (deleting one would let a waiter lock an unlinked file), apart
        from the entries so that a kind's folder holds entries only."""
        path = self.path(kind, key, suffix)
        lock = self.root / ".locks" / kind / f"{path.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process building %s %s", kind, path.name)
                started = time.perf_counter()
                fcntl.flock(fd, fcntl.LOCK_EX)
                log.info("%s %s: waited %.1f s for its builder", kind, path.name, time.perf_counter() - started)
            yield path
        finally:
            os.close(fd)  # releases the lock

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
