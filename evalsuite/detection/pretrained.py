"""Pretrained torchvision COCO detectors read from a user's weight file (``detector.name=torchvision``).

``detector.model`` names a torchvision builder (:data:`MODELS`), ``detector.weights`` the
state dict torchvision publishes for it (e.g. ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``;
read with ``torch.load(weights_only=True)``, or a ``.safetensors`` file). Nothing is
downloaded: the model is built with ``weights=None, weights_backbone=None`` and the file is
loaded strictly; a missing file or a state dict that does not fit is one UserError naming the
file and the key (and, when the file fits another model of :data:`MODELS`, that model).

Labels: the COCO models predict torchvision's 91-index COCO labels, which are the official
COCO category ids (1 person ... 90 toothbrush; 0 background, ``N/A`` for the ids COCO left
out); keypoint R-CNN predicts 1 = person and 17 COCO keypoints. :func:`label_map` maps them
to a dataset's categories **by name**, so a COCO dataset gets all its categories and any
other dataset the categories it shares with COCO (``person`` on the synthetic scenes; none on
WIDER FACE, whose ``face`` is not a COCO category).

Sizes: ``detector.min_size`` / ``max_size`` 0 keep torchvision's resize (short side 800,
long side <= 1333; 320 / 640 for the mobilenet-320 model), the setting torchvision's published
COCO val2017 AP (:func:`published_metrics`) was measured at.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalsuite.data.detection import DetectionSplit
from evalsuite.errors import UserError

#: detector.model -> its torchvision weights enum (read for label names and published AP only)
MODELS = {
    "fasterrcnn_resnet50_fpn": "FasterRCNN_ResNet50_FPN_Weights",
    "fasterrcnn_resnet50_fpn_v2": "FasterRCNN_ResNet50_FPN_V2_Weights",
    "fasterrcnn_mobilenet_v3_large_fpn": "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    "retinanet_resnet50_fpn": "RetinaNet_ResNet50_FPN_Weights",
    "retinanet_resnet50_fpn_v2": "RetinaNet_ResNet50_FPN_V2_Weights",
    "fcos_resnet50_fpn": "FCOS_ResNet50_FPN_Weights",
    "maskrcnn_resnet50_fpn": "MaskRCNN_ResNet50_FPN_Weights",
    "maskrcnn_resnet50_fpn_v2": "MaskRCNN_ResNet50_FPN_V2_Weights",
    "keypointrcnn_resnet50_fpn": "KeypointRCNN_ResNet50_FPN_Weights",
}
KEYPOINT_MODELS = ("keypointrcnn_resnet50_fpn",)
_RCNN = ("fasterrcnn", "maskrcnn", "keypointrcnn")


@dataclass(frozen=True)
class PretrainedConfig:
    """A torchvision detector and its weight file (``detector.model``, ``detector.weights``, ...)."""

    model: str
    weights: str | None
    min_size: int = 0  # 0: torchvision's default resize
    max_size: int = 0
    score_threshold: float = 0.05
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"detector.model={self.model!r} is not a torchvision COCO detector; use one of {', '.join(MODELS)}")
        if not self.weights:
            file = weights_meta(self.model).url.rsplit("/", 1)[-1]
            raise UserError(f"detector.model={self.model} needs its weight file: set detector.weights=PATH (torchvision's {file}); nothing is downloaded")

    @property
    def predicts_keypoints(self) -> bool:
        return self.model in KEYPOINT_MODELS

    def key(self) -> dict[str, Any]:
        """What the detections depend on: settings, torchvision's version and the file (path, size, mtime)."""
        import torchvision

        file = Path(str(self.weights)).expanduser().absolute()
        stat = file.stat() if file.exists() else None
        return {"kind": "torchvision-detector", **asdict(self), "weights": str(file), "size": stat and stat.st_size,
                "mtime_ns": stat and stat.st_mtime_ns, "torchvision": torchvision.__version__}


def weights_meta(model: str) -> Any:
    """torchvision's ``COCO_V1`` weights entry of ``model`` (its url, categories, published metrics; nothing is fetched)."""
    from torchvision.models import detection

    return getattr(detection, MODELS[model]).COCO_V1


def label_names(model: str) -> list[str]:
    """Name of each label index the model predicts (index 0 = background; ``N/A`` = unused COCO id)."""
    return list(weights_meta(model).meta["categories"])


