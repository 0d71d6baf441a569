"""``uap``: a universal adversarial perturbation against a surrogate face recognizer (AnonymousNet Stage IV).

AnonymousNet (seed ``002``, Section 4 "Stage-IV: Adversarial Perturbation", Equations 8-9)
adds one image-agnostic perturbation ``v`` with ``||v||_p <= xi`` that makes a classifier
``k`` change its decision on most images, ``P(k(x + v) != k(x)) >= 1 - delta``, computed as
Moosavi-Dezfooli et al. 2017 ("Universal adversarial perturbations", Algorithm 1):

    v = 0
    repeat (at most max_passes passes over the images X, in a seeded random order):
        for x_i in X:
            if k(x_i + v) == k(x_i):
                dv = DeepFool(x_i + v)          # minimal perturbation that changes k's decision
                v  = project(v + dv)            # onto the L-inf ball of radius eps
    until the fooling rate on X is >= 1 - delta

DeepFool (Moosavi-Dezfooli et al. 2016, Algorithm 2, the L-inf case, q = 1): at ``x``, among
the ``candidates`` classes with the highest scores, take the one whose linearised boundary is
closest, ``l = argmin |f'_l| / ||w'_l||_1`` (``f'_l = f_l - f_k0``, ``w'_l`` its gradient), step
``r = (|f'_l| + 1e-4) / ||w'_l||_1 * sign(w'_l)``, repeat until the decision changes (at most
``deepfool_steps`` steps); the total step is scaled by ``1 + overshoot``.

**The surrogate.** ``k`` is a face recognizer trained in :meth:`UniversalPerturbation.fit` on the
training images with their identity labels (the ``identity`` annotation the face datasets
carry): the project's ``cnn`` recognizer (:class:`attacks.face_cnn.FaceCNN`) with a
nearest-template classifier on its embedding (the cosine to each identity's mean
enrolment embedding, scaled by 16), the same decision rule the face-identification
protocol's verification uses. ``surrogate=PATH`` loads one instead (a file written by
:func:`save_surrogate`); then no identity labels are needed.

**Region and budget.** The perturbation lives in the pixel grid of the training images
(0..255 units). DeepFool's gradient is masked by each image's region, so ``v`` grows only
where regions are; at anonymize time ``v`` is rounded to integers, clipped to
``[-floor(eps), floor(eps)]`` and added inside the region only (clipped to 0..255), so every
output pixel differs from its input by at most ``eps`` and pixels outside the region are
untouched. Images of another size get ``v`` resized bilinearly (then rounded and clipped).
Deterministic: the seed fixes the surrogate's training, the images used and their order;
``anonymize`` adds the same ``v`` to every image.

Defaults follow Moosavi-Dezfooli et al. 2017 on ImageNet: ``eps = 10`` (L-inf, 0..255),
``delta = 0.2``, ``overshoot = 0.02``, ``candidates = 10``; ``max_images = 500`` training
images (AnonymousNet: "a small portion of images sampled from the training dataset").
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from evalsuite.progress import tqdm

from anonymizers.base import Anonymizer, file_version
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

SURROGATE_FORMAT = "evalsuite-uap-surrogate/1"
TEMPLATE_SCALE = 16.0
#: numeric parameters: (minimum, maximum or None, integer?)
_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "eps": (0.0, 255.0, False), "delta": (0.0, 1.0, False), "max_passes": (1, None, True), "max_images": (1, None, True),
    "overshoot": (0.0, None, False), "deepfool_steps": (1, None, True), "candidates": (2, None, True),
    "surrogate_epochs": (1, None, True), "surrogate_width": (1, None, True), "surrogate_input_size": (16, None, True),
}


# --------------------------------------------------------------------------- the surrogate classifier

class TemplateClassifier(torch.nn.Module):
    """Identity scores of float images (B, 3, H, W) in 0..255: scaled cosine of the recognizer's
    embedding to each identity template (differentiable, eval mode)."""

    def __init__(self, net: torch.nn.Module, templates: torch.Tensor, input_size: int) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("templates", F.normalize(templates.float(), dim=1))
        self.input_size = int(input_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images / 255.0
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        emb = F.normalize(self.net((x - 0.5) / 0.5), dim=1)
        return TEMPLATE_SCALE * emb @ self.templates.t()

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted identity (B,) of uint8 or float images."""
        out = [self(images[s:s + batch_size].float()).argmax(1) for s in range(0, images.shape[0], batch_size)]
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def identity_labels(annotations: Sequence[dict] | None, n: int) -> np.ndarray:
    """Identity labels 0..C-1 from the annotations' ``identity``; UserError when they are missing."""
    names = [None if annotations is None else (a or {}).get("identity") for a in (annotations or [None] * n)]
    if any(v is None for v in names):
        raise UserError("anonymizer 'uap' trains its surrogate recognizer on the training images' identities and these have no 'identity' "
                        "annotation (the face datasets provide it); use a face protocol or give surrogate=PATH (a file written by anonymizers.uap.save_surrogate)")
    index = {name: i for i, name in enumerate(sorted(set(map(str, names))))}
    if len(index) < 2:
        raise UserError(f"anonymizer 'uap': the training images show {len(index)} identity; the surrogate recognizer needs at least 2")
    return np.array([index[str(v)] for v in names], dtype=np.int64)


