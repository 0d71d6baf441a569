"""The results store: ``OUT/results.jsonl``, one JSON row per finished grid cell.

Every write replaces the whole file through a temporary file and ``os.replace``, so a
killed run leaves either the old or the new file, never half a row. A restarted run reads
the rows back and skips cells whose ``cell_key`` is already present, so rows are never
duplicated.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from evalsuite.errors import UserError

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results and reports follow the umask
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, nothing between."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a results.jsonl file (empty when it does not exist)."""
    if not path.exists():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno} is not valid JSON ({exc.msg}); fix or remove that line, or choose another out=DIR") from None
    return rows


class ResultsStore:
    """Append-only view of one run folder's results.jsonl."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RESULTS_NAME
        self._rows = read_rows(self.path)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def done_keys(self) -> set[str]:
        return {row["cell_key"] for row in self._rows if "cell_key" in row}

    def append(self, row: dict[str, Any]) -> None:
        if row["cell_key"] in self.done_keys():
            log.info("cell %s already stored; not writing it twice", row["cell_key"])
            return
        self._rows.append(row)
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self._rows))

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.append(row)
