"""The anonymizer contract (v2) shared by filters, fitted, generative, external and precomputed anonymizers.

As in DeepPrivacy2, detection is separate from synthesis, and traditional and generative
anonymizers sit behind one interface. Learned from scikit-learn: keyword-only parameters,
``get_params`` / ``clone``, a conformance check (``evalsuite.conformance.check_anonymizer``).

Declarations (class attributes; the pipeline, :mod:`evalsuite.pipeline`, is the only place
that reads them):

- ``fit_on``: what :meth:`fit` must see before :meth:`anonymize`:
  ``"nothing"`` (pixel filters), ``"train"`` (a trained generator: fitted once on the
  protocol's training images, state saved and cached) or ``"anonymized_set"`` (k-Same:
  fitted on exactly the set that is then anonymized, each set on its own);
- ``regions``: ``"given"`` (acts on the region mask a region provider made from the
  annotations; the output is clipped to it) or ``"own"`` (finds its regions itself, like
  DeepPrivacy2's detectors: the output is NOT clipped, and :meth:`anonymize` returns an
  :class:`Anonymized` holding the images and the detected masks, so protocols measure
  ``leak_rate`` instead of assuming full coverage);
- ``stochastic``: the output depends on the seeded generator (cache keys then hold the seed);
- ``is_identity``: only for ``none``;
- ``code_version``: bump it when the output of the same parameters changes; it enters
  every cache key (anonymized sets, fitted state) together with a hash of the source files
  of the class, so an edited anonymizer never reuses stale sets (:func:`component_version`).

Methods:

- ``__init__(**params)``: keyword parameters only, stored unchanged under the names in
  ``param_names``; ``get_params()`` returns them, ``clone()`` builds an unfitted copy;
- ``fit(images, masks, annotations, sample_ids, *, seed, device, cache)`` returns ``self``;
- ``anonymize(images, masks, annotations=None, generator=None, sample_ids=None)``: images
  uint8 (B, 3, H, W) RGB; masks bool (B, 1, H, W), True = anonymize; annotations one dict
  per image (:mod:`evalsuite.data.types`); generator a seeded ``torch.Generator``;
  sample_ids the dataset's stable relative paths of the images. Returns uint8
  (B, 3, H, W) on the input device (own-region anonymizers: an :class:`Anonymized`);
- ``_anonymize_regions_cpu(images, masks, annotations, generator)`` (optional, given-region
  filters): the whole output on CPU in one go (a new tensor, also for empty masks), written
  only inside the masks (the filter
  works on each mask's box instead of whole images; ``blur``, ``pixelate``, ``mask``).
  Used only while the class that defines it also defines the ``_anonymize_region`` in
  effect, so a subclass that changes the filter falls back to ``_anonymize_region``;
- ``anonymize_set(...)``: the whole-set entry point (default: batches of ``anonymize``);
  folder-based anonymizers (``external``, ``precomputed``) override it;
- ``bind_dataset(sample_ids)``: told every sample id the protocol will anonymize, before
  any output is written (``precomputed`` checks its folder there);
- ``state_dict()`` / ``load_state(state)``: fitted state; tensors are saved with
  safetensors and the rest as JSON (:func:`save_state` / :func:`load_state_file`);
- ``row_fields()`` (optional, ``fit_on = "train"``): what a fitted anonymizer adds to every
  result row of its cells (JSON values, e.g. the k / l / t that ``ppas`` achieved);
  protocols merge it through :meth:`evalsuite.protocol.Protocol.row_fields`.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Sequence

import torch

FIT_ON = ("nothing", "train", "anonymized_set")
REGIONS = ("given", "own")


class Anonymized(NamedTuple):
    """Output of an own-region anonymizer: the images and the regions it found (bool (B, 1, H, W))."""

    images: torch.Tensor
    detections: torch.Tensor | None = None


class Anonymizer:
    """Base class. Given-region subclasses implement :meth:`_anonymize_region`; own-region
    ones implement :meth:`detect` (and :meth:`_anonymize_region`) or override :meth:`anonymize`."""

    #: parameters that get_params() reports; subclasses list theirs
    param_names: tuple[str, ...] = ()
    fit_on: ClassVar[str] = "nothing"
    regions: ClassVar[str] = "given"
    #: True when the output depends on the generator (cache keys then include the seed)
    stochastic: bool = False
    #: True only for the anonymizer that returns its input unchanged
    is_identity: bool = False
    #: bump when the same parameters give other pixels; enters every cache key
    code_version: ClassVar[str] = "1"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Map the v1 flags of third-party subclasses to the v2 declarations, then check them."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if own.get("fits_on_anonymized_set") is True:
            cls.fit_on = "anonymized_set"
        elif own.get("requires_fit") is True:
            cls.fit_on = "train"
        if own.get("detects_regions") is True:
            cls.regions = "own"
        check_declarations(cls)

    # -- compatibility with the v1 flags (read-only; the declarations above are the truth)
    @property
    def requires_fit(self) -> bool:
        return self.fit_on != "nothing"

    @property
    def fits_on_anonymized_set(self) -> bool:
        return self.fit_on == "anonymized_set"

    @property
    def detects_regions(self) -> bool:
        return self.regions == "own"

    # -- parameters
    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names}

    def clone(self) -> "Anonymizer":
        """An unfitted copy with the same parameters (scikit-learn's ``clone``)."""
        return type(self)(**self.get_params())

    def code_hash(self) -> str:
        """This component's code version (see :func:`component_version`); enters every cache key."""
        return component_version(type(self))

    # -- fitting and state
    def fit(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None = None,
        sample_ids: Sequence[str] | None = None,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        cache: Any = None,
    ) -> "Anonymizer":
        return self

    def state_dict(self) -> dict[str, Any]:
        """Fitted state: tensors and JSON-serialisable values (empty when nothing is fitted)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> "Anonymizer":
        return self

    def row_fields(self) -> dict[str, Any]:
        """Fields a fitted anonymizer adds to the result rows of its cells (JSON values; default none)."""
        return {}

    def bind_dataset(self, sample_ids: Sequence[str]) -> None:
        """Told every sample id the protocol will anonymize, before any output is written."""

    # -- anonymizing
    def anonymize(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None = None,
        generator: torch.Generator | None = None,
        sample_ids: Sequence[str] | None = None,
    ) -> Any:
        check_batch(images, masks)
        if self.regions == "own":
            detected = self.detect(images, annotations)
            check_masks(images, detected, f"{type(self).__name__}.detect")
            out = self._anonymize_region(images, detected, annotations, generator) if bool(detected.any()) else images.clone()
            return Anonymized(torch.where(detected.expand_as(images), out, images), detected)
        if images.device.type == "cpu" and self._has_cpu_path():  # it handles empty masks itself
            return self._anonymize_regions_cpu(images, masks, annotations, generator)
        if not bool(masks.any()):
            return images.clone()
        out = self._anonymize_region(images, masks, annotations, generator)
        # only the region changes, whatever the subclass computed elsewhere
        return torch.where(masks.expand_as(images), out, images)

    def anonymize_set(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        sample_ids: Sequence[str] | None,
        generator: torch.Generator | None,
        *,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> Anonymized:
        """Anonymize a whole set (CPU tensors in, CPU tensors out), batch by batch."""
        outputs: list[torch.Tensor] = []
        detections: list[torch.Tensor] = []
        for start in range(0, images.shape[0], batch_size):
            stop = start + batch_size
            result = self.anonymize(
                images[start:stop].to(device), masks[start:stop].to(device),
                None if annotations is None else list(annotations[start:stop]), generator=generator,
                sample_ids=None if sample_ids is None else list(sample_ids[start:stop]),
            )
            if isinstance(result, Anonymized):
                outputs.append(result.images.cpu())
                if result.detections is not None:
                    detections.append(result.detections.cpu())
            else:
                outputs.append(result.cpu())
        empty = torch.empty(0, *images.shape[1:], dtype=torch.uint8)
        return Anonymized(torch.cat(outputs) if outputs else empty, torch.cat(detections) if detections else None)

    def detect(self, images: torch.Tensor, annotations: Sequence[dict] | None = None) -> torch.Tensor:
        """Own-region anonymizers: bool (B, 1, H, W), the regions they anonymize."""
        raise NotImplementedError(f"{type(self).__name__} declares regions='own' but implements neither detect() nor anonymize()")

    def _anonymize_region(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def _anonymize_regions_cpu(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        annotations: Sequence[dict] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Optional CPU path of a given-region filter: the final images, changed only inside ``masks``."""
        raise NotImplementedError

    @classmethod
    def _has_cpu_path(cls) -> bool:
        """True when the class defining ``_anonymize_regions_cpu`` also defines the ``_anonymize_region`` in effect."""
        owner = next(k for k in cls.__mro__ if "_anonymize_regions_cpu" in k.__dict__)
        return owner is not Anonymizer and owner.__dict__.get("_anonymize_region") is cls._anonymize_region

    def describe(self) -> dict[str, Any]:
        """What a run records about this component."""
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "params": self.get_params(), "fit_on": self.fit_on,
                "regions": self.regions, "stochastic": self.stochastic, "code_version": self.code_hash()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_batch(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Validate the shapes and dtypes of an anonymizer's inputs."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
    check_masks(images, masks, "masks")


def check_masks(images: torch.Tensor, masks: Any, what: str) -> None:
    """``masks`` must be bool (B, 1, H, W) matching ``images``."""
    if (not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.ndim != 4 or masks.shape[1] != 1
            or masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]):
        got = f"{tuple(masks.shape)} {masks.dtype}" if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"{what} must be bool (B, 1, H, W) matching images {tuple(images.shape)}, got {got}")


