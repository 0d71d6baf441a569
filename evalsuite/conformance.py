"""``check_anonymizer``: the conformance check every registered anonymizer must pass (cf. scikit-learn's ``check_estimator``).

It builds the anonymizer from its registry entry (adapters that need parameters, like
``external`` and ``precomputed``, supply an example through the classmethod
``example_params(workdir, images, masks, sample_ids)``), then checks:

- declarations: ``fit_on`` and ``regions`` are known values;
- parameters: ``get_params`` rebuilds an equal anonymizer; ``clone`` is unfitted and equal;
- the fit contract: ``fit`` (when declared) accepts ids, seed, device and cache and returns
  the anonymizer; its ``state_dict`` survives a safetensors + JSON round trip into a clone
  that then anonymizes identically;
- outputs: uint8 (B, 3, H, W) on the input device; a given-region anonymizer changes nothing
  outside the mask; an own-region one returns :class:`anonymizers.base.Anonymized` with bool
  (B, 1, H, W) detections (or None);
- determinism: the same seed gives the same output; batch-wise equals whole-set output;
- devices: the same on every device given (``cuda`` when present).
"""
from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

import torch

from anonymizers.base import Anonymized, Anonymizer, check_declarations, load_state_file, save_state


class ConformanceError(AssertionError):
    """An anonymizer broke the contract; the message says which rule."""


def example_batch(n: int = 12, height: int = 24, width: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict], list[str]]:
    """Random uint8 images, a box mask per image, annotations with attributes and boxes, and sample ids."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=generator)
    masks = torch.zeros(n, 1, height, width, dtype=torch.bool)
    masks[:, :, 4:16, 3:12] = True
    masks[0] = False  # one image with nothing to anonymize
    annotations = [{"face_box": [3, 4, 12, 16], "head_box": [3, 4, 12, 16], "attributes": {"Male": i % 2, "Smiling": 0}} for i in range(n)]
    ids = [f"query/{i:04d}_c1s1_000001_00.jpg" for i in range(n)]
    return images, masks, annotations, ids


def build(entry: Any, workdir: Path, images: torch.Tensor, masks: torch.Tensor, ids: list[str]) -> Anonymizer:
    """The anonymizer of a registry entry, with example parameters where its factory needs them."""
    example = getattr(entry.factory, "example_params", None)
    params = example(workdir, images, masks, ids) if callable(example) else {}
    anonymizer = entry.build(**params)
    if not isinstance(anonymizer, Anonymizer):
        raise ConformanceError(f"{entry.name}: the factory built a {type(anonymizer).__name__}, not an anonymizers.base.Anonymizer")
    return anonymizer


def _require(condition: bool, name: str, rule: str) -> None:
    if not condition:
        raise ConformanceError(f"{name}: {rule}")


def _images(result: Any) -> torch.Tensor:
    return result.images if isinstance(result, Anonymized) else result


def _fit(anonymizer: Anonymizer, images: torch.Tensor, masks: torch.Tensor, annotations: list[dict], ids: list[str], device: str) -> Anonymizer:
    if anonymizer.fit_on == "nothing":
        return anonymizer
    return anonymizer.fit(images.to(device), masks.to(device), annotations, ids, seed=0, device=device, cache=None)


def _run(anonymizer: Anonymizer, images: torch.Tensor, masks: torch.Tensor, annotations: list[dict], ids: list[str], device: str, seed: int = 0) -> Any:
    generator = torch.Generator(device=device).manual_seed(seed)
    return anonymizer.anonymize(images.to(device), masks.to(device), annotations, generator=generator, sample_ids=ids)


def check_anonymizer(entry: Any, devices: tuple[str, ...] = ("cpu",)) -> None:
    """Raise :class:`ConformanceError` naming the first broken rule of the entry's anonymizer."""
    name = entry.name
    images, masks, annotations, ids = example_batch()
    with tempfile.TemporaryDirectory(prefix="evalsuite-conformance-") as tmp:
        workdir = Path(tmp)
        anonymizer = build(entry, workdir, images, masks, ids)
        try:
            check_declarations(type(anonymizer))
        except ValueError as exc:
            raise ConformanceError(f"{name}: {exc}") from None
        _require(anonymizer.regions in ("given", "own"), name, f"regions={anonymizer.regions!r} is not 'given' or 'own'")
        signature = inspect.signature(type(anonymizer).__init__)
        _require(type(anonymizer).__init__ is object.__init__ or all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for n, p in signature.parameters.items() if n != "self"), name, "__init__ must take keyword-only parameters")
        params = anonymizer.get_params()
        _require(type(anonymizer)(**params).get_params() == params, name, "get_params() must rebuild an anonymizer with the same parameters")
        clone = anonymizer.clone()
        _require(type(clone) is type(anonymizer) and clone is not anonymizer and clone.get_params() == params, name, "clone() must return a new, equal anonymizer")
        anonymizer.bind_dataset(ids)
        reference = None
        for device in devices:
            first = _fit(anonymizer.clone(), images, masks, annotations, ids, device)
            _require(isinstance(first, Anonymizer), name, "fit() must return the anonymizer")
            result = _run(first, images, masks, annotations, ids, device)
            out = _images(result)
            _require(isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and tuple(out.shape) == tuple(images.shape), name,
                     f"anonymize() must return uint8 {tuple(images.shape)}, got {getattr(out, 'dtype', type(out))} {tuple(getattr(out, 'shape', ()))}")
            _require(out.device.type == torch.device(device).type, name, f"anonymize() must return images on the input device {device}")
            out = out.cpu()
            if anonymizer.regions == "given":
                outside = ~masks.expand_as(images)
                _require(torch.equal(out[outside], images[outside]), name, "a given-region anonymizer must not change pixels outside the mask")
            else:
                _require(isinstance(result, Anonymized), name, "an own-region anonymizer must return Anonymized(images, detections)")
                detections = result.detections
                _require(detections is None or (detections.dtype == torch.bool and tuple(detections.shape) == tuple(masks.shape)), name,
                         "detections must be bool (B, 1, H, W) or None")
            again = _images(_run(_fit(anonymizer.clone(), images, masks, annotations, ids, device), images, masks, annotations, ids, device)).cpu()
            _require(torch.equal(out, again), name, "the same seed must give the same output")
            whole = first.anonymize_set(images, masks, annotations, ids, torch.Generator(device=device).manual_seed(0), batch_size=4, device=device).images.cpu()
            if not anonymizer.stochastic:
                _require(torch.equal(whole, out), name, "anonymize_set() in batches must equal anonymize() on the whole set")
            state = first.state_dict()
            if state:
                _require(not anonymizer.clone().state_dict(), name, "clone() must be unfitted")
                path = workdir / f"state-{device}.safetensors"
                save_state(state, path)
                restored = anonymizer.clone().load_state(load_state_file(path))
                _require(torch.equal(_images(_run(restored, images, masks, annotations, ids, device)).cpu(), out), name,
                         "a clone loaded with the saved state must anonymize identically")
            if reference is None:
                reference = out
            elif not torch.equal(reference, out):
                diff = (reference.int() - out.int()).abs().max().item()
                _require(diff <= 1, name, f"{device} output differs from cpu by up to {diff} gray levels (more than 1)")
