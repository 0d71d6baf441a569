"""Seeded synthetic pedestrians written in the Market-1501 layout, with an annotation sidecar.

Identity lives in the head (face shape and width, skin tone, hair colour / length / style,
facial hair, glasses, hats) and in the body (upper clothing colour and pattern, sleeves,
lower clothing colour and type, shoes, build, carried bags). Colours come from finite,
skewed palettes (much black, grey, white and denim), so colour alone is not a perfect key:
patterns and fine structure matter. Cameras differ in background, illumination and in
how large the person appears; every image draws its own pose, view (front / back / side),
jitter, blur and noise. Each image is a pure function of ``(seed, pid, camera, index)``.

Written files::

    <root>/bounding_box_train/PPPP_cCsS_FFFFFF_NN.jpg   train (pids relabelled by the loader)
    <root>/query/...jpg                                 one image per test id per query camera
    <root>/bounding_box_test/...jpg                     gallery, with 0000 distractors and -1 junk
    <root>/masks/<split folder>/<name>.png              body masks (255 = person, bag included)
    <root>/evalsuite_annotations.json                   sidecar (see evalsuite.data.market1501)
    <root>/evalsuite_synthetic.json                     generator config and hash (written last)
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from evalsuite.progress import tqdm

from evalsuite.splits import ON_DISK
from evalsuite.data.types import SIDECAR_NAME
from evalsuite.errors import UserError

log = logging.getLogger(__name__)

#: bump when the generator's output changes, so cached datasets are regenerated
GENERATOR_VERSION = 1
MARKER_NAME = "evalsuite_synthetic.json"
ANNOTATION_FORMAT = "evalsuite-annotations/1"
SPLIT_FOLDERS = dict(ON_DISK["market1501"])
SUPERSAMPLE = 4  # people are drawn at 4x and area-downsampled (anti-aliasing)
MAX_PID = 1501  # torchreid asserts 0 <= pid <= 1501

# Independent random streams: np.random.default_rng([seed, STREAM, ...]).
_STREAM_PLAN, _STREAM_IDENTITY, _STREAM_CAMERA, _STREAM_IMAGE, _STREAM_DISTRACTOR, _STREAM_JUNK = range(6)
_DISTRACTOR_IDENTITY_OFFSET = 100_000  # identity keys of distractor people (never a real pid)

# --------------------------------------------------------------------------- palettes
# name -> (RGB, weight). Skewed like real street clothing: dark, grey, white and denim dominate.
Palette = dict[str, tuple[tuple[int, int, int], float]]

UPPER_COLOURS: Palette = {
    "black": ((32, 32, 35), 0.17), "dark_grey": ((72, 72, 76), 0.08), "grey": ((128, 128, 130), 0.08),
    "white": ((226, 226, 220), 0.12), "navy": ((32, 42, 90), 0.08), "blue": ((52, 92, 172), 0.07),
    "light_blue": ((142, 180, 220), 0.05), "red": ((172, 36, 42), 0.07), "green": ((42, 112, 62), 0.05),
    "olive": ((104, 102, 52), 0.03), "yellow": ((222, 192, 62), 0.04), "orange": ((222, 122, 42), 0.03),
    "pink": ((222, 142, 172), 0.04), "purple": ((102, 62, 132), 0.03), "beige": ((202, 182, 142), 0.04),
    "brown": ((112, 76, 46), 0.02),
}
LOWER_COLOURS: Palette = {
    "black": ((30, 30, 33), 0.30), "dark_grey": ((70, 70, 74), 0.10), "grey": ((125, 125, 128), 0.07),
    "denim": ((58, 80, 122), 0.20), "light_denim": ((112, 142, 182), 0.07), "khaki": ((182, 162, 120), 0.10),
    "white": ((220, 220, 214), 0.04), "brown": ((100, 70, 45), 0.05), "navy": ((30, 38, 80), 0.05),
    "red": ((160, 40, 45), 0.02),
}
SHOE_COLOURS: Palette = {
    "black": ((25, 25, 25), 0.35), "white": ((230, 230, 230), 0.30), "grey": ((120, 120, 125), 0.10),
    "brown": ((95, 60, 35), 0.15), "red": ((180, 40, 40), 0.05), "blue": ((50, 80, 170), 0.05),
}
HAIR_COLOURS: Palette = {
    "black": ((24, 20, 20), 0.35), "dark_brown": ((60, 40, 26), 0.25), "brown": ((112, 76, 46), 0.14),
    "blonde": ((204, 172, 104), 0.10), "auburn": ((142, 62, 32), 0.06), "grey": ((150, 150, 150), 0.06),
    "white": ((222, 222, 216), 0.04),
}
SKIN_TONES: Palette = {
    "very_light": ((246, 214, 192), 0.15), "light": ((232, 190, 160), 0.20), "medium_light": ((212, 162, 126), 0.18),
    "medium": ((184, 132, 96), 0.17), "medium_dark": ((140, 96, 66), 0.15), "dark": ((96, 64, 46), 0.15),
}
ACCESSORY_COLOURS: Palette = {
    "black": ((28, 28, 30), 0.38), "brown": ((110, 72, 40), 0.15), "grey": ((120, 120, 124), 0.10),
    "navy": ((34, 44, 92), 0.10), "red": ((176, 40, 44), 0.08), "beige": ((196, 176, 136), 0.08),
    "green": ((50, 110, 66), 0.06), "pink": ((222, 142, 172), 0.05),
}

HAIR_LENGTHS = {"bald": 0.07, "short": 0.45, "medium": 0.2, "long": 0.28}
HAIR_STYLES = {"plain": 0.45, "fringe": 0.2, "curly": 0.15, "ponytail": 0.1, "bun": 0.1}
FACE_SHAPES = {"oval": 0.45, "round": 0.3, "square": 0.25}
GLASSES = {"none": 0.72, "glasses": 0.2, "sunglasses": 0.08}
FACIAL_HAIR = {"none": 0.7, "stubble": 0.1, "moustache": 0.07, "beard": 0.13}
HATS = {"none": 0.82, "cap": 0.1, "beanie": 0.08}
UPPER_PATTERNS = {"plain": 0.35, "stripes": 0.13, "vstripes": 0.05, "checks": 0.12, "logo": 0.17, "jacket": 0.18}
LOGO_SHAPES = ("circle", "square", "triangle", "bar", "diamond")
SLEEVES = {"long": 0.62, "short": 0.38}
LOWER_TYPES = {"trousers": 0.7, "shorts": 0.17, "skirt": 0.13}
BUILDS = {"slim": (0.86, 0.3), "average": (1.0, 0.45), "broad": (1.18, 0.25)}  # width factor, weight
BAGS = {"none": 0.45, "backpack": 0.25, "handbag": 0.15, "shoulder_bag": 0.15}
VIEWS = ("front", "back", "side")


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class SyntheticConfig:
    """Size and sampling parameters of a synthetic Market-1501-layout dataset.

    Ranges are inclusive ``(low, high)`` pairs drawn uniformly per identity / camera.
    Each test id appears in ``test_cameras_per_id`` cameras; it is queried from
    ``query_cameras_per_id`` of them (one image each) and the gallery holds
    ``gallery_images_per_camera`` images from every one of them, so a query always has
    matches in at least ``test_cameras_per_id[0] - 1`` other cameras.
    """

    seed: int = 0
    num_train_ids: int = 50
    num_test_ids: int = 50
    num_cameras: int = 6
    train_cameras_per_id: tuple[int, int] = (2, 4)
    train_images_per_camera: tuple[int, int] = (2, 3)
    test_cameras_per_id: tuple[int, int] = (3, 5)
    query_cameras_per_id: tuple[int, int] = (2, 3)
    gallery_images_per_camera: tuple[int, int] = (1, 2)
    num_distractors: int = 30
    num_junk: int = 6
    height: int = 128
    width: int = 64
    back_view_probability: float = 0.3
    side_view_probability: float = 0.3
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                if f.name.endswith("probability"):
                    value = float(value)
                elif isinstance(f.default, tuple):
                    value = tuple(int(v) for v in value)
                    if len(value) != 2:
                        raise ValueError
                else:
                    value = int(value)
            except (TypeError, ValueError):
                raise UserError(f"synthetic dataset setting {f.name}={value!r}: expected {_expected(f.default)}") from None
            object.__setattr__(self, f.name, value)
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> UserError:
            return UserError(f"bad synthetic dataset settings: {msg}")

        if not 1 <= self.num_cameras <= 9:
            raise bad(f"num_cameras={self.num_cameras} must be 1..9 (one digit in Market-1501 names)")
        if self.num_train_ids < 1 or self.num_test_ids < 1 or self.num_train_ids + self.num_test_ids > MAX_PID:
            raise bad(f"num_train_ids and num_test_ids must be >= 1 and sum to <= {MAX_PID}")
        for name in ("train_cameras_per_id", "train_images_per_camera", "test_cameras_per_id",
                     "query_cameras_per_id", "gallery_images_per_camera"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise bad(f"{name}={[low, high]} must be 1 <= low <= high")
        for name in ("train_cameras_per_id", "test_cameras_per_id"):
            if getattr(self, name)[0] > self.num_cameras:
                raise bad(f"{name}={list(getattr(self, name))} needs more than num_cameras={self.num_cameras} cameras")
        if self.test_cameras_per_id[0] < 2:
            raise bad("test_cameras_per_id must be >= 2 so that every query has a match in another camera")
        if self.query_cameras_per_id[0] > self.test_cameras_per_id[0]:
            raise bad("query_cameras_per_id cannot exceed test_cameras_per_id")
        if self.num_distractors < 0 or self.num_junk < 0:
            raise bad("num_distractors and num_junk must be >= 0")
        if self.height < 32 or self.width < 16:
            raise bad(f"image size {self.height}x{self.width} is too small (>= 32x16)")
        p_back, p_side = self.back_view_probability, self.side_view_probability
        if not (0 <= p_back <= 1 and 0 <= p_side <= 1 and p_back + p_side <= 1):
            raise bad("back_view_probability and side_view_probability must be in [0, 1] and sum to <= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise bad("jpeg_quality must be 1..100")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _expected(default: Any) -> str:
    if isinstance(default, tuple):
        return "a pair of integers [low, high]"
    return "a number" if isinstance(default, float) else "an integer"


def coerce_fields(config: Any, label: str) -> None:
    """Coerce a frozen generator config's fields in place to their defaults' types: a pair of
    integers for a tuple default, a finite float for a float default, else an integer (bools
    refused); UserError naming ``dataset.<field>`` and ``label`` otherwise."""
    for f in fields(config):
        given = value = getattr(config, f.name)
        try:
            if isinstance(given, bool) or (isinstance(given, (list, tuple)) and any(isinstance(v, bool) for v in given)):
                raise ValueError
            if isinstance(f.default, tuple):
                value = tuple(int(v) for v in given)
                if len(value) != 2 or any(float(v) != int(v) for v in given):
                    raise ValueError
            elif isinstance(f.default, float):
                value = float(given)
                if not math.isfinite(value):
                    raise ValueError
            else:
                value = int(given)
                if float(given) != value:
                    raise ValueError
        except (TypeError, ValueError):
            raise UserError(f"{label} setting dataset.{f.name}={given!r}: expected {_expected(f.default)}") from None
        object.__setattr__(config, f.name, value)


def config_hash(config: SyntheticConfig) -> str:
    """Short stable hash of the generator version and ``config`` (names cache folders)."""
    payload = json.dumps({"version": GENERATOR_VERSION, **config.to_dict()}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def default_root(config: SyntheticConfig, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/datasets/synthetic-<hash>``; without ``cache_dir`` the default cache
    (:func:`evalsuite.config.cache_dir`: ``$EVALSUITE_CACHE`` or ``~/.cache/evalsuite``)."""
    from evalsuite.config import cache_dir as default_cache

    base = Path(cache_dir).expanduser() if cache_dir else default_cache()
    return base / "datasets" / f"synthetic-{config_hash(config)}"


