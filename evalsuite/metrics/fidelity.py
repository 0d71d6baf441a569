"""FID and KID through torch-fidelity, with two feature extractors and cached reference features.

Extractors (config ``fid.extractors``):

- ``random`` (the embedded default, works offline): a seeded, *untrained* Inception-style
  network registered with torch-fidelity as ``evalsuite-random-inception``: torchvision's
  Inception v3 building blocks (stem, one ``InceptionA``, one ``InceptionB`` reduction and
  a 1x1 convolution down to 256 channels), Kaiming-normal weights drawn from a fixed seed,
  global average pooling to 256 features, on inputs resized to ``size`` x ``size`` (96).
  256 rather than Inception's 2048 dimensions because the sets compared here are hundreds
  of images, not 50,000, and torch-fidelity's FID takes the eigenvalues of a d x d matrix
  product (14 s for d = 736 on a loaded 2-core CPU, well under a second for d = 256). Random-network features are the
  non-ImageNet features Naeem et al. (2020) propose and Kynkäänniemi et al. (2023)
  recommend for checking FID; they are comparable only between runs with the same seed
  and size, never with published Inception FIDs.
- ``inception``: torch-fidelity's ``inception-v3-compat`` (the TF-FID Inception, 2048-d pool
  features), its weights ``weights-inception-2015-12-05-6726825d.pth`` from
  ``fid.inception_weights`` or torch-fidelity's own download into the torch hub cache. When
  absent offline the metric is left empty with one logged line (see
  :mod:`evalsuite.metrics.weights`).

FID is torch-fidelity's ``fid_features_to_statistics`` / ``fid_statistics_to_metric``; KID
its ``kid_features_to_metric`` (polynomial kernel, ``kid_subsets`` subsets of
``min(kid_subset_size, n)`` images). Features of the original images are extracted once
per dataset and extractor (kept in memory and in the cache on disk), so N anonymizers cost
N + 1 feature passes; :attr:`FeatureBank.passes` counts them. With fewer images than
feature dimensions the covariance is singular: FID is still defined but noisy, KID is the
better-behaved number on small sets.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionB
from evalsuite.progress import tqdm

from evalsuite.cache import Cache
from evalsuite.config import stable_hash
from evalsuite.errors import UserError
from evalsuite.metrics.spec import MetricSpec, register_metric
from evalsuite.metrics.weights import load_state_dict, resolve_weights

log = logging.getLogger(__name__)

RANDOM_EXTRACTOR = "evalsuite-random-inception"
INCEPTION_EXTRACTOR = "inception-v3-compat"
#: config name -> (torch-fidelity extractor name, feature layer)
EXTRACTORS: dict[str, tuple[str, str]] = {"random": (RANDOM_EXTRACTOR, "256"), "inception": (INCEPTION_EXTRACTOR, "2048")}
EXTRACTOR_LABELS = {"random": "random net", "inception": "Inception"}


class RandomInceptionFeatures(FeatureExtractorBase):
    """A seeded, untrained Inception-style feature extractor for torch-fidelity (uint8 Bx3xHxW in)."""

    FEATURES = "256"

    def __init__(self, name: str, features_list: list[str], random_inception_seed: int = 0, random_inception_size: int = 96, **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.seed, self.size = int(random_inception_seed), int(random_inception_size)
        if self.size < 64:
            raise UserError(f"fid.size={self.size}: the random Inception-style extractor needs inputs of at least 64x64")
        self.stem = nn.Sequential(
            BasicConv2d(3, 32, kernel_size=3, stride=2),
            BasicConv2d(32, 64, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.mixed_a = InceptionA(64, pool_features=32)  # 64 + 64 + 96 + 32 = 256 channels
        self.mixed_b = InceptionB(256)  # 384 + 96 + 256 = 736 channels, stride 2
        self.project = BasicConv2d(736, 256, kernel_size=1)
        generator = torch.Generator().manual_seed(self.seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (RandomInceptionFeatures.FEATURES,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return RandomInceptionFeatures.FEATURES

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 96, 96, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W) images, got {tuple(x.shape)} {x.dtype}")
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - 128.0) / 128.0
        x = self.project(self.mixed_b(self.mixed_a(self.stem(x))))
        return (torch.flatten(F.adaptive_avg_pool2d(x, 1), 1),)


if RANDOM_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(RANDOM_EXTRACTOR, RandomInceptionFeatures)


def build_extractor(kind: str, fid_cfg: dict[str, Any], download: bool, device: str = "cpu") -> tuple[FeatureExtractorBase, dict[str, Any]]:
    """The torch-fidelity feature extractor ``kind`` ("random" or "inception") and its fingerprint.

    Raises :class:`~evalsuite.metrics.weights.WeightsUnavailable` when the Inception weights
    are absent and cannot be downloaded.
    """
    from torch_fidelity.utils import create_feature_extractor

    if kind not in EXTRACTORS:
        raise UserError(f"fid.extractors names {kind!r}; valid extractors are {', '.join(EXTRACTORS)}")
    name, layer = EXTRACTORS[kind]
    if kind == "random":
        seed, size = int(fid_cfg.get("seed", 0)), int(fid_cfg.get("size", 96))
        extractor = create_feature_extractor(name, [layer], cuda=False, verbose=False, random_inception_seed=seed, random_inception_size=size)
        fingerprint = {"extractor": name, "layer": layer, "seed": seed, "size": size, "version": 2}
    else:
        key = "fid.inception_weights"
        path = resolve_weights(URL_INCEPTION_V3, fid_cfg.get("inception_weights"), key, "torch-fidelity Inception (FID/KID)", download)
        load_state_dict(path, "torch-fidelity Inception (FID/KID)", key)  # refuse anything but tensors before torch-fidelity loads it
        extractor = create_feature_extractor(name, [layer], cuda=False, verbose=False, feature_extractor_weights_path=str(path))
        stat = path.stat()
        fingerprint = {"extractor": name, "layer": layer, "weights": path.name, "size_bytes": stat.st_size}
    return extractor.to(device), fingerprint


class FeatureBank:
    """Features of image sets per extractor; the reference set's are cached on disk too."""

    def __init__(self, extractors: dict[str, tuple[FeatureExtractorBase, dict[str, Any]]], cache: Cache | None, batch_size: int = 64, device: str = "cpu") -> None:
        self.extractors = extractors
        self.cache = cache
        self.batch_size = int(batch_size)
        self.device = device
        self._features: dict[tuple[str, str], torch.Tensor] = {}
        self._stats: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        #: feature passes run per extractor (cache hits do not count)
        self.passes: Counter[str] = Counter()

    def _extract(self, kind: str, images: torch.Tensor, description: str) -> torch.Tensor:
        extractor, _ = self.extractors[kind]
        layer = EXTRACTORS[kind][1]
        self.passes[kind] += 1
        out = []
        with torch.no_grad():
            for start in tqdm(range(0, images.shape[0], self.batch_size), desc=description, unit="batch", leave=False):
                batch = images[start:start + self.batch_size].to(self.device)
                out.append(extractor.convert_features_tuple_to_dict(extractor(batch))[layer].cpu())
        return torch.cat(out).to(torch.float64)

    def features(self, kind: str, set_key: str, images: torch.Tensor, persist: bool = False) -> torch.Tensor:
        """Features of ``images`` (known as ``set_key``); ``persist`` keeps them in the disk cache."""
        memo = (kind, set_key)
        if memo in self._features:
            return self._features[memo]
        disk_key = stable_hash({"set": set_key, "extractor": self.extractors[kind][1]})
        cached = self.cache.load_array("features", disk_key) if persist and self.cache is not None else None
        if cached is not None and cached.shape[0] == images.shape[0]:
            feats = torch.from_numpy(cached)
        else:
            feats = self._extract(kind, images, f"{EXTRACTOR_LABELS[kind]} features {set_key[:16]}")
            if persist and self.cache is not None:
                self.cache.save_array("features", disk_key, feats.numpy())
        self._features[memo] = feats
        return feats

    def statistics(self, kind: str, set_key: str, features: torch.Tensor) -> dict[str, np.ndarray]:
        memo = (kind, set_key)
        if memo not in self._stats:
            self._stats[memo] = fid_features_to_statistics(features)
        return self._stats[memo]


