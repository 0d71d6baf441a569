"""``upgan``: UP-GAN (seed ``001``, the utility-preserving GAN): a face generated only from the
target's attribute vector and 7 facial landmarks, blended into the target.

Which part of the paper each piece follows:

- **Utility vectors** (Section 3, first paragraph; Section 4.1): the attribute vector ``v_a``
  (``attributes``; default UTKFace's age, gender and skin tone, read from each face's
  ``attributes`` annotation: numeric attributes standardised with the training table's mean
  and standard deviation, the others one-hot over the training table's values) and the
  landmark vector ``v_l``: the 7 points (eye centres, nose tip, four mouth points; the
  ``face_landmarks[7]`` annotation, else derived from the 68-point one) in crop
  coordinates scaled to [-1, 1], 14 numbers. The generator sees nothing else of the target:
  no pixel of the target, inside or outside the region, reaches it.
- **Generator** (Section 3, Figure 2, after Dosovitskiy et al. 2017): two fully connected
  layers encode ``[v_a, v_l]``; "de-convolution" blocks (nearest upsampling x2 and a 5x5
  convolution), each followed by a 3x3 convolution, grow a 4x4 map to ``size`` x ``size``;
  a 3x3 max pooling with stride 1 (after Meden et al. 2018); then the face (3 channels,
  tanh) and its binary mask (2 channels, softmax). Addition (the issue asks for it): the
  7 landmarks also enter every de-convolution block as Gaussian heatmaps at that block's
  resolution, so the pose is given spatially as well as through the fully connected path.
- **Losses** (Section 3, L_G and L_D): non-saturating adversarial loss of an unconditional
  DCGAN discriminator on the face crop, ``lambda_rec`` (lambda_1 = 5) x L2 reconstruction
  ``||I_real - I_fake||^2`` (mean over pixels), ``lambda_mask`` (lambda_2 = 1) x the binary
  cross-entropy of the mask against the face mask of ``I_real`` (the hull of the jaw and
  the raised brows of the 68 landmarks; without them the ellipse inscribed in the face
  box), ``lambda_perceptual`` (lambda_3 = 1) x the perceptual loss ``sum_l ||phi_l(I_fake) -
  phi_l(I_real)||^2`` over the stem and the four stages of a face-identity network. The
  paper uses VGG-19 fine-tuned on FaceScrub; here that network is the project's ``cnn``
  face recognizer (:class:`attacks.face_cnn.FaceCNN`) trained in :meth:`UPGAN.fit` on the
  training crops and their identities (the face datasets' ``identity`` annotation),
  ``perceptual_epochs`` epochs, frozen afterwards.
- **Augmentation** (Section 4.2, Figure 3): every training batch is warped by an elastic
  distortion (Simard et al. 2003: uniform noise smoothed by a Gaussian of ``elastic_sigma``
  x size, scaled to ``elastic_alpha`` x size pixels) and a random rotation in
  ``[-rotation, rotation]`` degrees (paper: 30); image, face mask and landmarks move
  together, so the generator learns to follow the landmarks instead of memorising faces.
- **Blending** (Section 3, "swap it with the original face ... (Pérez et al., 2003)"; Figure
  1): ``blend=poisson`` (default): Poisson image editing (``cv2.seamlessClone``, normal
  clone: the generated face's gradients inside, the target's pixels on the boundary) inside
  the generated mask intersected with the given region; ``blend=alpha``: the mask
  probability as alpha inside the region; ``blend=none``: the generated crop replaces the
  whole region instance, as the paper's Table 1 uses ``I_fake`` ("we do not swap them into
  the original images, because the non-facial region may contain identifiable information").

Each region instance (a connected part of the given mask, :func:`anonymizers.deepprivacy.instances`)
is cropped by its bounding box grown to a square and by ``expand``, resized to ``size``; the
generated crop is resized back to the box. The paper generates 128 x 128 faces on UTKFace; the
CPU default is 32 x 32 (documented GPU settings: :data:`GPU_CONFIG`).

``fit_on = "train"`` (state cached by the pipeline), deterministic (no latent: the output is
a function of the target's utility vectors and the seed of the training), ``checkpoint=PATH``
loads a state written by ``evalsuite train anonymizer=upgan`` or :func:`anonymizers.base.save_state`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anonymizers.base import Anonymizer, file_version
from anonymizers.deepprivacy import GanTrainer, crop, expanded_box, generator_state, heatmaps, instances, load_generator, read_checkpoint, resize, to_signed, to_uint8
from anonymizers.ppas import attribute_table
from evalsuite.errors import UserError, did_you_mean
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

FORMAT = "evalsuite-upgan/1"
DEFAULT_ATTRIBUTES = ("age", "gender", "skin_tone")  # UTKFace's, as the paper (Section 4.1)
BLENDS = ("poisson", "alpha", "none")
MISSING_LANDMARKS = ("error", "box")
POINTS = 7
#: the 7 UP-GAN points (evalsuite.data.faces order) from the iBUG 68: eye centres, nose tip,
#: left mouth corner, upper lip centre, right mouth corner, lower lip centre
_FROM_68 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (51,), (54,), (57,))
#: the 7 points of an average aligned face, as fractions of its face box ("box" fallback)
_MEAN_FACE = np.array([[0.3, 0.38], [0.7, 0.38], [0.5, 0.58], [0.34, 0.76], [0.5, 0.73], [0.66, 0.76], [0.5, 0.82]])


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class UPGANConfig:
    """Numbers and choices of the anonymizer (all parameters but ``attributes`` and ``checkpoint``)."""

    size: int = 32
    channels: int = 16
    fc_dim: int = 256
    expand: float = 1.0
    steps: int = 1000
    batch_size: int = 16
    lr: float = 0.0002
    lambda_rec: float = 5.0
    lambda_mask: float = 1.0
    lambda_perceptual: float = 1.0
    lambda_adv: float = 1.0
    rotation: float = 30.0
    elastic_alpha: float = 0.03
    elastic_sigma: float = 0.08
    perceptual_epochs: int = 10
    perceptual_width: int = 8
    blend: str = "poisson"
    missing_landmarks: str = "error"

    ARCHITECTURE = ("size", "channels", "fc_dim")
    #: the ``format`` entry of the weights (read by deepprivacy's generator_state / load_generator)
    STATE_FORMAT = FORMAT

    def __post_init__(self) -> None:
        for name, allowed in (("blend", BLENDS), ("missing_landmarks", MISSING_LANDMARKS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"anonymizer 'upgan': {name}={getattr(self, name)!r}: use one of {', '.join(allowed)}")
        for f in fields(self):
            if isinstance(f.default, str):
                continue
            value, integer = getattr(self, f.name), isinstance(f.default, int)
            low = {"size": 8, "expand": 1.0}.get(f.name, 0 if f.name.startswith(("lambda", "rotation", "elastic", "perceptual_epochs")) else 1 if integer else 1e-12)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and float(value) != int(value)) or not math.isfinite(value) or value < low:
                raise UserError(f"anonymizer 'upgan': {f.name}={value!r} must be {'an integer' if integer else 'a number'} >= {low:g}; e.g. {f.name}={f.default}")
        if self.size & (self.size - 1):
            raise UserError(f"anonymizer 'upgan': size={self.size} must be a power of two >= 8 (the generator doubles a 4x4 map)")

    def architecture(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.ARCHITECTURE}


# --------------------------------------------------------------------------- utility vectors

@dataclass
class AttributeCoding:
    """How attribute values become the vector ``v_a``: numeric (mean, std) or categorical (values)."""

    names: list[str]
    kinds: list[str]
    values: list[list[Any]]

    @classmethod
    def fit(cls, annotations: Sequence[dict] | None, names: Sequence[str], n: int) -> "AttributeCoding":
        rows = attribute_rows(annotations, names, n, "training image")
        kinds, values = [], []
        for j in range(len(names)):
            column = [row[j] for row in rows]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column) and len(set(column)) > 2
            if numeric:
                array = np.asarray(column, dtype=np.float64)
                kinds.append("numeric")
                values.append([float(array.mean()), float(array.std()) or 1.0])
            else:
                kinds.append("categorical")
                values.append(sorted({str(v) for v in column}))
        return cls(list(names), kinds, values)

    @property
    def dim(self) -> int:
        return sum(1 if kind == "numeric" else len(v) for kind, v in zip(self.kinds, self.values))

    def encode(self, row: Sequence[Any]) -> np.ndarray:
        """``v_a`` of one row of attribute values (an unseen category encodes as all zeros)."""
        parts: list[np.ndarray] = []
        for value, kind, spec in zip(row, self.kinds, self.values):
            if kind == "numeric":
                parts.append(np.array([(float(value) - spec[0]) / spec[1]]))
            else:
                parts.append(np.array([float(str(value) == v) for v in spec]))
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"names": self.names, "kinds": self.kinds, "values": self.values}


def attribute_rows(annotations: Sequence[dict] | None, names: Sequence[str], n: int, what: str) -> list[list[Any]]:
    """The values of ``names`` in each annotation's ``attributes``; UserError naming the first missing one."""
    return attribute_table(annotations, names, n, "upgan", what, "set anonymizer attributes=[...] to ones the dataset has")


