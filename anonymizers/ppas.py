"""``ppas``: AnonymousNet (seed ``002``) Stages I-III: estimate the face's attributes, choose the
released attributes with PPAS, render the face with them through a StarGAN-style generator.

- **Stage I, attribute estimation** (Section 4; the paper: GoogLeNet features and random
  forests): the project's small multi-head CNN (:class:`evalsuite.metrics.classifier.SmallCNN`,
  one head per quasi-identifier) trained here on the training split's crops and attribute
  labels (``annotations["attributes"]``).
- **Stage II, PPAS** (Algorithm 1): :class:`anonymizers.ppas_selection.PPAS` over the
  training split's attribute table (the reference table: every training image a record),
  quasi-identifiers ``quasi_identifiers`` (what the generator renders), sensitive attributes
  ``sensitive`` (kept as the face shows them), parameters ``k``, ``l``, ``t``, ``epsilon``
  (see that module for the exact definitions and guarantees). Each released face's QI
  vector is shared by >= k training records whose sensitive values are l-diverse and
  t-close to the table's.
- **Stage III, attribute translation** (Section 5.3 "Attribute Translation", StarGAN, Choi et
  al. 2018): generator ``G(x, c)`` on the face crop and the target attributes (one-hot per
  QI, replicated over the image): a 7x7 convolution, two stride-2 downsampling convolutions,
  ``blocks`` residual blocks (the paper: six), two transposed convolutions, a 7x7 convolution
  and tanh, instance normalisation; a PatchGAN discriminator with a real/fake map and an
  attribute-classification output. Loss (Equations 7, 11-12): Wasserstein adversarial loss
  with gradient penalty (``lambda_gp = 10``), attribute classification (cross-entropy per
  QI, ``lambda_cls``), reconstruction ``|x - G(G(x, c_trg), c_org)|_1`` (``lambda_rec``); the
  discriminator takes ``n_critic`` steps per generator step; target vectors are the batch's
  labels in shuffled order (StarGAN's recipe); Adam (betas 0.5 / 0.999). Deviations for the
  CPU budget: ``n_critic = 2`` (StarGAN: 5), so that the 1,000-step default gives the
  generator 500 updates; ``lr = 5e-4`` (StarGAN: 1e-4 over 200k steps); and a
  self-reconstruction term ``lambda_id * |x - G(x, c_org)|_1`` (AttGAN's reconstruction loss,
  He et al. 2019; 0 = StarGAN). Without it, after a few CPU minutes the cycle loss was low
  while ``G(x, c_org)`` was noise 60 gray levels from ``x`` (the cycle hid the image in it).

Each region instance (connected part of the given mask, :func:`anonymizers.deepprivacy.instances`)
is cropped by its bounding box grown to a square and by ``expand`` (zeros outside the image),
resized to ``size x size``, estimated, selected, translated, resized back and pasted inside the
instance. The paper works at 256 x 256 on CelebA; the CPU default is 32 x 32 crops (documented
GPU settings: :data:`GPU_CONFIG`), so the pasted face is a 32-pixel rendering scaled up.

``fit_on = "train"``: :meth:`fit` trains the classifier and the GAN (seeded) and keeps the
reference table; ``checkpoint=PATH`` loads a state written by :func:`anonymizers.base.save_state`
from a fitted ``ppas`` instead of training. ``stochastic`` when ``epsilon`` is set: the
perturbation draws come from the seeded generator, one numpy stream per instance.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from evalsuite.progress import tqdm

from anonymizers.base import Anonymizer, file_version, load_state_file, save_state
from anonymizers.deepprivacy import _load_module, crop, expanded_box, instances, read_checkpoint, resize, to_signed, to_uint8
from anonymizers.ppas_selection import PPAS, check_params, privacy_report
from evalsuite.config import stable_hash
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

FORMAT = "evalsuite-ppas/1"
#: quasi-identifiers: StarGAN's CelebA attributes (hair colours, age) plus Gray_Hair and Eyeglasses;
#: sensitive: gender (StarGAN's fifth attribute), kept as the face shows it
DEFAULT_QUASI_IDENTIFIERS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Young", "Eyeglasses")
DEFAULT_SENSITIVE = ("Male",)
#: the selection's parameters: they do not change the trained networks
SELECTION_PARAMS = ("k", "l", "t", "epsilon")


@dataclass(frozen=True)
class PPASConfig:
    """Everything but the attribute lists and the checkpoint (numbers, checked in ``__post_init__``)."""

    k: int = 10
    l: float = 1.5
    t: float = 0.3
    epsilon: float | None = 3.0
    size: int = 32
    channels: int = 16
    blocks: int = 2
    d_depth: int = 3
    expand: float = 1.0
    steps: int = 1000
    batch_size: int = 16
    n_critic: int = 2  # StarGAN: 5; on the CPU budget the generator needs more of the steps
    lr: float = 0.0005  # StarGAN: 1e-4 for 200k steps; 5e-4 learns in the CPU budget (test_ppas_anonymizer)
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_id: float = 10.0
    lambda_gp: float = 10.0
    classifier_epochs: int = 10
    classifier_width: int = 8

    ARCHITECTURE = ("size", "channels", "blocks", "d_depth")

    def __post_init__(self) -> None:
        check_params(self.k, self.l, self.t, self.epsilon, where="anonymizer 'ppas'")
        for f in fields(self):
            if f.name in ("k", "l", "t", "epsilon"):
                continue
            value, integer = getattr(self, f.name), isinstance(f.default, int)
            low = {"expand": 1.0, "size": 8}.get(f.name, 0 if f.name.startswith("lambda") or f.name == "blocks" else 1 if integer else 1e-12)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and float(value) != int(value)) or not math.isfinite(value) or value < low:
                raise UserError(f"anonymizer 'ppas': {f.name}={value!r} must be {'an integer' if integer else 'a number'} >= {low:g}; e.g. {f.name}={f.default}")
        if self.size % 2 ** max(2, self.d_depth):
            raise UserError(f"anonymizer 'ppas': size={self.size} must be a multiple of {2 ** max(2, self.d_depth)} (two generator downsamplings, d_depth={self.d_depth} discriminator ones)")

    def architecture(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.ARCHITECTURE}


# --------------------------------------------------------------------------- networks

def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, affine=True, track_running_stats=False), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), *_norm_act(channels),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StarGenerator(nn.Module):
    """StarGAN's generator: (image in [-1, 1], target attribute code) -> image in [-1, 1]."""

    def __init__(self, c_dim: int, channels: int, blocks: int) -> None:
        super().__init__()
        c = channels
        layers: list[nn.Module] = [nn.Conv2d(3 + c_dim, c, 7, 1, 3, bias=False), *_norm_act(c)]
        layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), *_norm_act(2 * c), nn.Conv2d(2 * c, 4 * c, 4, 2, 1, bias=False), *_norm_act(4 * c)]
        layers += [ResidualBlock(4 * c) for _ in range(blocks)]
        layers += [nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1, bias=False), *_norm_act(2 * c), nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), *_norm_act(c)]
        layers += [nn.Conv2d(c, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, code[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1))


class StarDiscriminator(nn.Module):
    """PatchGAN with two outputs: a real/fake map and attribute logits (c_dim)."""

    def __init__(self, c_dim: int, channels: int, depth: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.01)]
        width = channels
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.01)]
            width *= 2
        self.trunk = nn.Sequential(*layers)
        self.src = nn.Conv2d(width, 1, 3, 1, 1, bias=False)
        self.cls = nn.Conv2d(width, c_dim, size // 2 ** depth, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.src(h), self.cls(h).flatten(1)


def one_hot(codes: torch.Tensor, domains: Sequence[int]) -> torch.Tensor:
    """(B, sum(domains)) float: one-hot per attribute of (B, q) codes."""
    return torch.cat([F.one_hot(codes[:, j], m).float() for j, m in enumerate(domains)], dim=1)


def attribute_loss(logits: torch.Tensor, codes: torch.Tensor, domains: Sequence[int]) -> torch.Tensor:
    """Sum over attributes of the cross-entropy of each attribute's slice of ``logits``."""
    loss, start = logits.new_zeros(()), 0
    for j, m in enumerate(domains):
        loss = loss + F.cross_entropy(logits[:, start:start + m], codes[:, j])
        start += m
    return loss


# --------------------------------------------------------------------------- data

def instance_crops(images: torch.Tensor, masks: torch.Tensor, config: PPASConfig) -> tuple[torch.Tensor, list[tuple[int, np.ndarray, tuple[int, int, int, int]]]]:
    """uint8 (M, 3, size, size) crops of every region instance and (image index, instance mask, box) of each."""
    size = (config.size, config.size)
    crops, where = [], []
    for index in range(images.shape[0]):
        for part in instances(masks[index, 0].cpu().numpy()):
            box = expanded_box(part, size, config.expand)
            crops.append(resize(crop(images[index].float(), box)[None], size).round().clamp(0, 255).to(torch.uint8))
            where.append((index, part, box))
    empty = torch.empty(0, 3, *size, dtype=torch.uint8, device=images.device)
    return (torch.cat(crops) if crops else empty), where


def attribute_table(annotations: Sequence[dict] | None, columns: Sequence[str], n: int, anonymizer: str = "ppas", what: str = "training image",
                    fix: str = "set quasi_identifiers / sensitive to attributes the dataset has") -> list[list[Any]]:
    """The rows of ``columns`` from each annotation's ``attributes``; UserError naming the first missing one and ``fix``."""
    if annotations is None or len(annotations) != n:
        raise UserError(f"anonymizer {anonymizer!r} needs the images' attribute annotations (the face datasets carry them); the protocol passed none")
    rows = []
    for i, ann in enumerate(annotations):
        attrs = (ann or {}).get("attributes") or {}
        missing = [c for c in columns if attrs.get(c) is None]
        if missing:
            available = ", ".join(sorted(map(str, attrs))) or "none"
            raise UserError(f"anonymizer {anonymizer!r}: {what} {i} has no attribute {missing[0]!r} (available: {available}); {fix}")
        rows.append([attrs[c] for c in columns])
    return rows


# --------------------------------------------------------------------------- training

class StarGANTrainer:
    """StarGAN's training (WGAN-GP, classification and reconstruction losses), seeded."""

    def __init__(self, config: PPASConfig, crops: torch.Tensor, codes: torch.Tensor, domains: Sequence[int], seed: int, device: str | torch.device) -> None:
        self.config, self.crops, self.codes, self.domains, self.device = config, crops, codes, list(domains), torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = StarGenerator(sum(domains), config.channels, config.blocks).to(self.device)
            self.discriminator = StarDiscriminator(sum(domains), config.channels, config.d_depth, config.size).to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.rng = torch.Generator().manual_seed(seed)

    def step(self, number: int) -> dict[str, float]:
        cfg, dev = self.config, self.device
        index = torch.randint(len(self.crops), (cfg.batch_size,), generator=self.rng)
        real = to_signed(self.crops[index]).to(dev)
        c_org = self.codes[index].to(dev)
        c_trg = c_org[torch.randperm(cfg.batch_size, generator=self.rng).to(dev)]
        alpha = torch.rand(cfg.batch_size, 1, 1, 1, generator=self.rng).to(dev)
        org, trg = one_hot(c_org, self.domains), one_hot(c_trg, self.domains)
        # discriminator (Equations 11-12)
        src_real, cls_real = self.discriminator(real)
        with torch.no_grad():
            fake = self.generator(real, trg)
        src_fake, _ = self.discriminator(fake)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(mixed)[0].sum(), mixed, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        d_cls = attribute_loss(cls_real, c_org, self.domains)
        d_loss = src_fake.mean() - src_real.mean() + cfg.lambda_cls * d_cls + cfg.lambda_gp * gp
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        losses = {"d_adv": float((src_fake.mean() - src_real.mean()).detach()), "d_cls": float(d_cls.detach()), "gp": float(gp.detach())}
        if number % cfg.n_critic == cfg.n_critic - 1:
            fake = self.generator(real, trg)
            src, cls = self.discriminator(fake)
            g_cls = attribute_loss(cls, c_trg, self.domains)
            g_rec = (real - self.generator(fake, org)).abs().mean()
            g_id = (real - self.generator(real, org)).abs().mean() if cfg.lambda_id > 0 else torch.zeros((), device=dev)
            g_loss = -src.mean() + cfg.lambda_cls * g_cls + cfg.lambda_rec * g_rec + cfg.lambda_id * g_id
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
            losses.update(g_cls=float(g_cls.detach()), g_rec=float(g_rec.detach()), g_id=float(g_id.detach()))
        return losses

    def train(self) -> StarGenerator:
        last: dict[str, float] = {}
        with tqdm(range(self.config.steps), desc="train ppas stargan", unit="step", leave=False) as progress:
            for number in progress:
                losses = self.step(number)
                last.update(losses)
                if number % 50 == 0 and "g_rec" in last:
                    progress.set_postfix(rec=f"{last['g_rec']:.3f}", cls=f"{last['g_cls']:.2f}")
        if last:
            log.info("ppas stargan: %d steps, last losses %s", self.config.steps, {k: round(v, 3) for k, v in last.items()})
        return self.generator.eval().requires_grad_(False)


# --------------------------------------------------------------------------- the anonymizer

@ANONYMIZERS.register("ppas", description="AnonymousNet: attribute estimation, PPAS attribute selection (k-anonymity, l-diversity, t-closeness, epsilon perturbation) and StarGAN-style synthesis, trained on the training split")
class PPASAnonymizer(Anonymizer):
    """Attribute estimation -> PPAS -> attribute-conditioned generator (see the module docstring)."""

    fit_on = "train"
    code_version = "1"
    param_names = tuple(f.name for f in fields(PPASConfig)) + ("quasi_identifiers", "sensitive", "checkpoint")

    def __init__(self, *, quasi_identifiers: Sequence[str] = DEFAULT_QUASI_IDENTIFIERS, sensitive: Sequence[str] = DEFAULT_SENSITIVE,
                 checkpoint: str | None = None, **params: Any) -> None:
        unknown = sorted(set(params) - {f.name for f in fields(PPASConfig)})
        if unknown:
            from evalsuite.errors import did_you_mean

            raise UserError(f"anonymizer 'ppas': unknown parameter {unknown[0]!r}: {did_you_mean(unknown[0], self.param_names)}")
        self.config = PPASConfig(**params)
        for f in fields(PPASConfig):
            setattr(self, f.name, getattr(self.config, f.name))
        self.quasi_identifiers = _names(quasi_identifiers, "quasi_identifiers")
        self.sensitive = _names(sensitive, "sensitive")
        overlap = sorted(set(self.quasi_identifiers) & set(self.sensitive))
        if overlap:
            raise UserError(f"anonymizer 'ppas': attribute {overlap[0]!r} is both a quasi-identifier and sensitive; list it in one of quasi_identifiers / sensitive")
        self.stochastic = self.config.epsilon is not None
        self.checkpoint = checkpoint
        self._checkpoint_state: dict[str, Any] | None = None
        if checkpoint is not None:  # fail early, before anything is written
            self._checkpoint_state = read_checkpoint(checkpoint)
            self.load_state(self._checkpoint_state, source=str(Path(checkpoint).expanduser()))
        self._clear()  # unfitted until fit(), also with a checkpoint

    def _clear(self) -> None:
        self.generator_: StarGenerator | None = None
        self.classifier_: nn.Module | None = None
        self.ppas_: PPAS | None = None
        self.table_: list[list[Any]] = []
        self.privacy_: dict[str, float] = {}

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """A tiny configuration for the conformance check (its annotations have Male and Smiling)."""
        return {"quasi_identifiers": ["Male"], "sensitive": ["Smiling"], "k": 2, "l": 1.0, "t": 1.0, "size": 16, "channels": 4, "blocks": 1,
                "d_depth": 2, "steps": 2, "batch_size": 4, "n_critic": 2, "classifier_epochs": 1, "classifier_width": 2}

    def get_params(self) -> dict[str, Any]:
        return {name: list(getattr(self, name)) if name in ("quasi_identifiers", "sensitive") else getattr(self, name) for name in self.param_names}

    def code_hash(self) -> str:
        """The code version, plus the checkpoint file's size and modification time when one is loaded."""
        return file_version(type(self), self.checkpoint, "ckpt")

    # -- fitting
    def fit(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None, sample_ids: Sequence[str] | None = None,
            *, seed: int = 0, device: str | torch.device = "cpu", cache: Any = None) -> "PPASAnonymizer":
        """Build the reference table, train the attribute classifier and the StarGAN (or load ``checkpoint``)."""
        if self._checkpoint_state is not None:
            return self.load_state(self._checkpoint_state, source=str(self.checkpoint))
        from evalsuite.metrics.classifier import SmallCNN, train_classifier
        from evalsuite.pipeline import Artifacts

        table = attribute_table(annotations, self.quasi_identifiers + self.sensitive, images.shape[0])
        ppas = self._selector(table)
        crops, where = instance_crops(images.cpu(), masks.cpu(), self.config)
        if not where:
            raise UserError("anonymizer 'ppas': the training images have no region to learn from (every mask is empty); check region")
        q = len(self.quasi_identifiers)
        codes = torch.as_tensor(np.stack([ppas.encode(table[i][:q]) for i, _, _ in where]), dtype=torch.long)
        domains = [len(d) for d in ppas.domains]

        def train() -> dict[str, Any]:
            torch.manual_seed(int(seed))
            classifier = SmallCNN(domains, width=int(self.classifier_width))
            classifier = train_classifier(classifier, crops, codes, int(self.classifier_epochs), 32, 5e-3, int(seed), str(device), "train ppas attribute classifier")
            generator = StarGANTrainer(self.config, crops, codes, domains, int(seed), device).train()
            return {**{f"g.{k}": v for k, v in generator.state_dict().items()}, **{f"c.{k}": v for k, v in classifier.state_dict().items()}}

        # the networks do not depend on k / l / t / epsilon: a sweep over them trains once
        key = self._networks_key(crops, codes, domains, seed, device)
        networks, cached = Artifacts(cache).get_or_build("ppas-networks", key, ".safetensors", load_state_file, train, save_state, what="ppas networks")
        if cached:
            log.info("ppas: attribute classifier and generator read from the cache (%s); only the selection is new", key)
        generator = StarGenerator(sum(domains), self.config.channels, self.config.blocks)
        classifier = SmallCNN(domains, width=int(self.classifier_width))
        _load_module(generator, networks, "g.", "cached ppas networks")
        _load_module(classifier, networks, "c.", "cached ppas networks")
        self.generator_, self.classifier_, self.ppas_, self.table_ = generator.eval(), classifier.eval(), ppas, table
        self.privacy_ = self._training_privacy()
        log.info("ppas: released training table achieves k=%d, l=%.3g, t=%.3g over %d classes (asked k=%d, l=%g, t=%g)",
                 self.privacy_["k"], self.privacy_["l"], self.privacy_["t"], self.privacy_["classes"], self.config.k, self.config.l, self.config.t)
        return self

    def _networks_key(self, crops: torch.Tensor, codes: torch.Tensor, domains: Sequence[int], seed: int, device: str | torch.device) -> str:
        """What the classifier and generator are trained from: the crops, their attribute codes, every
        parameter but the selection's (k, l, t, epsilon), the seed, the device and the code."""
        digest = hashlib.blake2b(digest_size=16)
        for tensor in (crops, codes):
            array = np.ascontiguousarray(tensor.detach().cpu().numpy())
            digest.update(repr((array.shape, array.dtype.str)).encode())
            digest.update(array.tobytes())
        params = {k: v for k, v in self.get_params().items() if k not in SELECTION_PARAMS}
        return stable_hash({"kind": "ppas-networks", "code": self.code_hash(), "params": params, "domains": list(domains),
                            "seed": int(seed), "device": str(device), "data": digest.hexdigest()})

    def _selector(self, table: list[list[Any]]) -> PPAS:
        q = len(self.quasi_identifiers)
        cfg = self.config
        return PPAS(np.array(table, dtype=object), list(range(q)), list(range(q, q + len(self.sensitive))), k=cfg.k, l=cfg.l, t=cfg.t, epsilon=cfg.epsilon)

    def _training_privacy(self) -> dict[str, float]:
        """Achieved k / l / t of the training table released through PPAS (no perturbation): the guarantee on data with known labels."""
        assert self.ppas_ is not None
        q = len(self.quasi_identifiers)
        released = [self.ppas_.decode(self.ppas_.project(self.ppas_.encode(row[:q]))) for row in self.table_]
        report = privacy_report(released, [tuple(row[q:]) for row in self.table_], population=self.ppas_.population)
        return {name: float(value) for name, value in report.items()}

    def row_fields(self) -> dict[str, Any]:
        """The k / l / t the released training table achieves (:meth:`_training_privacy`), for every row."""
        return {f"achieved_{name}": value for name, value in self.privacy_.items()}

    # -- state
    def state_dict(self) -> dict[str, Any]:
        if self.generator_ is None or self.classifier_ is None:
            return {}
        state: dict[str, Any] = {f"g.{k}": v for k, v in self.generator_.state_dict().items()}
        state.update({f"c.{k}": v for k, v in self.classifier_.state_dict().items()})
        state.update(format=FORMAT, architecture=self.config.architecture(), attributes=self.quasi_identifiers + self.sensitive,
                     table=self.table_, privacy=self.privacy_)
        return state

    def load_state(self, state: dict[str, Any], source: str = "fitted state") -> "PPASAnonymizer":
        from evalsuite.metrics.classifier import SmallCNN

        if state.get("format") != FORMAT:
            raise UserError(f"checkpoint {source}: key format is {state.get('format')!r}, expected {FORMAT!r} (the state of a fitted ppas anonymizer)")
        for key, value in self.config.architecture().items():
            if (state.get("architecture") or {}).get(key) != value:
                raise UserError(f"checkpoint {source}: key architecture.{key} is {(state.get('architecture') or {}).get(key)!r} but the anonymizer has {key}={value!r}")
        if list(state.get("attributes") or []) != self.quasi_identifiers + self.sensitive:
            raise UserError(f"checkpoint {source}: key attributes is {state.get('attributes')!r}, the anonymizer has quasi_identifiers + sensitive {self.quasi_identifiers + self.sensitive}")
        table = [list(row) for row in state["table"]]
        ppas = self._selector(table)
        domains = [len(d) for d in ppas.domains]
        generator = StarGenerator(sum(domains), self.config.channels, self.config.blocks)
        classifier = SmallCNN(domains, width=int(self.classifier_width))
        _load_module(generator, state, "g.", source)
        _load_module(classifier, state, "c.", source)
        self.generator_, self.classifier_ = generator.eval().requires_grad_(False), classifier.eval().requires_grad_(False)
        self.ppas_, self.table_, self.privacy_ = ppas, table, dict(state.get("privacy") or {})
        return self

    # -- anonymizing
    def release(self, crops: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(M, q) released QI codes of uint8 crops: estimated attributes, then PPAS (perturbation draws from ``generator``)."""
        assert self.classifier_ is not None and self.ppas_ is not None
        with torch.no_grad():
            estimated = torch.stack([head.argmax(1) for head in self.classifier_.to(crops.device)(crops)], dim=1).cpu().numpy()
        out = []
        for row in estimated:
            rng = None
            if self.stochastic:
                if generator is None:
                    generator = torch.Generator().manual_seed(0)
                rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device)))
            out.append(self.ppas_.select_codes(row, rng))
        return torch.as_tensor(np.stack(out), dtype=torch.long)

    def _anonymize_region(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None,
                          generator: torch.Generator | None) -> torch.Tensor:
        if self.generator_ is None or self.ppas_ is None:
            raise RuntimeError("ppas is not fitted: call fit() or give checkpoint=PATH")
        crops, where = instance_crops(images, masks, self.config)
        out = images.clone()
        if not where:
            return out
        codes = self.release(crops, generator).to(images.device)
        model = self.generator_.to(images.device)
        with torch.no_grad():
            fakes = model(to_signed(crops), one_hot(codes, [len(d) for d in self.ppas_.domains]))
        height, width = images.shape[-2:]
        for fake, (index, part, box) in zip(fakes, where):
            x0, y0, x1, y1 = box
            big = to_uint8(resize(fake[None], (y1 - y0, x1 - x0)))[0]
            ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
            inside = torch.from_numpy(part[iy0:iy1, ix0:ix1]).to(images.device)[None]
            window = out[index, :, iy0:iy1, ix0:ix1]
            out[index, :, iy0:iy1, ix0:ix1] = torch.where(inside, big[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0], window)
        return out


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
        raise UserError(f"anonymizer 'ppas': {what} must be a non-empty list of distinct attribute names, got {value!r}")
    return list(value)


#: documented GPU settings at AnonymousNet's resolution (StarGAN's CelebA recipe: 6 residual blocks, 64 channels, 200k steps)
GPU_CONFIG: dict[str, Any] = {"size": 256, "channels": 64, "blocks": 6, "d_depth": 6, "steps": 200000, "batch_size": 16, "expand": 1.0}
