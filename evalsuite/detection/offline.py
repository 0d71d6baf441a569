"""Detectors that work offline on real images: dlib's face detectors, OpenCV's people detector.

- ``dlib-hog``: dlib's HOG + linear SVM frontal face detector (compiled into dlib). Scores are
  the SVM margins; every window scoring above ``threshold`` is kept (``run(img, upsample,
  threshold)``), so a negative threshold yields the low-confidence tail that AP needs.
- ``dlib-cnn``: dlib's MMOD CNN face detector, ``mmod_human_face_detector.dat`` from the
  ``face-recognition-models`` package (see :mod:`evalsuite.dlib_models`); slow on CPU.
- ``opencv-hog``: OpenCV's HOG people detector (Dalal-Triggs, ``HOGDescriptor`` with
  ``getDefaultPeopleDetector()``, a 64x128 window); scores are the SVM weights. OpenCV 5 moved
  ``HOGDescriptor`` out of the main package into opencv-contrib: with an OpenCV build that lacks
  it, choosing this detector is a UserError that says what to install.

``upsample`` doubles the image that many times before detecting (dlib's meaning; for OpenCV
the image is resized and the boxes scaled back), so smaller faces / people are found.
Detections come back as COCO results ``[x, y, w, h]`` plus a score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evalsuite.errors import UserError

#: offline detector name -> the category it detects
OFFLINE_DETECTORS = {"dlib-hog": "face", "dlib-cnn": "face", "opencv-hog": "person"}

Box = tuple[float, float, float, float, float]  # x, y, w, h, score


def _opencv_hog() -> Any:
    import cv2

    if not hasattr(cv2, "HOGDescriptor") or not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
        raise UserError(
            f"detector.name=opencv-hog needs cv2.HOGDescriptor, which this OpenCV {cv2.__version__} does not have "
            "(OpenCV 5 moved it to opencv-contrib): `pip install opencv-contrib-python-headless` in place of "
            "opencv-python-headless, or `pip install 'opencv-python-headless<5'`"
        )
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


@dataclass
class OfflineDetector:
    """One of :data:`OFFLINE_DETECTORS` with its settings (``detector.*`` keys)."""

    name: str
    upsample: int = 1
    threshold: float = -0.5
    models_dir: str | None = None

    def __post_init__(self) -> None:
        if self.name not in OFFLINE_DETECTORS:
            raise UserError(f"detector.name={self.name!r} is not an offline detector; use one of {', '.join(OFFLINE_DETECTORS)}")
        if isinstance(self.upsample, bool) or not isinstance(self.upsample, int) or not 0 <= self.upsample <= 3:
            raise UserError(f"detector.upsample must be an integer 0..3, got {self.upsample!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise UserError(f"detector.threshold must be a number, got {self.threshold!r}")
        self._model: Any = None

    @property
    def category(self) -> str:
        return OFFLINE_DETECTORS[self.name]

    def key(self) -> dict[str, Any]:
        """What the detections depend on (cache keys)."""
        return {"name": self.name, "upsample": self.upsample, "threshold": float(self.threshold)}

    def load(self) -> "OfflineDetector":
        """Load the model now (missing files and libraries surface as UserErrors here)."""
        if self._model is None:
            if self.name == "dlib-hog":
                from evalsuite.dlib_models import hog_detector

                self._model = hog_detector()
            elif self.name == "dlib-cnn":
                from evalsuite.dlib_models import cnn_detector

                self._model = cnn_detector(self.models_dir, key="detector.models_dir")
            else:
                self._model = _opencv_hog()
        return self

    def detect(self, image: np.ndarray) -> list[Box]:
        """Detections ``(x, y, w, h, score)`` in a uint8 HxWx3 RGB image."""
        self.load()
        array = np.ascontiguousarray(image)
        if self.name == "dlib-hog":
            rects, scores, _ = self._model.run(array, self.upsample, float(self.threshold))
            return [_dlib_box(r, s) for r, s in zip(rects, scores)]
        if self.name == "dlib-cnn":
            return [_dlib_box(d.rect, d.confidence) for d in self._model(array, self.upsample)]
        return self._detect_people(array)

    def _detect_people(self, image: np.ndarray) -> list[Box]:
        import cv2

        scale = 2 ** self.upsample
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        if scale != 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        if bgr.shape[0] < 128 or bgr.shape[1] < 64:
            return []  # smaller than the detection window
        rects, weights = self._model.detectMultiScale(bgr, hitThreshold=float(self.threshold), winStride=(8, 8), padding=(8, 8), scale=1.05)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        return [(float(x) / scale, float(y) / scale, float(w) / scale, float(h) / scale, float(s))
                for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4), weights)]


def _dlib_box(rect: Any, score: float) -> Box:
    x0, y0 = float(rect.left()), float(rect.top())
    return (x0, y0, float(rect.right()) + 1 - x0, float(rect.bottom()) + 1 - y0, float(score))