def fid_kid(
    bank: FeatureBank,
    kind: str,
    reference: tuple[str, torch.Tensor],
    candidate: tuple[str, torch.Tensor],
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """``{"fid_<kind>": ..., "kid_<kind>": ...}`` of the candidate set against the reference set."""
    ref_key, ref_images = reference
    key, images = candidate
    ref = bank.features(kind, ref_key, ref_images, persist=True)
    feats = ref if key == ref_key else bank.features(kind, key, images)
    # torch-fidelity takes np.linalg.eigvals of a d x d product; on a busy CPU multi-threaded
    # OpenBLAS spins (3 s instead of 0.06 s for d = 256), so small d runs on one thread
    with threadpool_limits(limits=1 if ref.shape[1] <= 512 else None, user_api="blas"):
        fid = fid_statistics_to_metric(bank.statistics(kind, ref_key, ref), bank.statistics(kind, key, feats), verbose=False)[KEY_METRIC_FID]
    subset = min(int(kid_subset_size), ref.shape[0], feats.shape[0])
    if subset < 2:
        kid = math.nan
    else:
        kid = kid_features_to_metric(ref, feats, kid_subsets=int(kid_subsets), kid_subset_size=subset, rng_seed=int(seed), verbose=False)[KEY_METRIC_KID_MEAN]
    return {f"fid_{kind}": float(fid), f"kid_{kind}": float(kid)}


for _kind, _label in EXTRACTOR_LABELS.items():
    register_metric(MetricSpec(f"fid_{_kind}", f"Fréchet distance (torch-fidelity FID) between original and anonymized images, {_label} features", higher_is_better=False, category="quality", unit="score", decimals=2, label=f"FID ({_label})"))
    register_metric(MetricSpec(f"kid_{_kind}", f"Kernel Inception Distance (torch-fidelity KID, cubic polynomial kernel) between original and anonymized images, {_label} features", higher_is_better=False, category="quality", unit="score", decimals=4, label=f"KID ({_label})"))