# --------------------------------------------------------------------------- sampling helpers

def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _choice(rng: np.random.Generator, table: dict[str, Any]) -> str:
    names = list(table)
    weights = np.array([v[1] if isinstance(v, tuple) else v for v in table.values()], dtype=float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _colour(rng: np.random.Generator, palette: Palette, exclude: str | None = None) -> tuple[str, np.ndarray]:
    """A palette colour with a small per-identity shade jitter."""
    table = {k: v for k, v in palette.items() if k != exclude}
    name = _choice(rng, table)
    base = np.array(table[name][0], dtype=np.float32)
    rgb = base * (1 + rng.normal(0, 0.05)) + rng.normal(0, 5, 3)
    return name, np.clip(rgb, 0, 255).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Identity:
    """Per-person appearance attributes (names for the sidecar, colours for drawing)."""

    attributes: dict[str, Any]
    colours: dict[str, np.ndarray]
    face_width: float  # head width / head height multiplier
    face_length: float
    width_factor: float  # build
    leg_ratio: float  # hip height offset (fraction of person height)
    pattern_period: float  # stripes / checks period in pixels (1x)
    pattern_phase: float
    logo_size: float
    gait: float  # walking amplitude (radians)

    def __getitem__(self, key: str) -> Any:
        return self.attributes[key]


@functools.lru_cache(maxsize=4096)
def sample_identity(seed: int, key: int) -> Identity:
    """The appearance of person ``key`` (a pid, or a distractor key) under ``seed``."""
    rng = _rng(seed, _STREAM_IDENTITY, key)
    attrs: dict[str, Any] = {}
    colours: dict[str, np.ndarray] = {}
    attrs["skin_tone"], colours["skin"] = _colour(rng, SKIN_TONES)
    attrs["hair_colour"], colours["hair"] = _colour(rng, HAIR_COLOURS)
    attrs["hair_length"] = _choice(rng, HAIR_LENGTHS)
    style = _choice(rng, HAIR_STYLES)
    if style in ("ponytail", "bun") and attrs["hair_length"] in ("bald", "short"):
        style = "plain"
    attrs["hair_style"] = "none" if attrs["hair_length"] == "bald" else style
    attrs["face_shape"] = _choice(rng, FACE_SHAPES)
    attrs["glasses"] = _choice(rng, GLASSES)
    colours["glasses"] = np.array([(20, 20, 20), (90, 60, 40), (150, 30, 30), (170, 170, 175)][int(rng.integers(4))], np.float32)
    attrs["facial_hair"] = _choice(rng, FACIAL_HAIR)
    attrs["hat"] = _choice(rng, HATS)
    attrs["hat_colour"], colours["hat"] = _colour(rng, ACCESSORY_COLOURS)
    attrs["upper_colour"], colours["upper"] = _colour(rng, UPPER_COLOURS)
    attrs["upper_pattern"] = _choice(rng, UPPER_PATTERNS)
    attrs["upper_secondary_colour"], colours["secondary"] = _secondary(rng, attrs["upper_colour"])
    attrs["logo_shape"] = LOGO_SHAPES[int(rng.integers(len(LOGO_SHAPES)))] if attrs["upper_pattern"] == "logo" else "none"
    attrs["sleeves"] = "long" if attrs["upper_pattern"] == "jacket" else _choice(rng, SLEEVES)
    attrs["lower_colour"], colours["lower"] = _colour(rng, LOWER_COLOURS)
    attrs["lower_type"] = _choice(rng, LOWER_TYPES)
    attrs["shoe_colour"], colours["shoes"] = _colour(rng, SHOE_COLOURS)
    attrs["build"] = _choice(rng, BUILDS)
    attrs["bag"] = _choice(rng, BAGS)
    attrs["bag_colour"], colours["bag"] = _colour(rng, ACCESSORY_COLOURS)
    attrs["bag_side"] = "left" if rng.random() < 0.5 else "right"
    if attrs["bag"] == "none":
        attrs["bag_colour"] = attrs["bag_side"] = "none"
    if attrs["hat"] == "none":
        attrs["hat_colour"] = "none"
    width = BUILDS[attrs["build"]][0] * float(rng.uniform(0.96, 1.04))
    identity = Identity(
        attributes=attrs,
        colours=colours,
        face_width=float(rng.uniform(0.86, 1.12)),
        face_length=float(rng.uniform(0.94, 1.06)),
        width_factor=width,
        leg_ratio=float(rng.uniform(-0.02, 0.02)),
        pattern_period=float(rng.uniform(2.6, 5.0)),
        pattern_phase=float(rng.uniform(0, 1)),
        logo_size=float(rng.uniform(0.35, 0.6)),
        gait=float(rng.uniform(0.18, 0.42)),
    )
    attrs["width_factor"] = round(width, 3)
    return identity


def _secondary(rng: np.random.Generator, primary: str) -> tuple[str, np.ndarray]:
    """A pattern colour that contrasts with the primary upper colour."""
    base = np.array(UPPER_COLOURS[primary][0], dtype=np.float32)
    table = {k: v for k, v in UPPER_COLOURS.items() if np.abs(np.array(v[0]) - base).sum() > 150}
    return _colour(rng, table or UPPER_COLOURS, exclude=primary)


@dataclass(frozen=True, eq=False)
class Camera:
    """Per-camera scene, illumination, optics and framing."""

    scene: np.ndarray  # float32 RGB panorama the backgrounds are cropped from
    horizon: float  # where the scene's horizon falls in a crop (fraction of the height)
    clutter: float  # expected number of transient objects (far pedestrians) per image
    gain: np.ndarray  # per-channel colour cast
    brightness: float
    gamma: float
    blur_sigma: float
    noise_std: float
    fill: float  # mean fraction of the image height the person fills
    light_top: float  # vertical shading of people (light from above)
    view_weights: np.ndarray  # front / back / side


# Background materials (RGB) a camera's wall and floor are drawn from, then jittered.
WALL_MATERIALS = ((130, 130, 126), (150, 92, 72), (192, 180, 158), (86, 112, 74), (112, 126, 140),
                  (204, 202, 196), (156, 142, 118), (96, 96, 100))
FLOOR_MATERIALS = ((72, 72, 74), (124, 122, 118), (150, 140, 124), (96, 88, 80), (90, 110, 76))


def _material(rng: np.random.Generator, materials: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    base = np.array(materials[int(rng.integers(len(materials)))], np.float32)
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, 8, 3), 0, 255).astype(np.float32)


