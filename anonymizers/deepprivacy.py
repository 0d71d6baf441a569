"""``dp-body`` and ``dp-face``: DeepPrivacy-style conditional inpainting GANs (thesis Papers A-E).

What is built (and which part of the seed ``004`` it follows):

- **Generator**: a small U-Net (Ronneberger et al.; DeepPrivacy2 Section 4.2 "U-Net with a
  context encoder") whose input is the crop with the region removed (set to 0 in [-1, 1],
  i.e. mid-gray), the region mask, and pose heatmaps (17 COCO keypoints for bodies, the
  5 facial landmarks of :mod:`evalsuite.data.types` for faces; an absent or invisible point
  gives an empty heatmap). A latent code ``z ~ N(0, 1)`` is projected by a linear layer and
  added at the bottleneck (the "traditional" injection of thesis Figure 2.3, not StyleGAN's
  per-layer modulation). The output is composited with the known pixels,
  ``G(I, C) * (1 - C) + I * C`` (Paper B, Equation 12).
- **Discriminator**: a conditional patch discriminator on the (composited) image, the mask
  and the heatmaps.
- **Loss**: the recipe of Paper D (Surface-Guided GANs, Section 4 "Experiments",
  implementation paragraph): the non-saturating adversarial loss (Goodfellow et al.) with
  the epsilon penalty (Karras et al. 2018, ``epsilon * D(x)^2`` on real logits) and
  R1 regularisation (Mescheder et al. 2018) masked by the region ``M`` (the gradient of
  ``D(real)`` with respect to the real image is counted only inside the region).
  Plus an L1 reconstruction term inside the region (``l1_weight``; 0 = pure adversarial as
  Papers B and D). Justification: the default models train for a few minutes on a CPU,
  where a purely adversarial objective has not left its first noisy phase; the L1 term
  (Pathak et al. "context encoders", the inpainting losses Paper B Section 2 lists) gives
  every step a stable signal. Its side effect is a pull toward the conditional mean (a
  blurrier, more average person); it is a deviation from DeepPrivacy2 and is reported as one.
- **Crop expansion and paste back** (DeepPrivacy2 Sections 3.4 / 4.3): each region instance
  (a connected part of the given mask, parts closer than ``dilation`` pixels joined) is
  dilated by ``dilation`` pixels, its bounding box grown to the generator's aspect ratio
  and by the factor ``expand``, cropped (zero padding outside the image), the region
  removed BEFORE resizing (no pixel of the region reaches the condition through the
  resampling filter), resized to ``height x width``, generated, resized back and pasted
  ONLY inside the dilated instance mask within the crop.
- **Recursive stitching** (DeepPrivacy2 Section 4.3, thesis Section 3.3.3): the instances
  of one image are generated one at a time in ascending order of their area (pixels),
  each on the image that already holds the ones before it.
- **Seeded latents**: one ``z`` per instance, drawn in image order, instance order from
  the given ``torch.Generator`` (each draw ``randn(z_dim)`` on its own, so batch sizes do
  not change which code an instance gets): same state + seed -> same output.

``fit_on = "train"``: :meth:`DeepPrivacyAnonymizer.fit` trains the GAN on the training
images (the pipeline caches the state). ``checkpoint=PATH`` loads a generator instead
(written by ``evalsuite train`` or :func:`anonymizers.base.save_state`); a missing file or a
file whose keys / shapes / architecture differ from the anonymizer's parameters is a
one-line :class:`~evalsuite.errors.UserError` naming the file and the key.

The given-region contract still holds: the pipeline keeps the output only inside the
given mask, so the dilation widens what the generator must invent (no original pixel of
the dilated ring reaches it) while the visible change stays inside the region.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from evalsuite.progress import tqdm

from anonymizers.base import Anonymizer, component_version
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

#: state format of the generator weights (bump when the keys change)
FORMAT = "evalsuite-deepprivacy/1"
POSES = {"body": 17, "face": 5}


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class DPConfig:
    """Architecture and training settings (the anonymizer's parameters minus ``checkpoint``)."""

    pose: str = "body"
    height: int = 64
    width: int = 32
    channels: int = 16
    depth: int = 3
    z_dim: int = 32
    expand: float = 1.2
    dilation: int = 2
    steps: int = 600
    batch_size: int = 16
    lr: float = 0.0002
    r1_gamma: float = 1.0
    epsilon: float = 0.001
    l1_weight: float = 1.0

    ARCHITECTURE = ("pose", "height", "width", "channels", "depth", "z_dim")
    #: the ``format`` entry of the weights a model with this config writes and accepts
    STATE_FORMAT = FORMAT

    def __post_init__(self) -> None:
        from evalsuite.schema import DEEPPRIVACY_SCHEMA, _show

        if self.pose not in POSES:
            raise UserError(f"deepprivacy anonymizer: pose={self.pose!r}: use one of {', '.join(POSES)}")
        for name, check in DEEPPRIVACY_SCHEMA.items():
            value = getattr(self, name)
            if not check.valid(value):
                raise UserError(f"anonymizer parameter {name}={_show(value)}: expected {check.describe()}; e.g. {name}={_show(check.example(getattr(DPConfig, name)))}")
        step = 2 ** self.depth
        if self.height % step or self.width % step:
            raise UserError(f"deepprivacy anonymizer: height={self.height} and width={self.width} must be multiples of 2**depth={step}")

    @property
    def keypoints(self) -> int:
        return POSES[self.pose]

    @property
    def points_key(self) -> str:
        """The annotation key of the pose the generator is conditioned on."""
        return "keypoints" if self.pose == "body" else "landmarks"

    def box(self, region: np.ndarray) -> tuple[int, int, int, int]:
        """The crop of one (dilated) region instance: its box at the generator's aspect, grown by ``expand``."""
        return expanded_box(region, (self.height, self.width), self.expand)

    def architecture(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.ARCHITECTURE}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- networks

def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


def _widths(channels: int, depth: int) -> list[int]:
    return [channels * min(2 ** i, 8) for i in range(depth + 1)]


class UNetGenerator(nn.Module):
    """U-Net on (masked image, mask, heatmaps); the latent code is added at the bottleneck."""

    def __init__(self, in_channels: int, channels: int, depth: int, z_dim: int) -> None:
        super().__init__()
        widths = _widths(channels, depth)
        self.stem = _conv(in_channels, widths[0])
        self.down = nn.ModuleList(nn.Sequential(_conv(widths[i], widths[i + 1], 2), _conv(widths[i + 1], widths[i + 1])) for i in range(depth))
        self.latent = nn.Linear(z_dim, widths[-1])
        self.up = nn.ModuleList(nn.Sequential(_conv(widths[i + 1] + widths[i], widths[i]), _conv(widths[i], widths[i])) for i in reversed(range(depth)))
        self.to_rgb = nn.Conv2d(widths[0], 3, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = h + self.latent(z)[:, :, None, None]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = block(torch.cat([F.interpolate(h, size=skip.shape[2:], mode="nearest"), skip], dim=1))
        return torch.tanh(self.to_rgb(h))


class PatchDiscriminator(nn.Module):
    """Conditional patch discriminator on (image, mask, heatmaps): one logit per patch."""

    def __init__(self, in_channels: int, channels: int, depth: int) -> None:
        super().__init__()
        widths = _widths(channels, depth)
        layers: list[nn.Module] = [_conv(in_channels, widths[0])]
        layers += [_conv(widths[i], widths[i + 1], 2) for i in range(depth)]
        layers.append(nn.Conv2d(widths[-1], 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_generator(config: DPConfig) -> UNetGenerator:
    return UNetGenerator(3 + 1 + config.keypoints, config.channels, config.depth, config.z_dim)


def build_discriminator(config: DPConfig) -> PatchDiscriminator:
    return PatchDiscriminator(3 + 1 + config.keypoints, config.channels, config.depth)


# --------------------------------------------------------------------------- geometry

def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool mask grown by ``radius`` pixels (elliptical structuring element)."""
    if radius <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), _disk(radius)).astype(bool)


def instances(mask: np.ndarray, join: int = 0) -> list[np.ndarray]:
    """The region instances of a (H, W) bool mask in stitching order: ascending area.

    Instances are the 8-connected components of the mask grown by ``join`` pixels (parts of
    one person closer than that stay together), each cut back to the mask, so every pixel
    of the mask belongs to exactly one instance. Ties keep the components' label order."""
    if not mask.any():
        return []
    grown = dilate(mask, join)
    count, labels = cv2.connectedComponents(grown.astype(np.uint8), connectivity=8)
    parts = [(labels == i) & mask for i in range(1, count)]
    parts = [p for p in parts if p.any()]
    return sorted(parts, key=lambda p: int(p.sum()))  # sorted() is stable


def expanded_box(mask: np.ndarray, aspect: tuple[int, int], expand: float) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (ends exclusive, may lie outside the image): the mask's bounding
    box grown to ``aspect = (height, width)`` and scaled by ``expand`` about its centre."""
    ys, xs = np.nonzero(mask)
    bx0, bx1, by0, by1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    gh, gw = aspect
    h = max(by1 - by0, (bx1 - bx0) * gh / gw) * expand
    w = h * gw / gh
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    x0, y0 = int(math.floor(cx - w / 2)), int(math.floor(cy - h / 2))
    return x0, y0, x0 + max(1, int(math.ceil(w))), y0 + max(1, int(math.ceil(h)))


def crop(tensor: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``tensor[..., y0:y1, x0:x1]`` with zeros where the box leaves the image."""
    x0, y0, x1, y1 = box
    height, width = tensor.shape[-2:]
    pad = (max(0, -x0), max(0, x1 - width), max(0, -y0), max(0, y1 - height))
    if not any(pad):
        return tensor[..., y0:y1, x0:x1]
    padded = F.pad(tensor.to(torch.uint8), pad).bool() if tensor.dtype == torch.bool else F.pad(tensor, pad)
    return padded[..., y0 + pad[2]:y1 + pad[2], x0 + pad[0]:x1 + pad[0]]


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a float (N, C, H, W) tensor."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bool mask resized conservatively: an output pixel is in the region when any part of its area is."""
    return F.adaptive_avg_pool2d(mask.float(), size) > 0


def person_keypoints(annotation: dict | None, key: str, count: int) -> list[np.ndarray]:
    """The (count, 3) ``[x, y, visible]`` arrays of the people in an annotation.

    ``annotation[key]`` is one person (``count`` points of ``[x, y]`` or ``[x, y, v]``) or a
    list of people; None, a missing key or a point count other than ``count`` gives no people."""
    value = (annotation or {}).get(key)
    if not value:
        return []
    people = [value] if np.ndim(value[0]) == 1 else list(value)
    out = []
    for person in people:
        if person is None:
            continue
        array = np.asarray(person, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] != count or array.shape[1] not in (2, 3):
            continue
        if array.shape[1] == 2:
            array = np.concatenate([array, np.ones((count, 1))], axis=1)
        array[:, 2] = array[:, 2] > 0
        out.append(array)
    return out


def instance_keypoints(people: list[np.ndarray], region: np.ndarray, count: int) -> np.ndarray:
    """The keypoints of the person with the most visible points inside ``region`` (zeros if none)."""
    best, best_hits = np.zeros((count, 3)), 0
    height, width = region.shape
    for person in people:
        xs, ys = np.clip(person[:, 0].astype(int), 0, width - 1), np.clip(person[:, 1].astype(int), 0, height - 1)
        hits = int((region[ys, xs] & (person[:, 2] > 0)).sum())
        if hits > best_hits:
            best, best_hits = person, hits
    return best


def to_crop_coordinates(points: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Keypoints ``[x, y, v]`` in image pixels -> generator pixels of the crop ``box``."""
    x0, y0, x1, y1 = box
    out = points.copy()
    out[:, 0] = (points[:, 0] - x0) * size[1] / (x1 - x0)
    out[:, 1] = (points[:, 1] - y0) * size[0] / (y1 - y0)
    inside = (out[:, 0] >= 0) & (out[:, 0] < size[1]) & (out[:, 1] >= 0) & (out[:, 1] < size[0])
    out[:, 2] = out[:, 2] * inside
    return out


def heatmaps(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, K, H, W) Gaussian heatmaps (sigma = H / 40, at least 1 px) of (N, K, 3) ``[x, y, visible]``."""
    height, width = size
    sigma = max(1.0, height / 40)
    ys = torch.arange(height, dtype=torch.float32, device=points.device).view(1, 1, height, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32, device=points.device).view(1, 1, 1, width) + 0.5
    px, py, visible = (points[..., i].float().view(*points.shape[:2], 1, 1) for i in range(3))
    return torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma ** 2)) * visible


@dataclass
class CropSet:
    """Training crops at the generator's resolution: images uint8, masks bool, keypoints (N, K, 3).

    ``inputs`` (uint8, optional): what the generator sees instead of the crop with its region
    removed (head inpainting: the black- or blurred-head crop). ``context`` (optional,
    (N, K', 3)): further keypoints of the same person (head inpainting: the body pose)."""

    images: torch.Tensor
    masks: torch.Tensor
    keypoints: torch.Tensor
    inputs: torch.Tensor | None = None
    context: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _regions(mask: torch.Tensor, config: DPConfig) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]]:
    """(instance, dilated instance, expanded box) of one (1, H, W) mask, in stitching order."""
    for part in instances(mask[0].cpu().numpy(), config.dilation):
        grown = dilate(part, config.dilation)
        yield part, grown, config.box(grown)


def condition(crop_masks: torch.Tensor, points: torch.Tensor, config: DPConfig) -> torch.Tensor:
    """The condition besides the image: the region mask and the pose heatmaps, float (N, 1 + K, H, W)."""
    return torch.cat([crop_masks.float(), heatmaps(points, (config.height, config.width))], dim=1)


def _resized_crop(image: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    return resize(crop(image.float().cpu(), box)[None], size).round().clamp(0, 255).to(torch.uint8)


def crop_set(images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, config: DPConfig, *,
             inputs: torch.Tensor | None = None, context: tuple[str, int] | None = None) -> CropSet:
    """Every region instance of a set as a training crop: the original pixels (the "real" images the discriminator sees), the dilated mask and the keypoints.

    ``inputs`` (uint8 like ``images``): the generator's input images, cropped with the same
    boxes (:attr:`CropSet.inputs`); ``context = (key, count)``: further keypoints to read
    for each instance (:attr:`CropSet.context`)."""
    size = (config.height, config.width)
    crops, crop_masks, points, crop_inputs, context_points = [], [], [], [], []
    for index in range(images.shape[0]):
        annotation = None if annotations is None else annotations[index]
        people = person_keypoints(annotation, config.points_key, config.keypoints)
        others = person_keypoints(annotation, context[0], context[1]) if context else []
        for _part, grown, box in _regions(masks[index].cpu(), config):
            crops.append(_resized_crop(images[index], box, size))
            crop_masks.append(resize_mask(crop(torch.from_numpy(grown)[None], box)[None], size))
            points.append(torch.from_numpy(to_crop_coordinates(instance_keypoints(people, grown, config.keypoints), box, size)).float()[None])
            if inputs is not None:
                crop_inputs.append(_resized_crop(inputs[index], box, size))
            if context:
                context_points.append(torch.from_numpy(to_crop_coordinates(instance_keypoints(others, grown, context[1]), box, size)).float()[None])
    if not crops:
        raise UserError("deepprivacy anonymizer: the training images have no region to learn from (every mask is empty); check region")
    return CropSet(torch.cat(crops), torch.cat(crop_masks), torch.cat(points),
                   torch.cat(crop_inputs) if crop_inputs else None, torch.cat(context_points) if context_points else None)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def generate(generator: UNetGenerator, real: torch.Tensor, masks: torch.Tensor, points: torch.Tensor, z: torch.Tensor, config: DPConfig,
             inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(composited output, condition) for signed crops ``real`` (N, 3, H, W): region removed (or the
    signed ``inputs`` given instead, e.g. an obfuscated head), generated, known pixels kept."""
    cond = condition(masks, points, config)
    known = real * (~masks) if inputs is None else inputs
    raw = generator(torch.cat([known, cond], dim=1), z)
    return torch.where(masks, raw, real), cond


# --------------------------------------------------------------------------- training

def _flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{name}"] = value
            else:
                plain["state"].setdefault(str(index), {})[name] = value
    return tensors, plain


def _unflatten_optimizer(prefix: str, tensors: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def trainer_state(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], rng_key: str, rng: torch.Generator) -> dict[str, Any]:
    """A trainer's resumable state: each module's tensors under ``<prefix>.``, each optimizer's
    state (tensors under ``<name>.``, the rest as JSON under ``<name>``) and the RNG state under ``rng_key``."""
    state: dict[str, Any] = {}
    for prefix, module in modules.items():
        state.update({f"{prefix}.{k}": v.detach().cpu() for k, v in module.state_dict().items()})
    for name, optimizer in optimizers.items():
        tensors, plain = _flatten_optimizer(name, optimizer)
        state.update(tensors)
        state[name] = plain
    state[rng_key] = rng.get_state()
    return state


def restore_trainer_state(state: dict[str, Any], modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], rng_key: str,
                          rng: torch.Generator, source: str) -> None:
    """Load what :func:`trainer_state` wrote (UserError naming ``source`` when a module's tensors do not fit)."""
    for prefix, module in modules.items():
        _load_module(module, state, prefix + ".", source)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(_unflatten_optimizer(name, state, state[name]))
    rng.set_state(state[rng_key])


class GanTrainer:
    """Adversarial training of the generator and discriminator, one step at a time, resumable.

    Every random draw (batch indices, latent codes) comes from one CPU ``torch.Generator``
    whose state is part of :meth:`checkpoint`, so a resumed run takes the same steps."""

    def __init__(self, config: DPConfig, data: CropSet, seed: int, device: str | torch.device = "cpu") -> None:
        self.config, self.data, self.device = config, data, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = build_generator(config).to(self.device)
            self.discriminator = build_discriminator(config).to(self.device)
        betas = (0.5, 0.999)  # pix2pix / DCGAN, with lr 2e-4: at lr 0.002 the default dp-body run collapsed (tanh saturated, L1 0.24 -> 0.93 near step 125)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=betas)
        self.rng = torch.Generator().manual_seed(seed)
        self.step = 0

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(real, masks, keypoints, z, inputs or None) of a random batch, signed images on the device."""
        index = torch.randint(len(self.data), (self.config.batch_size,), generator=self.rng)
        z = torch.randn(self.config.batch_size, self.config.z_dim, generator=self.rng)
        move = lambda t: t.to(self.device)  # noqa: E731
        inputs = None if self.data.inputs is None else move(to_signed(self.data.inputs[index]))
        return move(to_signed(self.data.images[index])), move(self.data.masks[index]), move(self.data.keypoints[index]), move(z), inputs

    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update; returns the losses."""
        cfg = self.config
        real, masks, points, z, inputs = self.batch()
        # discriminator: non-saturating loss + epsilon penalty + R1 masked by the region (Paper D, Section 4)
        with torch.no_grad():
            fake, cond = generate(self.generator, real, masks, points, z, cfg, inputs)
        real_in = real.detach().requires_grad_(cfg.r1_gamma > 0)
        real_logits = self.discriminator(torch.cat([real_in, cond], dim=1))
        fake_logits = self.discriminator(torch.cat([fake, cond], dim=1))
        d_adv = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        d_loss = d_adv + cfg.epsilon * (real_logits ** 2).mean()
        r1 = torch.zeros((), device=self.device)
        if cfg.r1_gamma > 0:
            (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            r1 = (grad * masks).pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + cfg.r1_gamma / 2 * r1
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # generator: non-saturating loss (+ L1 inside the region)
        fake, cond = generate(self.generator, real, masks, points, z, cfg, inputs)
        g_adv = F.softplus(-self.discriminator(torch.cat([fake, cond], dim=1))).mean()
        l1 = ((fake - real).abs() * masks).sum() / (masks.sum() * 3).clamp(min=1)
        g_loss = g_adv + cfg.l1_weight * l1
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.step += 1
        return {"d_adv": d_adv.item(), "r1": r1.item(), "g_adv": g_adv.item(), "l1": l1.item()}

    @property
    def model(self) -> nn.Module:
        """What the anonymizer generates with (:meth:`DeepPrivacyAnonymizer.use_generator`): the generator."""
        return self.generator

    def train(self, steps: int, description: str = "train dp") -> list[dict[str, float]]:
        """Train until ``steps`` steps in total are done; the losses of each step taken."""
        history = []
        with tqdm(total=steps, initial=self.step, desc=description, unit="step", leave=False) as progress:
            while self.step < steps:
                history.append(self.train_step())
                progress.update(1)
                if self.step % 20 == 0:
                    progress.set_postfix(l1=f"{history[-1]['l1']:.3f}", g=f"{history[-1]['g_adv']:.2f}")
        return history

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimizer states, step and RNG state."""
        state: dict[str, Any] = generator_state(self.generator, self.config)
        state.update(trainer_state({"d": self.discriminator}, {"opt_g": self.opt_g, "opt_d": self.opt_d}, "rng", self.rng))
        state["step"] = self.step
        return state

    def resume(self, state: dict[str, Any], source: str) -> None:
        """Load :meth:`checkpoint` output (UserError naming ``source`` when it does not fit)."""
        load_generator(self.generator, state, self.config, source)
        restore_trainer_state(state, {"d": self.discriminator}, {"opt_g": self.opt_g, "opt_d": self.opt_d}, "rng", self.rng, source)
        self.step = int(state["step"])


# --------------------------------------------------------------------------- weights

def generator_state(generator: UNetGenerator, config: DPConfig) -> dict[str, Any]:
    """The generator's tensors under ``g.`` plus the format and architecture as JSON."""
    state: dict[str, Any] = {f"g.{k}": v.detach().cpu() for k, v in generator.state_dict().items()}
    state["format"] = config.STATE_FORMAT
    state["architecture"] = config.architecture()
    return state


def _load_module(module: nn.Module, state: dict[str, Any], prefix: str, source: str) -> None:
    expected = module.state_dict()
    for key, tensor in expected.items():
        stored = state.get(prefix + key)
        if not isinstance(stored, torch.Tensor):
            raise UserError(f"checkpoint {source}: key {prefix + key} is missing; it was not written for this model (train one with `evalsuite train`)")
        if tuple(stored.shape) != tuple(tensor.shape):
            raise UserError(f"checkpoint {source}: key {prefix + key} has shape {tuple(stored.shape)}, the model expects {tuple(tensor.shape)}")
    module.load_state_dict({k: state[prefix + k] for k in expected})


def load_generator(generator: UNetGenerator, state: dict[str, Any], config: DPConfig, source: str) -> None:
    """Load ``g.*`` tensors into ``generator`` after checking the format and architecture."""
    if state.get("format") != config.STATE_FORMAT:
        raise UserError(f"checkpoint {source}: key format is {state.get('format')!r}, expected {config.STATE_FORMAT!r} (a file written by `evalsuite train` or this anonymizer)")
    stored = state.get("architecture") or {}
    for key, value in config.architecture().items():
        if stored.get(key) != value:
            raise UserError(f"checkpoint {source}: key architecture.{key} is {stored.get(key)!r} but the anonymizer has {key}={value!r}; "
                            f"set the anonymizer's parameters to the checkpoint's ({json.dumps(stored, sort_keys=True)})")
    _load_module(generator, state, "g.", source)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A safetensors state file; UserError naming the file when missing or unreadable."""
    from anonymizers.base import load_state_file

    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"checkpoint {file}: no such file (give the weights.safetensors that `evalsuite train` wrote)")
    try:
        return load_state_file(file)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds for foreign / truncated files
        raise UserError(f"checkpoint {file}: not a readable evalsuite safetensors file ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None


# --------------------------------------------------------------------------- the anonymizers

class DeepPrivacyAnonymizer(Anonymizer):
    """Conditional inpainting GAN, trained on the protocol's training split (see the module docstring)."""

    fit_on = "train"
    stochastic = True
    code_version = "1"
    param_names = tuple(f.name for f in fields(DPConfig) if f.name != "pose") + ("checkpoint",)
    #: the defaults of the registered subclass
    defaults: dict[str, Any] = {}
    pose = "body"
    config_class: type[DPConfig] = DPConfig

    def __init__(self, *, checkpoint: str | None = None, **params: Any) -> None:
        unknown = set(params) - set(self.param_names)
        if unknown:
            from evalsuite.errors import did_you_mean

            name = sorted(unknown)[0]
            raise UserError(f"anonymizer {self.registered_name()}: unknown parameter {name!r}: {did_you_mean(name, self.param_names)}")
        values = {**self.defaults, **params}
        for name, value in values.items():
            setattr(self, name, value)
        self.checkpoint = checkpoint
        self.config = self.config_class(pose=self.pose, **values)
        self.generator_: nn.Module | None = None
        self._checkpoint_state: dict[str, Any] | None = None
        if checkpoint is not None:  # fail early, before anything is written
            self._checkpoint_state = read_checkpoint(checkpoint)
            self.load_model(self._checkpoint_state, str(Path(checkpoint).expanduser()))

    @classmethod
    def registered_name(cls) -> str:
        return {"body": "dp-body", "face": "dp-face"}[cls.pose]

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """A tiny configuration for the conformance check (two training steps at 16 x 8 px)."""
        return {"height": 16, "width": 16 if cls.pose == "face" else 8, "channels": 4, "depth": 2, "z_dim": 4, "steps": 2, "batch_size": 4}

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names}

    @property
    def region_name(self) -> str:
        """The region it is made for (``evalsuite train``'s default ``region``)."""
        return "face" if self.pose == "face" else "body"

    def code_hash(self) -> str:
        """The code version, plus the checkpoint file's size and modification time when one is loaded."""
        version = component_version(type(self))
        if self.checkpoint is None:
            return version
        stat = Path(self.checkpoint).expanduser().stat()
        return f"{version}-ckpt{stat.st_size}-{stat.st_mtime_ns}"

    # -- fitting and state
    def fit(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None, sample_ids: Sequence[str] | None = None,
            *, seed: int = 0, device: str | torch.device = "cpu", cache: Any = None) -> "DeepPrivacyAnonymizer":
        """Train on the region instances of ``images`` (or load ``checkpoint`` when given)."""
        if self._checkpoint_state is not None:
            return self.load_state(self._checkpoint_state)
        trainer = self.make_trainer(images, masks, annotations, seed=seed, device=device)
        trainer.train(self.config.steps, description=f"train {self.registered_name()}")
        return self.use_generator(trainer.model)

    def make_trainer(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, *, seed: int,
                     device: str | torch.device = "cpu") -> Any:
        """A fresh trainer (:class:`GanTrainer` here) on the region crops of ``images`` (``evalsuite train`` drives it step by step)."""
        data = self.training_crops(images, masks, annotations)
        log.info("%s: %d region crops of %dx%d to train on", self.registered_name(), len(data), self.config.height, self.config.width)
        return self.new_trainer(data, seed, device)

    def training_crops(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None) -> CropSet:
        return crop_set(images, masks, annotations, self.config)

    def new_trainer(self, data: CropSet, seed: int, device: str | torch.device) -> Any:
        return GanTrainer(self.config, data, seed, device)

    def use_generator(self, generator: nn.Module) -> "DeepPrivacyAnonymizer":
        """Anonymize with ``generator`` (the trainer's ``generator``; evaluation mode, no gradients) from now on."""
        self.generator_ = generator.eval().requires_grad_(False)
        return self

    def model_state(self, model: nn.Module) -> dict[str, Any]:
        """The weights file of ``model`` (tensors plus format and architecture)."""
        return generator_state(model, self.config)

    def load_model(self, state: dict[str, Any], source: str) -> nn.Module:
        """A model built from this anonymizer's config with the weights of ``state`` (UserError naming ``source`` when they do not fit)."""
        generator = build_generator(self.config)
        load_generator(generator, state, self.config, source)
        return generator

    def state_dict(self) -> dict[str, Any]:
        return {} if self.generator_ is None else self.model_state(self.generator_)

    def load_state(self, state: dict[str, Any], source: str = "fitted state") -> "DeepPrivacyAnonymizer":
        return self.use_generator(self.load_model(state, self.checkpoint or source))

    # -- anonymizing
    def _anonymize_region(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None,
                          generator: torch.Generator | None) -> torch.Tensor:
        if self.generator_ is None:
            raise RuntimeError(f"{self.registered_name()} is not fitted: call fit() or give checkpoint=PATH")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        model = self.generator_.to(images.device)
        out = images.clone()
        for index in range(images.shape[0]):
            out[index] = anonymize_image(model, out[index], masks[index], None if annotations is None else annotations[index], self.config, generator)
        return out


#: ``fill(crop_image, crop_region, instance, box)`` -> the generated crop at the generator's size (signed, (1, 3, H, W));
#: ``crop_image`` is the signed crop of the current image (1, 3, h, w), ``crop_region`` its bool (1, 1, h, w) region
Fill = Callable[[torch.Tensor, torch.Tensor, np.ndarray, tuple[int, int, int, int]], torch.Tensor]


def latent(config: DPConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One instance's latent code (1, z_dim), drawn on its own so batch sizes do not change it."""
    return torch.randn(config.z_dim, generator=generator, device=generator.device).to(device)[None]


def anonymize_image(model: UNetGenerator, image: torch.Tensor, mask: torch.Tensor, annotation: dict | None, config: DPConfig,
                    generator: torch.Generator, order: list[int] | None = None) -> torch.Tensor:
    """One uint8 (3, H, W) image with every instance of its (1, H, W) mask regenerated, recursively
    in ascending area (``order``, when given, receives each instance's area in stitching order)."""
    size = (config.height, config.width)
    people = person_keypoints(annotation, config.points_key, config.keypoints)

    def fill(crop_image: torch.Tensor, crop_region: torch.Tensor, grown: np.ndarray, box: tuple[int, int, int, int]) -> torch.Tensor:
        small = resize(crop_image * (~crop_region), size)  # the region is removed before resampling
        points = torch.from_numpy(to_crop_coordinates(instance_keypoints(people, grown, config.keypoints), box, size)).float()[None].to(image.device)
        with torch.no_grad():
            return generate(model, small, resize_mask(crop_region, size), points, latent(config, generator, image.device), config)[0]

    return stitch(image, mask, config, fill, order)


def stitch(image: torch.Tensor, mask: torch.Tensor, config: DPConfig, fill: Fill, order: list[int] | None = None) -> torch.Tensor:
    """Regenerate every instance of the (1, H, W) mask of a uint8 (3, H, W) image with ``fill``, one at a
    time in ascending area, each on the image holding the ones before it (DeepPrivacy2 Section 4.3),
    pasting the result back only inside the dilated instance."""
    height, width = image.shape[-2:]
    current = image.clone()
    for part, grown, box in _regions(mask, config):
        if order is not None:
            order.append(int(part.sum()))
        region = torch.from_numpy(grown).to(image.device)[None]
        crop_image = crop(to_signed(current), box)[None]
        crop_region = crop(region, box)[None]
        big = to_uint8(resize(fill(crop_image, crop_region, grown, box), tuple(crop_image.shape[-2:])))[0]
        x0, y0, x1, y1 = box
        ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        inside = crop_region[0, :, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        window = current[:, iy0:iy1, ix0:ix1]
        current[:, iy0:iy1, ix0:ix1] = torch.where(inside, big[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0], window)
    return current


@ANONYMIZERS.register("dp-body", description="DeepPrivacy-style full-body inpainting GAN (U-Net, 17 COCO keypoint heatmaps, latent code), trained on the protocol's training split")
class DeepPrivacyBody(DeepPrivacyAnonymizer):
    """Full-body DeepPrivacy-style anonymizer (small CPU default: 64 x 32 crops)."""

    pose = "body"
    defaults = {"height": 64, "width": 32, "channels": 16, "depth": 3, "z_dim": 32, "expand": 1.2, "dilation": 2, "steps": 600,
                "batch_size": 16, "lr": 0.0002, "r1_gamma": 1.0, "epsilon": 0.001, "l1_weight": 1.0}


@ANONYMIZERS.register("dp-face", description="DeepPrivacy-style face inpainting GAN (U-Net, 5 facial landmark heatmaps, latent code), trained on the protocol's training split")
class DeepPrivacyFace(DeepPrivacyAnonymizer):
    """Face DeepPrivacy-style anonymizer (small CPU default: 32 x 32 crops, face box expanded 2x)."""

    pose = "face"
    defaults = {"height": 32, "width": 32, "channels": 16, "depth": 3, "z_dim": 32, "expand": 2.0, "dilation": 1, "steps": 600,
                "batch_size": 16, "lr": 0.0002, "r1_gamma": 1.0, "epsilon": 0.001, "l1_weight": 1.0}


#: documented GPU configurations at DeepPrivacy2's resolutions (README "Generative anonymizers")
GPU_CONFIGS: dict[str, dict[str, Any]] = {
    "dp-body": {"height": 288, "width": 160, "channels": 32, "depth": 5, "z_dim": 256, "steps": 200000, "batch_size": 32},
    "dp-face-128": {"height": 128, "width": 128, "channels": 32, "depth": 5, "z_dim": 256, "steps": 200000, "batch_size": 32},
    "dp-face-256": {"height": 256, "width": 256, "channels": 32, "depth": 6, "z_dim": 256, "steps": 200000, "batch_size": 16},
}
