"""Image folders keyed by sample ids: what the ``external`` and ``precomputed`` adapters share.

A sample id is the dataset's stable relative path (``query/0001_c1s1_000151_01.jpg``,
``train/123_456.jpg#2`` for a PIPA person instance, ``alice/003.png`` in a face folder). In
a folder, sample ``id`` is the file ``<id without its image suffix>.<ext>``; ``precomputed``
also accepts the id itself (a folder that mirrors the dataset's own file names).
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from evalsuite.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def check_sample_id(sample_id: str) -> PurePosixPath:
    """The id as a relative path inside a folder; UserError for an absolute one or one leaving the folder."""
    path = PurePosixPath(sample_id)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise UserError(f"sample id {sample_id!r} is not a relative path inside the dataset; it cannot name a file in an image folder")
    return path


def file_stem(sample_id: str) -> PurePosixPath:
    """``query/a.jpg`` -> ``query/a``; ids without an image suffix stay as they are."""
    path = check_sample_id(sample_id)
    return path.with_suffix("") if path.suffix.lower() in IMAGE_SUFFIXES else path


def png_name(sample_id: str) -> str:
    """Where a sample's image goes in a folder this suite writes."""
    stem = file_stem(sample_id)
    return str(stem.parent / f"{stem.name}.png")


def write_images(folder: Path, images: torch.Tensor, sample_ids: Sequence[str]) -> None:
    """uint8 (N, 3, H, W) images as lossless PNGs ``folder/<png_name(id)>``."""
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    for array, sample_id in zip(arrays, sample_ids):
        path = folder / png_name(sample_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)


def write_masks(folder: Path, masks: torch.Tensor, sample_ids: Sequence[str]) -> None:
    """bool (N, 1, H, W) masks as 8-bit PNGs, 255 = anonymize."""
    arrays = (masks[:, 0].cpu().numpy().astype(np.uint8) * 255)
    for array, sample_id in zip(arrays, sample_ids):
        path = folder / png_name(sample_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array, mode="L").save(path)


def write_annotations(path: Path, annotations: Sequence[dict] | None, sample_ids: Sequence[str]) -> None:
    """``{sample id: {"file": png name, ...annotations}}`` as JSON (non-JSON values as strings)."""
    table: dict[str, Any] = {}
    for i, sample_id in enumerate(sample_ids):
        entry = dict(annotations[i]) if annotations is not None and annotations[i] else {}
        table[sample_id] = {"file": png_name(sample_id), **entry}
    path.write_text(json.dumps(table, indent=1, default=str), encoding="utf-8")


def find_image(folder: Path, sample_id: str) -> Path | None:
    """The file of ``sample_id`` in ``folder`` (the id itself, else its stem with any image suffix)."""
    exact = folder / str(check_sample_id(sample_id))
    if exact.is_file():
        return exact
    stem = file_stem(sample_id)
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / str(stem.parent / f"{stem.name}{suffix}"), folder / str(stem.parent / f"{stem.name}{suffix.upper()}")):
            if candidate.is_file():
                return candidate
    return None


def image_files(folder: Path) -> set[Path]:
    """Every image file below ``folder``."""
    return {p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def read_image_file(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB; UserError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; replace the file") from None


def read_images(folder: Path, sample_ids: Sequence[str], shape: tuple[int, int], what: str, fix: str,
                allow_extra: bool = False, known_ids: Sequence[str] | None = None) -> torch.Tensor:
    """The images of ``sample_ids`` from ``folder`` as uint8 (N, 3, H, W).

    One UserError (``what`` says whose folder, ``fix`` how to repair it) for missing images,
    images of another size than ``shape`` (H, W), or, unless ``allow_extra``, image files
    that belong to no id of ``known_ids`` (default ``sample_ids``)."""
    found = {sample_id: find_image(folder, sample_id) for sample_id in sample_ids}
    missing = [s for s, p in found.items() if p is None]
    if missing:
        raise UserError(f"{what}: {len(missing)} of {len(sample_ids)} images missing in {folder} (e.g. {png_name(missing[0])} for sample {missing[0]!r}); {fix}")
    if not allow_extra:
        known = set(found.values()) if known_ids is None else {find_image(folder, s) for s in known_ids}
        extra = sorted(image_files(folder) - known)
        if extra:
            raise UserError(f"{what}: {len(extra)} image(s) in {folder} belong to no sample (e.g. {extra[0].relative_to(folder)}); {fix}")
    arrays = []
    for sample_id in sample_ids:
        array = read_image_file(found[sample_id])  # type: ignore[arg-type]
        if array.shape[:2] != tuple(shape):
            raise UserError(f"{what}: {found[sample_id]} is {array.shape[1]}x{array.shape[0]} but sample {sample_id!r} is {shape[1]}x{shape[0]}; {fix}")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_masks(folder: Path, sample_ids: Sequence[str], shape: tuple[int, int], what: str) -> torch.Tensor | None:
    """Detections an own-region program wrote (nonzero = anonymized); None when it wrote none."""
    if not folder.is_dir() or not image_files(folder):
        return None
    images = read_images(folder, sample_ids, shape, what, "write one mask per input image or none at all")
    return images.amax(dim=1, keepdim=True) > 0
