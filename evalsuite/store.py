"""The results store: ``OUT/results.jsonl``, one JSON row per finished grid cell.

Rows are appended, never rewritten: each row is one ``write`` of one line to the file opened
with ``O_APPEND``, under an exclusive ``fcntl.flock`` on the file itself, and fsynced. So
several runs (or workers) writing one ``out=`` keep every row, and a cell another writer
stored first is not stored twice (the writer re-reads what was appended since its last look
while it holds the lock). A process killed mid-write (kill -9) can leave only a torn last
line, without its newline: readers ignore it with a log line, and the next writer, holding
the lock (so the torn line's writer is gone), cuts it off before appending; its cell is
then recomputed. The lock dies with its process, so a kill never leaves the folder locked.

Other files of a run folder (``config.yaml``, ``table.md``) are replaced atomically through
a temporary file, also under the lock; a temporary file that a killed writer left behind is
removed the next time a store is opened on that folder.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator

from evalsuite.errors import UserError

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
CONFIG_NAME = "config.yaml"
CONFIGS_DIR = "configs"
#: per-cell arrays kept out of the rows (verification ROC curves), one ``<cell_key>.npz`` each
CURVES_DIR = "curves"
TABLE_NAME = "table.md"
#: the run description (:mod:`evalsuite.run_description`)
RUN_JSON = "run.json"
#: first line of a run's config.yaml: the hash of the config part that determines its numbers
CONFIG_HEADER = "# evalsuite config_hash: "

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
#: ``.<name>.<host>-<pid>.<random>.tmp``: the temporary files of :func:`atomic_path`
_TEMP_PATTERN = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without error.

    The temporary name carries this host and process id, so :func:`remove_stale_temps` can
    tell a file that a killed process left behind from one that is being written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: Path, owned: Collection[str] | None = ()) -> list[Path]:
    """Remove temporary files of :func:`atomic_path` in ``folder`` whose writer is gone.

    Temporaries of the files named in ``owned`` (``None``: of every file), which are only
    written under a lock the caller holds, are stale whoever made them; any other one is
    removed only when it was made by a process of this host that no longer runs.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")) or not entry.is_file():
            continue
        match = _TEMP_PATTERN.match(entry.name)
        mine = owned is None or any(entry.name.startswith(f".{name}.") for name in owned)
        if not mine and (match is None or match["host"] != _HOST or _process_alive(int(match["pid"]))):
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        log.info("removed %d temporary file(s) that a killed process left in %s: %s", len(removed), folder, ", ".join(p.name for p in removed[:5]))
    return removed


def _parse_lines(data: bytes, path: Path, first_lineno: int) -> tuple[list[dict[str, Any]], int]:
    """The rows of the complete (newline-terminated) lines of ``data`` and the bytes they span."""
    end = data.rfind(b"\n") + 1
    rows = []
    for offset, line in enumerate(data[:end].split(b"\n")[:-1]):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = getattr(exc, "msg", None) or str(exc)
            raise UserError(f"{path}:{first_lineno + offset} is not valid JSON ({msg}); fix or remove that line, or choose another out=DIR") from None
    return rows, end


def _complete_tail(tail: bytes) -> dict[str, Any] | None:
    """A last line without its newline that still parses as a row (else None: a torn write)."""
    try:
        row = json.loads(tail)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a results.jsonl file (empty when it does not exist).

    A torn last line (a writer killed mid-row, or one still writing) is ignored with a log
    line; a bad line anywhere else is a :class:`UserError` naming it.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows, end = _parse_lines(data, path, 1)
    tail = data[end:]
    if tail.strip():
        row = _complete_tail(tail)
        if row is not None:
            rows.append(row)
        else:
            log.warning("%s: ignoring a torn last line (%d bytes; a run killed while writing it, or one writing it now); its cell counts as not computed", path, len(tail))
    return rows


