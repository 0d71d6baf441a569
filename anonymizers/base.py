"""The anonymizer interface shared by traditional and generative anonymizers.

As in DeepPrivacy2, detection is separate from synthesis: a region provider
(:mod:`evalsuite.regions`) turns annotations into a pixel mask, and an anonymizer only
changes pixels inside that mask. Everything is batched torch, on any device.

Contract (scikit-learn style):
- ``__init__`` takes keyword parameters only, stores them unchanged; ``get_params()``
  returns them (they form part of every cache key).
- ``fit(images, masks, annotations)`` is optional (k-same, PPAS, generative models); it
  returns ``self``. The default does nothing.
- ``anonymize(images, masks, annotations=None, generator=None)``:
  images uint8 (B, 3, H, W) RGB; masks bool (B, 1, H, W), True = anonymize;
  annotations: one dict per image (see :mod:`evalsuite.data.types`) for anonymizers that
  condition on landmarks, keypoints or attributes; generator: a seeded ``torch.Generator``
  for stochastic anonymizers. Returns uint8 (B, 3, H, W) on the input device; pixels outside
  the mask are returned unchanged. Deterministic for a given generator state.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch


class Anonymizer:
    """Base class: subclasses implement :meth:`_anonymize_region`."""

    #: parameters that get_params() reports; subclasses list theirs
    param_names: tuple[str, ...] = ()
    requires_fit: bool = False
    #: True when fit() must see exactly the set that is then anonymized (k-same family);
    #: protocols then fit on each split right before anonymizing it, instead of on train once
    fits_on_anonymized_set: bool = False
    #: True when the output depends on the generator (cache keys then include the seed)
    stochastic: bool = False
    #: True only for the anonymizer that returns its input unchanged
    is_identity: bool = False

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names}

    def fit(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None) -> "Anonymizer":
        return self

    def anonymize(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        check_batch(images, masks)
        if not bool(masks.any()):
            return images.clone()
        out = self._anonymize_region(images, masks, annotations, generator)
        # only the region changes, whatever the subclass computed elsewhere
        return torch.where(masks.expand_as(images), out, images)

    def _anonymize_region(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_batch(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Validate the shapes and dtypes of an anonymizer's inputs."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
    if masks.dtype != torch.bool or masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
        raise ValueError(f"masks must be bool (B, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)} {masks.dtype}")
