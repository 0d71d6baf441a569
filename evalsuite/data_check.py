"""``evalsuite data check dataset=NAME dataset.root=PATH``: what a dataset folder holds, and what is wrong with it.

The dataset is read by the same loader a run uses (so a broken layout fails here with the
run's one-line error), then described: images, identities and cameras per split, which
annotations exist, which protocols and regions can run on it, and the first problems found
(files that do not decode, image files the layout does not read). Exit 0 when every image
decodes, 2 when the root is broken (the loader refuses it or an image is corrupt).
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalsuite.errors import UserError, did_you_mean

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm")


@dataclass
class Report:
    """What :func:`check_dataset` found: description lines, problems (exit 2) and warnings."""

    title: str
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def text(self, max_problems: int = 10) -> str:
        out = [self.title, *(f"  {line}" for line in self.lines)]
        for label, items, total in (("problems", self.problems, self.problem_count), ("warnings", self.warnings, len(self.warnings))):
            if items:
                more = f" (first {max_problems} shown)" if total > max_problems else ""
                out.append(f"  {label}: {total}{more}")
                out += [f"    - {item}" for item in items[:max_problems]]
        out.append("  result: OK" if self.ok else f"  result: BROKEN ({self.problem_count} problem{'s' * (self.problem_count != 1)})")
        return "\n".join(out) + "\n"


def dataset_from_overrides(overrides: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``dataset=NAME`` and ``dataset.<key>=VALUE`` overrides: the dataset name and its settings (checked against its factory)."""
    from evalsuite.config import dataset_defaults, parse_overrides
    from evalsuite.registry import DATASETS

    values = parse_overrides(overrides)
    names = [v for k, v in values if k in ("dataset", "dataset.name")]
    if not names or not isinstance(names[-1], str):
        raise UserError(f"evalsuite data check needs dataset=NAME (one of {', '.join(DATASETS.names())}) and dataset.root=PATH")
    name = names[-1]
    settings = {k: v for k, v in dataset_defaults(name).items() if k != "name"}
    for key, value in values:
        if key in ("dataset", "dataset.name"):
            continue
        sub = key[len("dataset."):] if key.startswith("dataset.") else None
        if sub not in settings:
            valid = [f"dataset.{k}" for k in settings]
            raise UserError(f"evalsuite data check: unknown key {key!r} for dataset {name}: {did_you_mean(key, valid)}")
        settings[sub] = value
    return name, settings


def load(name: str, settings: dict[str, Any]) -> Any:
    """The dataset as a run loads it (a generated one is generated in the cache)."""
    import inspect

    from evalsuite.config import cache_dir
    from evalsuite.registry import DATASETS

    entry = DATASETS.get(name)
    if "cache_dir" in inspect.signature(entry.factory).parameters:
        settings = {**settings, "cache_dir": cache_dir()}
    return entry.build(**settings)


def check_dataset(name: str, settings: dict[str, Any], decode: bool = True, detect: bool = False) -> Report:
    """Load and describe dataset ``name``; UserError (the loader's) when the root is broken.
    ``detect``: detect the missing face boxes of a face dataset now (the cached sidecar a run reads)."""
    from evalsuite.data.detection import DetectionDataset
    from evalsuite.data.faces import FaceDataset
    from evalsuite.data.types import ReidDataset

    dataset = load(name, settings)
    report = Report(f"{name} at {dataset.root}")
    if isinstance(dataset, FaceDataset):
        paths = [Path(s.path) for s in dataset.samples]
        if detect:
            _detect_faces(dataset, report)
        _describe_faces(dataset, report)
    elif isinstance(dataset, ReidDataset):
        paths = _describe_reid(dataset, report)
    elif isinstance(dataset, DetectionDataset):
        paths = _describe_detection(dataset, report)
    else:
        raise UserError(f"evalsuite data check does not know datasets of type {type(dataset).__name__} ({name})")
    if decode:
        _decode_all(paths, report)
    _unread_files(Path(dataset.root), paths, report)
    return report


# --------------------------------------------------------------------------- per kind

def _ids(samples: Iterable[Any], attribute: str) -> int:
    return len({getattr(s, attribute) for s in samples})


