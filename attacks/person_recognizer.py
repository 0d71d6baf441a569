"""naeil-style person recognizers: a CNN feature extractor per region, then a linear SVM.

Sun et al. (2018, section 4.3.3) evaluate head obfuscation with the recognizers of naeil
(Oh et al. 2015): "we first train feature extractors over head and body regions, and then
train an SVM identity classifier on top of those features", reporting accuracy for ``head``
and ``head+body``. Here:

- ``head``: the head box of each image is cropped and resized to ``head_size`` x
  ``head_size`` (bilinear ``roi_align``, so the crop is a differentiable function of the
  image);
- ``body+head``: the whole full-person image (which contains the head) is resized to
  ``body_height`` x ``body_width``.

Each region has its own small CNN (:class:`ConvNet`), trained from scratch with torch
(cross-entropy over the training identities, label smoothing, Adam, cosine schedule, random
flip and shift; seeded) on the protocol's training split. Its embedding (L2-normalised) feeds a
scikit-learn ``LinearSVC`` fitted on the enrollment images of the test identities
(:class:`IdentitySVM`). CNN + linear SVM is differentiable end to end, which
:func:`PersonRecognizer.class_scores` exposes for recognizer attention
(:mod:`evalsuite.metrics.attention`).

Images enter as uint8 ``(B, 3, H, W)``; the ImageNet mean/std normalisation happens inside
:meth:`PersonRecognizer.inputs`, so gradients are taken with respect to raw pixels.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from attacks.reid_attacker import IMAGENET_MEAN, IMAGENET_STD, augment
from evalsuite.errors import UserError
from evalsuite.store import atomic_path
from evalsuite.training import steps_per_epoch, train_epochs

log = logging.getLogger(__name__)

Region = Literal["head", "body+head"]
RECOGNIZER_REGIONS: tuple[str, ...] = ("head", "body+head")
MODELS = ("convnet",)


@dataclass(frozen=True)
class RecognizerConfig:
    """Everything that determines a trained recognizer (part of its cache key)."""

    model: str = "convnet"
    channels: int = 16  # width of the first stage; stages have 1x, 2x, 4x, 4x
    embedding_dim: int = 128
    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.003
    weight_decay: float = 5e-4
    label_smooth: float = 0.1
    random_shift: int = 3  # pixels of zero padding for the random-crop augmentation
    random_flip: bool = True
    head_size: int = 32  # head crops are head_size x head_size
    body_height: int = 64  # full-person images are resized to body_height x body_width
    body_width: int = 32
    svm_c: float = 1.0  # LinearSVC's C

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RecognizerConfig:
        config = cls(**values)
        config.validate()
        return config

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"attacker.model={self.model!r}: the person recognizers know {', '.join(MODELS)}")
        for name in ("channels", "embedding_dim", "epochs", "batch_size", "head_size", "body_height", "body_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"attacker.{name}={value!r} must be a positive integer")
        if min(self.head_size, self.body_height, self.body_width) < 8:
            raise UserError("attacker.head_size, attacker.body_height and attacker.body_width must be >= 8 pixels (three 2x poolings)")
        for name in ("lr", "svm_c", "weight_decay", "label_smooth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (value == 0 and name in ("lr", "svm_c")):
                raise UserError(f"attacker.{name}={value!r} must be a {'positive' if name in ('lr', 'svm_c') else 'non-negative'} number")
        if self.label_smooth >= 1:
            raise UserError(f"attacker.label_smooth={self.label_smooth!r} must be in [0, 1)")
        if isinstance(self.random_shift, bool) or not isinstance(self.random_shift, int) or self.random_shift < 0:
            raise UserError(f"attacker.random_shift={self.random_shift!r} must be a non-negative integer (pixels)")
        if not isinstance(self.random_flip, bool):
            raise UserError(f"attacker.random_flip={self.random_flip!r} must be true or false")


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """Four 3x3 conv + BN + ReLU stages (c, 2c, 4c, 4c channels; 2x max-pool between), global average pooling,
    a linear embedding with batch norm, and an identity classifier used only in training."""

    def __init__(self, num_classes: int, channels: int = 32, embedding_dim: int = 128) -> None:
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            _stage(3, c), nn.MaxPool2d(2),
            _stage(c, 2 * c), nn.MaxPool2d(2),
            _stage(2 * c, 4 * c), nn.MaxPool2d(2),
            _stage(4 * c, 4 * c),
        )
        self.embedding = nn.Sequential(nn.Linear(4 * c, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim))
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) features of normalised float inputs."""
        return self.embedding(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def boxes_tensor(boxes: Any) -> torch.Tensor:
    """(N, 4) float32 ``[x0, y0, x1, y1]`` boxes from a list or array."""
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


class PersonRecognizer:
    """One region's CNN feature extractor (the SVM on top is :class:`IdentitySVM`)."""

    def __init__(self, config: RecognizerConfig, region: str, num_classes: int, device: str = "cpu", seed: int = 0) -> None:
        if region not in RECOGNIZER_REGIONS:
            raise ValueError(f"region must be one of {RECOGNIZER_REGIONS}, got {region!r}")
        self.config = config
        self.region = region
        self.device = torch.device(device)
        self.seed = seed
        self.last_loss: float | None = None
        torch.manual_seed(seed)  # initial weights depend on the seed only
        self.model = ConvNet(num_classes, config.channels, config.embedding_dim).to(self.device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    # ------------------------------------------------------------------ inputs
    def inputs(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Normalised network inputs from images (uint8 or float 0..255, (B, 3, H, W)) and head boxes.

        Differentiable with respect to float ``images``.
        """
        cfg = self.config
        x = images.to(self.device).float()
        if self.region == "head":
            b = boxes.to(self.device, torch.float32)
            rois = torch.cat([torch.arange(b.shape[0], device=self.device, dtype=torch.float32)[:, None], b], dim=1)
            x = roi_align(x, rois, output_size=(cfg.head_size, cfg.head_size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
        elif x.shape[-2:] != (cfg.body_height, cfg.body_width):
            antialias = x.shape[-2] > cfg.body_height or x.shape[-1] > cfg.body_width
            x = F.interpolate(x, size=(cfg.body_height, cfg.body_width), mode="bilinear", align_corners=False, antialias=antialias)
        return (x / 255.0 - self.mean) / self.std

    def _prepared(self, images: torch.Tensor, boxes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.inputs(images[i : i + batch_size], boxes[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)])

    # ------------------------------------------------------------------ training
    def fit(self, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, description: str = "train recognizer") -> PersonRecognizer:
        """Train on uint8 images (N, 3, H, W) with head boxes (N, 4) and labels 0..num_classes-1."""
        cfg = self.config
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        x_all = self._prepared(images, boxes)  # crops / resizes once, not every epoch
        y_all = labels.to(self.device).long()
        model = self.model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = steps_per_epoch(x_all.shape[0], cfg.batch_size)  # drop_last
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            idx = idx.to(self.device)
            x = x_all[idx]
            if cfg.random_flip or cfg.random_shift:
                x = _augment(x, cfg.random_shift, cfg.random_flip, generator)
            return F.cross_entropy(model(x), y_all[idx], label_smoothing=cfg.label_smooth)

        self.last_loss = train_epochs(x_all.shape[0], cfg.batch_size, cfg.epochs, generator, optimizer, scheduler, batch_loss, description)
        log.info("%s: final training loss %.3f", description, self.last_loss)
        model.eval()
        return self

    # ------------------------------------------------------------------ features and scores
    @torch.no_grad()
    def embed(self, images: torch.Tensor, boxes: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """(N, D) float32 L2-normalised eval-mode embeddings."""
        model = self.model.eval()
        feats = [F.normalize(model.embed(self.inputs(images[i : i + batch_size], boxes[i : i + batch_size])), dim=1).cpu()
                 for i in range(0, images.shape[0], batch_size)]
        return torch.cat(feats).numpy() if feats else np.empty((0, self.config.embedding_dim), np.float32)

    def class_scores(self, images: torch.Tensor, boxes: torch.Tensor, svm: IdentitySVM) -> torch.Tensor:
        """Differentiable SVM decision values (B, classes) of float images (0..255)."""
        weight, bias = svm.torch_parameters(self.device)
        return F.normalize(self.model.eval().embed(self.inputs(images, boxes)), dim=1) @ weight.T + bias

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Save the state dict atomically (loadable with ``weights_only=True``)."""
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)

    def load(self, path: Path) -> PersonRecognizer:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()
        return self


def _augment(x: torch.Tensor, shift: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random flip (torchreid's ``augment``) and shift, or the shift alone."""
    if flip:
        return augment(x, shift, generator)
    return _shift_only(x, shift, generator)


def _shift_only(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (shift,) * 4)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


class IdentitySVM:
    """A linear SVM (scikit-learn ``LinearSVC``, one-vs-rest) over identities."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed
        self.classes: np.ndarray | None = None
        self._svc = None

    def fit(self, features: np.ndarray, labels: np.ndarray) -> IdentitySVM:
        from sklearn.svm import LinearSVC

        labels = np.asarray(labels)
        if len(np.unique(labels)) < 2:
            raise UserError(f"the identity SVM needs at least 2 identities in its training images, got {len(np.unique(labels))}")
        self._svc = LinearSVC(C=self.c, random_state=self.seed, max_iter=10000)
        self._svc.fit(features, labels)
        self.classes = self._svc.classes_
        return self

    def decision(self, features: np.ndarray) -> np.ndarray:
        """(N, classes) decision values (two classes: a symmetric pair of columns)."""
        weight, bias = self._weights()
        return features @ weight.T + bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        assert self.classes is not None, "fit the SVM first"
        return self.classes[self.decision(features).argmax(axis=1)]

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._svc is not None, "fit the SVM first"
        weight, bias = self._svc.coef_, self._svc.intercept_
        if weight.shape[0] == 1:  # binary LinearSVC keeps one hyperplane: score +f for class 1, -f for class 0
            weight, bias = np.concatenate([-weight, weight]), np.concatenate([-bias, bias])
        return weight.astype(np.float32), bias.astype(np.float32)

    def torch_parameters(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self._weights()
        return torch.from_numpy(weight).to(device), torch.from_numpy(bias).to(device)
