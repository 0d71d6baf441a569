"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with backbone weights from a known file.

``lpips`` ships its learned linear layers (``lpips/weights/v0.1/<net>.pth``) but takes the
convolutional backbone from torchvision's ImageNet weights, which torchvision downloads
(``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``, ``squeezenet1_1-b8a52dc0.pth``).
Here the LPIPS model is built with a randomly initialised backbone (``pnet_rand=True``,
so nothing downloads behind our back) and the backbone weights are then loaded, with
``torch.load(..., weights_only=True)``, from ``lpips.backbone_weights`` or the torch hub
cache (``$TORCH_HOME/hub/checkpoints``), downloading there when allowed. The file is a
torchvision state dict; only its ``features.*`` entries are used (each must fit). When the file is
absent the metric is unavailable: one line names the file, where it was looked for and the
key, and the LPIPS cell stays empty; it is never computed with a random backbone.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

import numpy as np
import torch

from evalsuite.errors import UserError
from evalsuite.metrics.spec import MetricSpec, register_metric
from evalsuite.metrics.weights import load_state_dict, resolve_weights

log = logging.getLogger(__name__)

LPIPS_KEY = "lpips.backbone_weights"


def _backbones() -> dict[str, tuple[str, Callable[[], torch.nn.Module]]]:
    """LPIPS net name -> (torchvision ImageNet weights URL, the torchvision model it comes from)."""
    from torchvision import models

    return {
        "alex": (models.AlexNet_Weights.IMAGENET1K_V1.url, models.alexnet),
        "vgg": (models.VGG16_Weights.IMAGENET1K_V1.url, models.vgg16),
        "squeeze": (models.SqueezeNet1_1_Weights.IMAGENET1K_V1.url, models.squeezenet1_1),
    }


def backbone_filename(net: str) -> str:
    """The torchvision weight file LPIPS's ``net`` backbone needs."""
    return _backbones()[net][0].rsplit("/", 1)[-1]


class LPIPSMetric:
    """LPIPS distances of image pairs with verified backbone weights (``lpips.LPIPS``, version 0.1)."""

    def __init__(self, net: str = "alex", backbone_weights: str | None = None, download: bool = True, device: str = "cpu") -> None:
        import lpips

        backbones = _backbones()
        if net not in backbones:
            raise UserError(f"lpips.net={net!r}: valid LPIPS networks are {', '.join(backbones)}")
        url, constructor = backbones[net]
        what = f"LPIPS {net} backbone (torchvision ImageNet)"
        path = resolve_weights(url, backbone_weights, LPIPS_KEY, what, download)  # WeightsUnavailable when absent
        state = load_state_dict(path, what, LPIPS_KEY)
        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated pretrained=False
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        for slice_ in self.model.net.children():  # lpips slices hold torchvision's `features` layers by index
            for index, layer in slice_.named_children():
                expected = layer.state_dict()
                prefix = f"features.{index}."
                given = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                if set(given) != set(expected) or any(given[k].shape != expected[k].shape for k in expected):
                    raise UserError(f"{what} weights {path} (config key {LPIPS_KEY}) do not fit torchvision's {constructor.__name__}: layer features.{index} expects {sorted(expected)} with shapes {[tuple(v.shape) for v in expected.values()]}")
                layer.load_state_dict(given)
        self.model.requires_grad_(False).eval().to(device)
        self.net, self.weights_path, self.device = net, path, device

    @torch.no_grad()
    def distances(self, originals: torch.Tensor, anonymized: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Per-image LPIPS of uint8 (B, 3, H, W) pairs (0 for identical images; lower is closer)."""
        if originals.shape != anonymized.shape:
            raise ValueError(f"original and anonymized batches differ in shape: {tuple(originals.shape)} vs {tuple(anonymized.shape)}")
        out = []
        for start in range(0, originals.shape[0], batch_size):
            a = originals[start:start + batch_size].to(self.device).float() / 127.5 - 1
            b = anonymized[start:start + batch_size].to(self.device).float() / 127.5 - 1
            out.append(self.model(a, b).flatten().double().cpu())
        return torch.cat(out).numpy() if out else np.empty(0)

    def fingerprint(self) -> dict[str, Any]:
        return {"net": self.net, "weights": self.weights_path.name, "size_bytes": self.weights_path.stat().st_size}


register_metric(MetricSpec("lpips", "LPIPS perceptual distance (lpips package, v0.1, ImageNet backbone) of the anonymized image to the original", higher_is_better=False, category="quality", unit="score", decimals=3, label="LPIPS"))