def check_declarations(cls: type) -> None:
    """ValueError when a class declares an unknown ``fit_on`` or ``regions``."""
    if getattr(cls, "fit_on", None) not in FIT_ON:
        raise ValueError(f"{cls.__qualname__}.fit_on={getattr(cls, 'fit_on', None)!r}: use one of {', '.join(FIT_ON)}")
    if getattr(cls, "regions", None) not in REGIONS:
        raise ValueError(f"{cls.__qualname__}.regions={getattr(cls, 'regions', None)!r}: use one of {', '.join(REGIONS)}")


_VERSIONS: dict[type, str] = {}


def component_version(cls: type) -> str:
    """``code_version`` plus a hash of the source files of ``cls`` and its bases, and of the
    project modules those files import (memoised; :func:`imported_project_files`).

    Editing an anonymizer's file, its base classes' or a helper module it imports from
    ``anonymizers/`` (e.g. ``anonymizers/regionwise.py``) therefore changes every cache key
    that holds its version; ``code_version`` is for changes outside those files."""
    if cls not in _VERSIONS:
        digest = hashlib.blake2b(digest_size=8)
        own: list[Path] = []
        for klass in cls.__mro__:
            if klass is object:
                continue
            try:
                path = Path(inspect.getfile(klass))
                digest.update(path.read_bytes())
                own.append(path)
            except (TypeError, OSError):
                digest.update(klass.__qualname__.encode())
        modules = [k.__module__ for k in cls.__mro__ if k is not object]
        for path in imported_project_files(modules):
            if path not in own:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        _VERSIONS[cls] = f"{getattr(cls, 'code_version', '1')}-{digest.hexdigest()}"
    return _VERSIONS[cls]


