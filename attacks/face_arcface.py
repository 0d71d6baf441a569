"""``arcface`` recognizer: an InsightFace ArcFace ONNX model from a model pack you provide.

InsightFace's model packs (e.g. ``buffalo_l``) are not shipped by any package and are never
downloaded here: set ``recognizer.model_path`` to the recognition model, e.g.
``~/.insightface/models/buffalo_l/w600k_r50.onnx``, or to the pack's folder (its
``w600k_*.onnx`` is then used). The model runs with ``onnxruntime`` (``pip install
onnxruntime``, or ``onnxruntime-gpu`` with ``providers=[CUDAExecutionProvider]``).

Preprocessing follows InsightFace's ``ArcFaceONNX``: RGB, resized to the model's input size
(112x112), ``(x - 127.5) / 127.5``, NCHW float32; the 512-d output is L2-normalised. The
crops should be aligned as InsightFace's ``norm_crop`` aligns them (the five landmarks on
its ArcFace template); other crops are resized as they are, which costs accuracy. Models
whose graph normalises internally (InsightFace's older ``arcface_r100_v1``) need
``input_mean=0 input_std=1``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from attacks.face_recognizer import FaceRecognizer
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS

log = logging.getLogger(__name__)

CONFIG_KEY = "recognizer.model_path"
DEFAULT_INPUT = (112, 112)


def resolve_model_path(model_path: str | os.PathLike | None) -> Path:
    """The ONNX file ``model_path`` names (a file, or a pack folder with one ``w600k_*.onnx``)."""
    example = "~/.insightface/models/buffalo_l/w600k_r50.onnx"
    if not model_path:
        raise UserError(f"recognizer 'arcface' needs an InsightFace recognition model: set {CONFIG_KEY}=/path/to/{Path(example).name} (e.g. {example}); nothing is downloaded")
    path = Path(model_path).expanduser()
    if path.is_dir():
        candidates = sorted(path.glob("w600k*.onnx")) or sorted(p for p in path.glob("*.onnx") if "arc" in p.name.lower() or "glint" in p.name.lower())
        if len(candidates) != 1:
            found = ", ".join(p.name for p in sorted(path.glob("*.onnx"))) or "no .onnx files"
            raise UserError(f"recognizer 'arcface': cannot tell the recognition model in {path} ({found}); set {CONFIG_KEY} to the .onnx file itself")
        return candidates[0]
    if not path.is_file():
        raise UserError(f"recognizer 'arcface': model file {path} not found (set {CONFIG_KEY} to an InsightFace recognition model such as {example}); nothing is downloaded")
    return path


@RECOGNIZERS.register("arcface", description="InsightFace ArcFace ONNX model from recognizer.model_path (onnxruntime; never downloaded)")
class ArcFaceRecognizer(FaceRecognizer):
    """512-d ArcFace embeddings of aligned face crops, L2-normalised."""

    trainable = False
    input_size = DEFAULT_INPUT

    def __init__(
        self,
        *,
        model_path: str | None = None,
        input_mean: float = 127.5,
        input_std: float = 127.5,
        providers: Sequence[str] | None = None,
        batch_size: int = 64,
    ) -> None:
        path = resolve_model_path(model_path)
        try:
            import onnxruntime
        except ImportError:
            raise UserError(f"recognizer 'arcface' needs the onnxruntime package to run {path}: `pip install onnxruntime` (or onnxruntime-gpu)") from None
        if not input_std:
            raise UserError(f"recognizer 'arcface': input_std must be non-zero, got {input_std!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"recognizer 'arcface': batch_size must be a positive integer, got {batch_size!r}")
        self.model_path = str(path)
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.batch_size = batch_size
        try:
            self.session = onnxruntime.InferenceSession(self.model_path, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"recognizer 'arcface': cannot load {path} with onnxruntime: {str(exc).splitlines()[0]}") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        spatial = list(first.shape[2:4]) if len(first.shape) == 4 else []
        self.size = tuple(int(s) for s in spatial) if len(spatial) == 2 and all(isinstance(s, int) and s > 0 for s in spatial) else DEFAULT_INPUT
        if first.shape and first.shape[0] == 1:  # exported with a fixed batch of one
            self.batch_size = 1

    def preprocess(self, images: torch.Tensor) -> np.ndarray:
        """uint8 Bx3xHxW RGB -> float32 NCHW at the model's input size, ``(x - mean) / std``."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        x = images.detach().cpu().float()
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return ((x - self.input_mean) / self.input_std).numpy().astype(np.float32)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        outputs = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = self.preprocess(images[start:start + self.batch_size])
            outputs.append(np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32).reshape(batch.shape[0], -1))
        if not outputs:
            return np.zeros((0, 512), dtype=np.float32)
        raw = np.concatenate(outputs)
        return (raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)).astype(np.float32)
