"""COCO reader: ``instances_*.json`` / ``person_keypoints_*.json`` and an images folder.

Layout (as the COCO 2017 download unpacks)::

    <root>/annotations/instances_train2017.json       (or person_keypoints_train2017.json)
    <root>/annotations/instances_val2017.json
    <root>/train2017/000000000009.jpg ...
    <root>/val2017/000000000139.jpg ...

``dataset.kind`` picks the annotation family, ``dataset.train`` / ``dataset.val`` the split
folder names, ``dataset.categories`` the categories kept (default ``[person]``; ``null``
keeps all). The json is checked for the fields the evaluation needs; anything missing is a
UserError naming the file and the first offending entry.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from evalsuite.data.detection import DetectionDataset, DetectionSplit, keep_categories, limit_images
from evalsuite.errors import UserError

log = logging.getLogger(__name__)

KINDS = ("instances", "person_keypoints")
DEFAULT_COCO_ROOT = "data/coco"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_coco(coco: Any, source: str) -> dict[str, Any]:
    """Check the fields COCO evaluation needs; fill ``area`` / ``iscrowd`` defaults in place."""
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")):
        raise UserError(f"{source} is not a COCO annotation file: it needs lists 'images', 'annotations' and 'categories'")
    for cat in coco["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise UserError(f"{source}: category {cat!r} needs an integer 'id' and a string 'name'")
    image_ids = set()
    for img in coco["images"]:
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            raise UserError(f"{source}: image entry {str(img)[:120]} needs an integer 'id' and a string 'file_name'")
        if not (isinstance(img.get("width"), int) and isinstance(img.get("height"), int) and img["width"] > 0 and img["height"] > 0):
            raise UserError(f"{source}: image {img['file_name']} needs positive integer 'width' and 'height'")
        image_ids.add(img["id"])
    category_ids = {c["id"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        where = f"{source}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r}"
        if not isinstance(ann, dict) or ann.get("image_id") not in image_ids:
            raise UserError(f"{where} refers to image {ann.get('image_id') if isinstance(ann, dict) else None!r}, which is not in 'images'")
        if ann.get("category_id") not in category_ids:
            raise UserError(f"{where} has category_id {ann.get('category_id')!r}, which is not in 'categories'")
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box) and box[2] >= 0 and box[3] >= 0):
            raise UserError(f"{where} has bbox {box!r}; COCO boxes are [x, y, width, height] with width, height >= 0")
        ann.setdefault("iscrowd", 0)
        if not _is_number(ann.get("area")):
            ann["area"] = float(box[2] * box[3])
    return coco


def read_coco_split(annotation_file: Path, image_dir: Path, split: str, categories: list[str] | None,
                    max_images: int | None = None, key: str = "dataset.root") -> DetectionSplit:
    """One split from a COCO json and its image folder."""
    if not annotation_file.is_file():
        raise UserError(f"COCO annotation file {annotation_file} not found (set {key}, or dataset.kind / dataset.{split} for other file names)")
    if not image_dir.is_dir():
        raise UserError(f"COCO image folder {image_dir} not found (set {key}, or dataset.{split} for another folder name)")
    try:
        coco = json.loads(annotation_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"COCO annotation file {annotation_file} is not valid JSON: {exc}") from None
    coco = keep_categories(validate_coco(coco, str(annotation_file)), categories, str(annotation_file))
    result = limit_images(DetectionSplit(split, image_dir, coco, source=str(annotation_file)), max_images)
    log.info("%s", result.summary())
    return result


def load_coco(
    root: str | Path = DEFAULT_COCO_ROOT,
    kind: str = "instances",
    train: str = "train2017",
    val: str = "val2017",
    categories: list[str] | None = ("person",),  # type: ignore[assignment]
    max_images: int | None = None,
    name: str = "coco",
) -> DetectionDataset:
    """A COCO-layout dataset at ``root``; splits are read when first used."""
    if kind not in KINDS:
        raise UserError(f"dataset.kind={kind!r} is not a COCO annotation family; use one of {', '.join(KINDS)}")
    base = Path(root).expanduser().absolute()
    if not base.is_dir():
        raise UserError(f"COCO dataset not found: {base} does not exist (set dataset.root to the folder holding annotations/ and {val}/)")
    if not (base / "annotations").is_dir():
        raise UserError(f"{base} has no annotations/ folder; a COCO root holds annotations/{kind}_{val}.json and {val}/ (set dataset.root)")
    cats = None if categories is None else [str(c) for c in categories]

    def loader(split_name: str, folder: str):
        return lambda: read_coco_split(base / "annotations" / f"{kind}_{folder}.json", base / folder, split_name, cats, max_images)

    config = {"kind": kind, "train": train, "val": val, "categories": cats, "max_images": max_images}
    return DetectionDataset(name=name, root=str(base), loaders={"train": loader("train", train), "val": loader("val", val)}, config=config)
