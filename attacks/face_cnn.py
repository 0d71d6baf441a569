"""``cnn``: a small ResNet-style face recognizer trained from scratch with torch.

The default recognizer of the face-identification protocol on the synthetic set (nothing to
download). Faces are resized to ``input_size`` (an antialiased bilinear resize, once), then:

    stem conv3x3/2 -> 4 residual stages (BasicBlock, stride 2, widths w, 2w, 4w, 8w)
    -> BN -> dropout -> flatten -> linear -> BN   (the ArcFace "E" output: a 128-d embedding)

Flattening the last feature map instead of pooling keeps where things are in the aligned
face. Training: identity classification on top of the embedding, either softmax
cross-entropy with label smoothing (``loss=softmax``, the default) or an additive angular
margin (``loss=arcface``: cos(theta + m) for the true class, logits scaled by ``scale``).
SGD with momentum, a one-cycle learning rate, random flips, shifts and brightness /
contrast jitter. Seeded: the same images, labels and seed give the same weights (on the
same machine and torch version). Embeddings are the L2-normalised eval-mode outputs.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.face_recognizer import FaceRecognizer, recognizer_settings
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS
from evalsuite.training import steps_per_epoch, train_epochs

log = logging.getLogger(__name__)

LOSSES = ("softmax", "arcface")


@dataclass(frozen=True)
class FaceCNNConfig:
    """Everything that determines a trained ``cnn`` recognizer (part of its cache key)."""

    input_size: int = 56
    width: int = 8  # channels of the first stage (8w in the last); 16 is ~7 points more accurate at 2.5x the CPU time
    embedding_dim: int = 128
    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss: str = "softmax"
    label_smoothing: float = 0.1
    margin: float = 0.3
    scale: float = 16.0
    dropout: float = 0.2
    shift: int = 3  # random translation in input pixels
    jitter: float = 0.2  # brightness / contrast jitter (fraction)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "loss":
                if value not in LOSSES:
                    raise UserError(f"recognizer.cnn.loss={value!r}: use one of {', '.join(LOSSES)}")
                continue
            kind = type(f.default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and float(value) != int(value)):
                raise UserError(f"recognizer.cnn.{f.name}={value!r}: expected {'an integer' if kind is int else 'a number'}")
            object.__setattr__(self, f.name, kind(value))
        positive = ("input_size", "width", "embedding_dim", "epochs", "batch_size", "lr", "scale")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"recognizer.cnn.{name}={getattr(self, name)} must be positive")
        if self.input_size < 16:
            raise UserError(f"recognizer.cnn.input_size={self.input_size} must be >= 16")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.dropout < 1:
            raise UserError("recognizer.cnn.label_smoothing and recognizer.cnn.dropout must lie in [0, 1)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions) with a projection shortcut when needed."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.short(x))


class FaceNet(nn.Module):
    """The embedding network."""

    def __init__(self, config: FaceCNNConfig) -> None:
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 8 * w, 2))
        side = config.input_size
        for _ in range(4):  # stem and three strided stages: k=3, p=1, s=2
            side = (side - 1) // 2 + 1
        self.out_bn = nn.BatchNorm2d(8 * w)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(8 * w * side * side, config.embedding_dim)
        self.feat_bn = nn.BatchNorm1d(config.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.out_bn(self.stages(self.stem(x)))
        return self.feat_bn(self.fc(self.dropout(x).flatten(1)))


class MarginHead(nn.Module):
    """Identity logits on the embedding: plain linear (softmax) or ArcFace's angular margin."""

    def __init__(self, dim: int, num_classes: int, config: FaceCNNConfig) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self.config = config

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if cfg.loss == "softmax":
            return emb @ self.weight.t()
        cos = F.normalize(emb) @ F.normalize(self.weight).t()
        if labels is None:
            return cfg.scale * cos
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + cfg.margin)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return cfg.scale * torch.where(onehot, target, cos)


