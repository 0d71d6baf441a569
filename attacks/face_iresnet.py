"""``iresnet``: ArcFace's IResNet in torch, loading published weights from a file, fine-tuned to adapt.

The frozen recognizers (``dlib``, ``arcface`` through onnxruntime) cannot adapt: under the
``adaptive`` threat model only the classifier on top of their embeddings is refitted, which
is why a frozen dlib recovers nothing of a blur that UP-GAN's retrained recognizer largely
undoes (threat model II). This recognizer is the trainable counterpart: the IResNet of
InsightFace's ``arcface_torch`` (Deng et al., ArcFace; Duta et al., improved residual
networks), built here with the same module names so that its published ``backbone.pth``
state dicts (``ms1mv3_arcface_r50``, ``glint360k_cosface_r100``, ...) load as they are, and
fine-tuned on the enrolment images it attacks with (clean for ``naive``, anonymized for
``adaptive`` and ``parrot``) with an ArcFace margin head over the enrolled identities.

- **Architecture** (``depth`` 18 / 34 / 50 / 100): conv3x3 (64) -> BN -> PReLU -> four stages of
  improved basic blocks (BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN, plus a
  1x1-conv + BN shortcut where the shape changes; widths 64, 128, 256, 512, each stage
  halving the size) -> BN -> dropout -> linear (512 x 7 x 7 -> 512) -> BN (fixed scale).
  Input: 112 x 112 RGB scaled to [-1, 1], as arcface_torch. ``base_width`` other than 64
  shrinks every stage (for tests; published weights need 64).
- **Weights**: ``weights`` is a file you supply (a ``torch.save``'d state dict, read with
  ``weights_only=True``, or ``.safetensors``); nothing is downloaded. Without it the network
  starts from random weights (weak on small sets: the attacker-strength guard will say so).
- **Fine-tuning**: ``epochs`` of SGD with momentum, a one-cycle schedule at ``lr``, ArcFace's
  additive angular margin (``margin``, ``scale``) on a fresh head, the face CNN's flips,
  shifts and jitter; ``epochs=0`` keeps the loaded weights frozen (then it behaves like the
  frozen recognizers, for a side-by-side comparison).
"""
from __future__ import annotations

import logging
import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.face_cnn import MarginHead, _augment, _normalise, resize_faces
from attacks.face_recognizer import FaceRecognizer, recognizer_settings
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS
from evalsuite.training import steps_per_epoch, train_epochs

log = logging.getLogger(__name__)

LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
INPUT_SIZE = 112
WEIGHTS_KEY = "recognizer.iresnet.weights"


