"""The face recognizer a protocol is configured with (``recognizer.name`` and ``recognizer.<name>.*``).

Recognizers are registered in :data:`evalsuite.registry.RECOGNIZERS` (:mod:`attacks`).
:class:`ConfiguredRecognizer` checks the name, builds the recognizer, trains a trainable one
once per key (cached on disk through :class:`evalsuite.trained_models.TrainedModels`; a
pretrained one only embeds) and keeps the embeddings of every (recognizer, image set) pair.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.face_recognizer import FaceRecognizer
from evalsuite.config import stable_hash, to_plain
from evalsuite.errors import UserError, did_you_mean
from evalsuite.pipeline import Artifacts
from evalsuite.registry import RECOGNIZERS
from evalsuite.trained_models import Memo, TrainedModels


def recognizer_defaults() -> dict[str, dict[str, Any]]:
    """``recognizer.<name>.*`` keys: each registered recognizer's keyword defaults."""
    out: dict[str, dict[str, Any]] = {}
    for entry in RECOGNIZERS:
        extra = getattr(entry.factory, "config_defaults", None)
        if callable(extra):
            params = dict(extra())
        else:
            params = {}
            for name, p in inspect.signature(entry.factory).parameters.items():
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in ("self", "device"):
                    params[name] = None if p.default is p.empty else p.default
        params.update(entry.params)
        out[entry.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    return out


def build_recognizer(name: str, params: dict[str, Any], device: str) -> FaceRecognizer:
    """``RECOGNIZERS.build(name, **params)`` (plus ``device`` where the factory takes one)."""
    entry = RECOGNIZERS.get(name)
    kwargs = dict(params)
    try:
        takes_device = "device" in inspect.signature(entry.factory).parameters
    except (TypeError, ValueError):
        takes_device = False
    if takes_device:
        kwargs["device"] = device
    try:
        recognizer = entry.build(**kwargs)
    except TypeError as exc:
        raise UserError(f"recognizer {name!r}: {exc}; see its settings with `evalsuite list recognizers` and attacks/") from None
    if not isinstance(recognizer, FaceRecognizer):
        raise UserError(f"recognizer {name!r} built a {type(recognizer).__name__}, not a FaceRecognizer (attacks/face_recognizer.py)")
    return recognizer


class ConfiguredRecognizer:
    """The recognizer of config node ``recognizer`` (its ``name`` and one node of settings per name)."""

    def __init__(self, node: Any, device: str) -> None:
        self.node = node
        self.device = device
        self._models: TrainedModels[FaceRecognizer] | None = None
        self._embeddings: Memo[np.ndarray] = Memo()

    @property
    def name(self) -> str:
        return str(self.node.name)

    def params(self) -> dict[str, Any]:
        settings = self.node.get(self.name)
        return to_plain(settings) if settings is not None else {}

    def check(self) -> None:
        """UserError for an unknown ``recognizer.name``."""
        if self.name not in RECOGNIZERS:
            raise UserError(f"unknown recognizer.name {self.name!r}: {did_you_mean(self.name, RECOGNIZERS.names())} (see `evalsuite list recognizers`)")

    def prepare(self, artifacts: Artifacts) -> None:
        """Build it once (missing weights fail here, before any output) and cache trained ones in ``artifacts``."""
        build_recognizer(self.name, self.params(), self.device)
        self._models = TrainedModels(artifacts, "recognizers", "recognizer")

    def trained(self, key_data: dict[str, Any], train_data: dict[str, Any], images: torch.Tensor, labels: np.ndarray,
                seed: int) -> tuple[FaceRecognizer, str, float]:
        """(recognizer, key, seconds): trained on ``images`` / ``labels`` when trainable, keyed by
        ``key_data`` plus the recognizer's settings and (trainable ones) ``train_data`` and the seed."""
        assert self._models is not None, "prepare() first"
        params = self.params()
        factory = RECOGNIZERS.get(self.name).factory
        data = {**key_data, "recognizer": self.name, "recognizer_version": getattr(factory, "version", None), "params": params,
                # weight files named by a setting: a replaced file is another recognizer
                "files": {k: [Path(v).expanduser().stat().st_size, Path(v).expanduser().stat().st_mtime_ns]
                          for k, v in params.items() if isinstance(v, str) and Path(v).expanduser().is_file()}}
        trainable = bool(getattr(factory, "trainable", False))
        if trainable:
            data.update(train_data, seed=seed)
        key = stable_hash(data)
        if key in self._models:
            return self._models[key], key, 0.0
        recognizer = build_recognizer(self.name, params, self.device)
        if not trainable:
            return self._models.put(key, recognizer), key, 0.0

        def load(path: Any) -> FaceRecognizer:
            recognizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return recognizer

        def train() -> FaceRecognizer:
            recognizer.fit(images, labels, seed=seed)
            return recognizer

        recognizer, seconds = self._models.get(key, load, train, lambda r: r.state_dict())
        return recognizer, key, seconds

    def embed(self, recognizer: FaceRecognizer, recognizer_key: str, images: torch.Tensor, set_key: str) -> np.ndarray:
        """(N, D) float32 embeddings of ``images`` (set ``set_key``), computed once per recognizer and set."""
        def compute() -> np.ndarray:
            emb = np.asarray(recognizer.embed(images), dtype=np.float32)
            if emb.shape[0] != images.shape[0] or emb.ndim != 2 or not np.isfinite(emb).all():
                raise RuntimeError(f"recognizer {self.name!r} returned embeddings of shape {emb.shape} (or non-finite values) for {images.shape[0]} images")
            return emb

        return self._embeddings.get((recognizer_key, set_key), compute)