def _muted(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    rgb = rng.uniform(low, high, 3)
    grey = rgb.mean()
    return (grey + (rgb - grey) * rng.uniform(0.2, 0.7)).astype(np.float32)


def sample_camera(seed: int, index: int, config: SyntheticConfig) -> Camera:
    """The look of camera ``index`` (0-based)."""
    rng = _rng(seed, _STREAM_CAMERA, index)
    base = np.array([1 - config.back_view_probability - config.side_view_probability,
                     config.back_view_probability, config.side_view_probability])
    weights = base * rng.uniform(0.6, 1.4, 3)
    return Camera(
        scene=build_scene(rng, config.height, config.width),
        horizon=float(rng.uniform(0.35, 0.7)),
        clutter=float(rng.uniform(0.2, 1.2)),
        gain=(1 + rng.normal(0, 0.06, 3)).astype(np.float32),
        brightness=float(rng.uniform(0.82, 1.15)),
        gamma=float(rng.uniform(0.85, 1.2)),
        blur_sigma=float(rng.uniform(0.35, 0.85)),
        noise_std=float(rng.uniform(1.5, 4.5)),
        fill=float(rng.uniform(0.75, 0.9)),
        light_top=float(rng.uniform(0.0, 0.16)),
        view_weights=weights / weights.sum(),
    )


def build_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A camera's scene: a panorama (2 x height, 6 x width) of facades over a floor, with
    street furniture; each image's background is a window of it (so backgrounds vary within
    a camera but keep its materials)."""
    sh, sw = 2 * height, 6 * width
    scene = np.empty((sh, sw, 3), np.float32)
    yy = np.arange(sh, dtype=np.float32)[:, None]
    xx = np.arange(sw, dtype=np.float32)[None, :]
    materials = [_material(rng, WALL_MATERIALS) for _ in range(int(rng.integers(2, 4)))]
    cuts = np.sort(rng.choice(np.arange(width // 2, sw - width // 2), int(rng.integers(2, 6)), replace=False))
    edges = [0, *cuts.tolist(), sw]
    horizon = np.empty(sw, np.float32)
    for x0, x1 in zip(edges[:-1], edges[1:]):
        horizon[x0:x1] = height + rng.normal(0, 4)
        scene[:, x0:x1] = materials[int(rng.integers(len(materials)))]
        scene[:, x0:x1] *= (1 - _wall_texture(rng, yy, xx[:, x0:x1]))[..., None]
    floor_colour = _material(rng, FLOOR_MATERIALS)
    is_floor = yy >= horizon[None, :]
    depth = np.maximum(yy - horizon[None, :], 0) + 1
    period, strength = rng.uniform(5, 14), rng.uniform(0.05, 0.16)
    kind = int(rng.integers(3))
    if kind == 0:  # tiles
        lines = ((np.sqrt(depth) * 3) % 3 < 0.5) | ((((xx - sw / 2) / depth * 20) % period) < 1.0)
    elif kind == 1:  # paving rows
        lines = (np.sqrt(depth) * 4) % 2.5 < 0.5
    else:
        lines = np.zeros_like(is_floor)
    floor = floor_colour[None, None, :] * (1 - strength * lines)[..., None]
    scene = np.where(is_floor[..., None], floor, scene)
    for _ in range(int(rng.integers(4, 11))):
        _street_object(scene, rng, float(horizon.mean()))
    small = rng.normal(0, 1, (int(rng.integers(4, 9)), int(rng.integers(8, 20)))).astype(np.float32)
    field = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_CUBIC)
    field = field / (np.abs(field).max() + 1e-6) + 0.3 * rng.normal(0, 1, (sh, sw)).astype(np.float32)
    scene *= (1 + 0.1 * field)[..., None]
    return np.clip(scene, 0, 255).astype(np.float32)


def _wall_texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Darkening pattern (0..~0.3) of one facade segment."""
    kind = ("plain", "vstripes", "bricks", "windows", "foliage")[int(rng.integers(5))]
    period, k = float(rng.uniform(5, 14)), float(rng.uniform(0.06, 0.2))
    ox, oy = rng.uniform(0, period, 2)
    shape = np.broadcast_shapes(yy.shape, xx.shape)
    if kind == "vstripes":
        return np.broadcast_to((((xx + ox) % period) < period / 2) * k, shape)
    if kind == "bricks":
        row = np.floor((yy + oy) / (period / 2))
        return ((((yy + oy) % (period / 2)) < 1) | (((xx + ox + (row % 2) * period / 2) % period) < 1)) * k
    if kind == "windows":
        return ((((xx + ox) % (period * 2)) < period) & (((yy + oy) % (period * 2)) < period * 1.2)) * k * 1.6
    if kind == "foliage":
        small = rng.uniform(0, 1, (max(2, shape[0] // 6), max(2, shape[1] // 6))).astype(np.float32)
        return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) * k * 2
    return np.zeros(shape, np.float32)


def _street_object(img: np.ndarray, rng: np.random.Generator, horizon: float) -> None:
    """A pole, bin, bench, plant or parked bicycle-like blob fixed in a camera's scene."""
    height, width = img.shape[:2]
    colour = _muted(rng, 30, 220).tolist()
    x = int(rng.integers(0, width))
    base = int(horizon + rng.uniform(5, height - horizon - 5))
    kind = int(rng.integers(4))
    if kind == 0:  # pole / lamp post
        cv2.rectangle(img, (x, 0), (x + int(rng.integers(2, 6)), base), colour, -1)
    elif kind == 1:  # bin / box / bench
        w, h = int(rng.integers(8, 28)), int(rng.integers(6, 26))
        cv2.rectangle(img, (x, base - h), (x + w, base), colour, -1)
    elif kind == 2:  # plant / tree
        green = (float(rng.uniform(40, 90)), float(rng.uniform(80, 140)), float(rng.uniform(40, 80)))
        cv2.rectangle(img, (x - 1, base - 20), (x + 2, base), (90, 70, 50), -1)
        cv2.ellipse(img, (x, base - 25), (int(rng.integers(6, 14)), int(rng.integers(8, 18))), 0, 0, 360, green, -1)
    else:  # railing
        y = base - int(rng.integers(10, 20))
        cv2.line(img, (x, y), (x + int(rng.integers(30, 90)), y), colour, 2)


# --------------------------------------------------------------------------- drawing

class Painter:
    """Draws a person at SUPERSAMPLE x into colour, coverage and head-coverage layers.

    Coordinates are floats in output-image pixels; sizes too.
    """

    def __init__(self, height: int, width: int) -> None:
        self.s = SUPERSAMPLE
        shape = (height * self.s, width * self.s)
        self.rgb = np.zeros((*shape, 3), np.uint8)
        self.alpha = np.zeros(shape, np.uint8)
        self.head = np.zeros(shape, np.uint8)

    def _pt(self, p: Any) -> tuple[int, int]:
        return int(round(p[0] * self.s)), int(round(p[1] * self.s))

    def _layers(self, head: bool) -> list[tuple[np.ndarray, Any]]:
        return [(self.alpha, 255)] + ([(self.head, 255)] if head else [])

    def _colour(self, colour: Any) -> tuple[int, int, int]:
        c = np.clip(np.asarray(colour, dtype=np.float32), 0, 255)
        return int(c[0]), int(c[1]), int(c[2])

    def line(self, p0: Any, p1: Any, width: float, colour: Any, head: bool = False) -> None:
        t = max(1, int(round(width * self.s)))
        cv2.line(self.rgb, self._pt(p0), self._pt(p1), self._colour(colour), t)
        for layer, value in self._layers(head):
            cv2.line(layer, self._pt(p0), self._pt(p1), value, t)

    def poly(self, pts: Any, colour: Any, head: bool = False) -> None:
        arr = np.round(np.asarray(pts, dtype=np.float64) * self.s).astype(np.int32)
        cv2.fillPoly(self.rgb, [arr], self._colour(colour))
        for layer, value in self._layers(head):
            cv2.fillPoly(layer, [arr], value)

    def ellipse(self, centre: Any, axes: Any, colour: Any, start: float = 0, end: float = 360,
                angle: float = 0, head: bool = False) -> None:
        ax = (max(1, int(round(axes[0] * self.s))), max(1, int(round(axes[1] * self.s))))
        cv2.ellipse(self.rgb, self._pt(centre), ax, angle, start, end, self._colour(colour), -1)
        for layer, value in self._layers(head):
            cv2.ellipse(layer, self._pt(centre), ax, angle, start, end, value, -1)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Any, head: bool = False) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour, head)

    def textured_poly(self, pts: Any, texture_fn: Callable[[int, int], np.ndarray]) -> None:
        """Fill a polygon from ``texture_fn(rows, cols)``, an RGB uint8 texture of the polygon's
        supersampled bounding box (so patterns move with the polygon, not the image)."""
        arr = np.round(np.asarray(pts, dtype=np.float64) * self.s).astype(np.int32)
        bx0, by0 = int(arr[:, 0].min()), int(arr[:, 1].min())
        bx1, by1 = int(arr[:, 0].max()) + 1, int(arr[:, 1].max()) + 1
        rows, cols = self.alpha.shape
        x0, y0, x1, y1 = max(0, bx0), max(0, by0), min(cols, bx1), min(rows, by1)
        if x1 <= x0 or y1 <= y0:
            return
        texture = texture_fn(by1 - by0, bx1 - bx0)[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [arr - np.array([x0, y0], np.int32)], 255)
        np.copyto(self.rgb[y0:y1, x0:x1], texture, where=mask[..., None] > 0)
        np.maximum(self.alpha[y0:y1, x0:x1], mask, out=self.alpha[y0:y1, x0:x1])


