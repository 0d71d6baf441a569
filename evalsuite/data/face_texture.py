"""Per-identity skin texture for the synthetic faces: a seeded pigment field in face units.

Real faces differ in fine skin detail (pigment mottling, pores, small blemishes) that lives at
a scale of a few pixels in a 112-px crop: fine pixelation blocks or blur average it away while
the clean image keeps it. The field is drawn once per identity in face units (origin between
the eyes, x right, y down) and warped into every image of that person through the image's own
face-to-pixel mapping, so it moves with the face and not with the image.
"""
from __future__ import annotations

import cv2
import numpy as np

#: face-unit rectangle the field covers: u0, v0, u1, v1 (the whole face, forehead to below the chin)
TEXTURE_EXTENT = (-1.5, -1.6, 1.5, 2.2)
#: face units per texel (about 1 px of a 112-px crop)
TEXEL = 0.035


def skin_texture(rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-variance float32 field (rows = v, cols = u): fine grain, a weaker
    coarser mottle and a few small dark spots (pores / blemishes)."""
    u0, v0, u1, v1 = TEXTURE_EXTENT
    rows, cols = int(round((v1 - v0) / TEXEL)), int(round((u1 - u0) / TEXEL))
    grain = cv2.GaussianBlur(rng.normal(0, 1, (rows, cols)).astype(np.float32), (0, 0), 0.8)
    mottle = cv2.resize(rng.normal(0, 1, (rows // 4, cols // 4)).astype(np.float32), (cols, rows), interpolation=cv2.INTER_CUBIC)
    field = grain / grain.std() + 0.35 * mottle / mottle.std()
    spots = np.zeros((rows, cols), np.float32)
    for _ in range(int(rng.integers(5, 25))):
        centre = (int(rng.integers(cols)), int(rng.integers(rows)))
        cv2.circle(spots, centre, 1, float(-rng.uniform(1.5, 3.0)), -1)
    field = field + cv2.GaussianBlur(spots, (0, 0), 0.7)
    return ((field - field.mean()) / field.std()).astype(np.float32)


def face_to_pixel(face_xy: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The 2x3 affine map (least squares) that takes face-unit points to their pixels."""
    src = np.concatenate([np.asarray(face_xy, np.float64)[:, :2], np.ones((len(face_xy), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(src, np.asarray(pixels, np.float64), rcond=None)
    return solution.T


def apply_skin_texture(rgb: np.ndarray, mask: np.ndarray, texture: np.ndarray, affine: np.ndarray, strength: float) -> None:
    """Modulate ``rgb`` (uint8, in place) inside ``mask`` by ``1 + strength * texture``, the
    texture warped by ``affine`` (face units -> pixels of ``rgb``)."""
    u0, v0, _, _ = TEXTURE_EXTENT
    linear = affine[:, :2]
    # texel (col, row) sits at face point (u0 + (col + 0.5) * TEXEL, v0 + (row + 0.5) * TEXEL)
    to_pixels = np.concatenate([linear * TEXEL, (linear @ np.array([u0 + 0.5 * TEXEL, v0 + 0.5 * TEXEL]) + affine[:, 2])[:, None]], axis=1)
    warped = cv2.warpAffine(texture, to_pixels, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    inside = mask > 0
    gain = 1.0 + strength * warped[inside]
    rgb[inside] = np.clip(rgb[inside].astype(np.float32) * gain[:, None], 0, 255).astype(np.uint8)