def seven_landmarks(annotation: dict | None, fallback_box: Sequence[float], policy: str) -> np.ndarray:
    """(7, 2) UP-GAN landmarks in image pixels: ``face_landmarks[7]``, else from the 68 points,
    else (``policy="box"``) the average face's points in the face box (or ``fallback_box``)."""
    ann = annotation or {}
    sets = ann.get("face_landmarks") or {}
    seven = sets.get(7, sets.get("7"))
    if seven is not None:
        return np.asarray(seven, dtype=np.float64)[:, :2]
    many = sets.get(68, sets.get("68"))
    if many is not None:
        pts = np.asarray(many, dtype=np.float64)[:, :2]
        return np.stack([pts[list(group)].mean(axis=0) for group in _FROM_68])
    if policy == "error":
        raise UserError("anonymizer 'upgan': a face has neither 7- nor 68-point landmarks (annotation face_landmarks); use a dataset with landmarks "
                        "(celeba / face-folder with an evalsuite_faces.json sidecar, synthetic-faces) or set anonymizer missing_landmarks=box")
    x0, y0, x1, y1 = ann.get("face_box") or fallback_box
    return np.array([[x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)] for fx, fy in _MEAN_FACE])


def face_mask(annotation: dict | None, shape: tuple[int, int], fallback_box: Sequence[float]) -> np.ndarray:
    """(H, W) bool face mask of an image: the hull of the 68-point jaw and brows (raised by a fifth
    of the brow-to-chin height), else the ellipse inscribed in the face box (or ``fallback_box``)."""
    ann = annotation or {}
    sets = ann.get("face_landmarks") or {}
    many = sets.get(68, sets.get("68"))
    out = np.zeros(shape, np.uint8)
    if many is not None:
        pts = np.asarray(many, dtype=np.float64)[:, :2]
        brows = pts[17:27].copy()
        brows[:, 1] -= 0.2 * (pts[8, 1] - brows[:, 1].min())
        hull = cv2.convexHull(np.round(np.concatenate([pts[:17], brows])).astype(np.int32))
        cv2.fillConvexPoly(out, hull, 1)
    else:
        x0, y0, x1, y1 = ann.get("face_box") or fallback_box
        centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
        axes = (max(1, int(round((x1 - x0) / 2))), max(1, int(round((y1 - y0) / 2))))
        cv2.ellipse(out, centre, axes, 0, 0, 360, 1, -1)
    return out.astype(bool)


