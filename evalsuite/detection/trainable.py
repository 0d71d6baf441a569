"""Trainable torchvision detectors: FCOS, RetinaNet or Faster R-CNN on a small ResNet-FPN.

The architectures are torchvision's own (``torchvision.models.detection``); only the sizes
are chosen for CPU-sized runs: a ResNet-18 body (``resnet18`` / ``resnet34`` / ``resnet50``),
an FPN of ``fpn_channels`` channels on C3-C5 (plus P6-P7 for FCOS and RetinaNet, as
``fcos_resnet50_fpn`` does) and, for FCOS, ``head_convs`` convolutions per head branch.

From scratch by default (``weights=None, weights_backbone=None`` in torchvision terms),
with trainable BatchNorm as torchvision uses when nothing is pretrained. With
``backbone_weights=PATH`` (a torchvision ImageNet checkpoint such as
``resnet18-f37072fd.pth``) the body is initialised from it and, as torchvision does for a
pretrained backbone, uses frozen BatchNorm and trains only its last 3 stages. A missing or
mismatching file is a UserError naming it and the ``detector.backbone_weights`` key.

Labels: the split's categories are numbered 1..K in the order given (0 is background).
"""
from __future__ import annotations

import functools
from collections import OrderedDict
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from evalsuite.progress import tqdm

from evalsuite.errors import UserError

log = logging.getLogger(__name__)

ARCHS = ("fcos", "retinanet", "fasterrcnn")
BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50")
#: stage widths of the ``tiny`` body: stem, then layer1..layer4 (strides 4, 8, 16, 32)
TINY_WIDTHS = (16, 32, 64, 96, 128)


