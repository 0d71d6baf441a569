"""``mask``: mask-out, the region filled with one colour (DeepPrivacy2 / Paper F, Sun et al. "black").

``fill`` is "gray" (127), "black" (0), "mean" (the mean colour of the region, per image and
channel, rounded) or an explicit gray level 0-255 or ``[r, g, b]``.

Gray is 127: Paper F defines mask-out as ``I * (1 - M) + M * 127``; DeepPrivacy2's generator
fills 0 in its [-1, 1] range, i.e. 127.5, which becomes 127 or 128 depending on how it is
converted back to uint8 (truncation gives 127).

On CPU the fill is written straight into a copy of the images, over each mask's box only
(``np.copyto`` with the mask as ``where``), instead of building a filled batch and selecting
from it (:func:`fill_regions`); the same bytes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from anonymizers.base import Anonymizer
from anonymizers.regionwise import output_copy, region_boxes
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

NAMED_FILLS = {"gray": 127, "black": 0}
FILL_CHOICES = (*NAMED_FILLS, "mean")


def _is_level(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def fill_levels(fill: object) -> tuple[int, int, int] | None:
    """The constant RGB fill for ``fill``, None for "mean"; UserError when invalid."""
    if isinstance(fill, str):
        if fill == "mean":
            return None
        if fill in NAMED_FILLS:
            return (NAMED_FILLS[fill],) * 3
    elif _is_level(fill):
        return (fill,) * 3
    elif isinstance(fill, (list, tuple)) and len(fill) == 3 and all(_is_level(v) for v in fill):
        return tuple(fill)
    raise UserError(
        f"anonymizer 'mask': parameter fill must be one of {', '.join(FILL_CHOICES)}, a gray level 0-255 or [r, g, b], got {fill!r}"
    )


def region_mean(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean colour (B, 3, 1, 1) of each image inside its mask (0 for an empty mask), float32."""
    weights = masks.float()
    total = (images.float() * weights).sum(dim=(2, 3), keepdim=True)
    return total / weights.sum(dim=(2, 3), keepdim=True).clamp(min=1)


def fill_regions(images: torch.Tensor, masks: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """CPU: a copy of ``images`` with uint8 ``colour`` ((1 or B), 3, 1, 1) inside ``masks`` (each mask's box only)."""
    _, inside_all, out, result = output_copy(images, masks)
    levels = colour.numpy()
    for b, y0, y1, x0, x1 in region_boxes(inside_all):
        np.copyto(out[b, :, y0:y1, x0:x1], levels[min(b, levels.shape[0] - 1)], where=inside_all[b, :, y0:y1, x0:x1].view(bool))
    return result


@ANONYMIZERS.register("mask", description="Mask-out: fill the region with gray 127 (DeepPrivacy2 / Paper F), black, the region mean or a colour")
class MaskOut(Anonymizer):
    """Fill the region with a constant colour or its mean colour."""

    param_names = ("fill",)

    def __init__(self, *, fill: str | int | Sequence[int] = "gray") -> None:
        fill_levels(fill)
        self.fill = fill

    def _anonymize_region(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return self._colour(images, masks).expand_as(images)

    def _colour(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """uint8 ((1 or B), 3, 1, 1): the constant fill, or each image's region mean."""
        levels = fill_levels(self.fill)
        if levels is None:
            return region_mean(images, masks).round_().to(torch.uint8)
        return torch.tensor(levels, dtype=torch.uint8, device=images.device).view(1, 3, 1, 1)

    def _anonymize_regions_cpu(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return fill_regions(images, masks, self._colour(images, masks))


ANONYMIZERS.register_preset("mask_black", "mask", fill="black", description="Mask-out with black (0), as Sun et al.'s 'black'")
ANONYMIZERS.register_preset("mask_mean", "mask", fill="mean", description="Mask-out with the region's mean colour, per image")