def read_run_json(folder: Path) -> dict[str, Any] | None:
    """``folder/run.json`` as a mapping; None when absent or unreadable (logged)."""
    path = Path(folder) / RUN_JSON
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s is unreadable (%s); ignoring it", path, exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        log.warning("%s is not an evalsuite run description (no 'runs' mapping); ignoring it", path)
        return None
    return data


def results_file(path: Path) -> Path:
    """``path`` itself (a .jsonl file) or ``path/results.jsonl`` (a run folder); UserError otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / RESULTS_NAME
        if not candidate.exists():
            raise UserError(f"{path} is a folder without {RESULTS_NAME}; pass a run folder (evalsuite run ... out=DIR) or a results.jsonl file")
        return candidate
    if not path.exists():
        raise UserError(f"results {path} does not exist; pass a run folder or a results.jsonl file")
    return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class ResultsStore:
    """Append-only, multi-writer view of one run folder's results.jsonl.

    Opening a store creates the folder and an empty results.jsonl if needed and removes
    temporary files that killed writers left in the folder.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RESULTS_NAME
        self._rows: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._offset = 0  # bytes of the file already read (complete lines only)
        self._lines = 0  # lines of the file already read
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self.locked():  # every writer of these files holds the lock: their temporaries are stale
            remove_stale_temps(self.out_dir, owned=(RESULTS_NAME, CONFIG_NAME, TABLE_NAME, RUN_JSON))
            remove_stale_temps(self.out_dir / CONFIGS_DIR, owned=None)
            remove_stale_temps(self.out_dir / CURVES_DIR, owned=None)
        self.refresh()

    # ------------------------------------------------------------------ locking
    @contextmanager
    def locked(self) -> Iterator[int]:
        """Hold the folder's exclusive lock (flock on results.jsonl); yields the file descriptor."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:  # pragma: no cover - file systems without flock
                raise UserError(f"cannot lock {self.path} ({exc.strerror}); put out= on a local file system") from None
            yield fd
        finally:
            os.close(fd)  # releases the lock

    # ------------------------------------------------------------------ reading
    def _read_new(self, fd: int | None = None) -> bytes:
        """The bytes appended since the last read (from ``fd`` when given)."""
        if fd is None:
            try:
                with open(self.path, "rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    if size < self._offset:
                        self._reset()
                    handle.seek(self._offset)
                    return handle.read()
            except FileNotFoundError:
                self._reset()
                return b""
        size = os.fstat(fd).st_size
        if size < self._offset:
            self._reset()
        return os.pread(fd, size - self._offset, self._offset)

    def _reset(self) -> None:
        if self._offset:
            log.warning("%s shrank or disappeared while open; reading it again from the start", self.path)
        self._rows, self._keys, self._offset, self._lines = [], set(), 0, 0

    def _consume(self, data: bytes) -> bytes:
        """Add the complete rows of ``data``; returns the incomplete tail."""
        rows, end = _parse_lines(data, self.path, 1 + self._lines)
        for row in rows:
            self._add(row)
        self._offset += end
        self._lines += data.count(b"\n", 0, end)
        return data[end:]

    def _add(self, row: dict[str, Any]) -> None:
        key = row.get("cell_key") if isinstance(row, dict) else None
        if key is not None:
            if key in self._keys:
                return
            self._keys.add(key)
        self._rows.append(row)

    def refresh(self) -> None:
        """Read the rows other writers appended (without the lock; a torn tail is left for later)."""
        tail = self._consume(self._read_new())
        if tail.strip() and _complete_tail(tail) is None:
            log.debug("%s: a torn or half-written last line (%d bytes) is not read yet", self.path, len(tail))

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def done_keys(self) -> set[str]:
        return set(self._keys)

    def has(self, cell_key: str) -> bool:
        """Whether ``cell_key`` is stored, by this or any other writer (re-reads new rows)."""
        self.refresh()
        return cell_key in self._keys

    # ------------------------------------------------------------------ writing
    def _repair_tail(self, fd: int, tail: bytes) -> None:
        """Under the lock: end a complete last row with its newline, or cut a torn one off."""
        if not tail:
            return
        if _complete_tail(tail) is not None:
            _write_all(fd, b"\n")
            self._consume(tail + b"\n")
            return
        os.ftruncate(fd, self._offset)
        os.fsync(fd)
        log.warning("%s: removed a torn last line (%d bytes) left by a run killed while writing it; that cell will be computed again", self.path, len(tail))

    def append(self, row: dict[str, Any]) -> bool:
        """Append ``row`` unless its cell is stored already; True when it was written."""
        line = (json.dumps(row, sort_keys=True) + "\n").encode("utf-8")
        with self.locked() as fd:
            self._repair_tail(fd, self._consume(self._read_new(fd)))
            if row["cell_key"] in self._keys:
                log.info("cell %s already stored; not writing it twice", row["cell_key"])
                return False
            _write_all(fd, line)
            os.fsync(fd)
            self._offset += len(line)
            self._lines += 1
            self._add(row)
        return True

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.append(row)

    def write_curves(self, cell_key: str, arrays: dict[str, Any]) -> str:
        """Write a cell's arrays to ``OUT/curves/<cell_key>.npz`` atomically, under the lock; its path relative to OUT."""
        import numpy as np

        relative = f"{CURVES_DIR}/{cell_key}.npz"
        with self.locked(), atomic_path(self.out_dir / relative) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)
        return relative

    def write_text(self, name: str, text: str) -> Path:
        """Replace ``OUT/name`` atomically, under the folder's lock."""
        path = self.out_dir / name
        with self.locked():
            atomic_write_text(path, text)
        return path

    def save_config(self, text: str, config_hash: str) -> Path:
        """Record a run's config; never replaces another run's ``config.yaml``.

        ``config.yaml`` is written by the first run into the folder. A later run whose
        numbers-determining config (``config_hash``) differs keeps its config as
        ``configs/<config_hash>.yaml`` beside it (rows name their config by that hash).
        Returns the file that holds this run's config.
        """
        document = f"{CONFIG_HEADER}{config_hash}\n{text}"
        main = self.out_dir / CONFIG_NAME
        with self.locked():
            if not main.exists():
                atomic_write_text(main, document)
                return main
            existing = main.read_text(encoding="utf-8")
            first = existing.split("\n", 1)[0]
            if first == f"{CONFIG_HEADER}{config_hash}":
                return main  # same numbers; other anonymizers / seeds / out may differ
            other = self.out_dir / CONFIGS_DIR / f"{config_hash}.yaml"
            if not other.exists():
                atomic_write_text(other, document)
            found = first[len(CONFIG_HEADER):] if first.startswith(CONFIG_HEADER) else "unknown"
            log.warning("%s holds a run of another config (config_hash %s); it is kept, and this run's config (config_hash %s) is saved as %s",
                        self.out_dir, found, config_hash, other)
            return other


