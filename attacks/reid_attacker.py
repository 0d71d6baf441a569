"""The re-identification attacker: torchreid's OSNet, trained here or loaded from a checkpoint.

Training follows torchreid's softmax recipe (cross-entropy with label smoothing, Adam,
cosine schedule, random flip and random crop; optionally softmax + hard-mining triplet and
torchreid's random erasing) on in-memory uint8 tensors, so that an attacker can be trained on
any anonymized copy of the training split without writing it to disk. The backbone starts
from random weights or, with ``init_weights``, from an ImageNet-pretrained checkpoint the user
supplies (torchreid's ``osnet_x1_0_imagenet.pth`` and the like; never downloaded). Features
are the model's eval-mode embedding; distances are torchreid's.
"""
from __future__ import annotations

import logging
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from evalsuite.progress import tqdm

from evalsuite.errors import UserError
from evalsuite.store import atomic_path

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AttackerConfig:
    """Everything that determines a trained attacker (part of its cache key)."""

    model: str = "osnet_x0_25"
    weights: str | None = None  # torchreid checkpoint; None = train from scratch
    init_weights: str | None = None  # ImageNet-pretrained backbone to fine-tune from; None = random initialisation
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    label_smooth: bool = True
    loss: str = "softmax"  # "softmax" or "triplet" (softmax + hard-mining triplet, torchreid's ImageTripletEngine)
    triplet_margin: float = 0.3
    triplet_weight: float = 1.0
    instances_per_id: int = 4  # K of the identity-balanced P x K batches used with the triplet loss
    # a quarter of torchreid's 256x128, so that the CPU demo trains five attackers in minutes;
    # use attacker.height=256 attacker.width=128 to compare with published numbers
    height: int = 64
    width: int = 32
    random_crop_padding: int = 4
    random_erasing: float = 0.0  # probability of torchreid's RandomErasing per training image (its recipe: 0.5)
    distance: str = "euclidean"
    normalize_features: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AttackerConfig":
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _torchreid():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchreid.reid.losses as losses
        import torchreid.reid.models as models
        import torchreid.reid.optim as optim
    return models, losses, optim


def available_models() -> list[str]:
    models, _, _ = _torchreid()
    return sorted(getattr(models, "__model_factory"))


def build_model(name: str, num_classes: int, loss: str = "softmax") -> torch.nn.Module:
    """A randomly initialised torchreid model (never downloads ImageNet weights)."""
    models, _, _ = _torchreid()
    known = available_models()
    if name not in known:
        from evalsuite.errors import did_you_mean

        raise UserError(f"unknown attacker.model {name!r}: {did_you_mean(name, known)}")
    return models.build_model(name, num_classes=num_classes, loss=loss, pretrained=False)