@dataclass
class Pose:
    """Where and how a person stands in one image."""

    view: str
    facing: int  # side view: +1 walks to the image's right, -1 to the left
    phase: float
    height: float  # person height in pixels (top of head to soles)
    cx: float
    feet_y: float


def _side_sign(view: str, facing: int) -> int:
    """Image-x sign of the person's left side: +1 in front views, -1 in back views; in a side
    view facing right (+1) the near side is the right one and the left one lies behind."""
    return {"front": 1, "back": -1}.get(view, -facing)


def skeleton(ident: Identity, pose: Pose) -> dict[str, Any]:
    """Joint positions (output pixels) and body sizes for ``ident`` in ``pose``."""
    h, cx, view = pose.height, pose.cx, pose.view
    top = pose.feet_y - h
    hh = 0.155 * h * ident.face_length
    hw = 0.68 * hh * ident.face_width
    wf = ident.width_factor
    sk: dict[str, Any] = {"h": h, "hh": hh, "hw": hw, "top": top, "cx": cx}
    sk["head_c"] = (cx, top + hh / 2)
    sk["chin"] = top + hh
    sk["y_sh"] = top + hh + 0.045 * h
    sk["y_hip"] = top + (0.52 + ident.leg_ratio) * h
    sk["y_ankle"] = pose.feet_y - 0.035 * h
    sw = 0.118 * h * wf * (0.52 if view == "side" else 1.0)
    hpw = 0.085 * h * wf * (0.6 if view == "side" else 1.0)
    sk.update(sw=sw, hpw=hpw, arm_t=0.05 * h * wf ** 0.5, leg_t=0.068 * h * wf ** 0.5)
    amp = ident.gait * (1.0 if view == "side" else 0.5)
    swing = {"left": amp * math.sin(pose.phase), "right": -amp * math.sin(pose.phase)}
    leg_len = sk["y_ankle"] - sk["y_hip"]
    upper_arm, fore_arm = 0.175 * h, 0.16 * h
    sign_left = _side_sign(view, pose.facing)
    d = pose.facing
    for side in ("left", "right"):
        theta = swing[side]
        bend = 0.9 * max(0.0, -theta) + 0.05
        if view == "side":
            hip = (cx - 0.01 * h * d, sk["y_hip"])
            knee = (hip[0] + d * 0.5 * leg_len * math.sin(theta), hip[1] + 0.5 * leg_len * math.cos(theta))
            ankle = (knee[0] + d * 0.5 * leg_len * math.sin(theta - bend), knee[1] + 0.5 * leg_len * math.cos(theta - bend))
            sh = (cx + 0.01 * h * d, sk["y_sh"] + 0.01 * h)
            alpha = -0.8 * theta
            elbow = (sh[0] + d * upper_arm * math.sin(alpha), sh[1] + upper_arm * math.cos(alpha))
            wrist = (elbow[0] + d * fore_arm * math.sin(alpha + 0.35), elbow[1] + fore_arm * math.cos(alpha + 0.35))
        else:
            s = sign_left if side == "left" else -sign_left
            lift = 0.5 * leg_len * (1 - math.cos(theta)) + 0.12 * leg_len * max(0.0, -theta)
            hip = (cx + s * hpw * 0.5, sk["y_hip"])
            knee = (cx + s * hpw * 0.52, hip[1] + 0.5 * leg_len * math.cos(theta) - 0.3 * lift)
            ankle = (cx + s * hpw * 0.55, sk["y_ankle"] - lift)
            sh = (cx + s * (sw - 0.3 * sk["arm_t"]), sk["y_sh"] + 0.35 * sk["arm_t"])
            alpha = -0.8 * theta
            elbow = (sh[0] + s * 0.12 * sk["arm_t"], sh[1] + upper_arm * math.cos(alpha))
            wrist = (elbow[0] + s * 0.05 * h * 0.1, elbow[1] + fore_arm * math.cos(alpha * 1.3 + 0.15))
        sk[side] = {"hip": hip, "knee": knee, "ankle": ankle, "shoulder": sh, "elbow": elbow, "wrist": wrist}
    return sk


def _torso_texture(ident: Identity, pose: Pose, rows: int, cols: int) -> np.ndarray:
    """Supersampled upper-clothing texture (rows x cols x 3 uint8) of the torso's bounding box."""
    s = SUPERSAMPLE
    primary, secondary = ident.colours["upper"], ident.colours["secondary"]
    pattern = ident["upper_pattern"]
    period = ident.pattern_period * s
    phase = ident.pattern_phase * period
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    on = None  # where the secondary colour goes
    if pattern == "stripes":
        on = ((yy + phase) % period) < period / 2
    elif pattern == "vstripes":
        on = ((xx + phase) % period) < period / 2
    elif pattern == "jacket" and pose.view != "back":
        centre = cols / 2 + (pose.facing * cols * 0.32 if pose.view == "side" else 0)
        on = np.abs(xx - centre) < cols * (0.17 if pose.view == "front" else 0.1)
    if on is not None:
        tex = np.where(np.broadcast_to(on, (rows, cols))[..., None], secondary, primary)
    elif pattern == "checks":
        cell = period * 1.15
        checked = ((np.floor((yy + phase) / cell) + np.floor((xx + phase) / cell)) % 2) == 1
        lines = (((yy + phase) % cell) < s * 0.7) | (((xx + phase) % cell) < s * 0.7)
        tex = np.where(checked[..., None], 0.55 * primary + 0.45 * secondary, primary)
        tex = np.where(lines[..., None], secondary, tex)
    else:
        tex = np.empty((rows, cols, 3), np.float32)
        tex[:] = primary
        if pattern == "logo" and pose.view == "front":
            _draw_logo(tex, ident, secondary)
    # vertical shading: a little darker towards the waist
    tex = tex * (1.0 - 0.12 * yy / max(rows - 1, 1))[..., None]
    return np.clip(tex, 0, 255).astype(np.uint8)


def _draw_logo(tex: np.ndarray, ident: Identity, colour: np.ndarray) -> None:
    th, tw = tex.shape[:2]
    r = ident.logo_size * tw / 2
    c = (tw / 2, th * 0.3)
    col = tuple(float(v) for v in colour)
    shape = ident["logo_shape"]
    if shape == "circle":
        cv2.circle(tex, (int(c[0]), int(c[1])), int(r), col, -1)
    elif shape == "square":
        cv2.rectangle(tex, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)), col, -1)
    elif shape == "bar":
        cv2.rectangle(tex, (int(c[0] - 1.5 * r), int(c[1] - 0.45 * r)), (int(c[0] + 1.5 * r), int(c[1] + 0.45 * r)), col, -1)
    else:
        pts = ([(c[0], c[1] - r), (c[0] + r, c[1] + r * 0.8), (c[0] - r, c[1] + r * 0.8)] if shape == "triangle"
               else [(c[0], c[1] - r), (c[0] + r, c[1]), (c[0], c[1] + r), (c[0] - r, c[1])])
        cv2.fillPoly(tex, [np.round(np.array(pts)).astype(np.int32)], col)


def _draw_lower(p: Painter, ident: Identity, pose: Pose, sk: dict[str, Any], sides: tuple[str, ...]) -> None:
    """Legs, lower clothing and shoes for the given sides (in drawing order)."""
    skin, lower, shoes = ident.colours["skin"], ident.colours["lower"], ident.colours["shoes"]
    kind, h, cx = ident["lower_type"], sk["h"], sk["cx"]
    t = sk["leg_t"]
    waist = sk["y_hip"] - 0.035 * h
    for side in sides:
        j = sk[side]
        if kind == "trousers":
            p.line(j["hip"], j["knee"], t, lower)
            p.line(j["knee"], j["ankle"], t * 0.9, lower)
        else:
            p.line(j["hip"], j["knee"], t * 0.85, skin)
            p.line(j["knee"], j["ankle"], t * 0.75, skin)
            if kind == "shorts":
                mid = (0.4 * j["hip"][0] + 0.6 * j["knee"][0], 0.4 * j["hip"][1] + 0.6 * j["knee"][1])
                p.line(j["hip"], mid, t * 1.1, lower)
        fwd = pose.facing * 0.03 * h if pose.view == "side" else 0.0
        p.ellipse((j["ankle"][0] + fwd, j["ankle"][1] + 0.018 * h),
                  (0.05 * h if pose.view == "side" else t * 0.55, 0.024 * h), shoes)
    hpw = sk["hpw"]
    if kind == "skirt":
        knee_y = max(sk["left"]["knee"][1], sk["right"]["knee"][1]) - 0.01 * h
        flare = 1.45 if pose.view != "side" else 1.6
        p.poly([(cx - hpw, waist), (cx + hpw, waist), (cx + hpw * flare, knee_y), (cx - hpw * flare, knee_y)], lower)
    elif len(sides) == 2:
        p.poly([(cx - hpw, waist), (cx + hpw, waist), (cx + hpw * 0.95, sk["y_hip"] + 0.05 * h),
                (cx - hpw * 0.95, sk["y_hip"] + 0.05 * h)], lower)