def resize_faces(images: torch.Tensor, size: int, batch_size: int = 512) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float32 (B,3,size,size) in [0, 1], antialiased bilinear."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].float().div_(255.0)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(x)
    return torch.cat(out) if out else torch.empty(0, 3, size, size)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.5


def _augment(x: torch.Tensor, config: FaceCNNConfig, generator: torch.Generator) -> torch.Tensor:
    """Random flip, shift (replicate padding) and brightness / contrast jitter, per image."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    s = config.shift
    if s > 0:
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        dy = torch.randint(0, 2 * s + 1, (b, 1), generator=generator) + torch.arange(h)
        dx = torch.randint(0, 2 * s + 1, (b, 1), generator=generator) + torch.arange(w)
        x = padded[torch.arange(b)[:, None, None], :, dy[:, :, None], dx[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if config.jitter > 0:
        j = config.jitter
        gain = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * j
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * j
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean) * gain
    return x.clamp(0, 1)


@RECOGNIZERS.register("cnn", description="small ResNet-style face CNN trained from scratch with torch (softmax + label smoothing or ArcFace margin)")
class FaceCNN(FaceRecognizer):
    """A face recognizer trained from scratch on the enrolment images it attacks with."""

    trainable = True
    #: bump when training changes, so that models cached by older code are not reused
    version = 2

    @classmethod
    def config_defaults(cls) -> dict[str, Any]:
        """The ``recognizer.cnn.*`` settings and their defaults."""
        return FaceCNNConfig().as_dict()

    def __init__(self, device: str = "cpu", **params: Any) -> None:
        self.config = recognizer_settings(FaceCNNConfig, "cnn", params)
        self.device = torch.device(device)
        self.input_size = (self.config.input_size, self.config.input_size)  # type: ignore[misc]
        self.net = FaceNet(self.config).to(self.device)
        self.last_loss: float | None = None

    def fit(self, images: torch.Tensor, labels: np.ndarray, seed: int = 0) -> FaceCNN:
        """Train from freshly seeded weights on uint8 (N,3,H,W) images with labels 0..C-1."""
        cfg = self.config
        labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if images.shape[0] != labels_t.shape[0] or images.shape[0] < 2:
            raise ValueError(f"need at least 2 images with one label each, got {images.shape[0]} images and {labels_t.shape[0]} labels")
        num_classes = int(labels_t.max()) + 1
        torch.manual_seed(seed)
        self.net = FaceNet(cfg).to(self.device)
        head = MarginHead(cfg.embedding_dim, num_classes, cfg).to(self.device)
        generator = torch.Generator().manual_seed(seed)
        data = resize_faces(images, cfg.input_size)
        params = list(self.net.parameters()) + list(head.parameters())
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
        batch = min(cfg.batch_size, data.shape[0])
        total = cfg.epochs * steps_per_epoch(data.shape[0], batch)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
        smoothing = cfg.label_smoothing if cfg.loss == "softmax" else 0.0
        self.net.train()
        head.train()

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            x = _normalise(_augment(data[idx], cfg, generator)).to(self.device)
            y = labels_t[idx].to(self.device)
            return F.cross_entropy(head(self.net(x), y), y, label_smoothing=smoothing)

        self.last_loss = train_epochs(data.shape[0], batch, cfg.epochs, generator, optimizer, scheduler, batch_loss, "train face cnn")
        if not math.isfinite(self.last_loss):
            raise RuntimeError(f"face cnn training diverged (loss {self.last_loss}); lower recognizer.cnn.lr")
        log.info("face cnn: %d images, %d identities, %d epochs, final loss %.3f", data.shape[0], num_classes, cfg.epochs, self.last_loss)
        self.net.eval()
        return self

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """(B, embedding_dim) float32 L2-normalised embeddings (eval mode)."""
        self.net.eval()
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = _normalise(resize_faces(images[start:start + batch_size], self.config.input_size)).to(self.device)
            out.append(F.normalize(self.net(x), dim=1).cpu())
        if not out:
            return np.zeros((0, self.config.embedding_dim), np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state)
        self.net.eval()