def _count(samples: Sequence[Any], key: str) -> int:
    return sum(s.annotations.get(key) is not None for s in samples)


def _describe_reid(dataset: Any, report: Report) -> list[Path]:
    splits = {"train": dataset.train, "query": dataset.query, "gallery": dataset.gallery}
    for split, samples in splits.items():
        report.lines.append(f"{split}: {len(samples)} images, {_ids(samples, 'pid')} identities, {_ids(samples, 'camid')} cameras")
    everything = [s for samples in splits.values() for s in samples]
    present = {key: _count(everything, key) for key in ("head_box", "face_box", "body_mask", "keypoints", "landmarks", "attributes")}
    report.lines.append("annotations: " + (", ".join(f"{k} {v}/{len(everything)}" for k, v in present.items() if v) or "none (image files only)"))
    cameras: dict[int, set[int]] = {}
    for g in dataset.gallery:
        cameras.setdefault(g.pid, set()).add(g.camid)
    unmatched = sum(not cameras.get(q.pid, set()) - {q.camid} for q in dataset.query)
    protocols = []
    if all(splits.values()):
        protocols.append(f"market1501-reid ({len(dataset.query) - unmatched} of {len(dataset.query)} queries have a match from another camera)")
        protocols.append("image-quality")
    else:
        report.warnings.append(f"empty split(s) {', '.join(k for k, v in splits.items() if not v)}: market1501-reid and image-quality need train, query and gallery images")
    if present["head_box"] == len(everything) and everything:
        protocols.append("person-recognition")
    report.lines.append("protocols: " + (", ".join(protocols) or "none"))
    regions = ["image", "body" + ("" if present["body_mask"] == len(everything) else " (whole crop where a body_mask is missing)")]
    for region, key in (("head", "head_box"), ("face", "face_box")):
        if present[key]:
            regions.append(region if present[key] == len(everything) else f"{region} ({present[key]} images annotated)")
    missing = [r for r, k in (("head", "head_box"), ("face", "face_box")) if not present[k]]
    report.lines.append("regions: " + ", ".join(regions) + (f"; {'/'.join(missing)} need dataset.annotations=FILE or region.source=detect" if missing else ""))
    if unmatched:
        report.warnings.append(f"{unmatched} of {len(dataset.query)} queries have no gallery image of their identity from another camera: every metric skips them")
    return [Path(s.path) for s in everything]


def _describe_faces(dataset: Any, report: Report) -> None:
    from evalsuite.data.face_boxes import missing_boxes

    samples = dataset.samples
    if dataset.has_identities:
        sizes = sorted(Counter(s.identity for s in samples).values())
        report.lines.append(f"images: {len(samples)}, identities: {len(sizes)} ({sum(n >= 2 for n in sizes)} with 2+ images; "
                            f"images per identity {sizes[0]}-{sizes[-1]}, median {statistics.median(sizes):g})")
    else:
        report.lines.append(f"images: {len(samples)}, no identity labels")
    partitions = Counter(s.split for s in samples if s.split is not None)
    report.lines.append("partitions: " + (", ".join(f"{k} {v}" for k, v in sorted(partitions.items())) or "none (protocols split by identity)"))
    missing = missing_boxes(samples)
    landmarks = ", ".join(f"{n}-point {sum(n in s.landmarks for s in samples)}" for n in (5, 7, 68) if any(n in s.landmarks for s in samples))
    boxes = f"face boxes {len(samples) - len(missing)}/{len(samples)} (given or from landmarks)"
    attributes = f"attributes {len(dataset.attribute_names)} ({', '.join(dataset.attribute_names[:5])}{' ...' if len(dataset.attribute_names) > 5 else ''})" if dataset.attribute_names else "no attributes"
    report.lines.append(f"annotations: {boxes}, landmarks {landmarks or 'none'}, {attributes}")
    protocols = []
    if dataset.has_identities:
        usable = sum(n >= 2 for n in Counter(s.identity for s in samples).values())
        if usable >= 2:
            protocols.append(f"face-identification ({usable} identities with 2+ images)")
        else:
            report.warnings.append("fewer than 2 identities with 2+ images: face-identification needs them")
    protocols.append("image-quality" + ("" if dataset.attribute_names else " (attribute_accuracy stays empty without attributes)"))
    report.lines.append("protocols: " + ", ".join(protocols))
    if not missing:
        faces = "face, head (the face box)"
    elif dataset.detector:
        faces = f"face, head: {len(missing)} boxes detected on first use (dataset.detector={dataset.detector['name']}, cached as an editable sidecar)"
    else:
        faces = f"face, head need boxes for {len(missing)} photos (dataset.sidecar=FILE, or dataset.detector=dlib-hog)"
    report.lines.append(f"regions: image, {faces}")