def load_checkpoint_state(path: str | Path, key: str = "attacker.weights") -> dict[str, torch.Tensor]:
    """The state dict of a torchreid checkpoint, loaded with ``weights_only=True``; ``key`` names the config key in errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = ("an ImageNet-pretrained torchreid backbone (e.g. osnet_x1_0_imagenet.pth)" if key == "attacker.init_weights"
                else "a torchreid checkpoint (e.g. osnet_x1_0 trained on Market-1501)")
        raise UserError(
            f"attacker weights not found: {path}; point {key}=/path/to/checkpoint.pth at {what} "
            f"or set {key}=null to train from scratch"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"cannot load attacker weights {path} with weights_only=True ({str(exc).splitlines()[0][:160]}); save the state_dict alone with torch.save(model.state_dict(), path)") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"attacker weights {path} hold no state dict of tensors; expected a torchreid checkpoint or a state_dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def apply_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy matching tensors into ``model``; the identity classifier may differ in size."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(matched))
    backbone = [k for k in own if not k.startswith("classifier")]
    missing = [k for k in backbone if k not in matched]
    if missing:
        raise UserError(f"attacker weights {source} do not fit attacker.model ({len(missing)} backbone tensors missing or of another shape, e.g. {missing[0]!r}); set attacker.model to the architecture the checkpoint was trained with")
    if skipped:
        log.info("weights %s: not loaded (classifier of another size): %s", source, ", ".join(skipped[:4]))
    own.update(matched)
    model.load_state_dict(own)


def resize(images: torch.Tensor, height: int, width: int, batch_size: int = 512) -> torch.Tensor:
    """uint8 (B,3,H,W) -> uint8 (B,3,height,width), antialiased bilinear, in chunks."""
    if images.shape[-2:] == (height, width):
        return images
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].float()
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float, ImageNet mean/std as torchreid's transforms, channels-last."""
    x = images.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def preprocess(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torchreid's test transform: resize to (height, width), then normalise."""
    return normalize(resize(images, height, width))


def identity_balanced_batches(pids: torch.Tensor, batch_size: int, instances: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of P x K batches, as torchreid's RandomIdentitySampler, but seeded."""
    groups: dict[int, list[torch.Tensor]] = {}
    for pid in torch.unique(pids).tolist():
        idx = torch.nonzero(pids == pid).flatten()
        if len(idx) < instances:
            idx = idx[torch.randint(len(idx), (instances,), generator=generator)]
        idx = idx[torch.randperm(len(idx), generator=generator)]
        groups[pid] = [idx[i : i + instances] for i in range(0, len(idx) - instances + 1, instances)]
    per_batch = max(1, batch_size // instances)
    available = sorted(groups)
    batches = []
    while len(available) >= per_batch:
        chosen = [available[i] for i in torch.randperm(len(available), generator=generator)[:per_batch].tolist()]
        batches.append(torch.cat([groups[pid].pop(0) for pid in chosen]))
        available = [pid for pid in available if groups[pid]]
    return batches


def augment(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop after zero padding (per image, seeded)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1).to(x.device), x.flip(-1), x)
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).tolist()
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).tolist()
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)]).contiguous(memory_format=torch.channels_last)
    return x


def random_erasing(x: torch.Tensor, probability: float, generator: torch.Generator, area: tuple[float, float] = (0.02, 0.4),
                   min_aspect: float = 0.3, attempts: int = 100) -> torch.Tensor:
    """torchreid's ``RandomErasing`` (Zhong et al., 2020) on a normalised batch, seeded.

    Per image, with ``probability``: up to ``attempts`` draws of a rectangle with an area share
    in ``area`` and an aspect ratio in [min_aspect, 1 / min_aspect]; the first that fits is
    filled with the ImageNet mean values, exactly as torchreid (which applies it after
    normalisation, so the fill is those numbers in normalised units).
    """
    b, _, h, w = x.shape
    out = x.clone()
    fill = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    for i in range(b):
        if torch.rand(1, generator=generator).item() >= probability:
            continue
        for _ in range(attempts):
            target = (area[0] + (area[1] - area[0]) * torch.rand(1, generator=generator).item()) * h * w
            aspect = min_aspect + (1 / min_aspect - min_aspect) * torch.rand(1, generator=generator).item()
            eh, ew = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
            if 0 < eh < h and 0 < ew < w:
                y0 = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
                x0 = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
                out[i, :, y0 : y0 + eh, x0 : x0 + ew] = fill
                break
    return out


