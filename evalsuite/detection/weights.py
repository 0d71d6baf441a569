"""A trained detector read from a user's weights file (``detector.weights``)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from evalsuite.config import stable_hash
from evalsuite.detection.trainable import TrainableConfig, build_detector, load_state_dict
from evalsuite.errors import UserError


def weights_key(path: str, cfg: TrainableConfig, categories: list[str]) -> str:
    """A key of the file (path, size, modification time) and the detector it is read into."""
    file = Path(path).expanduser()
    return stable_hash({"kind": "detector-weights", "file": str(file.absolute()), "size": file.stat().st_size if file.exists() else None,
                        "mtime_ns": file.stat().st_mtime_ns if file.exists() else None, "detector": cfg.as_dict(), "categories": categories})


def detector_from_weights(path: str, cfg: TrainableConfig, categories: list[str], image_size: tuple[int, int], device: str) -> nn.Module:
    """The ``cfg`` detector for ``categories`` with the state dict in ``path``; UserError when it does not fit."""
    model = build_detector(cfg, len(categories), image_size)
    state = load_state_dict(path, "detector.weights")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(
            f"detector.weights={path} does not fit a {cfg.arch} / {cfg.backbone} detector for categories {categories} "
            f"(detector.arch, detector.backbone, detector.fpn_channels, detector.head_convs must match how it was trained): {str(exc).splitlines()[0]}"
        ) from None
    return model.to(device).eval()
