"""The reconstruction attack's de-anonymizer: a U-Net trained to undo an anonymizer.

Fantômas and SEBA show that blur and pixelation are largely reversible by a learned model.
Here a U-Net is trained on (anonymized, original) pairs of the training split and then
applied to anonymized queries (and gallery, where the threat model anonymizes it) before a
recognizer trained on clean data (``reconstruction``) or on reconstructed anonymized data
(``reconstruction-adaptive``).

- **Model**: a U-Net of ``depth`` stride-2 stages (``width`` channels at the top, doubled per
  stage, instance norm, LeakyReLU, skip connections), predicting a residual added to its input:
  the identity is the starting point, so an anonymizer that changes nothing costs nothing.
- **Loss**: L1 to the original plus ``perceptual_weight`` times the mean squared distance of
  features of a fixed network (``feature_fn``, the protocol passes the clean recognizer's
  embedding: an identity perceptual loss, as UP-GAN's perceptual loss through a face-identity
  network), so the de-anonymizer restores what the recognizer looks at. No adversarial term
  (the issue leaves it optional).
- **Training**: Adam (``lr``, betas 0.5 / 0.999), ``epochs`` over the training pairs in seeded
  order, at the images' own size (crops of one size per set). Deterministic per seed on CPU.

PSNR / SSIM to the originals of what the attacker matches (the reconstructions here, the
anonymized images under the other threat models) are reported beside the privacy numbers
(``attacked_psnr`` / ``attacked_ssim``, :func:`reconstruction_quality`), so a row shows how
much the de-anonymizer restored.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from evalsuite.progress import tqdm

from anonymizers.deepprivacy import to_signed, to_uint8  # uint8 <-> [-1, 1], as the generators use
from evalsuite.arrays import chunk_rows, images_row_bytes
from evalsuite.errors import UserError
from evalsuite.metrics.spec import MetricSpec, register_metric

log = logging.getLogger(__name__)

__all__ = ["Deanonymizer", "ReconstructionAttack", "ReconstructionConfig", "reconstruction_quality"]

#: PSNR of identical images is infinite; per-image values are capped here before averaging
MAX_PSNR = 100.0

register_metric(MetricSpec("attacked_psnr", "PSNR (dB) to the originals of the query images the attacker matches: the de-anonymizer's reconstructions under the reconstruction attacks, the anonymized images otherwise",
                           higher_is_better=False, category="privacy", unit="score", decimals=2, label="query PSNR"))
register_metric(MetricSpec("attacked_ssim", "SSIM to the originals of the query images the attacker matches: the de-anonymizer's reconstructions under the reconstruction attacks, the anonymized images otherwise",
                           higher_is_better=False, category="privacy", unit="score", decimals=3, label="query SSIM"))


@dataclass(frozen=True)
class ReconstructionConfig:
    """Everything that determines a trained de-anonymizer (part of its cache key)."""

    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    width: int = 16
    depth: int = 3
    perceptual_weight: float = 0.1

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ReconstructionConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown reconstruction setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2, inplace=True))


class UNet(nn.Module):
    """Residual U-Net on images in [-1, 1]; sizes need not be multiples of 2**depth (skips are resized)."""

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = _block(3, widths[0], 1)
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], 2) for i in range(depth))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i], 1) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], 3, 1)
        nn.init.zeros_(self.out.weight)  # starts as the identity
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], self.stem(x)
        for down in self.down:
            skips.append(h)
            h = down(h)
        for up in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = up(torch.cat([h, skip], dim=1))
        return (x + self.out(h)).clamp(-1, 1)


class Deanonymizer:
    """A U-Net de-anonymizer: ``fit`` on (anonymized, original) pairs, ``reconstruct`` uint8 images."""

    #: bump when the model or its training changes, so that cached de-anonymizers are rebuilt
    version = 1

    def __init__(self, config: ReconstructionConfig, device: str = "cpu", seed: int = 0) -> None:
        self.config = config
        self.device = torch.device(device)
        self.seed = seed
        torch.manual_seed(seed)
        self.model = UNet(config.width, config.depth).to(self.device)
        self.losses: list[float] = []

    def fit(self, anonymized: torch.Tensor, original: torch.Tensor, feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
            description: str = "train de-anonymizer") -> "Deanonymizer":
        """Train on uint8 (N, 3, H, W) pairs; ``feature_fn`` maps [-1, 1] images to features (kept fixed)."""
        if anonymized.shape != original.shape:
            raise ValueError(f"anonymized {tuple(anonymized.shape)} and original {tuple(original.shape)} images differ in shape")
        cfg = self.config
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        steps = max(1, anonymized.shape[0] // cfg.batch_size)
        self.model.train()
        with tqdm(total=cfg.epochs * steps, desc=description, unit="batch", leave=False) as progress:
            for _ in range(cfg.epochs):
                order = torch.randperm(anonymized.shape[0], generator=generator)
                for step in range(steps):
                    idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                    x, y = to_signed(anonymized[idx]).to(self.device), to_signed(original[idx]).to(self.device)
                    out = self.model(x)
                    loss = F.l1_loss(out, y)
                    if feature_fn is not None and cfg.perceptual_weight > 0:
                        with torch.no_grad():
                            target = feature_fn(y)
                        loss = loss + cfg.perceptual_weight * F.mse_loss(feature_fn(out), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    self.losses.append(float(loss.item()))
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss.item():.4f}")
        self.model.eval()
        log.info("%s: final loss %.4f", description, self.losses[-1])
        return self

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """uint8 (N, 3, H, W) anonymized images -> uint8 reconstructions."""
        self.model.eval()
        out = [to_uint8(self.model(to_signed(images[i : i + batch_size]).to(self.device))).cpu() for i in range(0, images.shape[0], batch_size)]
        return torch.cat(out) if out else images.clone()

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(path))

    def load(self, path: Path) -> "Deanonymizer":
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(path), device=str(self.device)))
        self.model.eval()
        return self


def reconstruction_quality(reconstructed: Any, original: Any) -> dict[str, float]:
    """``attacked_psnr`` / ``attacked_ssim``: mean per-image PSNR (capped at MAX_PSNR dB) / SSIM of what the attacker
    matches to the originals; tensors or sets on disk, read a chunk at a time."""
    from evalsuite.metrics.quality import image_quality_scores

    if len(original) != len(reconstructed):
        raise ValueError(f"{len(reconstructed)} attacked images for {len(original)} originals")
    chunk = chunk_rows(images_row_bytes(original))
    scores = [image_quality_scores(original[i:i + chunk], reconstructed[i:i + chunk]) for i in range(0, len(original), chunk)]
    scores = scores or [image_quality_scores(original[:0], reconstructed[:0])]
    psnr = np.minimum(np.concatenate([s["psnr"] for s in scores]), MAX_PSNR)  # identical images have infinite PSNR
    return {"attacked_psnr": float(psnr.mean()), "attacked_ssim": float(np.concatenate([s["ssim"] for s in scores]).mean())}


class ReconstructionAttack:
    """What a protocol needs for the reconstruction threat models, in one place.

    De-anonymizers are trained once per (anonymized training set, config, seed, perceptual
    network) and cached through the shared pipeline's artifacts (safetensors, rebuilt when
    unreadable); reconstructions are kept in memory per (de-anonymizer, image set).
    """

    def __init__(self, artifacts: Any, config: ReconstructionConfig, device: str, protocol: str) -> None:
        self.artifacts = artifacts
        self.config = config
        self.device = device
        self.protocol = protocol
        self._models: dict[str, Deanonymizer] = {}
        self._outputs: dict[tuple[str, str], torch.Tensor] = {}

    def key(self, train_set_key: str, seed: int, feature_key: str | None) -> str:
        from evalsuite.config import stable_hash

        return stable_hash({"protocol": self.protocol, "kind": "deanonymizer", "train": train_set_key, "config": self.config.as_dict(),
                            "seed": seed, "perceptual": feature_key, "code": Deanonymizer.version})

    def deanonymizer(self, anonymized_train: torch.Tensor, clean_train: torch.Tensor, train_set_key: str, seed: int,
                     feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, feature_key: str | None = None) -> tuple[Deanonymizer, str]:
        """The de-anonymizer of one anonymized training set (trained, or read from the cache) and its key."""
        key = self.key(train_set_key, seed, feature_key)
        if key not in self._models:
            model = Deanonymizer(self.config, self.device, seed)
            built, _ = self.artifacts.get_or_build(
                "deanonymizers", key, ".safetensors", model.load,
                lambda: model.fit(anonymized_train, clean_train, feature_fn, description=f"train de-anonymizer (seed {seed})"),
                lambda m, path: m.save(path), what="de-anonymizer")
            self._models[key] = built
        return self._models[key], key

    def reconstruct(self, model: Deanonymizer, model_key: str, images: torch.Tensor, set_key: str) -> tuple[torch.Tensor, str]:
        """``images`` (the anonymized set ``set_key``) through the de-anonymizer, and the reconstructions' key."""
        if (model_key, set_key) not in self._outputs:
            self._outputs[(model_key, set_key)] = model.reconstruct(images)
        return self._outputs[(model_key, set_key)], f"recon-{model_key[:12]}-{set_key}"

    def apply(self, images: torch.Tensor, set_key: str, train: torch.Tensor, train_key: str, clean_train: torch.Tensor, seed: int,
              feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, feature_key: str | None = None) -> tuple[torch.Tensor, str]:
        """``images`` (anonymized set ``set_key``) reconstructed by the de-anonymizer of the anonymized training set ``train``."""
        model, model_key = self.deanonymizer(train, clean_train, train_key, seed, feature_fn, feature_key)
        return self.reconstruct(model, model_key, images, set_key)