def _torso_pts(sk: dict[str, Any], view: str) -> list[tuple[float, float]]:
    cx, sw, hpw, h = sk["cx"], sk["sw"], sk["hpw"], sk["h"]
    y0, y1 = sk["y_sh"], sk["y_hip"] + 0.025 * h
    if view == "side":
        return [(cx - sw, y0), (cx + sw, y0), (cx + sw * 0.95, y1), (cx - sw * 0.95, y1)]
    return [(cx - sw * 0.78, y0), (cx + sw * 0.78, y0), (cx + sw, y0 + 0.035 * h), (cx + hpw * 1.08, y1),
            (cx - hpw * 1.08, y1), (cx - sw, y0 + 0.035 * h)]


def _draw_torso(p: Painter, ident: Identity, pose: Pose, sk: dict[str, Any]) -> None:
    p.textured_poly(_torso_pts(sk, pose.view), lambda rows, cols: _torso_texture(ident, pose, rows, cols))


def _draw_arm(p: Painter, ident: Identity, sk: dict[str, Any], side: str) -> None:
    j, t = sk[side], sk["arm_t"]
    sleeve, skin = ident.colours["upper"], ident.colours["skin"]
    if ident["sleeves"] == "long":
        p.line(j["shoulder"], j["elbow"], t, sleeve)
        p.line(j["elbow"], j["wrist"], t * 0.9, sleeve)
    else:
        p.line(j["elbow"], j["wrist"], t * 0.8, skin)
        p.line(j["shoulder"], j["elbow"], t * 0.85, skin)
        mid = (0.45 * j["shoulder"][0] + 0.55 * j["elbow"][0], 0.45 * j["shoulder"][1] + 0.55 * j["elbow"][1])
        p.line(j["shoulder"], mid, t * 1.05, sleeve)
    p.ellipse((j["wrist"][0], j["wrist"][1] + 0.3 * t), (0.5 * t, 0.6 * t), skin)


def _bag_image_side(ident: Identity, pose: Pose) -> int:
    """Image-x sign of the bag's side of the body (+1 right)."""
    sign_left = _side_sign(pose.view, pose.facing)
    return sign_left if ident["bag_side"] == "left" else -sign_left


def _draw_handbag(p: Painter, ident: Identity, pose: Pose, sk: dict[str, Any], side: str) -> None:
    h, wrist = sk["h"], sk[side]["wrist"]
    w, hgt = 0.065 * h, 0.085 * h
    top = wrist[1] + 0.035 * h
    p.line((wrist[0], wrist[1] + 0.01 * h), (wrist[0], top), max(0.8, 0.012 * h), ident.colours["bag"] * 0.8)
    p.rect(wrist[0] - w, top, wrist[0] + w, top + hgt, ident.colours["bag"])


def _draw_shoulder_bag(p: Painter, ident: Identity, pose: Pose, sk: dict[str, Any]) -> None:
    h, cx, sw = sk["h"], sk["cx"], sk["sw"]
    colour = ident.colours["bag"]
    s = _bag_image_side(ident, pose)
    strap = max(0.8, 0.014 * h)
    bag_x = cx + s * (sk["hpw"] * 1.05)
    bag_y = sk["y_hip"] - 0.02 * h
    if pose.view == "side":
        p.line((cx, sk["y_sh"]), (cx + pose.facing * 0.02 * h, bag_y), strap, colour * 0.85)
        bag_x = cx + pose.facing * 0.05 * h
    else:
        p.line((cx - s * sw * 0.6, sk["y_sh"] + 0.005 * h), (bag_x, bag_y), strap, colour * 0.85)
    p.rect(bag_x - 0.05 * h, bag_y, bag_x + 0.05 * h, bag_y + 0.075 * h, colour)


def _draw_backpack(p: Painter, ident: Identity, pose: Pose, sk: dict[str, Any]) -> None:
    h, cx, sw, y0 = sk["h"], sk["cx"], sk["sw"], sk["y_sh"]
    colour = ident.colours["bag"]
    if pose.view == "front":
        for s in (-1, 1):
            p.line((cx + s * sw * 0.55, y0), (cx + s * sw * 0.62, y0 + 0.2 * h), max(0.8, 0.02 * h), colour)
    elif pose.view == "back":
        half = sw * 0.68
        p.rect(cx - half, y0 + 0.015 * h, cx + half, y0 + 0.25 * h, colour)
        p.rect(cx - half * 0.75, y0 + 0.15 * h, cx + half * 0.75, y0 + 0.24 * h, colour * 0.78)
        p.line((cx - half, y0 + 0.02 * h), (cx + half, y0 + 0.02 * h), max(0.8, 0.012 * h), colour * 0.7)
    else:
        back = cx - pose.facing * sw
        p.rect(min(back, back - pose.facing * 0.11 * h), y0 + 0.01 * h, max(back, back - pose.facing * 0.11 * h),
               y0 + 0.24 * h, colour)


# ----------------------------------------------------------------- head

