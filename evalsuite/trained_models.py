"""Trained models (attackers, recognizers, classifiers) and what they compute, once per key.

A protocol keys a model by everything that trains it (dataset fingerprint, the key of the
anonymized set it learns from, its config, the seed). :class:`TrainedModels` keeps each one
in memory for the run and on disk through :class:`evalsuite.pipeline.Artifacts` as a
``torch.save``d state dict (an unreadable entry is rebuilt with one log line).
:class:`Memo` keeps values that are cheap to recompute but used by several cells (the
features a model extracted from an image set, a fitted SVM) in memory only.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, TypeVar

import torch

from evalsuite.pipeline import Artifacts

M = TypeVar("M")
V = TypeVar("V")


def training_source(clean: bool, set_key: Callable[[], str]) -> dict[str, Any]:
    """What a model learns from, for its key: clean images, or the anonymized set ``set_key()``."""
    return {"images": "clean"} if clean else {"images": "anonymized", "set": set_key()}


class TrainedModels(Generic[M]):
    """Models of one ``kind`` (the cache folder), each trained once per key and kept in memory."""

    def __init__(self, artifacts: Artifacts, kind: str, what: str) -> None:
        self.artifacts = artifacts
        self.kind = kind
        self.what = what
        self._models: dict[str, M] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._models

    def __getitem__(self, key: str) -> M:
        return self._models[key]

    def get(self, key: str, load: Callable[[Path], M], train: Callable[[], M], state: Callable[[M], dict[str, Any]],
            what: str | None = None) -> tuple[M, float]:
        """(the model of ``key``, seconds spent training or loading it; 0 when already in memory).

        ``load(path)`` reads a cached state dict into a fresh model, ``train()`` trains one,
        ``state(model)`` is what is saved."""
        if key in self._models:
            return self._models[key], 0.0
        started = time.perf_counter()
        model, _ = self.artifacts.get_or_build(self.kind, key, ".pt", load, train, lambda m, path: torch.save(state(m), path), what=what or self.what)
        self._models[key] = model
        return model, time.perf_counter() - started

    def put(self, key: str, model: M) -> M:
        """Keep a model that is not cached on disk (pretrained, loaded from a user's weights file)."""
        self._models[key] = model
        return model


class Memo(Generic[V]):
    """Values computed once per key and kept in memory for the run."""

    def __init__(self) -> None:
        self._values: dict[Hashable, V] = {}

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        if key not in self._values:
            self._values[key] = compute()
        return self._values[key]
