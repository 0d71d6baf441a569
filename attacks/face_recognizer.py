"""The face recognizer interface shared by every identification attacker.

A recognizer maps face crops to L2-normalised embeddings. Trainable recognizers (a CNN
trained from scratch) learn the embedding from labelled images in :meth:`fit`; pretrained
ones (dlib's ResNet, InsightFace ArcFace) ignore the labels there. Protocols put a
scikit-learn classifier on top of the embeddings for closed-set identification and use
embedding similarities for verification, so every recognizer is scored the same way.

Recognizers are registered in ``evalsuite.registry.RECOGNIZERS`` and chosen with
``recognizer.name=...``; their keyword arguments are the ``recognizer.*`` config keys.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch


def recognizer_settings(config_class: type, name: str, params: dict[str, Any]) -> Any:
    """``config_class(**params)``, or one error line naming an unknown ``recognizer.<name>.*`` setting and the closest valid one."""
    from dataclasses import fields

    from evalsuite.errors import UserError, did_you_mean

    valid = {f.name for f in fields(config_class)}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise UserError(f"unknown recognizer.{name} setting {unknown[0]!r}: {did_you_mean(unknown[0], valid)}")
    return config_class(**params)


class FaceRecognizer:
    """Subclasses implement :meth:`embed` (and :meth:`fit` when ``trainable``)."""

    #: True when :meth:`fit` learns the embedding (then threat models differ in training data)
    trainable: ClassVar[bool] = False
    #: the input size (height, width) the recognizer expects; inputs are resized to it
    input_size: ClassVar[tuple[int, int] | None] = None

    def fit(self, images: torch.Tensor, labels: np.ndarray, seed: int = 0) -> "FaceRecognizer":
        """Learn from uint8 Bx3xHxW ``images`` with integer identity ``labels`` (no-op when pretrained)."""
        return self

    def embed(self, images: torch.Tensor) -> np.ndarray:
        """(B, D) float32 L2-normalised embeddings of uint8 Bx3xHxW face crops."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to cache a fitted recognizer (empty for pretrained ones)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