def published_metrics(model: str) -> dict[str, float]:
    """torchvision's COCO val2017 AP of its own weights for ``model`` (``box_map``, ``kp_map``, ``mask_map``; %)."""
    return dict(weights_meta(model).meta["_metrics"]["COCO-val2017"])


def build(cfg: PretrainedConfig, device: str | torch.device = "cpu") -> nn.Module:
    """``cfg.model`` with random weights (no download), sized and thresholded as ``cfg`` says."""
    from torchvision.models import detection

    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": len(label_names(cfg.model))}
    if cfg.min_size:
        kwargs["min_size"] = cfg.min_size
    if cfg.max_size:
        kwargs["max_size"] = cfg.max_size
    if cfg.model.startswith(_RCNN):
        kwargs.update(box_score_thresh=cfg.score_threshold, box_detections_per_img=cfg.detections_per_img)
    else:
        kwargs.update(score_thresh=cfg.score_threshold, detections_per_img=cfg.detections_per_img)
    with torch.device(device):
        return getattr(detection, cfg.model)(**kwargs)


@functools.lru_cache(maxsize=None)
def _shapes(model: str) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of ``model``'s state dict (built on the meta device: no memory, no weights)."""
    return {k: tuple(v.shape) for k, v in build(PretrainedConfig(model, "-"), "meta").state_dict().items()}


def read_state_dict(path: str | Path, key: str = "detector.weights") -> dict[str, torch.Tensor]:
    """A state dict of tensors from a ``.safetensors`` file or a torch checkpoint (``weights_only=True``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"weights file {file} not found (set {key} to torchvision's COCO state dict for detector.model; nothing is downloaded)")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's
            raise UserError(f"weights file {file} ({key}) is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
    from evalsuite.detection.trainable import load_state_dict

    return load_state_dict(file, key)


def _fits(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> bool:
    return set(state) == set(shapes) and all(tuple(state[k].shape) == s for k, s in shapes.items())


def load(cfg: PretrainedConfig, device: str = "cpu", key: str = "detector.weights") -> nn.Module:
    """``cfg.model`` with the state dict of ``cfg.weights``, in eval mode on ``device``."""
    state = read_state_dict(str(cfg.weights), key)
    expected = _shapes(cfg.model)
    if not _fits(state, expected):
        file = Path(str(cfg.weights)).expanduser()
        missing = [k for k in expected if k not in state]
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
        extra = [k for k in state if k not in expected]
        what = (f"missing {missing[0]}" if missing else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {expected[wrong[0]]}"
                if wrong else f"unexpected {extra[0]}")
        counts = f"{len(missing)} missing, {len(wrong)} of another shape, {len(extra)} unexpected keys"
        others = [m for m in MODELS if m != cfg.model and _fits(state, _shapes(m))]
        hint = (f"it fits detector.model={' or '.join(others)}" if others else
                f"use torchvision's {weights_meta(cfg.model).url.rsplit('/', 1)[-1]} (the {len(label_names(cfg.model))}-label COCO model)")
        raise UserError(f"weights file {file} ({key}) does not fit detector.model={cfg.model} ({counts}; {what}); {hint}")
    model = build(cfg)
    model.load_state_dict(state)
    return model.to(device).eval()


def label_map(model: str, split: DetectionSplit, categories: list[str]) -> dict[int, int]:
    """Model label index -> ``split``'s category id, for each of ``categories`` the model predicts (matched by name)."""
    names = label_names(model)
    index = {name: i for i, name in enumerate(names) if i > 0 and name != "N/A"}
    return {index[name]: split.category_id(name) for name in categories if name in index and split.category_id(name) is not None}


def scored_categories(cfg: PretrainedConfig, split: DetectionSplit, wanted: list[str], explicit: bool) -> list[str]:
    """The categories of ``wanted`` the model predicts; UserError when none (or, if ``explicit``, any one) is not."""
    known = set(label_names(cfg.model)) - {"__background__", "N/A", "no person"}
    unknown = [c for c in wanted if c not in known]
    kept = [c for c in wanted if c in known]
    if not kept or (explicit and unknown):
        raise UserError(
            f"detector.model={cfg.model} predicts COCO categories ({', '.join(sorted(known)[:6])}{', ...' if len(known) > 6 else ''}), "
            f"not {', '.join(unknown)} of {split.source or split.name}; choose detector.categories among the COCO names, "
            "or another detector.name for this dataset (dlib-hog for faces)"
        )
    return kept
