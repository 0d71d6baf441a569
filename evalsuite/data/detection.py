"""The detection data model: COCO-format splits of whole images with object annotations.

Every detection reader (COCO, WIDER FACE, the synthetic scenes) produces the same thing: a
:class:`DetectionSplit` holding a COCO-format dict (``images``, ``annotations``,
``categories``) and the folder its ``file_name`` entries are relative to. COCO conventions
hold throughout: boxes are ``[x, y, width, height]`` in pixels, ``iscrowd=1`` marks regions
that the evaluation ignores (COCO crowds, WIDER FACE's ``invalid`` faces, faces too small
to annotate), every annotation has an ``area``, category ids are the dataset's own.

A :class:`DetectionDataset` names its splits (``train``, ``val``) and loads each one on
first use, so a protocol that only validates never parses a 450 MB training json.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evalsuite.errors import UserError

#: the categories the detection protocols know by name (per-category AP metrics)
KNOWN_CATEGORIES = ("person", "face")


@dataclass
class DetectionSplit:
    """One split: a COCO-format dict plus the image folder its file names are relative to."""

    name: str
    image_dir: Path
    coco: dict[str, Any]
    source: str = ""  # the annotation file (or list) it was read from, for messages
    _by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        index: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in self.coco["annotations"]:
            index[ann["image_id"]].append(ann)
        self._by_image = dict(index)

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.coco["images"]

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.coco["categories"]

    def category_id(self, name: str) -> int | None:
        """The id of the category called ``name``, None when the split has no such category."""
        return next((c["id"] for c in self.categories if c["name"] == name), None)

    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        """The annotations of one image (crowd / ignored ones included)."""
        return self._by_image.get(image_id, [])

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.image_dir / image["file_name"]

    def subset(self, image_ids: list[int]) -> "DetectionSplit":
        """The same split restricted to ``image_ids`` (in that order)."""
        wanted = set(image_ids)
        by_id = {img["id"]: img for img in self.images}
        coco = {
            **{k: v for k, v in self.coco.items() if k not in ("images", "annotations")},
            "images": [by_id[i] for i in image_ids],
            "annotations": [a for a in self.coco["annotations"] if a["image_id"] in wanted],
        }
        return DetectionSplit(self.name, self.image_dir, coco, self.source)

    def summary(self) -> str:
        counts = defaultdict(int)
        names = {c["id"]: c["name"] for c in self.categories}
        for ann in self.coco["annotations"]:
            if not ann.get("iscrowd", 0):
                counts[names.get(ann["category_id"], ann["category_id"])] += 1
        objects = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=lambda kv: str(kv[0])))
        return f"{self.name}: {len(self.images)} images ({objects or 'no objects'})"


@dataclass
class DetectionDataset:
    """A detection dataset: named splits loaded lazily by ``loaders``."""

    name: str
    root: str
    loaders: dict[str, Callable[[], DetectionSplit]]
    config: dict[str, Any] = field(default_factory=dict)  # reader settings (fingerprints)
    _splits: dict[str, DetectionSplit] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> DetectionSplit:
        """The split ``name`` (``train`` or ``val``), read on first use."""
        if name not in self._splits:
            from evalsuite.splits import check_split

            check_split(name, self.loaders, f"dataset {self.name} ({self.root})", "split")
            self._splits[name] = self.loaders[name]()
        return self._splits[name]


def limit_images(split: DetectionSplit, max_images: int | None) -> DetectionSplit:
    """The first ``max_images`` images of ``split`` in file-name order (all when None)."""
    if max_images is None:
        return split
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise UserError(f"dataset.max_images must be a positive integer or null, got {max_images!r}")
    ordered = sorted(split.images, key=lambda img: (img["file_name"], img["id"]))[:max_images]
    return split.subset([img["id"] for img in ordered])


def keep_categories(coco: dict[str, Any], names: list[str] | None, source: str) -> dict[str, Any]:
    """``coco`` with only the categories called ``names`` (all when None) and their annotations."""
    if names is None:
        return coco
    available = {c["name"]: c for c in coco["categories"]}
    missing = [n for n in names if n not in available]
    if missing:
        raise UserError(
            f"{source} has no categor{'y' if len(missing) == 1 else 'ies'} {', '.join(map(repr, missing))}; "
            f"it has {', '.join(sorted(available)) or 'none'} (set dataset.categories)"
        )
    cats = [available[n] for n in names]
    ids = {c["id"] for c in cats}
    return {**coco, "categories": cats, "annotations": [a for a in coco["annotations"] if a["category_id"] in ids]}


def factory_return_type(factory: Callable[..., Any]) -> Any:
    """The return annotation of a dataset factory (None when it has none or it cannot be read)."""
    import typing

    try:
        return typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations: decide after building
        return None


def split_fingerprint(split: DetectionSplit) -> str:
    """A hash of a split's images (id, file, size) and annotations (image, category, box, crowd)."""
    from evalsuite.config import stable_hash

    images = [(img["id"], img["file_name"], img["width"], img["height"]) for img in split.images]
    anns = [(a["image_id"], a["category_id"], [round(float(v), 2) for v in a["bbox"]], int(a.get("iscrowd", 0))) for a in split.coco["annotations"]]
    return stable_hash({"images": images, "annotations": anns})
