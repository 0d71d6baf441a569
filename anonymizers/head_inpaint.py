"""``head-inpaint``: Sun et al. (2018), "Natural and Effective Obfuscation by Head Inpainting" (seed ``000``).

A two-stage head inpainter that starts from an obfuscated head, as the paper's scenario of a
service that already blacks out or blurs heads (Section 4.2): ``input=black`` (the default;
preset ``head-inpaint-black``) or ``input=blur`` (preset ``head-inpaint-blur``). The head
box is first obfuscated exactly like the ``blackhead`` / ``blurhead`` baselines
(:mod:`anonymizers.head`), then:

- **Crop** (Section 4.1, "extend the head box ... head at the top"): each head instance
  (the given region, ``region.name=head`` in ``person-recognition``) is cut out with body
  context: a box at the generator's aspect, ``expand`` head heights tall, the head
  ``above`` head heights below its top edge (Sun et al. use 6 head heights x 3 widths at
  256 x 256; the small default 3 x 2 at 48 x 32). Dilation, zero padding, resizing, paste
  back and recursive stitching in ascending area are DeepPrivacy2's
  (:func:`anonymizers.deepprivacy.stitch`).
- **Stage I, landmark generation** (Section 3.1, Figure 3): an encoder of residual conv
  blocks reads the obfuscated crop, the head mask and the body pose, compresses it to a
  ``landmark_dim``-dimensional code (Sun et al.: 32), and a decoder of fully connected
  residual blocks ("Scratch" decoder; Sun et al. use 6 + 6 blocks, the default 2 + 2)
  outputs the 5 facial landmark coordinates inside the crop. The body pose is the 12 COCO
  body joints (shoulders to ankles) as heatmaps; the 5 head keypoints (nose, eyes, ears)
  are left out, because they cannot be detected on an obfuscated head and would hand stage
  I its answer. Loss (Equations 2, 3): ``landmark_weight`` x L2 to the annotated landmarks
  (squared distance in generator pixels, as the paper's loss on coordinates; measured in
  crop units, 1/48 as large, the adversarial term dominated and the held-out landmarks came
  out worse than the training set's mean layout) plus the non-saturating adversarial loss of a convolutional landmark discriminator ``D_L``
  that sees the landmarks as heatmaps (the differentiable "convert function") with the head
  mask. Beyond the paper, which pruned back views (Section 4.1), stage I also predicts
  whether a face is visible (a logit, binary cross-entropy against "the sample has
  landmarks"); a head predicted to show its back gets empty landmark heatmaps, as
  DeepPrivacy treats absent points.
- **Stage II, head generation** (Section 3.2, Figure 4): the U-Net generator ``G_H`` of
  :mod:`anonymizers.deepprivacy` on the obfuscated crop, the head mask and the 5 landmark
  heatmaps, with a latent code at the bottleneck (the paper concatenates Gaussian noise
  channels instead); a conditional patch discriminator ``D_H`` on the whole crop (the paper:
  "the whole body image instead of head regions"). Loss (Equations 4, 5): adversarial plus
  ``l1_weight`` x L1 to the original image inside the region. The adversarial recipe is
  DeepPrivacy's (non-saturating, epsilon penalty, region-masked R1; Paper D Section 4), not
  the paper's plain GAN loss: the same stabilisers :class:`~anonymizers.deepprivacy.GanTrainer`
  uses for dp-body / dp-face. Stage II is trained on the annotated landmarks (the paper
  trains on detected ones); at anonymization time it gets stage I's generated landmarks.

Landmark ground truth: the synthetic person set's sidecar holds the 5 facial landmarks
of every rendered face (``landmarks``, dlib 5-point order, None for back views), the
positions the renderer drew the eyes and nose at; these play the part of the paper's
dlib-detected landmarks. PIPA has no landmarks: there, supply them with
``dataset.annotations=FILE`` (e.g. from dlib's 5-point predictor, :mod:`evalsuite.dlib_models`).
Without any landmarks stage I learns only "no face visible" and stage II only
landmark-free heads (a warning is logged).

Both stages train together, step by step (one stage-I and one stage-II update per step),
on the protocol's training split (``fit_on="train"``), through the grid's cache or
``evalsuite train anonymizer=head-inpaint dataset=synthetic out=DIR``; ``checkpoint=PATH``
loads the weights that command wrote. Seeded: stage I is deterministic, stage II draws one
latent code per head from the run's generator (same seed, same output).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anonymizers.deepprivacy import (
    CropSet, DeepPrivacyAnonymizer, DPConfig, GanTrainer, PatchDiscriminator, UNetGenerator, _load_module, build_generator, crop_set,
    expanded_box, generate, generator_state, heatmaps, instance_keypoints, latent, load_generator, person_keypoints, resize, resize_mask,
    restore_trainer_state, stitch, to_crop_coordinates, to_signed, trainer_state,
)
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

INPUTS = {"black": "blackhead", "blur": "blurhead"}
#: COCO keypoints 5..16 (shoulders to ankles): the body pose stage I reads; 0..4 lie on the head
BODY_JOINTS = slice(5, 17)
COCO_COUNT = 17


@dataclass(frozen=True)
class HeadInpaintConfig(DPConfig):
    """:class:`~anonymizers.deepprivacy.DPConfig` (stage II and the crop) plus the obfuscated input and stage I."""

    pose: str = "face"
    height: int = 48
    expand: float = 3.0
    dilation: int = 1
    input: str = "black"
    above: float = 0.5
    landmark_dim: int = 32
    landmark_blocks: int = 2
    landmark_weight: float = 10.0

    ARCHITECTURE = DPConfig.ARCHITECTURE + ("landmark_dim", "landmark_blocks")
    STATE_FORMAT = "evalsuite-head-inpaint/1"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input not in INPUTS:
            raise UserError(f"anonymizer head-inpaint: input={self.input!r}: use one of {', '.join(INPUTS)} (the head obfuscation it starts from)")
        for name, low in (("landmark_dim", 1), ("landmark_blocks", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"anonymizer head-inpaint: {name}={value!r}: expected an integer >= {low}; e.g. {name}={getattr(HeadInpaintConfig, name)}")
        for name in ("above", "landmark_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise UserError(f"anonymizer head-inpaint: {name}={value!r}: expected a number >= 0; e.g. {name}={getattr(HeadInpaintConfig, name)}")
        if self.above > self.expand - 1:
            raise UserError(f"anonymizer head-inpaint: above={self.above} must be at most expand - 1 = {self.expand - 1:g} (the head must fit below it in the crop)")

    def box(self, region: np.ndarray) -> tuple[int, int, int, int]:
        """The region's DeepPrivacy box (``expand`` x its size, the generator's aspect), moved so the head sits ``above`` head heights below the top (Sun et al. 4.1)."""
        x0, y0, x1, y1 = expanded_box(region, (self.height, self.width), self.expand)
        ys = np.nonzero(region.any(axis=1))[0]
        top = int(ys[0]) - int(round(self.above * (ys[-1] + 1 - ys[0])))
        return x0, top, x1, top + (y1 - y0)


# --------------------------------------------------------------------------- stage I

class _ResidualConv(nn.Module):
    """A residual conv block followed by a stride-2 downsampling conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(cin, cin, 3, padding=1))
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.leaky_relu(x + self.body(x), 0.2))