def _detect_faces(dataset: Any, report: Report) -> None:
    """Detect the missing face boxes now, into the sidecar a run reads (:mod:`evalsuite.data.face_boxes`)."""
    from evalsuite.config import cache_dir
    from evalsuite.data.face_boxes import complete_face_boxes, missing_boxes, sidecar_path

    missing = missing_boxes(dataset.samples)
    if not missing or not dataset.detector:
        report.lines.append("detection: nothing to detect" if not missing else "detection: off (dataset.detector=null)")
        return
    path = sidecar_path(dataset, missing, cache_dir())
    before = len(dataset.samples)
    complete_face_boxes(dataset, cache_dir(), required=False)
    found = 0 if missing_boxes(dataset.samples) else len(missing) - (before - len(dataset.samples))  # still missing: none found anywhere
    report.lines.append(f"detection: {dataset.detector['name']} found a face in {found} of {len(missing)} photos without a box; "
                        f"boxes and landmarks in {path} (edit to correct; runs read it)")


def _describe_detection(dataset: Any, report: Report) -> list[Path]:
    paths: list[Path] = []
    loaded = []
    errors: list[UserError] = []
    for split in dataset.loaders:
        try:
            data = dataset.split(split)
        except UserError as exc:  # a set without a train split (WIDER FACE val only) still validates
            errors.append(exc)
            report.lines.append(f"{split}: not available ({exc})")
            continue
        loaded.append(split)
        keypoints = sum(bool(a.get("num_keypoints")) for a in data.coco["annotations"])
        report.lines.append(data.summary() + (f", {keypoints} with keypoints" if keypoints else ""))
        paths += [data.image_path(image) for image in data.images]
    if not loaded:
        raise errors[0]
    protocols = ["detection-validate"] if "val" in loaded else []
    if {"train", "val"} <= set(loaded):
        protocols.append("detection-train")
    report.lines.append("protocols: " + (", ".join(protocols) or "none (needs a val split)"))
    report.lines.append("regions: image; body / face from the annotated person / face boxes (detection protocols)")
    return paths


# --------------------------------------------------------------------------- problems

def _decode_all(paths: list[Path], report: Report) -> None:
    """Decode every image; each that does not is a problem."""
    from PIL import Image

    from evalsuite.progress import progress

    for path in progress(paths, desc="decode images", unit="img", leave=False):
        try:
            with Image.open(path) as image:
                image.load()
        except FileNotFoundError:
            _problem(report, f"{path}: listed but missing")
        except (OSError, ValueError, SyntaxError) as exc:
            _problem(report, f"{path}: corrupt or not an image ({exc})")
    report.lines.append(f"decoded: {len(paths) - report.problem_count} of {len(paths)} images")


def _problem(report: Report, text: str) -> None:
    report.problem_count += 1
    if len(report.problems) < 100:
        report.problems.append(text)


def _unread_files(root: Path, read: list[Path], report: Report) -> None:
    """Image files under ``root`` that the layout does not read (junk ids, misnamed files, stray folders)."""
    if not root.is_dir():
        return
    known = {p.resolve() for p in read}
    unread = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve() not in known)
    junk = [p for p in unread if p.name.startswith("-1_")]
    if junk:
        report.lines.append(f"junk: {len(junk)} images of pid -1 (dropped everywhere, as torchreid)")
    other = [p for p in unread if not p.name.startswith("-1_")]
    if other:
        report.warnings.append(f"{len(other)} image files under {root} are not part of the dataset (names or folders the layout does not read), "
                               f"e.g. {', '.join(str(p.relative_to(root)) for p in other[:3])}")