def train_surrogate(images: torch.Tensor, labels: np.ndarray, *, seed: int, device: str | torch.device = "cpu", **config: Any) -> tuple[Any, torch.Tensor]:
    """A :class:`~attacks.face_cnn.FaceCNN` trained on uint8 ``images`` and its identity templates (C, D)."""
    from attacks.face_cnn import FaceCNN

    recognizer = FaceCNN(device=str(device), **config).fit(images, labels, seed=seed)
    emb = torch.from_numpy(recognizer.embed(images))
    counts = np.bincount(labels)
    templates = torch.zeros(len(counts), emb.shape[1]).index_add_(0, torch.as_tensor(labels), emb)
    return recognizer, F.normalize(templates, dim=1)


def save_surrogate(recognizer: Any, templates: torch.Tensor, path: str | Path) -> None:
    """Write a surrogate (a FaceCNN and its templates) that ``uap`` loads with ``surrogate=PATH``."""
    from anonymizers.base import save_state

    state: dict[str, Any] = {f"net.{k}": v for k, v in recognizer.state_dict().items()}
    state.update(templates=templates.float(), format=SURROGATE_FORMAT, config=recognizer.config.as_dict())
    save_state(state, Path(path))


def load_surrogate(path: str | Path, device: str | torch.device = "cpu") -> TemplateClassifier:
    """The classifier of a :func:`save_surrogate` file; UserError naming the file and key when it does not fit."""
    from anonymizers.deepprivacy import read_checkpoint
    from attacks.face_cnn import FaceCNN

    source = str(Path(path).expanduser())
    state = read_checkpoint(path)
    if state.get("format") != SURROGATE_FORMAT or "templates" not in state or not isinstance(state.get("config"), dict):
        raise UserError(f"surrogate {source}: key format is {state.get('format')!r}, expected {SURROGATE_FORMAT!r} (write it with anonymizers.uap.save_surrogate)")
    recognizer = FaceCNN(device=str(device), **state["config"])
    try:
        recognizer.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    except RuntimeError as exc:
        raise UserError(f"surrogate {source}: the net.* weights do not fit its config ({str(exc).splitlines()[0][:160]})") from None
    return TemplateClassifier(recognizer.net, state["templates"], recognizer.config.input_size).to(device)


# --------------------------------------------------------------------------- DeepFool and UAP

def deepfool(model: TemplateClassifier, image: torch.Tensor, mask: torch.Tensor, *, candidates: int, steps: int, overshoot: float) -> torch.Tensor:
    """DeepFool's L-inf perturbation (3, H, W) for one float image in 0..255, zero outside ``mask`` (1, H, W)."""
    with torch.no_grad():
        scores = model(image[None])[0]
    k = min(candidates, scores.numel())
    classes = scores.topk(k).indices  # classes[0] is the current decision
    original = int(classes[0])
    total = torch.zeros_like(image)
    region = mask.to(image.dtype)
    for _ in range(steps):
        x = (image + (1 + overshoot) * total).clamp(0, 255).expand(k - 1, *image.shape).clone().requires_grad_(True)
        out = model(x)
        if int(out[0].argmax()) != original:
            break
        rows = torch.arange(k - 1, device=image.device)
        differences = out[rows, classes[1:]] - out[rows, original]  # f'_l for each candidate l, one per row of the batch
        (grads,) = torch.autograd.grad(differences.sum(), x)
        grads = grads * region
        norms = grads.flatten(1).abs().sum(1) + 1e-8
        distance = differences.detach().abs() / norms
        best = int(distance.argmin())
        step = (differences[best].detach().abs() + 1e-4) / norms[best] * grads[best].sign()
        total = total + step
    return (1 + overshoot) * total


