"""WIDER FACE reader: the ``wider_face_{train,val}_bbx_gt.txt`` lists, converted to COCO form.

Layout (as the official zips unpack)::

    <root>/wider_face_split/wider_face_val_bbx_gt.txt
    <root>/WIDER_val/images/0--Parade/0_Parade_marchingband_1_465.jpg ...
    <root>/WIDER_train/images/...

List format, per image: the file name (relative to ``images/``), the number of faces, then
one line per face ``x y w h blur expression illumination invalid occlusion pose``. An image
with no face still has one all-zero box line after its ``0`` count (the zero-face quirk).

Conversion: one ``face`` category; faces flagged ``invalid`` and boxes with zero width or
height become ``iscrowd=1`` regions (ignored by the COCO evaluation, still anonymized);
the attribute columns are kept under ``attributes``. COCO-style AP over all faces is not
the official easy / medium / hard protocol: for that, ``dataset.ground_truth`` names the
evaluation toolbox's ``eval_tools/ground_truth`` folder (the ``wider_*_val.mat`` files), which
the detection protocols read (:mod:`evalsuite.metrics.wider_face`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from evalsuite.data.detection import DetectionDataset, DetectionSplit, limit_images
from evalsuite.errors import UserError

log = logging.getLogger(__name__)

ATTRIBUTE_COLUMNS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
FACE_CATEGORY = {"id": 1, "name": "face", "supercategory": "person"}
DEFAULT_WIDER_ROOT = "data/WIDER_FACE"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def parse_bbx_gt(text: str, source: str) -> list[tuple[str, list[list[int]]]]:
    """``[(file_name, [[x, y, w, h, blur, expression, illumination, invalid, occlusion, pose], ...]), ...]``."""
    lines = [line.strip() for line in text.splitlines()]
    entries: list[tuple[str, list[list[int]]]] = []
    i = 0

    def bad(lineno: int, msg: str) -> UserError:
        return UserError(f"{source} line {lineno}: {msg} (expected: file name, face count, then one 'x y w h blur expression illumination invalid occlusion pose' line per face)")

    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name, name_line = lines[i], i + 1
        if not name.lower().endswith(_IMAGE_SUFFIXES):
            raise bad(name_line, f"{name[:80]!r} is not an image file name")
        if i + 1 >= len(lines):
            raise bad(name_line + 1, f"missing the face count of {name}")
        try:
            count = int(lines[i + 1])
        except ValueError:
            raise bad(i + 2, f"{lines[i + 1][:80]!r} is not the face count of {name}") from None
        if count < 0:
            raise bad(i + 2, f"negative face count {count} for {name}")
        rows_to_read = max(count, 1)  # zero faces: one all-zero placeholder line follows
        boxes = []
        for j in range(rows_to_read):
            lineno = i + 3 + j
            if i + 2 + j >= len(lines):
                raise bad(lineno, f"{name} announces {count} faces but the file ends")
            fields = lines[i + 2 + j].split()
            try:
                values = [int(float(v)) for v in fields]
            except ValueError:
                raise bad(lineno, f"box line {lines[i + 2 + j][:80]!r} of {name} is not numbers") from None
            if len(values) != 10:
                raise bad(lineno, f"box line of {name} has {len(values)} numbers, not 10")
            if count > 0:
                boxes.append(values)
        entries.append((name, boxes))
        i += 2 + rows_to_read
    return entries


def read_wider_split(list_file: Path, image_dir: Path, split: str, max_images: int | None = None) -> DetectionSplit:
    """One WIDER FACE split as a COCO-format :class:`DetectionSplit`."""
    if not list_file.is_file():
        raise UserError(f"WIDER FACE list {list_file} not found; dataset.root must hold wider_face_split/ and WIDER_{split}/images/")
    if not image_dir.is_dir():
        raise UserError(f"WIDER FACE image folder {image_dir} not found; dataset.root must hold WIDER_{split}/images/")
    entries = parse_bbx_gt(list_file.read_text(errors="replace"), str(list_file))
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise UserError(f"dataset.max_images must be a positive integer or null, got {max_images!r}")
        entries = sorted(entries)[:max_images]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (name, boxes) in enumerate(entries, start=1):
        path = image_dir / name
        try:
            with Image.open(path) as im:
                width, height = im.size
        except FileNotFoundError:
            raise UserError(f"WIDER FACE image {path} (listed in {list_file}) does not exist") from None
        except OSError as exc:
            raise UserError(f"WIDER FACE image {path} cannot be read: {exc}") from None
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for values in boxes:
            x, y, w, h = values[:4]
            attributes = dict(zip(ATTRIBUTE_COLUMNS, values[4:]))
            ignored = attributes["invalid"] == 1 or w <= 0 or h <= 0
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": FACE_CATEGORY["id"],
                "bbox": [float(x), float(y), float(max(w, 0)), float(max(h, 0))], "area": float(max(w, 0) * max(h, 0)),
                "iscrowd": int(ignored), "attributes": attributes,
            })
    coco = {"images": images, "annotations": annotations, "categories": [dict(FACE_CATEGORY)]}
    result = limit_images(DetectionSplit(split, image_dir, coco, source=str(list_file)), None)
    log.info("%s", result.summary())
    return result


def load_wider_face(root: str | Path = DEFAULT_WIDER_ROOT, max_images: int | None = None, name: str = "wider-face",
                    ground_truth: str | Path | None = None) -> DetectionDataset:
    """WIDER FACE at ``root``; splits are read when first used. ``ground_truth``: the folder of the
    official ``wider_*_val.mat`` files (easy / medium / hard AP), kept in the dataset's config."""
    base = Path(root).expanduser().absolute()
    if not base.is_dir():
        raise UserError(f"WIDER FACE not found: {base} does not exist (set dataset.root to the folder holding wider_face_split/ and WIDER_val/)")
    if not (base / "wider_face_split").is_dir():
        raise UserError(f"{base} has no wider_face_split/ folder (from wider_face_split.zip); set dataset.root to the folder holding wider_face_split/ and WIDER_val/")

    def loader(split: str):
        return lambda: read_wider_split(base / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt", base / f"WIDER_{split}" / "images", split, max_images)

    return DetectionDataset(name=name, root=str(base), loaders={"train": loader("train"), "val": loader("val")},
                            config={"max_images": max_images, "ground_truth": str(Path(ground_truth).expanduser().absolute()) if ground_truth else None})
