"""Datasets: the Market-1501 loader and the synthetic Market-1501-layout generator.

Registered in :data:`evalsuite.registry.DATASETS`:

- ``market1501``: a real Market-1501 folder (``dataset.root=/path/to/Market-1501-v15.09.15``),
  optionally with a user's annotation sidecar (``dataset.annotations=FILE``);
- ``dukemtmc``, ``cuhk03``, ``msmt17``: the other re-id sets in torchreid's layouts
  (:mod:`evalsuite.data.dukemtmc`, :mod:`evalsuite.data.cuhk03`, :mod:`evalsuite.data.msmt17`);
- ``synthetic``: generated on first use into the run's ``cache_dir`` (passed by the protocol)
  or ``root``, then read by the same Market-1501 loader;
- ``synthetic-pipa``: album photos in PIPA's layout, generated likewise and read by the PIPA
  loader (:mod:`evalsuite.data.synthetic_pipa`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from evalsuite.data.market1501 import load_annotations, load_market1501, read_image
from evalsuite.data.synthetic import SyntheticConfig, config_hash, default_root, generate_synthetic_market
from evalsuite.data.types import ANNOTATION_KEYS, SIDECAR_NAME, ReidDataset, Sample
from evalsuite.errors import UserError, did_you_mean
from evalsuite.registry import DATASETS
from evalsuite.data import faces, synthetic_faces  # noqa: F401,E402  (face-folder, celeba, utkface, synthetic-faces)
from evalsuite.data import pipa  # noqa: F401,E402  (pipa: PIPA-style person recognition)
from evalsuite.data import synthetic_pipa  # noqa: F401,E402  (synthetic-pipa: album photos in PIPA's layout)
from evalsuite.data import detection_datasets  # noqa: F401,E402  (coco, wider-face, synthetic-coco)
from evalsuite.data import cuhk03, dukemtmc, msmt17  # noqa: F401,E402  (re-id sets in torchreid's layouts)

DEFAULT_MARKET_ROOT = "data/Market-1501-v15.09.15"

__all__ = [
    "ANNOTATION_KEYS", "DEFAULT_MARKET_ROOT", "SIDECAR_NAME", "ReidDataset", "Sample", "SyntheticConfig",
    "config_hash", "default_root", "generate_synthetic_market", "load_annotations", "load_market1501",
    "market1501", "read_image", "synthetic",
]


@DATASETS.register("market1501", description="Market-1501 re-id (torchreid layout); dataset.root=/path/to/Market-1501-v15.09.15")
def market1501(root: str | Path = DEFAULT_MARKET_ROOT, annotations: str | Path | None = None) -> ReidDataset:
    """Market-1501 re-identification (torchreid layout)."""
    return load_market1501(root, annotations=annotations, name="market1501")


@DATASETS.register("synthetic", description="seeded synthetic pedestrians in the Market-1501 layout (generated on first use)")
def synthetic(root: str | Path | None = None, annotations: str | Path | None = None, *, cache_dir: str | Path | None = None,
              **settings: Any) -> ReidDataset:
    """Seeded synthetic pedestrians in the Market-1501 layout, generated on first use.

    ``settings`` are :class:`SyntheticConfig` fields (``seed``, ``num_train_ids``, ...);
    ``cache_dir``: the cache the set is generated in when ``root`` is not given (passed by the protocol).
    """
    valid = {f.name for f in dataclasses.fields(SyntheticConfig)}
    for key in settings:
        if key not in valid:
            raise UserError(f"unknown synthetic dataset setting {key!r}: {did_you_mean(key, valid | {'root', 'annotations'})}")
    config = SyntheticConfig(**settings)
    folder = generate_synthetic_market(root, config, cache_dir)
    return load_market1501(folder, annotations=annotations, name="synthetic")


def _synthetic_defaults() -> dict[str, Any]:
    """The generator settings, so that ``dataset.<setting>=...`` overrides are known keys."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in dataclasses.fields(SyntheticConfig)}


synthetic.config_defaults = _synthetic_defaults  # type: ignore[attr-defined]
