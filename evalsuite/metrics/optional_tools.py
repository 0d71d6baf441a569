"""Metric tools that need weights or toolkits a machine may lack, and why a metric stays empty.

FID / KID feature extractors (:mod:`evalsuite.metrics.fidelity`), LPIPS
(:mod:`evalsuite.metrics.perceptual`) and the dlib landmark detector behind LDSR
(:mod:`evalsuite.metrics.landmarks`) are built once. One that cannot be built leaves its
metrics empty: the reason is logged once and kept in :attr:`OptionalTools.unavailable`, so a
protocol can store NaN with the reason in the row instead of dropping the column.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch

from evalsuite.cache import Cache
from evalsuite.metrics.fidelity import EXTRACTORS, FeatureBank, build_extractor
from evalsuite.metrics.weights import WeightsUnavailable

log = logging.getLogger(__name__)


class OptionalTools:
    """The extractors (``bank``), ``lpips`` and ``landmarks`` that could be built, and ``unavailable``: metric -> reason."""

    def __init__(self) -> None:
        self.unavailable: dict[str, str] = {}
        self.bank: FeatureBank | None = None
        self.lpips: Any = None
        self.landmarks: Callable[..., Any] | None = None
        self._ldsr_original: dict[int, float] = {}

    def mark(self, metrics: tuple[str, ...], reason: str) -> None:
        """Log once that ``metrics`` stay empty and why."""
        log.warning("%s left empty: %s", " / ".join(metrics), reason)
        for metric in metrics:
            self.unavailable[metric] = reason

    def ldsr(self, originals: torch.Tensor, anonymized: torch.Tensor, annotations: Sequence[dict[str, Any]], options: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
        """LDSR of ``anonymized`` over the images whose original shows a face (``face_box`` in
        ``annotations``, in image coordinates), and of the ``originals`` (computed once per set of originals)."""
        landmarks = self.landmarks
        if landmarks is None:
            return {}, {}
        index = [i for i, a in enumerate(annotations) if a.get("face_box") is not None]
        if not index:
            self.unavailable.setdefault("ldsr", "no evaluation image has a face_box annotation (LDSR needs visible faces)")
            return {}, {}
        boxes = [annotations[i]["face_box"] for i in index]

        def ratio(images: torch.Tensor) -> float:
            return float(np.asarray(landmarks(images[index], boxes, **options), dtype=bool).mean())

        if id(originals) not in self._ldsr_original:
            self._ldsr_original[id(originals)] = ratio(originals)
        original = self._ldsr_original[id(originals)]
        value = original if anonymized is originals else ratio(anonymized)  # the identity's are the originals
        return {"ldsr": value}, {"ldsr_faces": len(index), "ldsr_original": original}

    @classmethod
    def build(cls, fid: dict[str, Any], lpips: Any, download: bool, cache: Cache | None, batch_size: int, device: str) -> "OptionalTools":
        """``fid``: the ``fid.*`` settings (``extractors``...); ``lpips``: the ``lpips`` node (``net``, ``backbone_weights``)."""
        tools = cls()
        extractors = {}
        for kind in fid.get("extractors") or []:
            try:
                extractors[kind] = build_extractor(kind, fid, download, device)
            except WeightsUnavailable as exc:
                tools.mark((f"fid_{kind}", f"kid_{kind}"), str(exc))
        for kind in EXTRACTORS:
            if kind not in extractors and f"fid_{kind}" not in tools.unavailable:
                tools.unavailable[f"fid_{kind}"] = tools.unavailable[f"kid_{kind}"] = f"not in fid.extractors ({list(fid.get('extractors') or [])})"
        tools.bank = FeatureBank(extractors, cache, batch_size=batch_size, device=device)
        try:
            from evalsuite.metrics.perceptual import LPIPSMetric

            tools.lpips = LPIPSMetric(str(lpips.net), lpips.backbone_weights, download, device)
        except WeightsUnavailable as exc:
            tools.mark(("lpips",), str(exc))
        try:
            from evalsuite.metrics.landmarks import landmark_detection_success

            tools.landmarks = landmark_detection_success
        except ImportError as exc:
            tools.mark(("ldsr",), f"the dlib landmark toolkit evalsuite.metrics.landmarks cannot be imported ({exc})")
        return tools