# --------------------------------------------------------------------------- networks

def _widths(config: UPGANConfig) -> list[int]:
    """Channels of the 4x4 map and after each de-convolution block (halving, at most 16 x channels)."""
    ups = int(math.log2(config.size // 4))
    return [config.channels * min(2 ** (ups - i), 16) for i in range(ups + 1)]


class UPGANGenerator(nn.Module):
    """``(v_a, v_l, landmark points)`` -> (face in [-1, 1] (B, 3, S, S), mask logits (B, 2, S, S)).

    ``coding`` (the attribute coding it was trained with) travels with the module."""

    def __init__(self, config: UPGANConfig, attribute_dim: int) -> None:
        super().__init__()
        widths = _widths(config)
        self.size, self.start = config.size, widths[0]
        self.fc = nn.Sequential(nn.Linear(attribute_dim + 2 * POINTS, config.fc_dim), nn.LeakyReLU(0.2),
                                nn.Linear(config.fc_dim, widths[0] * 16), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"deconv": nn.Conv2d(widths[i] + POINTS, widths[i + 1], 5, 1, 2), "conv": nn.Conv2d(widths[i + 1], widths[i + 1], 3, 1, 1)})
            for i in range(len(widths) - 1))
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.to_face = nn.Conv2d(widths[-1], 3, 3, 1, 1)
        self.to_mask = nn.Conv2d(widths[-1], 2, 3, 1, 1)
        self.coding: AttributeCoding | None = None

    def forward(self, attributes: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``attributes`` (B, A) float, ``points`` (B, 7, 2) in generator pixels."""
        vector = torch.cat([attributes, (points / self.size * 2 - 1).flatten(1)], dim=1)
        h = self.fc(vector).view(-1, self.start, 4, 4)
        visible = torch.ones(*points.shape[:2], 1, device=points.device, dtype=points.dtype)
        for block in self.blocks:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            side = h.shape[-1]
            maps = heatmaps(torch.cat([points * (side / self.size), visible], dim=2), (side, side))
            h = F.leaky_relu(block["deconv"](torch.cat([h, maps], dim=1)), 0.2)
            h = F.leaky_relu(block["conv"](h), 0.2)
        h = self.pool(h)
        return torch.tanh(self.to_face(h)), self.to_mask(h)


class Discriminator(nn.Module):
    """DCGAN discriminator on the face crop: stride-2 4x4 convolutions down to 4x4, one logit map."""

    def __init__(self, config: UPGANConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width, side, cin = config.channels, config.size, 3
        while side > 4:
            layers += [nn.Conv2d(cin, width, 4, 2, 1), nn.LeakyReLU(0.2)]
            cin, width, side = width, min(width * 2, 16 * config.channels), side // 2
        layers.append(nn.Conv2d(cin, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PerceptualFeatures(nn.Module):
    """Activations of the stem and the four stages of a trained ``cnn`` face recognizer (frozen)."""

    def __init__(self, net: nn.Module, input_size: int) -> None:
        super().__init__()
        self.net, self.input_size = net.eval().requires_grad_(False), int(input_size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of signed images ((x - 0.5) / 0.5 of [0, 1] images is the recognizer's input)."""
        h = resize(x, (self.input_size, self.input_size))
        out = [self.net.stem(h)]
        for stage in self.net.stages:
            out.append(stage(out[-1]))
        return out


def perceptual_loss(features: PerceptualFeatures, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``sum_l ||phi_l(fake) - phi_l(real)||^2`` (mean over each layer's elements)."""
    with torch.no_grad():
        targets = features(real)
    return sum(F.mse_loss(a, b) for a, b in zip(features(fake), targets))  # type: ignore[return-value]


# --------------------------------------------------------------------------- data and augmentation

@dataclass
class FaceCrops:
    """Training crops at the generator's size: images uint8, face masks bool, 7 points in crop
    pixels, attribute vectors, identity labels (or None)."""

    images: torch.Tensor
    masks: torch.Tensor
    points: torch.Tensor
    attributes: torch.Tensor
    identities: np.ndarray | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _boxes(mask: np.ndarray, config: UPGANConfig) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    return [(part, expanded_box(part, (config.size, config.size), config.expand)) for part in instances(mask)]


def _to_crop(points: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.stack([(points[:, 0] - x0) * size / (x1 - x0), (points[:, 1] - y0) * size / (y1 - y0)], axis=1)


def _resized(image: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    return resize(crop(image.float().cpu(), box)[None], (size, size))


def crop_faces(images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, coding: AttributeCoding | None,
               names: Sequence[str], config: UPGANConfig) -> tuple[FaceCrops, AttributeCoding]:
    """Every region instance of a training set as a crop with its face mask, landmarks, attributes and identity."""
    n = images.shape[0]
    coding = coding or AttributeCoding.fit(annotations, names, n)
    rows = attribute_rows(annotations, names, n, "training image")
    size = config.size
    crops, face_masks, points, vectors, labels = [], [], [], [], []
    for index in range(n):
        annotation = None if annotations is None else annotations[index]
        for part, box in _boxes(masks[index, 0].cpu().numpy(), config):
            ys, xs = np.nonzero(part)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            crops.append(_resized(images[index], box, size).round().clamp(0, 255).to(torch.uint8))
            full = torch.from_numpy(face_mask(annotation, tuple(images.shape[-2:]), bbox))[None, None].float()
            face_masks.append(resize(crop(full, box), (size, size)) > 0.5)
            points.append(torch.from_numpy(_to_crop(seven_landmarks(annotation, bbox, config.missing_landmarks), box, size)).float()[None])
            vectors.append(torch.from_numpy(coding.encode(rows[index]))[None])
            labels.append((annotation or {}).get("identity"))
    if not crops:
        raise UserError("anonymizer 'upgan': the training images have no region to learn from (every mask is empty); check region")
    identities = None
    if all(label is not None for label in labels):
        index_of = {name: i for i, name in enumerate(sorted({str(v) for v in labels}))}
        identities = np.array([index_of[str(v)] for v in labels], dtype=np.int64)
    return FaceCrops(torch.cat(crops), torch.cat(face_masks), torch.cat(points), torch.cat(vectors), identities), coding


def augment(images: torch.Tensor, masks: torch.Tensor, points: torch.Tensor, config: UPGANConfig,
            rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Elastic distortion and random rotation (Section 4.2) of signed images (B, 3, S, S), float face
    masks (B, 1, S, S) and their points (B, 7, 2) in pixels, all moved together."""
    b, _, s, _ = images.shape
    angle = (torch.rand(b, generator=rng) * 2 - 1) * math.radians(config.rotation)
    noise = torch.rand(b, 2, s, s, generator=rng) * 2 - 1
    sigma = max(config.elastic_sigma * s, 1e-3)
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    smooth = F.conv2d(F.pad(noise.reshape(-1, 1, s, s), (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1)).view(b, 2, s, s)
    smooth = smooth / smooth.flatten(1).abs().amax(1).clamp(min=1e-8).view(b, 1, 1, 1)
    displacement = smooth * (config.elastic_alpha * 2)  # alpha x size pixels, in normalised units (2 / size per pixel)
    cos, sin = torch.cos(angle).view(b, 1, 1), torch.sin(angle).view(b, 1, 1)
    axis = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    # output pixel p samples the input at R p + d(p)
    sx = cos * gx - sin * gy + displacement[:, 0]
    sy = sin * gx + cos * gy + displacement[:, 1]
    grid = torch.stack([sx, sy], dim=-1)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    warped_masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # points move forward: solve R p + d(p) = q by a fixed-point iteration
    q = points / s * 2 - 1
    p = q.clone()
    for _ in range(4):
        d = F.grid_sample(displacement, p[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)[..., 0].transpose(1, 2)
        r = q - d
        p = torch.stack([cos[:, 0] * r[..., 0] + sin[:, 0] * r[..., 1], -sin[:, 0] * r[..., 0] + cos[:, 0] * r[..., 1]], dim=-1)
    return warped, warped_masks, (p + 1) / 2 * s


# --------------------------------------------------------------------------- training

class UPGANTrainer(GanTrainer):
    """The paper's generator and discriminator updates, one step at a time (``evalsuite train``);
    stepping, checkpoint and resume as :class:`anonymizers.deepprivacy.GanTrainer`, with UP-GAN's
    networks, batches and losses. Every random draw (batch indices, augmentation) comes from one
    CPU ``torch.Generator``."""

    def __init__(self, config: UPGANConfig, data: FaceCrops, coding: AttributeCoding, features: PerceptualFeatures | None, seed: int,
                 device: str | torch.device = "cpu") -> None:
        self.config, self.data, self.features, self.device = config, data, features, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = UPGANGenerator(config, coding.dim).to(self.device)
            self.discriminator = Discriminator(config).to(self.device)
        self.generator.coding = coding
        if features is not None:
            self.features = features.to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.rng = torch.Generator().manual_seed(seed)
        self.step = 0

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(real, face masks, points, attribute vectors) of an augmented random batch, on the device."""
        index = torch.randint(len(self.data), (self.config.batch_size,), generator=self.rng)
        real, masks, points = augment(to_signed(self.data.images[index]), self.data.masks[index].float(), self.data.points[index], self.config, self.rng)
        move = lambda t: t.to(self.device)  # noqa: E731
        return move(real), move(masks), move(points), move(self.data.attributes[index])

    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update (L_D, then L_G of Section 3); the losses."""
        cfg = self.config
        real, masks, points, attributes = self.batch()
        with torch.no_grad():
            fake, _ = self.generator(attributes, points)
        d_adv = F.softplus(self.discriminator(fake)).mean() + F.softplus(-self.discriminator(real)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_adv.backward()
        self.opt_d.step()
        fake, mask_logits = self.generator(attributes, points)
        g_adv = F.softplus(-self.discriminator(fake)).mean()
        l2 = F.mse_loss(fake, real)
        mask = F.cross_entropy(mask_logits, (masks[:, 0] > 0.5).long())  # the BCE of the 2-channel softmax mask
        perceptual = perceptual_loss(self.features, fake, real) if self.features is not None and cfg.lambda_perceptual > 0 else torch.zeros((), device=self.device)
        g_loss = cfg.lambda_adv * g_adv + cfg.lambda_rec * l2 + cfg.lambda_mask * mask + cfg.lambda_perceptual * perceptual
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.step += 1
        return {"d_adv": d_adv.item(), "g_adv": g_adv.item(), "l2": l2.item(), "mask": mask.item(), "perceptual": float(perceptual.detach()),
                "l1": (fake - real).abs().mean().item()}


# --------------------------------------------------------------------------- the anonymizer

@ANONYMIZERS.register("upgan", description="UP-GAN: a face generated from the target's attributes and 7 landmarks only (adversarial, L2, mask and perceptual losses, elastic + rotation augmentation), Poisson-blended into the face region; trained on the training split")
class UPGAN(Anonymizer):
    """The UP-GAN anonymizer (see the module docstring for the paper sections)."""

    fit_on = "train"
    code_version = "1"
    param_names = tuple(f.name for f in fields(UPGANConfig)) + ("attributes", "checkpoint")
    region_name = "face"

    def __init__(self, *, attributes: Sequence[str] = DEFAULT_ATTRIBUTES, checkpoint: str | None = None, **params: Any) -> None:
        unknown = sorted(set(params) - {f.name for f in fields(UPGANConfig)})
        if unknown:
            raise UserError(f"anonymizer 'upgan': unknown parameter {unknown[0]!r}: {did_you_mean(unknown[0], self.param_names)}")
        self.config = UPGANConfig(**params)
        for f in fields(UPGANConfig):
            setattr(self, f.name, getattr(self.config, f.name))
        if isinstance(attributes, str):
            attributes = [attributes]
        if not isinstance(attributes, (list, tuple)) or not all(isinstance(a, str) and a for a in attributes) or len(set(attributes)) != len(attributes):
            raise UserError(f"anonymizer 'upgan': attributes must be a list of distinct attribute names, got {attributes!r}")
        self.attributes = list(attributes)
        self.checkpoint = checkpoint
        self.generator_: UPGANGenerator | None = None
        self._checkpoint_state: dict[str, Any] | None = None
        if checkpoint is not None:  # fail early, before anything is written
            self._checkpoint_state = read_checkpoint(checkpoint)
            self._build(self._checkpoint_state, str(Path(checkpoint).expanduser()))

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """Tiny settings for the conformance check (its annotations have Male / Smiling and face boxes, no landmarks or identities)."""
        return {"attributes": ["Male", "Smiling"], "size": 8, "channels": 2, "fc_dim": 8, "steps": 2, "batch_size": 4,
                "lambda_perceptual": 0.0, "missing_landmarks": "box"}

    def get_params(self) -> dict[str, Any]:
        return {name: list(self.attributes) if name == "attributes" else getattr(self, name) for name in self.param_names}

    def code_hash(self) -> str:
        """The code version, plus the checkpoint file's size and modification time when one is loaded."""
        return file_version(type(self), self.checkpoint, "ckpt")

    # -- fitting (``evalsuite train`` drives make_trainer / use_generator itself)
    def fit(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None, sample_ids: Sequence[str] | None = None,
            *, seed: int = 0, device: str | torch.device = "cpu", cache: Any = None) -> "UPGAN":
        """Train the perceptual network and the GAN on the training crops (or load ``checkpoint``)."""
        if self._checkpoint_state is not None:
            return self.load_state(self._checkpoint_state, source=str(self.checkpoint))
        trainer = self.make_trainer(images, masks, annotations, seed=seed, device=device)
        history = trainer.train(self.config.steps, description="train upgan")
        if history:
            log.info("upgan: %d steps, last losses %s", len(history), {k: round(v, 4) for k, v in history[-1].items()})
        return self.use_generator(trainer.model)

    def make_trainer(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, *, seed: int,
                     device: str | torch.device = "cpu") -> UPGANTrainer:
        data, coding = crop_faces(images.cpu(), masks.cpu(), annotations, None, self.attributes, self.config)
        log.info("upgan: %d face crops of %dx%d, attribute vector of %d (%s)", len(data), self.config.size, self.config.size, coding.dim, ", ".join(coding.names))
        features = self._perceptual_network(data, seed, device) if self.config.lambda_perceptual > 0 else None
        return UPGANTrainer(self.config, data, coding, features, int(seed), device)

    def _perceptual_network(self, data: FaceCrops, seed: int, device: str | torch.device) -> PerceptualFeatures:
        from attacks.face_cnn import FaceCNN

        if data.identities is None or len(set(data.identities.tolist())) < 2:
            raise UserError("anonymizer 'upgan': the perceptual loss trains a face-identity network (the cnn recognizer) on the training images' identities, "
                            "and these have no 'identity' annotation (or only one identity); use a face dataset or set anonymizer lambda_perceptual=0")
        recognizer = FaceCNN(device=str(device), epochs=int(self.config.perceptual_epochs), width=int(self.config.perceptual_width))
        if self.config.perceptual_epochs > 0:
            recognizer.fit(data.images, data.identities, seed=int(seed))
        return PerceptualFeatures(recognizer.net, recognizer.config.input_size)

    def use_generator(self, generator: nn.Module) -> "UPGAN":
        """Anonymize with ``generator`` (a trained :class:`UPGANGenerator` carrying its attribute coding)."""
        self.generator_ = generator.eval().requires_grad_(False)  # type: ignore[assignment]
        return self

    # -- state
    def state_dict(self) -> dict[str, Any]:
        if self.generator_ is None or self.generator_.coding is None:
            return {}
        return {**generator_state(self.generator_, self.config), "coding": self.generator_.coding.as_dict()}  # type: ignore[arg-type]

    def _build(self, state: dict[str, Any], source: str) -> UPGANGenerator:
        coding = state.get("coding") or {}
        if list(coding.get("names") or []) != self.attributes:
            raise UserError(f"checkpoint {source}: key coding.names is {coding.get('names')!r}, the anonymizer has attributes={self.attributes!r}")
        coding_ = AttributeCoding(list(coding["names"]), list(coding["kinds"]), [list(v) for v in coding["values"]])
        generator = UPGANGenerator(self.config, coding_.dim)
        load_generator(generator, state, self.config, source)
        generator.coding = coding_
        return generator

    def load_state(self, state: dict[str, Any], source: str = "fitted state") -> "UPGAN":
        return self.use_generator(self._build(state, source))

    # -- anonymizing
    def _anonymize_region(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None,
                          generator: torch.Generator | None) -> torch.Tensor:
        if self.generator_ is None or self.generator_.coding is None:
            raise RuntimeError("upgan is not fitted: call fit() or give checkpoint=PATH")
        model, coding, size = self.generator_.to(images.device), self.generator_.coding, self.config.size
        rows = attribute_rows(annotations, self.attributes, images.shape[0], "image")
        out = images.clone()
        for index in range(images.shape[0]):
            annotation = None if annotations is None else annotations[index]
            for part, box in _boxes(masks[index, 0].cpu().numpy(), self.config):
                ys, xs = np.nonzero(part)
                bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
                points = torch.from_numpy(_to_crop(seven_landmarks(annotation, bbox, self.config.missing_landmarks), box, size)).float()[None]
                with torch.no_grad():
                    face, logits = model(torch.from_numpy(coding.encode(rows[index]))[None].to(images.device), points.to(images.device))
                out[index] = blend(out[index], face[0], logits.softmax(1)[0, 1:], part, box, self.config.blend)
        return out


def blend(image: torch.Tensor, face: torch.Tensor, probability: torch.Tensor, part: np.ndarray, box: tuple[int, int, int, int], how: str) -> torch.Tensor:
    """uint8 (3, H, W) ``image`` with the generated ``face`` (signed, (3, S, S)) blended in inside the
    instance ``part`` (H, W) bool, the face's crop being ``box``; ``probability`` (1, S, S) its mask."""
    height, width = image.shape[-2:]
    x0, y0, x1, y1 = box
    big = to_uint8(resize(face[None].float(), (y1 - y0, x1 - x0)))[0]
    alpha = resize(probability[None].float(), (y1 - y0, x1 - x0))[0]
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    region = torch.zeros(height, width, dtype=torch.bool, device=image.device)
    region[iy0:iy1, ix0:ix1] = torch.from_numpy(part[iy0:iy1, ix0:ix1]).to(image.device)
    source = image.clone()
    source[:, iy0:iy1, ix0:ix1] = big[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    weight = torch.zeros(1, height, width, device=image.device)
    weight[:, iy0:iy1, ix0:ix1] = alpha[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    if how == "none":
        return torch.where(region[None], source, image)
    if how == "alpha":
        mixed = (weight * source.float() + (1 - weight) * image.float()).round().clamp(0, 255).to(torch.uint8)
        return torch.where(region[None], mixed, image)
    inside = region & (weight[0] > 0.5)
    inside[0, :] = inside[-1, :] = False  # seamlessClone needs a boundary inside the image
    inside[:, 0] = inside[:, -1] = False
    if not bool(inside.any()):
        return image.clone()
    ys, xs = torch.nonzero(inside, as_tuple=True)
    bx, by = int(xs.min()), int(ys.min())
    bw, bh = int(xs.max()) - bx + 1, int(ys.max()) - by + 1
    dst = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
    src = np.ascontiguousarray(source.permute(1, 2, 0).cpu().numpy())
    mask = inside.cpu().numpy().astype(np.uint8) * 255  # seamlessClone writes into its mask: this is a fresh array
    if bw < 3 or bh < 3:  # OpenCV cannot solve a mask one or two pixels wide: paste it
        return torch.where(inside[None], source, image)
    try:
        cloned = cv2.seamlessClone(src, dst, mask, (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
    except cv2.error:  # degenerate masks OpenCV cannot solve: paste
        return torch.where(inside[None], source, image)
    result = torch.from_numpy(cloned).permute(2, 0, 1).to(image.device)
    return torch.where(inside[None], result, image)


#: documented GPU settings at the paper's resolution (128 x 128 faces, CelebA / UTKFace aligned crops)
GPU_CONFIG: dict[str, Any] = {"size": 128, "channels": 32, "fc_dim": 1024, "steps": 100000, "batch_size": 64, "perceptual_epochs": 30,
                              "perceptual_width": 32}