def file_version(cls: type, path: str | None, tag: str) -> str:
    """:func:`component_version` plus the size and modification time of a weights file the
    anonymizer loads (``path``; None: no file), so a replaced file changes every cache key."""
    version = component_version(cls)
    if path is None:
        return version
    stat = Path(path).expanduser().stat()
    return f"{version}-{tag}{stat.st_size}-{stat.st_mtime_ns}"


def imported_project_files(modules: Sequence[str]) -> list[Path]:
    """Source files of the modules that ``modules`` import, transitively, from their own top-level
    package or from ``anonymizers`` (sorted; standard and third-party libraries are left out)."""
    import ast
    import importlib.util

    packages = {"anonymizers"} | {m.split(".")[0] for m in modules if "." in m}
    seen: set[str] = set()
    files: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        path = Path(spec.origin)
        files.add(path)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                try:
                    base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else (node.module or "")
                except (ImportError, ValueError):
                    continue
                found = [base] + [f"{base}.{alias.name}" for alias in node.names]  # "from pkg import module"
            for imported in found:
                if imported.split(".")[0] in packages and imported not in seen:
                    todo.append(imported)
    return sorted(files)


# --------------------------------------------------------------------------- fitted state on disk

def save_state(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to one safetensors file: its tensors, and the rest as JSON in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    rest = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    save_file(tensors, str(path), metadata={"evalsuite_state_json": json.dumps(rest, sort_keys=True)})


def load_state_file(path: Path) -> dict[str, Any]:
    """The state :func:`save_state` wrote to ``path`` (errors for a truncated or foreign file)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if "evalsuite_state_json" not in metadata:
            raise ValueError(f"{path} is a safetensors file without evalsuite state metadata")
        state: dict[str, Any] = json.loads(metadata["evalsuite_state_json"])
        for key in handle.keys():
            state[key] = handle.get_tensor(key)
    return state