class ReidAttacker:
    """A torchreid model used as a re-identification attacker."""

    def __init__(self, config: AttackerConfig, num_classes: int, device: str = "cpu", seed: int = 0) -> None:
        self.config = config
        self.device = torch.device(device)
        self.num_classes = num_classes
        self.seed = seed
        self.last_loss: float | None = None
        torch.manual_seed(seed)  # the initial weights depend on the seed only, not on earlier work
        if config.loss not in ("softmax", "triplet"):
            raise UserError(f"attacker.loss={config.loss!r}: use softmax or triplet (softmax + hard-mining triplet)")
        # channels-last roughly doubles OSNet's CPU training throughput at batch 64
        self.model = build_model(config.model, num_classes, loss=config.loss).to(self.device, memory_format=torch.channels_last)
        if config.init_weights:
            apply_state(self.model, load_checkpoint_state(config.init_weights, "attacker.init_weights"), str(config.init_weights))

    def load_weights(self, path: str | Path) -> "ReidAttacker":
        apply_state(self.model, load_checkpoint_state(path), str(path))
        return self

    def fit(self, images: Any, pids: torch.Tensor, description: str = "train attacker") -> "ReidAttacker":
        """Train on uint8 images (N,3,H,W), a tensor or a set on disk, with identity labels 0..num_classes-1."""
        _, losses, optim = _torchreid()
        cfg = self.config
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        model = self.model.train()
        optimizer = optim.build_optimizer(model, optim=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = optim.build_lr_scheduler(optimizer, lr_scheduler="cosine", max_epoch=cfg.epochs)
        criterion = losses.CrossEntropyLoss(num_classes=self.num_classes, use_gpu=self.device.type == "cuda", label_smooth=cfg.label_smooth)
        triplet = losses.TripletLoss(margin=cfg.triplet_margin) if cfg.loss == "triplet" else None
        if isinstance(images, torch.Tensor):
            images = resize(images, cfg.height, cfg.width)  # once, not every epoch
        elif tuple(images.shape[-2:]) != (cfg.height, cfg.width):  # a set on disk: resized once into a file beside it, read per batch
            from evalsuite.arrays import derived

            images = derived(images, f"{cfg.height}x{cfg.width}", lambda x: resize(x, cfg.height, cfg.width))
        approx_steps = max(1, len(pids) // cfg.batch_size)
        progress = tqdm(total=cfg.epochs * approx_steps, desc=description, unit="batch", leave=False)
        for _epoch in range(cfg.epochs):
            for idx in self._epoch_batches(pids, generator):
                x = normalize(images[idx].to(self.device))
                x = augment(x, cfg.random_crop_padding, generator)
                if cfg.random_erasing > 0:
                    x = random_erasing(x, cfg.random_erasing, generator)
                y = pids[idx].to(self.device)
                if triplet is None:
                    loss = criterion(model(x), y)
                else:
                    logits, features = model(x)
                    loss = criterion(logits, y) + cfg.triplet_weight * triplet(features, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}")
            scheduler.step()
        progress.close()
        self.last_loss = float(loss.item())
        log.info("%s: final training loss %.3f", description, self.last_loss)
        model.eval()
        return self

    def _epoch_batches(self, pids: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        cfg = self.config
        if cfg.loss == "triplet":
            return identity_balanced_batches(pids, cfg.batch_size, cfg.instances_per_id, generator)
        order = torch.randperm(len(pids), generator=generator)
        steps = max(1, len(pids) // cfg.batch_size)  # drop_last, as torchreid's train loader
        return [order[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(steps)]

    @torch.no_grad()
    def extract(self, images: torch.Tensor, batch_size: int = 128, description: str = "extract features") -> torch.Tensor:
        """Eval-mode embeddings (N, D) on the CPU."""
        model = self.model.eval()
        feats = []
        for start in tqdm(range(0, images.shape[0], batch_size), desc=description, unit="batch", leave=False):
            x = preprocess(images[start : start + batch_size].to(self.device), self.config.height, self.config.width)
            f = model(x).float()
            if self.config.normalize_features:
                f = F.normalize(f, p=2, dim=1)
            feats.append(f.cpu())
        return torch.cat(feats) if feats else torch.empty(0)

    def signed_features(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode features of float images in [-1, 1], differentiable in ``x`` (the de-anonymizer's
        perceptual loss); the model's own weights are frozen."""
        self.model.eval().requires_grad_(False)
        x = F.interpolate((x + 1) / 2, size=(self.config.height, self.config.width), mode="bilinear", align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return self.model(((x - mean) / std).contiguous(memory_format=torch.channels_last))

    def save(self, path: Path) -> None:
        """Save the state dict atomically (loadable with ``weights_only=True``)."""
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)

    def load_cached(self, path: Path) -> "ReidAttacker":
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()
        return self