def _head_ellipse_pts(c: tuple[float, float], ax: tuple[float, float], n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([c[0] + ax[0] * np.cos(t), c[1] + ax[1] * np.sin(t)], axis=1)


def _hair_cap(p: Painter, ident: Identity, sk: dict[str, Any], cut_y: float, back_cut: float | None = None) -> None:
    """Hair over the top of the head down to ``cut_y`` (and behind ``back_cut`` in profile)."""
    (hx, hy), hh, hw = sk["head_c"], sk["hh"], sk["hw"]
    pad = 0.06 * hh * (1.6 if ident["hair_style"] == "curly" else 1.0)
    pts = _head_ellipse_pts((hx, hy), (hw / 2 + pad, hh / 2 + pad))
    keep = pts[:, 1] <= cut_y
    if back_cut is not None:
        keep |= (pts[:, 0] - back_cut) * np.sign(hx - back_cut + 1e-9) < 0
        keep &= pts[:, 1] <= hy + 0.38 * hh
    sel = pts[keep]
    if len(sel) < 3:
        return
    # order by angle around the head centre for a simple polygon
    order = np.argsort(np.arctan2(sel[:, 1] - hy, sel[:, 0] - hx))
    sel = sel[order]
    inner = np.array([[hx, min(cut_y, hy)]])
    p.poly(np.concatenate([sel, inner]) if back_cut is not None else sel, ident.colours["hair"], head=True)
    if ident["hair_style"] == "curly":
        for q in sel[:: 4]:
            p.ellipse(q, (0.11 * hh, 0.11 * hh), ident.colours["hair"], head=True)
    if ident["hair_style"] == "bun":
        p.ellipse((hx, hy - hh / 2 - 0.05 * hh), (0.2 * hh, 0.16 * hh), ident.colours["hair"], head=True)


def _long_hair(p: Painter, ident: Identity, sk: dict[str, Any], view: str, facing: int) -> None:
    """Hair falling below the head (behind the face in front views, over the back in back views)."""
    length = ident["hair_length"]
    if length not in ("medium", "long") and ident["hair_style"] != "ponytail":
        return
    (hx, hy), hh, hw, h = sk["head_c"], sk["hh"], sk["hw"], sk["h"]
    hair = ident.colours["hair"]
    bottom = sk["chin"] + 0.01 * h if length == "medium" else sk["y_sh"] + 0.09 * h
    if ident["hair_style"] == "ponytail":
        if view == "front":
            return
        x = hx - facing * 0.5 * hw if view == "side" else hx
        p.line((x, hy), (x - (facing * 0.02 * h if view == "side" else 0), sk["y_sh"] + 0.05 * h), 0.28 * hw, hair)
        return
    half = hw / 2 + 0.06 * hh
    if view == "side":
        back = hx - facing * 0.1 * hw
        x0, x1 = sorted((back, hx - facing * half))
        p.rect(x0, hy, x1, bottom, hair)
    else:
        p.poly([(hx - half, hy), (hx + half, hy), (hx + half * 1.08, bottom), (hx - half * 1.08, bottom)], hair)


def _draw_hat(p: Painter, ident: Identity, sk: dict[str, Any], view: str, facing: int) -> None:
    if ident["hat"] == "none":
        return
    (hx, hy), hh, hw = sk["head_c"], sk["hh"], sk["hw"]
    colour = ident.colours["hat"]
    pad = 0.07 * hh
    cut = hy - (0.12 if ident["hat"] == "cap" else 0.05) * hh
    pts = _head_ellipse_pts((hx, hy), (hw / 2 + pad, hh / 2 + pad))
    sel = pts[pts[:, 1] <= cut]
    p.poly(sel[np.argsort(np.arctan2(sel[:, 1] - hy, sel[:, 0] - hx))], colour, head=True)
    if ident["hat"] == "beanie":
        p.rect(hx - hw / 2 - pad, cut - 0.09 * hh, hx + hw / 2 + pad, cut, colour * 0.8, head=True)
    elif view == "front":
        p.ellipse((hx, cut), (hw / 2 + 2 * pad, 0.06 * hh), colour * 0.85, head=True)
    elif view == "side":
        x0, x1 = sorted((hx, hx + facing * (hw / 2 + 0.35 * hw)))
        p.rect(x0, cut - 0.05 * hh, x1, cut + 0.03 * hh, colour * 0.85, head=True)


def _eye_positions(sk: dict[str, Any], view: str, facing: int) -> dict[str, tuple[float, float]]:
    """Centres of the person's right and left eye, the nose tip and the mouth centre."""
    (hx, hy), hh, hw = sk["head_c"], sk["hh"], sk["hw"]
    ey = hy + 0.04 * hh
    if view == "side":
        near, far = hx + facing * 0.14 * hw, hx + facing * 0.38 * hw
        right, left = (near, far) if facing > 0 else (far, near)
        nose = (hx + facing * 0.5 * hw, ey + 0.16 * hh)
        mouth = (hx + facing * 0.32 * hw, hy + 0.32 * hh)
    else:
        s = _side_sign(view, facing)
        right, left = hx - s * 0.21 * hw, hx + s * 0.21 * hw
        nose = (hx, ey + 0.17 * hh)
        mouth = (hx, hy + 0.32 * hh)
    return {"right_eye": (right, ey), "left_eye": (left, ey), "nose": nose, "mouth": mouth}


def _draw_face(p: Painter, ident: Identity, sk: dict[str, Any], view: str, facing: int) -> None:
    (hx, hy), hh, hw = sk["head_c"], sk["hh"], sk["hw"]
    skin, hair = ident.colours["skin"], ident.colours["hair"]
    pts = _eye_positions(sk, view, facing)
    dark = np.array([38, 30, 30], np.float32)
    eye_r = (max(0.35, 0.075 * hw), max(0.3, 0.05 * hh))
    is_side = view == "side"
    eyes = [pts["right_eye"], pts["left_eye"]]
    for e in eyes:
        scale = 0.75 if is_side and abs(e[0] - hx) > 0.3 * hw else 1.0
        p.ellipse(e, (eye_r[0] * scale, eye_r[1]), dark, head=True)
        p.line((e[0] - 0.09 * hw * scale, e[1] - 0.11 * hh), (e[0] + 0.09 * hw * scale, e[1] - 0.11 * hh),
               max(0.5, 0.035 * hh), hair * 0.9, head=True)  # eyebrow
    nose, mouth = pts["nose"], pts["mouth"]
    if is_side:
        tip = nose
        p.poly([(tip[0] - facing * 0.12 * hw, tip[1] - 0.14 * hh), (tip[0] + facing * 0.06 * hw, tip[1]),
                (tip[0] - facing * 0.1 * hw, tip[1] + 0.02 * hh)], skin * 0.93, head=True)
    else:
        p.line((nose[0], nose[1] - 0.12 * hh), nose, max(0.4, 0.05 * hw), skin * 0.8, head=True)
    mw = 0.12 * hw * (0.6 if is_side else 1.0)
    beard = ident["facial_hair"]
    if beard in ("beard", "stubble"):
        colour = hair if beard == "beard" else 0.7 * skin + 0.3 * hair
        cx_b = hx + (facing * 0.15 * hw if is_side else 0)
        p.ellipse((cx_b, hy + 0.24 * hh), (0.4 * hw * (0.8 if is_side else 1.0), 0.26 * hh), colour, start=0, end=180, head=True)
        p.rect(cx_b - 0.4 * hw * (0.8 if is_side else 1.0), hy + 0.2 * hh, cx_b + 0.4 * hw * (0.8 if is_side else 1.0),
               hy + 0.25 * hh, colour, head=True)
    lips = np.array([150, 70, 70], np.float32) * 0.6 + skin * 0.4
    p.line((mouth[0] - mw, mouth[1]), (mouth[0] + mw, mouth[1]), max(0.5, 0.04 * hh), lips, head=True)
    if beard in ("moustache", "beard"):
        p.line((mouth[0] - mw * 1.2, mouth[1] - 0.06 * hh), (mouth[0] + mw * 1.2, mouth[1] - 0.06 * hh),
               max(0.6, 0.06 * hh), hair, head=True)
    glasses = ident["glasses"]
    if glasses != "none":
        frame = ident.colours["glasses"]
        gw, gh = 0.13 * hw, 0.085 * hh
        for e in eyes:
            scale = 0.7 if is_side and abs(e[0] - hx) > 0.3 * hw else 1.0
            if glasses == "sunglasses":
                p.rect(e[0] - gw * scale, e[1] - gh, e[0] + gw * scale, e[1] + gh, (20, 20, 24), head=True)
            else:
                t = max(0.55, 0.03 * hh)
                x0, x1, y0, y1 = e[0] - gw * scale, e[0] + gw * scale, e[1] - gh, e[1] + gh
                for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
                    p.line(a, b, t, frame, head=True)
        bridge = (min(eyes[0][0], eyes[1][0]) + gw, max(eyes[0][0], eyes[1][0]) - gw)
        p.line((bridge[0], eyes[0][1]), (bridge[1], eyes[0][1]), max(0.5, 0.03 * hh),
               frame if glasses == "glasses" else (20, 20, 24), head=True)
        if is_side:
            p.line((hx - facing * 0.05 * hw, eyes[0][1]), (min(eyes, key=lambda e: abs(e[0] - hx))[0] - facing * gw, eyes[0][1]),
                   max(0.5, 0.03 * hh), frame if glasses == "glasses" else (20, 20, 24), head=True)


def _draw_head(p: Painter, ident: Identity, pose: Pose, sk: dict[str, Any]) -> None:
    (hx, hy), hh, hw = sk["head_c"], sk["hh"], sk["hw"]
    skin, hair = ident.colours["skin"], ident.colours["hair"]
    view, d = pose.view, pose.facing
    bald = ident["hair_length"] == "bald"
    p.rect(hx - 0.2 * hw, hy + 0.2 * hh, hx + 0.2 * hw, sk["y_sh"] + 0.01 * sk["h"], skin * 0.92)  # neck
    if view != "back":
        _long_hair(p, ident, sk, view, d)
    ear_xs = {"front": (-1, 1), "back": (-1, 1), "side": (-d * 0.05,)}[view]
    for ex in ear_xs:
        x = hx + ex * hw / 2 if view != "side" else hx + ex * hw
        p.ellipse((x, hy + 0.05 * hh), (0.1 * hw, 0.13 * hh), skin * 0.9, head=True)
    shape = ident["face_shape"]
    ax = (hw / 2 * (1.05 if shape == "round" else 1.0), hh / 2 * (0.97 if shape == "round" else 1.0))
    if view == "back":
        p.ellipse((hx, hy), ax, skin if bald else hair, head=True)
        if not bald:
            p.ellipse((hx, hy + 0.36 * hh), (0.32 * hw, 0.1 * hh), hair * 0.9 + skin * 0.1, head=True)
        for ex in ear_xs:  # ears in front of the back of the head
            p.ellipse((hx + ex * hw / 2, hy + 0.05 * hh), (0.08 * hw, 0.12 * hh), skin * 0.9, head=True)
        if ident["hair_style"] == "bun":
            p.ellipse((hx, hy - 0.3 * hh), (0.2 * hh, 0.17 * hh), hair, head=True)
        return  # long hair and hat follow in draw_person, over the back
    face_c = (hx + (d * 0.04 * hw if view == "side" else 0.0), hy)
    p.ellipse(face_c, ax, skin, head=True)
    if shape == "square":
        p.rect(face_c[0] - ax[0] * 0.92, hy, face_c[0] + ax[0] * 0.92, hy + ax[1] * 0.8, skin, head=True)
    if view == "side" and not bald:
        _hair_cap(p, ident, sk, hy - 0.22 * hh, back_cut=hx - d * 0.08 * hw)
        p.ellipse((hx - d * 0.05 * hw, hy + 0.05 * hh), (0.09 * hw, 0.12 * hh), skin * 0.9, head=True)  # near ear
    elif not bald:
        cut = hy - (0.02 if ident["hair_style"] == "fringe" else 0.2) * hh
        _hair_cap(p, ident, sk, cut)
    else:
        for s in (-1, 1):
            p.ellipse((hx + s * 0.45 * hw, hy - 0.08 * hh), (0.08 * hw, 0.12 * hh), hair, head=True)
    _draw_face(p, ident, sk, view, d)
    _draw_hat(p, ident, sk, view, d)


def draw_person(p: Painter, ident: Identity, pose: Pose) -> dict[str, Any]:
    """Draw ``ident`` in ``pose``; returns the skeleton used."""
    sk = skeleton(ident, pose)
    view, bag = pose.view, ident["bag"]
    bag_side = "left" if ident["bag_side"] == "left" else "right"
    if view == "side":
        near = "right" if pose.facing > 0 else "left"
        far = "left" if near == "right" else "right"
        _draw_arm(p, ident, sk, far)
        if bag == "handbag" and bag_side == far:
            _draw_handbag(p, ident, pose, sk, far)
        _draw_lower(p, ident, pose, sk, (far, near))
        if bag == "backpack":
            _draw_backpack(p, ident, pose, sk)
        _draw_torso(p, ident, pose, sk)
        if bag == "shoulder_bag":
            _draw_shoulder_bag(p, ident, pose, sk)
        _draw_arm(p, ident, sk, near)
        if bag == "handbag" and bag_side == near:
            _draw_handbag(p, ident, pose, sk, near)
    else:
        _draw_lower(p, ident, pose, sk, ("left", "right"))
        _draw_torso(p, ident, pose, sk)
        if bag == "backpack":
            _draw_backpack(p, ident, pose, sk)
        if bag == "shoulder_bag":
            _draw_shoulder_bag(p, ident, pose, sk)
        for side in ("left", "right"):
            _draw_arm(p, ident, sk, side)
        if bag == "handbag":
            _draw_handbag(p, ident, pose, sk, bag_side)
    _draw_head(p, ident, pose, sk)
    if view == "back":
        _long_hair(p, ident, sk, view, pose.facing)
        _draw_hat(p, ident, sk, view, pose.facing)
    return sk


# --------------------------------------------------------------------------- annotations

COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")


def _keypoints(sk: dict[str, Any], pose: Pose, height: int, width: int) -> list[list[float]]:
    """17 COCO keypoints [x, y, v]; v=1 for occluded, [0, 0, 0] outside the image."""
    view, d = pose.view, pose.facing
    (hx, hy), hw, ear_y = sk["head_c"], sk["hw"], sk["head_c"][1] + 0.05 * sk["hh"]
    face = _eye_positions(sk, view, d)
    s = _side_sign(view, d)
    if view == "side":
        near = "right" if d > 0 else "left"
        far_side = "left" if near == "right" else "right"
        ears = {near: (hx - d * 0.05 * hw, ear_y), far_side: (hx + d * 0.05 * hw, ear_y)}
    else:
        ears = {"left": (hx + s * hw / 2, ear_y), "right": (hx - s * hw / 2, ear_y)}
    pts: dict[str, tuple[tuple[float, float], int]] = {}
    face_vis = 1 if view == "back" else 2
    pts["nose"] = (face["nose"], face_vis)
    for side in ("left", "right"):
        pts[f"{side}_eye"] = (face[f"{side}_eye"], face_vis)
        far = view == "side" and side != ("right" if d > 0 else "left")
        pts[f"{side}_ear"] = (ears[side], 1 if far else 2)
        for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
            hidden = far and joint in ("shoulder", "hip", "elbow")
            pts[f"{side}_{joint}"] = (sk[side][joint], 1 if hidden else 2)
    out = []
    for name in COCO_KEYPOINTS:
        (x, y), v = pts[name]
        if 0 <= x < width and 0 <= y < height:
            out.append([round(float(x), 1), round(float(y), 1), v])
        else:
            out.append([0.0, 0.0, 0])
    return out


def _landmarks(sk: dict[str, Any], pose: Pose, height: int, width: int) -> list[list[float]] | None:
    """dlib 5-point order: right eye outer, right eye inner, left eye outer, left eye inner, nose."""
    if pose.view == "back":
        return None
    face = _eye_positions(sk, pose.view, pose.facing)
    hw = sk["hw"]
    nose_x = face["nose"][0]
    pts = []
    for eye in ("right_eye", "left_eye"):
        ex, ey = face[eye]
        toward_nose = 1.0 if nose_x >= ex else -1.0
        half = 0.08 * hw * (0.6 if pose.view == "side" else 1.0)
        pts += [[ex - toward_nose * half, ey], [ex + toward_nose * half, ey]]  # outer, inner
    pts.append(list(face["nose"]))
    if not all(0 <= x < width and 0 <= y < height for x, y in pts):
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in pts]


