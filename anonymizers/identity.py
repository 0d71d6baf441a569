"""``none``: the original images, unchanged (the "original" row of every table)."""
from __future__ import annotations

from typing import Sequence

import torch

from anonymizers.base import Anonymizer
from evalsuite.registry import ANONYMIZERS


@ANONYMIZERS.register("none", description="No anonymization: the original images (the 'original' row)")
class Identity(Anonymizer):
    """Returns its input unchanged; it has no parameters."""

    param_names = ()
    #: its output is the clean data, so an adaptive attacker on it is the naive attacker
    is_identity = True

    def _anonymize_region(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return images