@dataclass(frozen=True)
class TrainableConfig:
    """How a torchvision detector is built and trained (``detector.*`` keys)."""

    arch: str = "fcos"
    backbone: str = "tiny"
    fpn_channels: int = 64
    head_convs: int = 2  # FCOS head depth (torchvision's default is 4)
    backbone_weights: str | None = None  # ImageNet checkpoint of the backbone (else from scratch)
    min_size: int = 0  # shorter side the images are resized to; 0 = keep the dataset's size
    max_size: int = 0  # cap of the longer side; 0 = keep the dataset's size
    epochs: int = 12
    batch_size: int = 8
    lr: float = 0.02
    weight_decay: float = 0.0001
    warmup_iters: int = 100
    hflip: bool = True
    score_threshold: float = 0.05
    detections_per_img: int = 100
    workers: int = 0  # DataLoader worker processes reading / anonymizing training images

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"detector.arch={self.arch!r} is not a trainable architecture; use one of {', '.join(ARCHS)}")
        if self.backbone not in BACKBONES:
            raise UserError(f"detector.backbone={self.backbone!r} is not supported; use one of {', '.join(BACKBONES)}")
        for name in ("fpn_channels", "head_convs", "epochs", "batch_size", "detections_per_img"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
                raise UserError(f"detector.{name} must be a positive integer, got {value!r}")
        for name in ("min_size", "max_size", "warmup_iters", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserError(f"detector.{name} must be a non-negative integer, got {value!r}")
        if self.arch != "fasterrcnn" and (self.fpn_channels % 32 or self.fpn_channels < 64):
            raise UserError(f"detector.fpn_channels={self.fpn_channels} must be a multiple of 32 and at least 64 (GroupNorm with 32 groups in the {self.arch} head)")
        for name in ("lr", "weight_decay", "score_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"detector.{name} must be a non-negative number, got {value!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainableConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training_key(self) -> dict[str, Any]:
        """The settings a trained model depends on (cache keys); the weights file by size / mtime."""
        key = {k: v for k, v in self.as_dict().items() if k not in ("score_threshold", "detections_per_img", "workers")}
        if self.backbone_weights:
            stat = Path(self.backbone_weights).expanduser().stat()
            key["backbone_weights"] = {"name": Path(self.backbone_weights).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return key


def load_state_dict(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (``weights_only=True``); UserError naming the file and ``key``."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"weights file {file} not found (set {key} to an existing checkpoint, or null)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the user's file
        raise UserError(f"weights file {file} ({key}) cannot be loaded with torch.load(weights_only=True): {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {file} ({key}) is not a state dict of tensors")
    return state


def tiny_body(widths: Sequence[int] = TINY_WIDTHS) -> nn.Module:
    """A narrow ResNet-10 body of torchvision ``BasicBlock`` s: a 3x3 stride-2 stem, then one
    stride-2 block per stage (``layer1``..``layer4``); about a tenth of ResNet-18's compute."""
    from torchvision.models.resnet import BasicBlock

    stem, *stages = widths
    modules: dict[str, nn.Module] = {
        "conv1": nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
        "bn1": nn.BatchNorm2d(stem),
        "relu": nn.ReLU(inplace=True),
    }
    inplanes = stem
    for i, planes in enumerate(stages, start=1):
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=2, bias=False), nn.BatchNorm2d(planes))
        modules[f"layer{i}"] = BasicBlock(inplanes, planes, stride=2, downsample=downsample)
        inplanes = planes
    body = nn.Sequential(OrderedDict(modules))
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return body


def _resnet_body(cfg: TrainableConfig) -> tuple[nn.Module, list[int], bool]:
    from torchvision.models import resnet
    from torchvision.ops import misc as misc_nn_ops

    if cfg.backbone == "tiny":
        if cfg.backbone_weights:
            raise UserError("detector.backbone=tiny has no ImageNet weights; use detector.backbone=resnet18 with detector.backbone_weights")
        return tiny_body(), list(TINY_WIDTHS[2:]), False

    pretrained = bool(cfg.backbone_weights)
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    body = getattr(resnet, cfg.backbone)(weights=None, norm_layer=norm_layer)
    if pretrained:
        state = load_state_dict(cfg.backbone_weights, "detector.backbone_weights")  # type: ignore[arg-type]
        try:
            result = body.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensors of the wrong shape
            raise UserError(f"detector.backbone_weights={cfg.backbone_weights} does not hold {cfg.backbone} ImageNet weights: {str(exc).splitlines()[-1].strip()}") from None
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        if missing or not any(k.startswith("layer4.") for k in state):
            raise UserError(
                f"detector.backbone_weights={cfg.backbone_weights} does not hold {cfg.backbone} ImageNet weights "
                f"(missing {', '.join(missing[:3]) or 'layer4.*'}); use torchvision's {cfg.backbone} checkpoint"
            )
        trainable = ["layer4", "layer3", "layer2"]  # torchvision's default for a pretrained backbone
        for name, parameter in body.named_parameters():
            if not any(name.startswith(layer) for layer in trainable):
                parameter.requires_grad_(False)
    stage2 = body.inplanes // 8  # 64 for resnet18/34, 256 for resnet50
    channels = [stage2 * 2, stage2 * 4, stage2 * 8]  # C3, C4, C5
    return body, channels, pretrained


def build_detector(cfg: TrainableConfig, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    """A torchvision detector for ``num_classes`` categories (background excluded).

    ``image_size`` ``(height, width)`` is the dataset's image size, used when ``min_size`` /
    ``max_size`` are 0 (keep the size).
    """
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    body, channels, _ = _resnet_body(cfg)
    ch = cfg.fpn_channels
    extra = LastLevelMaxPool() if cfg.arch == "fasterrcnn" else LastLevelP6P7(ch, ch)
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, channels, ch, extra_blocks=extra)
    min_size = cfg.min_size or min(image_size)
    max_size = cfg.max_size or max(image_size)
    common = {"min_size": min_size, "max_size": max_size, "detections_per_img": cfg.detections_per_img}
    classes = num_classes + 1
    strides = (8, 16, 32, 64, 128)
    if cfg.arch == "fcos":
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        return FCOS(backbone, classes, anchor_generator=anchors, head=FCOSHead(ch, 1, classes, num_convs=cfg.head_convs),
                    score_thresh=cfg.score_threshold, **common)
    if cfg.arch == "retinanet":
        sizes = tuple((4 * s, int(4 * s * 2 ** (1 / 3)), int(4 * s * 2 ** (2 / 3))) for s in (4, 8, 16, 32, 64))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        head = RetinaNetHead(ch, anchors.num_anchors_per_location()[0], classes, norm_layer=functools.partial(nn.GroupNorm, 32))
        return RetinaNet(backbone, classes, anchor_generator=anchors, head=head, score_thresh=cfg.score_threshold, **common)
    sizes = ((16,), (32,), (64,), (128,))  # P2-free FPN: C3, C4, C5, pool
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, classes, rpn_anchor_generator=anchors, box_roi_pool=pool,
                      box_score_thresh=cfg.score_threshold, box_detections_per_img=cfg.detections_per_img,
                      min_size=min_size, max_size=max_size)


# ------------------------------------------------------------------------------- training
class _Indexed(torch.utils.data.Dataset):
    """``sample(i)`` as a map-style dataset (for DataLoader workers)."""

    def __init__(self, sample: Callable[[int], Any], size: int) -> None:
        self.sample, self.size = sample, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        return self.sample(index)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _load_batches(sample: Callable[[int], Any], order: list[int], batch_size: int, workers: int):
    """Batches ``[sample(i) for i in chunk]`` in ``order``: in this process, or in ``workers``
    DataLoader processes (same order, same content)."""
    if workers <= 0:
        return ([sample(i) for i in chunk] for chunk in _chunks(order, batch_size))
    loader = torch.utils.data.DataLoader(_Indexed(sample, max(order) + 1), batch_sampler=_chunks(order, batch_size),
                                         num_workers=workers, collate_fn=list)
    return iter(loader)


def _hflip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes}


def train_detector(
    model: nn.Module,
    sample: Callable[[int], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    num_images: int,
    cfg: TrainableConfig,
    seed: int,
    device: str = "cpu",
    description: str = "train detector",
) -> dict[str, float]:
    """Train ``model`` in place on images ``sample(i)`` (uint8 CHW, target with xyxy ``boxes``
    and ``labels``) for ``cfg.epochs`` epochs of shuffled mini-batches; returns statistics.

    SGD with momentum 0.9, a linear warm-up over ``warmup_iters`` iterations and a cosine
    decay; horizontal flips with ``hflip``. Seeded: the same seed gives the same model.
    """
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(num_images / cfg.batch_size)
    total = max(per_epoch * cfg.epochs, 1)

    def schedule(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters) if cfg.warmup_iters else 1.0
        return warm * 0.5 * (1 + math.cos(math.pi * it / total))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    started, last_loss, iteration = time.perf_counter(), float("nan"), 0
    progress = tqdm(total=total, desc=description, unit="it", leave=False)
    for _epoch in range(cfg.epochs):
        order = torch.randperm(num_images, generator=generator).tolist()
        flips = torch.rand(num_images, generator=generator).tolist()
        for indices, loaded in zip(_chunks(order, cfg.batch_size), _load_batches(sample, order, cfg.batch_size, cfg.workers)):
            images, targets = [], []
            for i, (image, target) in zip(indices, loaded):
                if cfg.hflip and flips[i] < 0.5:
                    image, target = _hflip(image, target)
                images.append(image.to(device).float().div_(255))
                targets.append({k: v.to(device) for k, v in target.items()})
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise RuntimeError(f"{description}: the loss became {loss.item()} at iteration {iteration}; lower detector.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
            last_loss = float(loss.detach())
            iteration += 1
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.3f}")
    progress.close()
    model.eval()
    return {"train_s": time.perf_counter() - started, "iterations": float(iteration), "final_loss": last_loss}


@torch.no_grad()
def predict(model: nn.Module, images: Sequence[torch.Tensor], device: str = "cpu") -> list[dict[str, torch.Tensor]]:
    """Detections (xyxy ``boxes``, ``scores``, ``labels``, and ``keypoints`` when predicted; on CPU) of
    uint8 CHW images. Mask R-CNN's image-sized ``masks`` are dropped (only boxes are scored)."""
    model.to(device).eval()
    outputs = model([image.to(device).float().div_(255) for image in images])
    return [{k: v.detach().cpu() for k, v in out.items() if k != "masks"} for out in outputs]