class _ResidualFC(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class LandmarkGenerator(nn.Module):
    """``G_L`` (Sun et al. 3.1): (obfuscated crop, head mask, body heatmaps) -> landmark coordinates and a face-visible logit."""

    def __init__(self, config: HeadInpaintConfig) -> None:
        super().__init__()
        self.size = (config.height, config.width)
        self.count = config.keypoints
        width = config.channels
        in_channels = 3 + 1 + (BODY_JOINTS.stop - BODY_JOINTS.start)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for i in range(config.landmark_blocks):
            layers.append(_ResidualConv(width * min(2 ** i, 8), width * min(2 ** (i + 1), 8)))
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(width * min(2 ** config.landmark_blocks, 8), config.landmark_dim), nn.ReLU())
        self.decoder = nn.Sequential(*[_ResidualFC(config.landmark_dim) for _ in range(config.landmark_blocks)],
                                     nn.Linear(config.landmark_dim, 2 * self.count + 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, K, 2) ``[x, y]`` in generator pixels, inside the crop; (N,) face-visible logits)."""
        out = self.decoder(self.encoder(x))
        scale = torch.tensor([self.size[1], self.size[0]], dtype=out.dtype, device=out.device)
        return torch.sigmoid(out[:, :-1].view(-1, self.count, 2)) * scale, out[:, -1]

    def landmarks(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, 3) ``[x, y, visible]``: every point visible when the face is predicted visible, none otherwise."""
        points, logits = self(x)
        visible = (logits > 0).to(points.dtype)[:, None, None].expand(-1, self.count, 1)
        return torch.cat([points, visible], dim=2)


