"""Image sets on disk, read a few rows at a time, so that memory follows the batch size.

:class:`DiskArray` is a read-only ``.npy`` file (the format ``np.save`` writes; C order) read
through ``os.pread``: a row range or a list of rows becomes a fresh CPU tensor, and nothing
is mapped, so a pass over a set never holds more than one chunk (``np.load(mmap_mode="r")``
would keep every page it touched resident in the process). It answers the parts of the
tensor interface the pipeline uses on whole sets (``shape``, ``len``, ``x[a:b]``,
``x[index]``, ``x[i]``), so batch loops work on a tensor or a file alike.
:class:`NpyWriter` writes such a file chunk by chunk, byte for byte what ``np.save`` writes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

#: bytes of images per chunk when a whole set is streamed (decoding, anonymizing, writing)
CHUNK_BYTES = 16 << 20


def chunk_rows(row_bytes: int, multiple: int = 1) -> int:
    """Rows per chunk: about :data:`CHUNK_BYTES` of rows of ``row_bytes``, a whole multiple of
    ``multiple`` (the batch size: a batch loop inside a chunk then sees the batches it saw
    over the whole set), at least one multiple."""
    multiple = max(1, int(multiple))
    return max(1, CHUNK_BYTES // max(1, int(row_bytes)) // multiple) * multiple


class DiskArray:
    """A C-order ``.npy`` file of shape (N, ...) read in rows (tensors out), never loaded whole."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran_order or not shape or dtype.hasobject:
            raise ValueError(f"{self.path}: not a C-order array of rows")
        self.dtype = dtype
        self.shape = torch.Size(shape)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        expected = self.offset + self.row_bytes * shape[0]
        if self.path.stat().st_size != expected:
            raise ValueError(f"{self.path}: {self.path.stat().st_size} bytes, expected {expected} for {tuple(shape)} {dtype}")

    def __len__(self) -> int:
        return int(self.shape[0])

    def __repr__(self) -> str:
        return f"DiskArray({str(self.path)!r}, shape={tuple(self.shape)}, dtype={self.dtype})"

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` (clipped to the array) as a new tensor."""
        start, stop = max(0, start), min(len(self), stop)
        count = max(0, stop - start)
        out = np.empty((count, *self.shape[1:]), dtype=self.dtype)
        if count:
            with open(self.path, "rb", buffering=0) as handle:
                self._pread(handle.fileno(), memoryview(out.reshape(-1).view(np.uint8)), self.offset + start * self.row_bytes)
        return torch.from_numpy(out)

    def take(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows ``index`` (in that order; negative counts from the end) as a new tensor."""
        rows = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {self!r}")
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        flat = memoryview(out.reshape(-1).view(np.uint8))
        size = self.row_bytes
        with open(self.path, "rb", buffering=0) as handle:
            i = 0
            while i < rows.size:  # one read per run of consecutive rows
                j = i + 1
                while j < rows.size and rows[j] == rows[j - 1] + 1:
                    j += 1
                self._pread(handle.fileno(), flat[i * size : j * size], self.offset + int(rows[i]) * size)
                i = j
        return torch.from_numpy(out)

    def __getitem__(self, item: Any) -> torch.Tensor:
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            return self.read(start, stop) if step == 1 else self.take(np.arange(start, stop, step))
        if isinstance(item, (int, np.integer)) or (isinstance(item, torch.Tensor) and item.ndim == 0 and not item.is_floating_point()):
            row = int(item) + (len(self) if int(item) < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {int(item)} out of range for {self!r}")
            return self.read(row, row + 1)[0]
        if isinstance(item, (list, np.ndarray, torch.Tensor)):
            return self.take(item)
        raise TypeError(f"{self!r} is indexed by a row, a slice or a list of rows, not {type(item).__name__}")

    @staticmethod
    def _pread(fd: int, buffer: memoryview, offset: int) -> None:
        done = 0
        while done < len(buffer):
            got = os.preadv(fd, [buffer[done:]], offset + done)
            if got <= 0:
                raise EOFError(f"short read at byte {offset + done}")
            done += got


def as_tensor(images: torch.Tensor | DiskArray) -> torch.Tensor:
    """The whole set in memory: for the steps that need all of it at once (whole-set fitting)."""
    return images.read(0, len(images)) if isinstance(images, DiskArray) else images


class NpyWriter:
    """Writes an ``.npy`` of ``shape``/``dtype`` into an open binary file, chunk by chunk; the
    bytes equal ``np.save`` of the whole array."""

    def __init__(self, handle: Any, shape: Sequence[int], dtype: np.dtype | type) -> None:
        self.handle = handle
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        try:
            np.lib.format.write_array_header_1_0(handle, header)
        except ValueError:  # a header too long for format 1.0: np.save falls back the same way
            np.lib.format.write_array_header_2_0(handle, header)

    def write(self, chunk: np.ndarray | torch.Tensor) -> None:
        array = chunk.numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        if array.dtype != self.dtype or tuple(array.shape[1:]) != self.shape[1:] or self.rows + array.shape[0] > self.shape[0]:
            raise ValueError(f"rows {array.shape} {array.dtype} do not fit at row {self.rows} of an array of {self.shape} {self.dtype}")
        self.handle.write(memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8)))
        self.rows += array.shape[0]

    def finish(self) -> None:
        """ValueError unless every row was written."""
        if self.rows != self.shape[0]:
            raise ValueError(f"wrote {self.rows} rows of an array of {self.shape[0]}")


def images_row_bytes(images: torch.Tensor | DiskArray) -> int:
    """Bytes of one row (image) of a tensor or a :class:`DiskArray`."""
    if isinstance(images, DiskArray):
        return images.row_bytes
    return int(np.prod(images.shape[1:], dtype=np.int64)) * images.element_size()


def derived(source: DiskArray, tag: str, transform: Callable[[torch.Tensor], torch.Tensor], chunk: int = 512) -> DiskArray:
    """``transform`` of every chunk of ``source``'s rows, as a file beside it (``<stem>.<tag>.npy``),
    written once (atomically) and read like ``source``: e.g. a training set at the attacker's
    input size, read batch by batch every epoch without resizing it again."""
    from evalsuite.store import atomic_path

    path = source.path.with_name(f"{source.path.stem}.{tag}.npy")
    if path.exists():
        try:
            return DiskArray(path)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # torn or foreign: written again below
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer: NpyWriter | None = None
        for start in range(0, len(source), chunk):
            rows = transform(source.read(start, start + chunk))
            writer = writer or NpyWriter(handle, (len(source), *rows.shape[1:]), rows.numpy().dtype)
            writer.write(rows)
        if writer is None:
            raise ValueError(f"{source!r} has no rows to transform")
        writer.finish()
    return DiskArray(path)