def check_writable_folder(folder: Path, key: str) -> None:
    """UserError (one line) unless ``folder`` exists as a writable folder or can be created.

    ``key`` is the config key that names the folder (``out``, ``cache_dir``), for the message.
    Writes nothing.
    """
    folder = Path(folder)
    hint = f"choose another {key}=DIR"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{key}={folder} is an existing file, not a folder; {hint}")
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={folder} cannot be created: {existing} is a file, not a folder; {hint}")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created: {existing} is not writable"
        raise UserError(f"{key}={folder} {what} by this user; {hint} or fix its permissions")


def check_writable_out(out_dir: Path) -> None:
    """UserError (one line) unless ``out_dir`` can be created or written; writes nothing.

    Also reads an existing results.jsonl, so that a corrupt one stops the run before any
    data is loaded.
    """
    out_dir = Path(out_dir)
    check_writable_folder(out_dir, "out")
    for name in (RESULTS_NAME, CONFIG_NAME, TABLE_NAME):
        path = out_dir / name
        if path.exists() and (not path.is_file() or not os.access(path, os.R_OK | os.W_OK)):
            raise UserError(f"out={out_dir}: {path} is not a readable and writable file; choose another out=DIR or fix its permissions")
    read_rows(out_dir / RESULTS_NAME)