def stage1_input(inputs: torch.Tensor, masks: torch.Tensor, body: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Stage I's input: signed obfuscated crops (N, 3, H, W), head masks (N, 1, H, W), heatmaps of the COCO body joints of (N, 17, 3)."""
    return torch.cat([inputs, masks.float(), heatmaps(body[:, BODY_JOINTS], size)], dim=1)


def landmark_discriminator(config: HeadInpaintConfig) -> PatchDiscriminator:
    """``D_L``: a convolutional discriminator on the landmark heatmaps and the head mask."""
    return PatchDiscriminator(config.keypoints + 1, config.channels, config.depth)


class HeadInpaintModel(nn.Module):
    """Both generators: ``landmarks`` (stage I, ``G_L``) and ``inpainter`` (stage II, ``G_H``)."""

    def __init__(self, landmarks: LandmarkGenerator, inpainter: UNetGenerator) -> None:
        super().__init__()
        self.landmarks = landmarks
        self.inpainter = inpainter


class LandmarkTrainer:
    """Adversarial training of ``G_L`` against ``D_L`` (Equations 2, 3), one step at a time, resumable."""

    def __init__(self, config: HeadInpaintConfig, data: CropSet, seed: int, device: str | torch.device = "cpu") -> None:
        self.config, self.data, self.device = config, data, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self.generator = LandmarkGenerator(config).to(self.device)
            self.discriminator = landmark_discriminator(config).to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.rng = torch.Generator().manual_seed(seed + 1)  # its own stream: stage II's draws stay those of a GanTrainer
        self.faces = int((data.keypoints[..., 2] > 0).all(-1).sum())
        if self.faces == 0:
            log.warning("head-inpaint: no training head has facial landmarks; stage I learns only 'no face visible' (supply landmarks, see anonymizers/head_inpaint.py)")

    def train_step(self) -> dict[str, float]:
        cfg, size = self.config, (self.config.height, self.config.width)
        index = torch.randint(len(self.data), (cfg.batch_size,), generator=self.rng)
        inputs = self.data.inputs if self.data.inputs is not None else self.data.images
        x = stage1_input(to_signed(inputs[index]), self.data.masks[index], self.data.context[index], size).to(self.device)
        masks = self.data.masks[index].float().to(self.device)
        target = self.data.keypoints[index].to(self.device)
        face = (target[..., 2] > 0).all(-1)
        zero = torch.zeros((), device=self.device)
        d_loss = zero
        points, logits = self.generator(x)
        if face.any():  # D_L: annotated landmarks real, generated ones fake (Equation 2)
            fake = torch.cat([heatmaps(torch.cat([points[face], torch.ones_like(points[face][..., :1])], 2), size), masks[face]], 1)
            real = torch.cat([heatmaps(target[face], size), masks[face]], 1)
            d_loss = F.softplus(self.discriminator(fake.detach())).mean() + F.softplus(-self.discriminator(real)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        visible = F.binary_cross_entropy_with_logits(logits, face.float())
        l2, g_adv = zero, zero
        if face.any():  # G_L: non-saturating adversarial loss + lambda_L * L2 (Equation 3), coordinates in generator pixels
            l2 = (points[face] - target[face][..., :2]).pow(2).sum(-1).mean()
            g_adv = F.softplus(-self.discriminator(fake)).mean()
        loss = visible + cfg.landmark_weight * l2 + g_adv
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"lm_l2": l2.item(), "lm_adv": g_adv.item(), "lm_d": d_loss.item(), "lm_visible": visible.item()}

    def _parts(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        return {"l": self.generator, "ld": self.discriminator}, {"lm_opt_g": self.opt_g, "lm_opt_d": self.opt_d}

    def checkpoint(self) -> dict[str, Any]:
        return trainer_state(*self._parts(), "lm_rng", self.rng)

    def resume(self, state: dict[str, Any], source: str) -> None:
        restore_trainer_state(state, *self._parts(), "lm_rng", self.rng, source)


class HeadInpaintTrainer(GanTrainer):
    """Stage II's :class:`~anonymizers.deepprivacy.GanTrainer` plus stage I's :class:`LandmarkTrainer`, stepped together."""

    def __init__(self, config: HeadInpaintConfig, data: CropSet, seed: int, device: str | torch.device = "cpu") -> None:
        super().__init__(config, data, seed, device)
        self.stage1 = LandmarkTrainer(config, data, seed, device)
        self._model = HeadInpaintModel(self.stage1.generator, self.generator)

    @property
    def model(self) -> HeadInpaintModel:
        return self._model

    def train_step(self) -> dict[str, float]:
        losses = self.stage1.train_step()
        losses.update(super().train_step())
        return losses

    def checkpoint(self) -> dict[str, Any]:
        state = super().checkpoint()
        state.update(self.stage1.checkpoint())
        return state

    def resume(self, state: dict[str, Any], source: str) -> None:
        super().resume(state, source)
        self.stage1.resume(state, source)


# --------------------------------------------------------------------------- the anonymizer

@ANONYMIZERS.register("head-inpaint", description="Sun et al. two-stage head inpainting: landmarks generated from body context, then a landmark-conditioned inpainting GAN, from a black (input=black) or blurred (input=blur) head; trained on the protocol's training split")
class HeadInpaint(DeepPrivacyAnonymizer):
    """Sun et al. two-stage head inpainting from a black or blurred head (see the module docstring)."""

    pose = "face"
    config_class = HeadInpaintConfig
    param_names = tuple(f.name for f in fields(HeadInpaintConfig) if f.name != "pose") + ("checkpoint",)
    defaults = {"input": "black", "height": 48, "width": 32, "channels": 16, "depth": 3, "z_dim": 32, "expand": 3.0, "above": 0.5,
                "dilation": 1, "steps": 600, "batch_size": 16, "lr": 0.0002, "r1_gamma": 1.0, "epsilon": 0.001, "l1_weight": 1.0,
                "landmark_dim": 32, "landmark_blocks": 2, "landmark_weight": 10.0}

    @classmethod
    def registered_name(cls) -> str:
        return "head-inpaint"

    @property
    def region_name(self) -> str:
        return "head"

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """A tiny configuration for the conformance check (two training steps at 16 x 16 px)."""
        return {"height": 16, "width": 16, "channels": 4, "depth": 2, "z_dim": 4, "steps": 2, "batch_size": 4, "landmark_dim": 4, "landmark_blocks": 1}

    def obfuscate(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The head obfuscation the inpainter starts from: the ``blackhead`` / ``blurhead`` baseline's output."""
        return ANONYMIZERS.build(INPUTS[self.config.input]).anonymize(images, masks)

    def training_crops(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None) -> CropSet:
        return crop_set(images, masks, annotations, self.config, inputs=self.obfuscate(images, masks), context=("keypoints", COCO_COUNT))

    def new_trainer(self, data: CropSet, seed: int, device: str | torch.device) -> HeadInpaintTrainer:
        return HeadInpaintTrainer(self.config, data, seed, device)

    def model_state(self, model: nn.Module) -> dict[str, Any]:
        state = generator_state(model.inpainter, self.config)
        state.update({f"l.{k}": v.detach().cpu() for k, v in model.landmarks.state_dict().items()})
        return state

    def load_model(self, state: dict[str, Any], source: str) -> HeadInpaintModel:
        model = HeadInpaintModel(LandmarkGenerator(self.config), build_generator(self.config))
        load_generator(model.inpainter, state, self.config, source)
        _load_module(model.landmarks, state, "l.", source)
        return model

    def _anonymize_region(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None,
                          generator: torch.Generator | None) -> torch.Tensor:
        if self.generator_ is None:
            raise RuntimeError("head-inpaint is not fitted: call fit() or give checkpoint=PATH")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        model = self.generator_.to(images.device)
        out = self.obfuscate(images, masks)
        for index in range(images.shape[0]):
            out[index] = inpaint_image(model, out[index], masks[index], None if annotations is None else annotations[index], self.config, generator)
        return out


def inpaint_image(model: HeadInpaintModel, image: torch.Tensor, mask: torch.Tensor, annotation: dict | None, config: HeadInpaintConfig,
                  generator: torch.Generator, landmarks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """One obfuscated uint8 (3, H, W) image with every head of its (1, H, W) mask inpainted (``landmarks``,
    when given, receives stage I's (1, K, 3) output per head in stitching order)."""
    size = (config.height, config.width)
    people = person_keypoints(annotation, "keypoints", COCO_COUNT)

    def fill(crop_image: torch.Tensor, crop_region: torch.Tensor, grown: np.ndarray, box: tuple[int, int, int, int]) -> torch.Tensor:
        small = resize(crop_image, size)  # already obfuscated: black or blurred inside the head box
        small_mask = resize_mask(crop_region, size)
        body = torch.from_numpy(to_crop_coordinates(instance_keypoints(people, grown, COCO_COUNT), box, size)).float()[None].to(image.device)
        with torch.no_grad():
            points = model.landmarks.landmarks(stage1_input(small, small_mask, body, size))
            if landmarks is not None:
                landmarks.append(points.cpu())
            return generate(model.inpainter, small, small_mask, points, latent(config, generator, image.device), config, small)[0]

    return stitch(image, mask, config, fill)


ANONYMIZERS.register_preset("head-inpaint-black", "head-inpaint", input="black",
                            description="head-inpaint from Sun et al.'s black-head input (the head box filled black, then inpainted)")
ANONYMIZERS.register_preset("head-inpaint-blur", "head-inpaint", input="blur",
                            description="head-inpaint from Sun et al.'s blurred-head input (the blurhead baseline, then inpainted)")

#: a GPU configuration near Sun et al.'s setting (256 x 256 crops of 6 head heights, 6 + 6 residual blocks, z_L 32)
GPU_CONFIG: dict[str, Any] = {"height": 256, "width": 256, "expand": 6.0, "above": 0.5, "channels": 32, "depth": 5, "z_dim": 256,
                              "landmark_dim": 32, "landmark_blocks": 6, "steps": 200000, "batch_size": 16}