def _clip_box(box: tuple[float, float, float, float], height: int, width: int) -> list[int] | None:
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    return [int(x0), int(y0), int(x1), int(y1)] if x1 > x0 and y1 > y0 else None


def _face_box(sk: dict[str, Any], pose: Pose, height: int, width: int) -> list[int] | None:
    if pose.view == "back":
        return None
    (hx, hy), hh, hw = sk["head_c"], sk["hh"], sk["hw"]
    top = hy + 0.04 * hh - 0.22 * hh
    if pose.view == "side":
        x0, x1 = sorted((hx - pose.facing * 0.12 * hw, hx + pose.facing * 0.56 * hw))
    else:
        x0, x1 = hx - 0.47 * hw, hx + 0.47 * hw
    return _clip_box((x0, top, x1, hy + hh / 2), height, width)


def _mask_box(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


# --------------------------------------------------------------------------- images

def render_background(cam: Camera, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float32 RGB background: a window of the camera's scene plus transient clutter."""
    sh, sw = cam.scene.shape[:2]
    y0 = int(np.clip(height - cam.horizon * height + rng.normal(0, 4), 0, sh - height))
    x0 = int(rng.integers(0, sw - width + 1))
    img = cam.scene[y0:y0 + height, x0:x0 + width].copy()
    horizon = int(np.clip(height - y0, 0, height - 1))
    for _ in range(int(rng.poisson(cam.clutter))):
        _clutter(img, rng, horizon)
    img *= rng.uniform(0.92, 1.08)
    return img


def _clutter(img: np.ndarray, rng: np.random.Generator, horizon: int) -> None:
    """A transient object: a far pedestrian, a passing bag or cart, a sign."""
    height, width = img.shape[:2]
    colour = _muted(rng, 30, 230).tolist()
    kind = int(rng.integers(3))
    if kind == 0:  # far pedestrian
        h = int(rng.integers(18, 45))
        x, feet = int(rng.integers(0, width)), int(np.clip(horizon + rng.integers(0, 20), h, height))
        cv2.rectangle(img, (x - h // 8, feet - int(0.8 * h)), (x + h // 8, feet - h // 2), colour, -1)
        cv2.rectangle(img, (x - h // 10, feet - h // 2), (x + h // 10, feet), _muted(rng, 20, 120).tolist(), -1)
        skin = _material(rng, tuple(v[0] for v in SKIN_TONES.values()))
        cv2.circle(img, (x, feet - int(0.88 * h)), max(2, h // 12), skin.tolist(), -1)
    elif kind == 1:  # box / cart on the floor
        w, h = int(rng.integers(6, 24)), int(rng.integers(6, 30))
        x, y = int(rng.integers(-w // 2, width)), int(rng.integers(horizon, height + h // 2))
        cv2.rectangle(img, (x, y - h), (x + w, y), colour, -1)
    else:  # sign / poster
        x, y = int(rng.integers(0, width)), int(rng.integers(0, max(horizon, 1)))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(6, 20)), y + int(rng.integers(6, 20))), colour, -1)


def _apply_camera(img: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Illumination (gain, colour cast, gamma), optics blur and sensor noise; returns uint8."""
    out = cv2.pow(np.clip(img * np.float32(1 / 255.0), 0, 1), cam.gamma)
    out *= (cam.gain * np.float32(cam.brightness * 255.0))[None, None, :]
    sigma = cam.blur_sigma * rng.uniform(0.8, 1.25)
    out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(cam.noise_std)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _sample_pose(ident: Identity, cam: Camera, rng: np.random.Generator, height: int, width: int, mode: str) -> Pose:
    view = VIEWS[int(rng.choice(3, p=cam.view_weights))]
    facing = 1 if rng.random() < 0.5 else -1
    phase = float(rng.uniform(0, 2 * np.pi))
    fill = float(np.clip(cam.fill + rng.normal(0, 0.025), 0.70, 0.95))
    cx = width / 2 + float(np.clip(rng.normal(0, 2.5), -6, 6))
    if mode == "small":
        fill = float(rng.uniform(0.35, 0.55))
        cx = float(rng.uniform(0.3, 0.7) * width)
    elif mode == "shifted":
        cx = width / 2 + float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.45) * width)
    elif mode == "zoomed":
        fill = float(rng.uniform(1.3, 1.7))
    elif mode == "junk":
        fill = float(rng.uniform(1.6, 2.4))
    h = fill * height
    if mode == "zoomed":
        feet_y = float(rng.uniform(0.01, 0.08)) * height + h
    elif mode == "junk":
        feet_y = height + float(rng.uniform(0.0, 0.2)) * h
    else:
        feet_y = height - (height - min(h, height)) * float(rng.uniform(0.25, 0.75))
    return Pose(view=view, facing=facing, phase=phase, height=h, cx=cx, feet_y=feet_y)


def render_image(ident: Identity, cam: Camera, rng: np.random.Generator, height: int, width: int,
                 mode: str = "normal") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One image: (uint8 RGB, uint8 body mask 0/255, annotations without body_mask/attributes).

    ``mode``: ``normal``; distractor framings ``small``, ``shifted``, ``zoomed``; ``junk``.
    """
    background = render_background(cam, rng, height, width)
    pose = _sample_pose(ident, cam, rng, height, width, mode)
    painter = Painter(height, width)
    sk = draw_person(painter, ident, pose)
    size = (width, height)
    # Layers are exact 0/255 at SUPERSAMPLE x and rgb is 0 wherever alpha is 0, so the
    # area-averaged rgb is already premultiplied by the coverage.
    alpha = cv2.resize(painter.alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    premult = cv2.resize(painter.rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    head = cv2.resize(painter.head, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # soft volume shading: edges of the silhouette and the lower body a little darker
    rounding = cv2.GaussianBlur(alpha, (0, 0), 2.0)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    shade = (0.82 + 0.18 * np.clip(rounding * 1.3, 0, 1)) * (1 + cam.light_top * (0.5 - yy))
    img = background * (1 - alpha[..., None]) + premult * shade[..., None]
    out = _apply_camera(img, cam, rng)
    mask = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    annotations = {
        "head_box": _mask_box(head >= 0.25),
        "face_box": _face_box(sk, pose, height, width),
        "keypoints": _keypoints(sk, pose, height, width),
        "landmarks": _landmarks(sk, pose, height, width),
        "view": pose.view,
    }
    if annotations["head_box"] is None:
        annotations["face_box"] = annotations["landmarks"] = None
    return out, mask, annotations


# --------------------------------------------------------------------------- dataset plan

@dataclass(frozen=True)
class ImageSpec:
    """One file to write."""

    split: str
    pid: int  # as written in the name: real pid, 0 distractor, -1 junk
    camera: int  # 0-based
    index: int  # 1-based within (split, pid, camera): the NN of the name
    sequence: int
    frame: int
    mode: str
    key: tuple[int, ...]  # per-image random stream
    identity_key: int

    @property
    def filename(self) -> str:
        pid = "-1" if self.pid < 0 else f"{self.pid:04d}"
        return f"{pid}_c{self.camera + 1}s{self.sequence}_{self.frame:06d}_{self.index:02d}.jpg"

    @property
    def relpath(self) -> str:
        return f"{SPLIT_FOLDERS[self.split]}/{self.filename}"


def _spec(split: str, pid: int, cam: int, index: int, mode: str, key: tuple[int, ...], identity_key: int) -> ImageSpec:
    rng = _rng(*key, 99)
    return ImageSpec(split, pid, cam, index, int(rng.integers(1, 7)), int(rng.integers(0, 1_000_000)), mode, key, identity_key)


def plan_dataset(config: SyntheticConfig) -> list[ImageSpec]:
    """Every image of the dataset, with its name and random stream."""
    seed = config.seed
    rng = _rng(seed, _STREAM_PLAN)
    total = config.num_train_ids + config.num_test_ids
    pids = rng.choice(np.arange(1, MAX_PID + 1), size=total, replace=False)
    order = rng.permutation(total)
    train_pids = sorted(int(p) for p in pids[order[: config.num_train_ids]])
    test_pids = sorted(int(p) for p in pids[order[config.num_train_ids:]])
    split_code = {"train": 0, "query": 1, "gallery": 2}
    specs: list[ImageSpec] = []

    def add(split: str, pid: int, cam: int, count: int) -> None:
        for i in range(1, count + 1):
            key = (seed, _STREAM_IMAGE, split_code[split], pid, cam, i)
            specs.append(_spec(split, pid, cam, i, "normal", key, pid))

    def draw(prng: np.random.Generator, bounds: tuple[int, int], cap: int | None = None) -> int:
        low, high = bounds
        high = min(high, cap) if cap is not None else high
        return int(prng.integers(min(low, high), high + 1))

    for pid in train_pids:
        prng = _rng(seed, _STREAM_PLAN, pid)
        cams = sorted(prng.choice(config.num_cameras, draw(prng, config.train_cameras_per_id, config.num_cameras), replace=False))
        for cam in cams:
            add("train", pid, int(cam), draw(prng, config.train_images_per_camera))
    for pid in test_pids:
        prng = _rng(seed, _STREAM_PLAN, pid)
        cams = sorted(prng.choice(config.num_cameras, draw(prng, config.test_cameras_per_id, config.num_cameras), replace=False))
        queried = prng.choice(cams, draw(prng, config.query_cameras_per_id, len(cams)), replace=False)
        for cam in sorted(int(c) for c in queried):
            add("query", pid, cam, 1)
        for cam in cams:
            add("gallery", pid, int(cam), draw(prng, config.gallery_images_per_camera))
    counters: dict[tuple[int, int], int] = {}
    for k in range(config.num_distractors + config.num_junk):
        junk = k >= config.num_distractors
        krng = _rng(seed, _STREAM_JUNK if junk else _STREAM_DISTRACTOR, k)
        cam = int(krng.integers(config.num_cameras))
        pid = -1 if junk else 0
        counters[(pid, cam)] = counters.get((pid, cam), 0) + 1
        mode = "junk" if junk else ("small", "shifted", "zoomed")[int(krng.integers(3))]
        key = (seed, _STREAM_JUNK if junk else _STREAM_DISTRACTOR, k, 1)
        specs.append(_spec("gallery", pid, cam, counters[(pid, cam)], mode, key, _DISTRACTOR_IDENTITY_OFFSET + k))
    return specs


# --------------------------------------------------------------------------- writing

def _encode(ext: str, img: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"could not encode {ext} image")
    return buf.tobytes()


def jpeg_params(config: SyntheticConfig) -> list[int]:
    """Fixed JPEG encoder settings (byte-identical output for a given config)."""
    return [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]


def render_spec(
    spec: ImageSpec, config: SyntheticConfig, cameras: list[Camera]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(RGB image, body mask, sidecar entry without ``body_mask``) of one planned image.

    A pure function of ``(config, spec)``: independent of what was rendered before.
    """
    ident = sample_identity(config.seed, spec.identity_key)
    img, mask, ann = render_image(ident, cameras[spec.camera], _rng(*spec.key), config.height, config.width, spec.mode)
    return img, mask, {**ann, "attributes": dict(ident.attributes)}


def _write_dataset(root: Path, config: SyntheticConfig) -> None:
    """Write every file of the dataset into the (existing, empty) folder ``root``."""
    specs = plan_dataset(config)
    cameras = [sample_camera(config.seed, c, config) for c in range(config.num_cameras)]
    for folder in SPLIT_FOLDERS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "masks" / folder).mkdir(parents=True, exist_ok=True)
    jpeg = jpeg_params(config)
    entries: dict[str, Any] = {}
    for spec in tqdm(specs, desc="synthetic market1501", unit="img", disable=None, leave=False):
        img, mask, entry = render_spec(spec, config, cameras)
        (root / spec.relpath).write_bytes(_encode(".jpg", img[:, :, ::-1], jpeg))
        if spec.pid < 0:
            continue  # junk: no annotations (the loader drops it)
        mask_rel = f"masks/{SPLIT_FOLDERS[spec.split]}/{Path(spec.filename).stem}.png"
        (root / mask_rel).write_bytes(_encode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 3]))
        entries[spec.relpath] = {**entry, "body_mask": mask_rel}
    sidecar = {
        "format": ANNOTATION_FORMAT,
        "image_size": [config.height, config.width],
        "keypoint_names": list(COCO_KEYPOINTS),
        "images": entries,
    }
    (root / SIDECAR_NAME).write_text(json.dumps(sidecar, sort_keys=True, separators=(",", ":")))
    marker = {"generator_version": GENERATOR_VERSION, "hash": config_hash(config), "config": config.to_dict()}
    (root / MARKER_NAME).write_text(json.dumps(marker, sort_keys=True, indent=1))


def generated_fingerprint(root: str | Path | None, marker_name: str | None = None) -> dict[str, str]:
    """``{"generated": hash}`` for a generated dataset's folder (its generator version and
    settings), ``{}`` for any other folder: cache keys built from file names alone would not
    notice that a new generator version drew different images under the same names.

    ``marker_name``: the generator's marker file; default: any ``evalsuite_synthetic*.json``
    in ``root`` (the pedestrian, face, album-photo and COCO generators all write one)."""
    if not root or not Path(root).is_dir():
        return {}
    markers = [Path(root) / marker_name] if marker_name else sorted(Path(root).glob("evalsuite_synthetic*.json"))
    found = {}
    for marker in markers:
        if not marker.is_file():
            continue
        try:
            value = json.loads(marker.read_text()).get("hash")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if value:
            found[marker.name] = str(value)
    if not found:
        return {}
    return {"generated": next(iter(found.values())) if len(found) == 1 else json.dumps(found, sort_keys=True)}


def existing_dataset(root: Path, wanted_hash: str, kind: str, marker_name: str = MARKER_NAME) -> bool:
    """True when ``root`` already holds the generated dataset with ``wanted_hash``.

    UserError when it holds another generator's output, other settings, or unrelated files.
    """
    marker = root / marker_name
    if marker.is_file():
        try:
            found = json.loads(marker.read_text()).get("hash")
        except (json.JSONDecodeError, AttributeError):
            found = None
        if found != wanted_hash:
            raise UserError(
                f"{root} holds a {kind} dataset made with other settings (hash {found}, wanted "
                f"{wanted_hash}); delete it or choose another dataset.root"
            )
        return True
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"{root} exists and is not an evalsuite {kind} dataset; choose another dataset.root")
    return False


def generate_atomically(root: Path, wanted_hash: str, kind: str, write: Callable[[Path], None], marker_name: str = MARKER_NAME) -> Path:
    """Run ``write(folder)`` unless ``root`` already holds the dataset; atomic.

    Files go to a temporary sibling folder that is renamed into place, so a crash or a
    concurrent run never leaves a half-written dataset. ``write`` must write
    ``marker_name`` (with ``"hash": wanted_hash``) last. Returns ``root``.
    """
    if existing_dataset(root, wanted_hash, kind, marker_name):
        log.debug("%s dataset %s already exists", kind, root)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write(tmp)
        tmp.chmod(0o755)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / marker_name).is_file():  # not a concurrent writer that won the race
                raise
            log.debug("another process generated %s first", root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate_synthetic_market(root: str | Path | None, config: SyntheticConfig, cache_dir: str | Path | None = None) -> Path:
    """Write the dataset for ``config`` at ``root`` (default: under ``cache_dir``) unless it is there.

    Generation is atomic: files go to a temporary sibling folder that is renamed into place,
    so a crash or a concurrent run never leaves a half-written dataset. Returns the folder.
    """
    root = Path(root).expanduser().absolute() if root is not None else default_root(config, cache_dir)
    if not existing_dataset(root, config_hash(config), "synthetic"):
        log.info("generating synthetic Market-1501-layout dataset (seed %d) into %s", config.seed, root)
    return generate_atomically(root, config_hash(config), "synthetic", lambda folder: _write_dataset(folder, config))