def universal_perturbation(model: TemplateClassifier, images: torch.Tensor, masks: torch.Tensor, *, eps: float, delta: float, max_passes: int,
                           candidates: int, steps: int, overshoot: float, rng: np.random.Generator) -> tuple[torch.Tensor, list[float]]:
    """Moosavi-Dezfooli et al. 2017's Algorithm 1 (L-inf): ``v`` (3, H, W) float and the fooling rate after each pass."""
    x = images.float()
    v = torch.zeros_like(x[0])
    clean = model.predict(x)
    rates: list[float] = []
    for _ in tqdm(range(max_passes), desc="uap passes", unit="pass", leave=False):
        for i in rng.permutation(len(x)).tolist():
            if not bool(masks[i].any()):
                continue
            perturbed = (x[i] + v * masks[i]).clamp(0, 255)
            if int(model.predict(perturbed[None])[0]) != int(clean[i]):
                continue
            dv = deepfool(model, perturbed, masks[i], candidates=candidates, steps=steps, overshoot=overshoot)
            v = (v + dv).clamp(-eps, eps)
        fooled = model.predict((x + v * masks).clamp(0, 255)) != clean
        rates.append(float(fooled[masks.flatten(1).any(1)].float().mean()))
        log.info("uap: pass %d, fooling rate %.3f on %d images", len(rates), rates[-1], len(x))
        if rates[-1] >= 1 - delta:
            break
    return v, rates