@dataclass(frozen=True)
class IResNetConfig:
    """Everything that determines a fine-tuned ``iresnet`` (part of its cache key)."""

    depth: int = 50
    weights: str | None = None
    base_width: int = 64
    embedding_dim: int = 512
    dropout: float = 0.0
    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss: str = "arcface"  # the margin head of attacks.face_cnn: "arcface" or "softmax"
    margin: float = 0.5
    scale: float = 64.0
    shift: int = 6
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.depth not in LAYERS:
            raise UserError(f"recognizer.iresnet.depth={self.depth}: use one of {', '.join(map(str, LAYERS))} (the published ArcFace backbones)")
        if self.loss not in ("arcface", "softmax"):
            raise UserError(f"recognizer.iresnet.loss={self.loss!r}: use arcface or softmax")
        for name in ("base_width", "embedding_dim", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"recognizer.iresnet.{name}={getattr(self, name)} must be >= 1")
        if self.epochs < 0 or self.lr <= 0:
            raise UserError("recognizer.iresnet.epochs must be >= 0 (0: frozen) and recognizer.iresnet.lr > 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImprovedBlock(nn.Module):
    """IResNet's basic block: BN -> conv -> BN -> PReLU -> conv(stride) -> BN, plus the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace's IResNet backbone with arcface_torch's parameter names."""

    def __init__(self, depth: int = 50, base_width: int = 64, embedding_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [base_width * m for m in (1, 2, 4, 8)]
        self.conv1 = nn.Conv2d(3, base_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width, eps=1e-5)
        self.prelu = nn.PReLU(base_width)
        cin = base_width
        for index, (width, blocks) in enumerate(zip(widths, LAYERS[depth]), start=1):
            layer = [ImprovedBlock(cin, width, 2)] + [ImprovedBlock(width, width, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
            cin = width
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * 7 * 7, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # as arcface_torch: the last BN only shifts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(self.bn2(x).flatten(1))))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (``.safetensors``, or a ``torch.save`` file read with ``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"iresnet weights not found: {path}; set {WEIGHTS_KEY}=/path/to/backbone.pth (an arcface_torch IResNet state dict, "
                        f"e.g. ms1mv3_arcface_r50/backbone.pth, with the matching recognizer.iresnet.depth) or {WEIGHTS_KEY}=null to train from scratch")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"cannot read iresnet weights {path} ({str(exc).splitlines()[0][:160]}); {WEIGHTS_KEY} must be a state dict saved with torch.save or safetensors") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"iresnet weights {path} hold no state dict of tensors ({WEIGHTS_KEY})")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


@RECOGNIZERS.register("iresnet", description="ArcFace IResNet-18/34/50/100 in torch from a user-supplied weight file (recognizer.iresnet.weights), fine-tuned on the enrolment images (adapts)")
class IResNetRecognizer(FaceRecognizer):
    """ArcFace's IResNet, fine-tuned on the images it attacks with (frozen with ``epochs=0``)."""

    #: the embedding is learnt from the enrolment images, so naive and adaptive differ in training data
    trainable = True
    input_size = (INPUT_SIZE, INPUT_SIZE)
    #: bump when training changes, so that models cached by older code are not reused
    version = 1

    @classmethod
    def config_defaults(cls) -> dict[str, Any]:
        """The ``recognizer.iresnet.*`` settings and their defaults."""
        return IResNetConfig().as_dict()

    def __init__(self, device: str = "cpu", **params: Any) -> None:
        self.config = recognizer_settings(IResNetConfig, "iresnet", params)
        self.device = torch.device(device)
        self._pretrained = load_weights(self.config.weights) if self.config.weights else None  # a missing file fails here, early
        self.net = self._fresh_net()
        self.last_loss: float | None = None

    def _fresh_net(self) -> IResNet:
        cfg = self.config
        net = IResNet(cfg.depth, cfg.base_width, cfg.embedding_dim, cfg.dropout)
        if self._pretrained is not None:
            own = net.state_dict()
            wrong = [k for k, v in self._pretrained.items() if k in own and own[k].shape != v.shape]
            missing = [k for k in own if k not in self._pretrained and not k.endswith("num_batches_tracked")]
            if wrong or missing:
                example = (wrong or missing)[0]
                raise UserError(f"iresnet weights {cfg.weights} do not fit recognizer.iresnet.depth={cfg.depth} / base_width={cfg.base_width} "
                                f"({len(wrong)} tensors of another shape, {len(missing)} missing, e.g. {example!r}); set the depth the file was trained with")
            net.load_state_dict({k: v for k, v in self._pretrained.items() if k in own}, strict=False)
        return net.to(self.device)

    def fit(self, images: torch.Tensor, labels: np.ndarray, seed: int = 0) -> "IResNetRecognizer":
        """Fine-tune from the loaded (or freshly seeded) weights on uint8 (N,3,H,W) images with labels 0..C-1."""
        cfg = self.config
        torch.manual_seed(seed)
        self.net = self._fresh_net()
        if cfg.epochs == 0:
            self.net.eval()
            return self
        labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if images.shape[0] != labels_t.shape[0] or images.shape[0] < 2:
            raise ValueError(f"need at least 2 images with one label each, got {images.shape[0]} images and {labels_t.shape[0]} labels")
        head = MarginHead(cfg.embedding_dim, int(labels_t.max()) + 1, cfg).to(self.device)  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(seed)
        data = resize_faces(images, INPUT_SIZE)
        params = [p for p in self.net.parameters() if p.requires_grad] + list(head.parameters())
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
        batch = min(cfg.batch_size, data.shape[0])
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch(data.shape[0], batch), pct_start=0.15)
        self.net.train()

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            x = _normalise(_augment(data[idx], cfg, generator)).to(self.device)  # type: ignore[arg-type]
            y = labels_t[idx].to(self.device)
            return F.cross_entropy(head(self.net(x), y), y)

        self.last_loss = train_epochs(data.shape[0], batch, cfg.epochs, generator, optimizer, scheduler, batch_loss, "fine-tune iresnet")
        if not math.isfinite(self.last_loss):
            raise RuntimeError(f"iresnet fine-tuning diverged (loss {self.last_loss}); lower recognizer.iresnet.lr")
        log.info("iresnet-%d: fine-tuned on %d images, final loss %.3f", cfg.depth, data.shape[0], self.last_loss)
        self.net.eval()
        return self

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """(B, embedding_dim) float32 L2-normalised embeddings (eval mode)."""
        self.net.eval()
        out = [F.normalize(self.net(_normalise(resize_faces(images[i : i + batch_size], INPUT_SIZE)).to(self.device)), dim=1).cpu()
               for i in range(0, images.shape[0], batch_size)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, self.config.embedding_dim), np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state)
        self.net.eval()