def apply_perturbation(images: torch.Tensor, masks: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
    """uint8 images plus ``v`` rounded and clipped to ``[-floor(eps), floor(eps)]``, inside ``masks`` only."""
    if tuple(v.shape[-2:]) != tuple(images.shape[-2:]):
        v = F.interpolate(v[None].float(), size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)[0]
    bound = math.floor(eps)
    step = v.to(images.device).round().clamp(-bound, bound).to(torch.int16)
    out = (images.to(torch.int16) + step * masks.to(torch.int16)).clamp(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------- the anonymizer

@ANONYMIZERS.register("uap", description="universal adversarial perturbation (DeepFool-based, Moosavi-Dezfooli et al. 2017; AnonymousNet stage IV) against a surrogate face recognizer trained on the training split; L-inf budget eps (0..255)")
class UniversalPerturbation(Anonymizer):
    """One universal perturbation, computed against a surrogate recognizer in :meth:`fit` (see the module docstring)."""

    fit_on = "train"
    code_version = "1"
    param_names = ("eps", "delta", "max_passes", "max_images", "overshoot", "deepfool_steps", "candidates",
                   "surrogate_epochs", "surrogate_width", "surrogate_input_size", "surrogate")

    def __init__(self, *, eps: float = 10.0, delta: float = 0.2, max_passes: int = 5, max_images: int = 500, overshoot: float = 0.02,
                 deepfool_steps: int = 10, candidates: int = 10, surrogate_epochs: int = 15, surrogate_width: int = 8,
                 surrogate_input_size: int = 56, surrogate: str | None = None) -> None:
        values = dict(eps=eps, delta=delta, max_passes=max_passes, max_images=max_images, overshoot=overshoot, deepfool_steps=deepfool_steps,
                      candidates=candidates, surrogate_epochs=surrogate_epochs, surrogate_width=surrogate_width, surrogate_input_size=surrogate_input_size)
        for name, value in values.items():
            low, high, integer = _BOUNDS[name]
            wrong = isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and float(value) != int(value))
            if wrong or not math.isfinite(value) or value < low or (high is not None and value > high):
                span = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
                raise UserError(f"anonymizer 'uap': {name}={value!r} must be {'an integer' if integer else 'a number'} {span}; e.g. {name}={_defaults()[name]}")
            setattr(self, name, value)
        if surrogate is not None and not Path(surrogate).expanduser().is_file():
            raise UserError(f"anonymizer 'uap': surrogate={surrogate}: no such file (a file written by anonymizers.uap.save_surrogate)")
        self.surrogate = surrogate
        self.perturbation_: torch.Tensor | None = None
        self.fooling_rates_: list[float] = []

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """Tiny settings for the conformance check, with a surrogate trained on its images (3 made-up identities) and saved."""
        path = workdir / "uap-surrogate.safetensors"
        recognizer, templates = train_surrogate(images, np.arange(images.shape[0]) % 3, seed=0, input_size=16, width=2, embedding_dim=8, epochs=1, batch_size=4)
        save_surrogate(recognizer, templates, path)
        return {"surrogate": str(path), "max_passes": 1, "deepfool_steps": 3, "candidates": 3}

    def code_hash(self) -> str:
        """The code version, plus the surrogate file's size and modification time when one is loaded."""
        return file_version(type(self), self.surrogate, "surrogate")

    def surrogate_classifier(self, images: torch.Tensor, annotations: Sequence[dict] | None, seed: int, device: str | torch.device) -> TemplateClassifier:
        """The classifier the perturbation is computed against: loaded from ``surrogate`` or trained on ``images``."""
        if self.surrogate is not None:
            return load_surrogate(self.surrogate, device)
        labels = identity_labels(annotations, images.shape[0])
        recognizer, templates = train_surrogate(images.cpu(), labels, seed=seed, device=device, epochs=int(self.surrogate_epochs),
                                                width=int(self.surrogate_width), input_size=int(self.surrogate_input_size))
        return TemplateClassifier(recognizer.net, templates, recognizer.config.input_size).to(device)

    def fit(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None, sample_ids: Sequence[str] | None = None,
            *, seed: int = 0, device: str | torch.device = "cpu", cache: Any = None) -> "UniversalPerturbation":
        """Train (or load) the surrogate, then compute the universal perturbation on up to ``max_images`` training images."""
        model = self.surrogate_classifier(images, annotations, seed, device)
        rng = np.random.default_rng([int(seed), 17])
        chosen = np.sort(rng.permutation(images.shape[0])[:int(self.max_images)])
        index = torch.as_tensor(chosen, device=images.device)
        v, rates = universal_perturbation(model, images[index].to(device), masks[index].to(device), eps=float(self.eps), delta=float(self.delta),
                                          max_passes=int(self.max_passes), candidates=int(self.candidates), steps=int(self.deepfool_steps),
                                          overshoot=float(self.overshoot), rng=rng)
        self.perturbation_, self.fooling_rates_ = v.cpu(), rates
        return self

    def row_fields(self) -> dict[str, Any]:
        """The surrogate's fooling rate on the images the perturbation was computed on (last pass), for every row."""
        return {"surrogate_fooling_rate": self.fooling_rates_[-1]} if self.fooling_rates_ else {}

    def state_dict(self) -> dict[str, Any]:
        if self.perturbation_ is None:
            return {}
        return {"perturbation": self.perturbation_, "fooling_rates": self.fooling_rates_}

    def load_state(self, state: dict[str, Any]) -> "UniversalPerturbation":
        if state:
            self.perturbation_ = state["perturbation"].float()
            self.fooling_rates_ = [float(r) for r in state.get("fooling_rates", [])]
        return self

    def _anonymize_region(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None,
                          generator: torch.Generator | None) -> torch.Tensor:
        if self.perturbation_ is None:
            raise RuntimeError("uap is not fitted: call fit() first")
        return apply_perturbation(images, masks, self.perturbation_, float(self.eps))


def _defaults() -> dict[str, Any]:
    import inspect

    return {n: p.default for n, p in inspect.signature(UniversalPerturbation.__init__).parameters.items() if n != "self"}


#: documented GPU settings (CelebA at 112 px or more): a stronger surrogate and the UAP paper's 10,000 images
GPU_CONFIG: dict[str, Any] = {"surrogate_input_size": 112, "surrogate_width": 32, "surrogate_epochs": 30, "max_images": 10000, "max_passes": 10}
