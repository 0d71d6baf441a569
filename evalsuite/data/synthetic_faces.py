"""Seeded synthetic aligned face crops written in the CelebA layout (read back by the CelebA reader).

Identity lives where it lives in real faces: in the geometry (face shape: width, length, jaw
squareness, chin taper, cheekbones, chubbiness; eye spacing / size / opening / slant / lid
crease / iris size; brow height / arch / peak / tail / thickness / taper / length; nose
length / width / projection / nostrils; mouth width, lip thickness, cupid's bow; ears) and in
fine per-person detail that fine blocks or blur destroy: a seeded skin texture
(:mod:`evalsuite.data.face_texture`), moles and freckles at fixed places, chin cleft, dimples.
The coarse cues come from small shared sets, so that many people share each of them, as in
real faces: skin tone, hair colour and eye colour are palette colours exactly as listed (shared
with the pedestrian generator; no per-person shade, so no colour fingerprint), hair is one of
a few named hairstyles (:data:`HAIRSTYLES`), and glasses, hats, jewellery, lipstick and frame
colours are drawn per photo (a person only has a propensity: glasses wearers wear them in
most photos, pierced ears carry earrings in most). Age and gender shift the geometry and the
shared cues (grey hair, wrinkles, facial hair).

Every image draws its own look (hairstyle changed now and then, shaving, make-up) and shot:
pose (yaw / pitch through a small 3-D landmark model, roll, scale, shift), expression (smile,
open mouth, squint, raised brows, gaze), background, clothing, accessories, lighting
(direction, strength, gain, colour temperature and tint), focus blur, sensor noise and JPEG
compression, so recognition is learnable but not trivial. Each image is a pure function of
``(seed, identity, index)``.

Landmarks come from the same model that draws the face, so they are exact: 68 points in
iBUG / dlib order (sidecar), the 5 CelebA points (``list_landmarks_align_celeba.txt``, rounded
to integers as in CelebA, exact in the sidecar) and UP-GAN's 7. Written files::

    <root>/img_align_celeba/000001.jpg ...       size x size aligned crops (eyes level, centred)
    <root>/identity_CelebA.txt                   file -> identity number
    <root>/list_attr_celeba.txt                  40 CelebA binary attributes (-1 / 1)
    <root>/list_landmarks_align_celeba.txt       5 points (CelebA order)
    <root>/list_eval_partition.txt               0 / 1 / 2 by identity (80 / 10 / 10 %, like CelebA)
    <root>/evalsuite_faces.json                  68 / 7 / 5 landmarks, face box, age, gender,
                                                 skin tone, pose, expression (evalsuite-faces/1)
    <root>/evalsuite_synthetic.json              generator config and hash (written last)
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from evalsuite.progress import tqdm

from evalsuite.data.face_texture import apply_skin_texture, face_to_pixel, skin_texture
from evalsuite.data.faces import (
    CELEBA_ATTR,
    CELEBA_ATTRIBUTES,
    CELEBA_IDENTITY,
    CELEBA_IMAGES,
    CELEBA_LANDMARK_NAMES,
    CELEBA_LANDMARKS,
    CELEBA_PARTITION,
    FACE_SIDECAR,
    FACE_SIDECAR_FORMAT,
    FaceDataset,
    load_celeba,
)
from evalsuite.data.synthetic import (
    HAIR_COLOURS,
    MARKER_NAME,
    SKIN_TONES,
    SUPERSAMPLE,
    Painter,
    _choice,
    _encode,
    _rng,
    config_hash,
    default_root,
    existing_dataset,
    generate_atomically,
)
from evalsuite.errors import UserError, did_you_mean
from evalsuite.registry import DATASETS

log = logging.getLogger(__name__)

#: bump when the output changes, so cached face datasets are regenerated
FACE_GENERATOR_VERSION = 2
_STREAM_PLAN, _STREAM_IDENTITY, _STREAM_IMAGE = 20, 21, 22
CELEBA_NUM_IDENTITIES = 10177

EYE_COLOURS = {"dark_brown": ((62, 40, 28), 0.45), "brown": ((110, 70, 40), 0.2), "hazel": ((120, 100, 55), 0.1),
               "green": ((70, 110, 70), 0.08), "blue": ((70, 110, 165), 0.12), "grey": ((120, 130, 140), 0.05)}
LIPSTICKS = ((180, 30, 50), (200, 60, 90), (150, 40, 60), (210, 90, 110), (120, 30, 40))
CLOTHES = ((30, 30, 34), (70, 70, 76), (200, 200, 196), (32, 42, 90), (52, 92, 172), (172, 36, 42), (42, 112, 62),
           (202, 182, 142), (112, 76, 46), (102, 62, 132))
METALS = ((212, 175, 55), (192, 192, 200))
#: centre of the between-the-eyes point in the crop (fraction of size) and the face unit
EYE_LINE_Y, FACE_UNIT = 0.44, 0.26


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class FaceSyntheticConfig:
    """Size of the synthetic face set. Each identity gets ``images_per_identity`` images (an
    inclusive ``[low, high]`` range drawn per identity), each ``size`` x ``size`` pixels."""

    seed: int = 0
    num_identities: int = 100
    images_per_identity: tuple[int, int] = (20, 20)
    size: int = 112
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                if isinstance(f.default, tuple):
                    value = tuple(int(v) for v in value)
                    if len(value) != 2:
                        raise ValueError
                else:
                    if isinstance(value, bool) or float(value) != int(value):
                        raise ValueError
                    value = int(value)
            except (TypeError, ValueError):
                expected = "a pair of integers [low, high]" if isinstance(f.default, tuple) else "an integer"
                raise UserError(f"synthetic-faces setting {f.name}={value!r}: expected {expected}") from None
            object.__setattr__(self, f.name, value)
        low, high = self.images_per_identity
        if self.num_identities < 2:
            raise UserError(f"bad synthetic-faces settings: num_identities={self.num_identities} must be >= 2")
        if not 1 <= low <= high:
            raise UserError(f"bad synthetic-faces settings: images_per_identity={[low, high]} must be 1 <= low <= high")
        if not 32 <= self.size <= 512:
            raise UserError(f"bad synthetic-faces settings: size={self.size} must be 32..512 pixels")
        if not 1 <= self.jpeg_quality <= 100:
            raise UserError(f"bad synthetic-faces settings: jpeg_quality={self.jpeg_quality} must be 1..100")

    def to_dict(self) -> dict[str, Any]:
        """The settings plus the face generator version (part of the hash that names the folder)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"face_generator_version": FACE_GENERATOR_VERSION, **values}


def default_faces_root(config: FaceSyntheticConfig, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/datasets/synthetic-faces-<hash>`` (default cache: :func:`evalsuite.config.cache_dir`)."""
    return default_root(config, cache_dir).with_name(f"synthetic-faces-{config_hash(config)}")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- identities

#: hairstyles shared by many people: name -> (length, texture, bangs, volume, hairline y in face units)
HAIRSTYLES: dict[str, tuple[str, str, bool, float, float]] = {
    "bald": ("bald", "straight", False, 0.0, -0.78),
    "buzz": ("short", "straight", False, 0.03, -0.76),
    "short_straight": ("short", "straight", False, 0.09, -0.78),
    "short_wavy": ("short", "wavy", False, 0.11, -0.78),
    "short_curly": ("short", "curly", False, 0.14, -0.8),
    "short_fringe": ("short", "straight", True, 0.09, -0.78),
    "bob": ("medium", "straight", False, 0.1, -0.8),
    "bob_fringe": ("medium", "straight", True, 0.1, -0.8),
    "medium_wavy": ("medium", "wavy", False, 0.14, -0.8),
    "medium_curly": ("medium", "curly", False, 0.18, -0.8),
    "long_straight": ("long", "straight", False, 0.08, -0.8),
    "long_wavy": ("long", "wavy", False, 0.13, -0.8),
    "long_curly": ("long", "curly", False, 0.18, -0.8),
    "long_fringe": ("long", "straight", True, 0.09, -0.8),
}
#: how often each hairstyle is worn, by gender (bald is added for men by age)
MEN_HAIRSTYLES = {"buzz": 0.16, "short_straight": 0.32, "short_wavy": 0.13, "short_curly": 0.07, "short_fringe": 0.08,
                  "bob": 0.08, "medium_wavy": 0.07, "long_straight": 0.05, "long_wavy": 0.04}
WOMEN_HAIRSTYLES = {"short_straight": 0.04, "short_wavy": 0.03, "short_fringe": 0.04, "bob": 0.1, "bob_fringe": 0.06,
                    "medium_wavy": 0.11, "medium_curly": 0.05, "long_straight": 0.27, "long_wavy": 0.17, "long_curly": 0.06,
                    "long_fringe": 0.07}
#: per-photo rates of things people put on (a person's own propensity only where noted)
HAT_RATE, SUNGLASSES_RATE, WEARER_GLASSES_RATE, OTHER_GLASSES_RATE = 0.06, 0.04, 0.7, 0.03
FRAMES = ((20, 20, 22), (90, 60, 40), (160, 40, 40), (170, 170, 176))
EYESHADOWS = ((120, 80, 110), (80, 90, 120), (120, 90, 70))
#: skin texture contrast (multiplicative, per unit of the unit-variance field)
SKIN_TEXTURE_STRENGTH = 0.035


@dataclass(frozen=True, eq=False)
class FaceIdentity:
    """What makes one synthetic person: geometry (face units), style, colours, marks and skin texture.

    Colours and style come from small shared sets (many people share each); what singles a
    person out is the geometry, the marks and the skin texture."""

    number: int
    male: bool
    age: int
    geometry: dict[str, float]
    style: dict[str, Any]
    colours: dict[str, np.ndarray]
    moles: np.ndarray  # (n, 4): x, y, z, radius in face units
    freckles: np.ndarray  # (n, 3): x, y, z
    texture: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))  # see face_texture.skin_texture


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    return _choice(rng, table)


def _palette(rng: np.random.Generator, palette: dict[str, tuple[tuple[int, int, int], float]]) -> tuple[str, np.ndarray]:
    """A palette colour exactly as listed: no per-identity shade, so it is no fingerprint."""
    name = _choice(rng, palette)
    return name, np.array(palette[name][0], np.float32)


def _hairstyle_table(male: bool, old: float) -> dict[str, float]:
    return {"bald": 0.04 + 0.25 * old, **MEN_HAIRSTYLES} if male else dict(WOMEN_HAIRSTYLES)


def _apply_hairstyle(style: dict[str, Any], geometry: dict[str, float], name: str, male: bool) -> None:
    length, texture, bangs, volume, hairline = HAIRSTYLES[name]
    style.update(hairstyle=name, hair_length=length, hair_texture=texture, bangs=bangs)
    style["receding"] = style["receding_hairline"] and length in ("short", "medium")
    style["sideburns"] = style["sideburns_grown"] and length != "bald"
    geometry.update(hair_volume=volume, hairline=hairline)


def sample_face_identity(seed: int, number: int) -> FaceIdentity:
    """The appearance of identity ``number`` under ``seed``."""
    rng = _rng(seed, _STREAM_IDENTITY, number)
    male = bool(rng.random() < 0.45)
    age = int(np.clip(18 + rng.gamma(2.0, 9.0), 18, 85))
    old = np.clip((age - 35) / 40, 0, 1)
    g = {
        "face_w": rng.uniform(0.9, 1.08) + (0.04 if male else 0.0),
        "chin_y": rng.uniform(1.38, 1.68) + (0.05 if male else 0.0),
        "square": rng.uniform(2.0, 2.6) + (0.5 if male else 0.0) * rng.random(),
        "taper": rng.uniform(0.12, 0.42),
        "ear_y": rng.uniform(0.0, 0.12),
        "eye_dx": rng.uniform(0.37, 0.47),
        "eye_w": rng.uniform(0.13, 0.18),
        "eye_h": rng.uniform(0.045, 0.085),
        "eye_tilt": rng.uniform(-0.035, 0.05),
        "crease": 0.0 if rng.random() < 0.25 else rng.uniform(0.02, 0.055),  # 0: no upper-lid crease (monolid)
        "brow_y": rng.uniform(-0.36, -0.22),
        "brow_arch": rng.uniform(0.0, 0.09),
        "brow_peak": rng.uniform(0.55, 1.3),  # where along the brow the arch peaks (exponent)
        "brow_tail": rng.uniform(-0.02, 0.05),  # how far the outer end drops
        "brow_thick": rng.uniform(0.03, 0.075) + (0.015 if male else 0.0),
        "brow_taper": rng.uniform(0.3, 0.85),  # tail thickness / head thickness
        "brow_len": rng.uniform(0.85, 1.2),
        "nose_len": rng.uniform(0.55, 0.78),
        "nose_w": rng.uniform(0.14, 0.25) + (0.02 if male else 0.0),
        "nose_proj": rng.uniform(0.6, 1.0),
        "nostril": rng.uniform(0.7, 1.3),
        "mouth_y": rng.uniform(0.98, 1.14),
        "mouth_w": rng.uniform(0.27, 0.4),
        "lip_up": rng.uniform(0.035, 0.09) - (0.01 if male else 0.0),
        "lip_lo": rng.uniform(0.045, 0.11),
        "bow": rng.uniform(0.05, 0.35),  # depth of the cupid's bow (share of the upper lip)
        "ear_size": rng.uniform(0.85, 1.2),
        "cheek": rng.uniform(0.0, 1.0),
        "chubby": float(max(0.0, rng.normal(0.0, 0.5))),
        "iris": rng.uniform(0.8, 1.05),
    }
    g["chubby"] = float(min(g["chubby"], 1.2))
    g["face_w"] += 0.07 * g["chubby"]
    style: dict[str, Any] = {}
    skin_name, skin = _palette(rng, SKIN_TONES)
    style["skin_tone"] = skin_name
    hair_name, hair = _palette(rng, HAIR_COLOURS)
    if rng.random() < old * 0.8:
        hair_name = "grey" if rng.random() < 0.6 else "white"
        hair = np.array(HAIR_COLOURS[hair_name][0], np.float32)
    style["hair_colour"] = hair_name
    style["receding_hairline"] = male and bool(rng.random() < 0.1 + 0.5 * old)
    style["sideburns_grown"] = male and bool(rng.random() < 0.2)
    _apply_hairstyle(style, g, _pick(rng, _hairstyle_table(male, old)), male)
    style["facial_hair"] = _pick(rng, {"none": 0.5, "stubble": 0.16, "moustache": 0.08, "goatee": 0.1, "beard": 0.16}) if male else "none"
    style["glasses"] = "eyeglasses" if rng.random() < 0.2 else "none"  # wears glasses in most photos
    style["pierced"] = bool(rng.random() < (0.06 if male else 0.65))
    style["makeup"] = (not male) and bool(rng.random() < 0.45)
    style["lipstick"] = (not male) and bool(rng.random() < (0.75 if style["makeup"] else 0.2))
    style["rosy"] = bool(rng.random() < 0.15)
    style["bags"] = bool(rng.random() < 0.1 + 0.5 * old)
    style["double_chin"] = bool(g["chubby"] > 0.55 and rng.random() < 0.7) or bool(rng.random() < 0.3 * old)
    style["chin_cleft"] = bool(rng.random() < 0.08)
    style["dimples"] = bool(rng.random() < 0.12)
    style["eye_colour"], eye = _palette(rng, EYE_COLOURS)
    colours = {
        "skin": skin,
        "hair": hair,
        "brow": np.clip(hair * (0.55 if hair_name in ("blonde", "grey", "white") else 0.8) + 10, 0, 255),
        "eye": eye,
    }
    n_moles = int(min(rng.poisson(1.5), 6))
    moles = np.stack([rng.uniform(-0.8, 0.8, n_moles), rng.uniform(-0.5, 1.3, n_moles), np.full(n_moles, 0.3),
                      rng.uniform(0.02, 0.045, n_moles)], axis=1) if n_moles else np.zeros((0, 4))
    n_freckles = int(rng.integers(25, 60)) if rng.random() < 0.12 else 0
    freckles = np.stack([rng.normal(0, 0.35, n_freckles), rng.uniform(0.2, 0.75, n_freckles), np.full(n_freckles, 0.4)], axis=1) if n_freckles else np.zeros((0, 3))
    return FaceIdentity(number=number, male=male, age=age, geometry={k: float(v) for k, v in g.items()}, style=style,
                        colours=_photo_colours(colours, rng), moles=moles, freckles=freckles, texture=skin_texture(rng))


def _photo_colours(colours: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The colours a person's photos do not share: lips under this light, make-up, hat, frames, jewellery."""
    skin = colours["skin"]
    return {
        **colours,
        "lip": np.clip(skin * 0.62 + np.array([150, 60, 60], np.float32) * 0.38, 0, 255) * rng.uniform(0.9, 1.05),
        "lipstick": np.array(LIPSTICKS[int(rng.integers(len(LIPSTICKS)))], np.float32),
        "hat": np.array(CLOTHES[int(rng.integers(len(CLOTHES)))], np.float32),
        "frame": np.array(FRAMES[int(rng.integers(len(FRAMES)))], np.float32),
        "metal": np.array(METALS[int(rng.integers(len(METALS)))], np.float32),
        "shadow": np.array(EYESHADOWS[int(rng.integers(len(EYESHADOWS)))], np.float32),
    }


def identity_attributes(ident: FaceIdentity) -> dict[str, int]:
    """The identity-level CelebA attributes (0 / 1), read off the parameters that draw the face."""
    g, st = ident.geometry, ident.style
    hair = st["hair_colour"] if st["hair_length"] != "bald" else "none"
    return {
        "5_o_Clock_Shadow": int(st["facial_hair"] == "stubble"),
        "Arched_Eyebrows": int(g["brow_arch"] > 0.055),
        "Attractive": int(ident.age < 36 and not st["bags"] and g["chubby"] < 0.4 and (st["makeup"] or g["cheek"] > 0.5)),
        "Bags_Under_Eyes": int(st["bags"]),
        "Bald": int(st["hair_length"] == "bald"),
        "Bangs": int(st["bangs"]),
        "Big_Lips": int(g["lip_up"] + g["lip_lo"] > 0.15),
        "Big_Nose": int(g["nose_w"] * g["nose_len"] > 0.15),
        "Black_Hair": int(hair == "black"),
        "Blond_Hair": int(hair == "blonde"),
        "Brown_Hair": int(hair in ("brown", "dark_brown", "auburn")),
        "Bushy_Eyebrows": int(g["brow_thick"] > 0.07),
        "Chubby": int(g["chubby"] > 0.55),
        "Double_Chin": int(st["double_chin"]),
        "Goatee": int(st["facial_hair"] == "goatee"),
        "Gray_Hair": int(hair in ("grey", "white")),
        "Heavy_Makeup": int(st["makeup"]),
        "High_Cheekbones": int(g["cheek"] > 0.6),
        "Male": int(ident.male),
        "Mustache": int(st["facial_hair"] in ("moustache", "beard")),
        "Narrow_Eyes": int(g["eye_h"] < 0.055),
        "No_Beard": int(st["facial_hair"] in ("none", "stubble")),
        "Oval_Face": int(g["square"] < 2.3 and g["taper"] > 0.22),
        "Pale_Skin": int(st["skin_tone"] == "very_light"),
        "Pointy_Nose": int(g["nose_proj"] > 0.85 and g["nose_w"] < 0.19),
        "Receding_Hairline": int(st["receding"]),
        "Rosy_Cheeks": int(st["rosy"]),
        "Sideburns": int(st["sideburns"]),
        "Straight_Hair": int(st["hair_length"] != "bald" and st["hair_texture"] == "straight"),
        "Wavy_Hair": int(st["hair_length"] != "bald" and st["hair_texture"] != "straight"),
        "Wearing_Lipstick": int(st["lipstick"]),
        "Young": int(ident.age < 40),
    }


# --------------------------------------------------------------------------- per-image draws

@dataclass(frozen=True)
class Shot:
    """How one image of a person is taken (and what they wear in it)."""

    yaw: float
    pitch: float
    roll: float
    scale: float
    shift: tuple[float, float]
    smile: float
    mouth_open: float
    squint: float
    brow_raise: float
    gaze: tuple[float, float]
    hat: bool
    glasses: bool
    earrings: bool
    necklace: bool
    necktie: bool
    light_angle: float
    light_strength: float
    gain: float
    temperature: float
    blur: float
    noise: float
    sunglasses: bool = False
    frame: int = 0  # 0 round, 1 rectangular, 2 thin
    hat_kind: str = "cap"
    tint: float = 0.0  # green-magenta white balance


def sample_shot(ident: FaceIdentity, rng: np.random.Generator) -> Shot:
    """Pose, expression, light, camera and what the person wears in this photo: glasses
    (mostly by those who wear them, sunglasses by anyone now and then), hats and jewellery
    are per-photo draws, never a constant of the person."""
    st = ident.style
    smiling = rng.random() < 0.45
    sunglasses = bool(rng.random() < SUNGLASSES_RATE)
    glasses = sunglasses or bool(rng.random() < (WEARER_GLASSES_RATE if st["glasses"] == "eyeglasses" else OTHER_GLASSES_RATE))
    return Shot(
        yaw=float(np.clip(rng.normal(0, 9), -20, 20)) * math.pi / 180,
        pitch=float(np.clip(rng.normal(0, 5), -12, 12)) * math.pi / 180,
        roll=float(np.clip(rng.normal(0, 3.5), -9, 9)) * math.pi / 180,
        scale=float(np.clip(rng.normal(1.0, 0.035), 0.92, 1.08)),
        shift=(float(rng.normal(0, 0.012)), float(rng.normal(0, 0.012))),
        smile=float(rng.uniform(0.5, 1.0) if smiling else rng.uniform(0.0, 0.25)),
        mouth_open=float(rng.uniform(0.45, 1.0) if rng.random() < 0.3 else rng.uniform(0.0, 0.15)),
        squint=float(rng.uniform(0.0, 0.35) if rng.random() < 0.3 else 0.0),
        brow_raise=float(rng.normal(0, 0.025)),
        gaze=(float(rng.normal(0, 0.25)), float(rng.normal(0, 0.15))),
        hat=bool(rng.random() < HAT_RATE),
        glasses=glasses,
        earrings=bool(rng.random() < (0.75 if st["pierced"] else 0.01)),
        necklace=bool(rng.random() < (0.03 if ident.male else 0.25)),
        necktie=ident.male and bool(rng.random() < 0.12),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.5)),
        gain=float(rng.uniform(0.7, 1.2)),
        temperature=float(rng.normal(0, 0.07)),
        blur=float(rng.uniform(1.3, 2.3) if rng.random() < 0.1 else rng.uniform(0.0, 0.8)),
        noise=float(rng.uniform(1.0, 5.0)),
        sunglasses=sunglasses,
        frame=int(rng.integers(3)),
        hat_kind="cap" if rng.random() < 0.5 else "beanie",
        tint=float(rng.normal(0, 0.03)),
    )


def restyle(ident: FaceIdentity, rng: np.random.Generator) -> FaceIdentity:
    """This image's look of ``ident``: people change hairstyle, shave, wear make-up or not.

    With probability 0.3 the hair is in another of the shared hairstyles (bald people stay
    bald); its volume and hairline vary a little from photo to photo; with 0.2 a man's facial
    hair is in another state; make-up and lipstick are worn on most (not all) images of people
    who wear them, rarely by others; lip, make-up, hat, frame and jewellery colours are this
    photo's; the hair colour varies with dye and light.
    """
    style, g = dict(ident.style), dict(ident.geometry)
    old = float(np.clip((ident.age - 35) / 40, 0, 1))
    if style["hair_length"] != "bald" and rng.random() < 0.3:
        table = {k: v for k, v in _hairstyle_table(ident.male, old).items() if k not in ("bald", style["hairstyle"])}
        _apply_hairstyle(style, g, _pick(rng, table), ident.male)
    g["hair_volume"] = float(np.clip(g["hair_volume"] + rng.normal(0, 0.03), 0.0, 0.25))
    g["hairline"] = float(g["hairline"] + rng.normal(0, 0.02))
    if ident.male and rng.random() < 0.2:
        style["facial_hair"] = {"none": "stubble", "stubble": "none" if rng.random() < 0.5 else "beard", "beard": "stubble",
                                "goatee": "stubble", "moustache": "none"}[style["facial_hair"]]
    if not ident.male:
        style["makeup"] = bool(rng.random() < (0.75 if ident.style["makeup"] else 0.1))
        style["lipstick"] = bool(rng.random() < (0.8 if ident.style["lipstick"] else 0.1))
    colours = _photo_colours(ident.colours, rng)
    colours["hair"] = np.clip(ident.colours["hair"] * rng.uniform(0.9, 1.1), 0, 255)
    return replace(ident, geometry=g, style=style, colours=colours)


# --------------------------------------------------------------------------- geometry

def landmarks_3d(ident: FaceIdentity, shot: Shot) -> np.ndarray:
    """The 68 iBUG landmarks (68, 3) in face units: x right, y down, z towards the camera;
    origin between the eyes."""
    g = ident.geometry
    pts = np.zeros((68, 3))
    # jaw 0..16: a superellipse from the image-left ear over the chin to the image-right ear
    y0, chin, n = g["ear_y"], g["chin_y"], g["square"]
    psi = np.linspace(0, math.pi, 17)
    c, s = np.cos(psi), np.sin(psi)
    x = -np.sign(c) * np.abs(c) ** (2 / n) * g["face_w"]
    y = y0 + (chin - y0) * np.abs(s) ** (2 / n)
    x *= 1 - g["taper"] * ((y - y0) / (chin - y0)) ** 2
    x *= 1 + 0.06 * g["cheek"] * np.exp(-((y - 0.45) / 0.3) ** 2)
    pts[0:17] = np.stack([x, y, -0.55 * np.abs(c) + 0.05], axis=1)
    # brows 17..21 (image left, outer -> inner), 22..26 (inner -> outer)
    t = np.linspace(0, 1, 5)
    inner = g["eye_dx"] - 0.9 * g["eye_w"]
    outer = g["eye_dx"] + 1.35 * g["eye_w"] * g["brow_len"]
    by = g["brow_y"] - g["brow_arch"] * np.sin(math.pi * t ** g["brow_peak"]) - shot.brow_raise + 0.02 * shot.squint
    by = by + g["brow_tail"] * (1 - t) ** 2
    bx = -(outer + (inner - outer) * t)
    pts[17:22] = np.stack([bx, by, np.full(5, 0.22)], axis=1)
    pts[22:27] = np.stack([-bx[::-1], by[::-1], np.full(5, 0.22)], axis=1)
    # nose 27..35
    nl, nw = g["nose_len"], g["nose_w"]
    pts[27:31] = [[0, -0.03, 0.3], [0, nl * 0.35, 0.45], [0, nl * 0.68, 0.6], [0, nl, 0.55 + 0.35 * g["nose_proj"]]]
    pts[31:36] = [[-nw, nl + 0.03, 0.45], [-nw / 2, nl + 0.07, 0.52], [0, nl + 0.09, 0.55], [nw / 2, nl + 0.07, 0.52], [nw, nl + 0.03, 0.45]]
    # eyes 36..41 (image left: outer corner, upper x2, inner corner, lower x2), 42..47 mirrored
    opening = g["eye_h"] * (1 - 0.45 * shot.squint - 0.25 * shot.smile)
    ew, tilt = g["eye_w"], g["eye_tilt"]
    for base, side in ((36, -1), (42, 1)):
        cx = side * g["eye_dx"]
        outer_pt = [cx + side * ew, -tilt, 0.05]
        inner_pt = [cx - side * ew, 0.0, 0.14]
        up = [[cx + side * ew * 0.35, -opening - tilt * 0.6, 0.16], [cx - side * ew * 0.35, -opening * 0.95 - tilt * 0.3, 0.17]]
        lo = [[cx - side * ew * 0.35, opening * 0.6, 0.16], [cx + side * ew * 0.35, opening * 0.65 - tilt * 0.5, 0.15]]
        if side < 0:  # 36 outer, 37-38 upper (outer -> inner), 39 inner, 40-41 lower (inner -> outer)
            pts[base:base + 6] = [outer_pt, up[0], up[1], inner_pt, lo[0], lo[1]]
        else:  # 42 inner, 43-44 upper (inner -> outer), 45 outer, 46-47 lower (outer -> inner)
            pts[base:base + 6] = [inner_pt, up[1], up[0], outer_pt, lo[1], lo[0]]
    # mouth: outer 48..59, inner 60..67
    my, mw = g["mouth_y"], g["mouth_w"] * (1 + 0.14 * shot.smile)
    lu, ll = g["lip_up"], g["lip_lo"]
    gap = 0.13 * shot.mouth_open
    corner_y = my - 0.07 * shot.smile
    curve = 0.035 * shot.smile
    outer_lip = [
        [-mw, corner_y, 0.3], [-0.62 * mw, my - lu * 0.75, 0.42], [-0.28 * mw, my - lu * 1.05, 0.47], [0, my - lu * (1.05 - g["bow"]), 0.48],
        [0.28 * mw, my - lu * 1.05, 0.47], [0.62 * mw, my - lu * 0.75, 0.42], [mw, corner_y, 0.3],
        [0.6 * mw, my + gap + ll * 0.75 + curve * 0.3, 0.42], [0.28 * mw, my + gap + ll * 0.97 + curve, 0.46], [0, my + gap + ll + curve, 0.47],
        [-0.28 * mw, my + gap + ll * 0.97 + curve, 0.46], [-0.6 * mw, my + gap + ll * 0.75 + curve * 0.3, 0.42],
    ]
    inner_lip = [
        [-0.86 * mw, corner_y + 0.005, 0.32], [-0.4 * mw, my - 0.01 + curve * 0.3, 0.44], [0, my - 0.005 + curve * 0.4, 0.45], [0.4 * mw, my - 0.01 + curve * 0.3, 0.44],
        [0.86 * mw, corner_y + 0.005, 0.32], [0.4 * mw, my + gap + curve * 0.6, 0.44], [0, my + gap + curve, 0.45], [-0.4 * mw, my + gap + curve * 0.6, 0.44],
    ]
    pts[48:60] = outer_lip
    pts[60:68] = inner_lip
    return pts


def skull_arc(ident: FaceIdentity, grow: float = 0.0, down: float = 0.0, n: int = 33) -> np.ndarray:
    """The top of the head (n, 3), from the image-left side over the crown to the right side;
    ``grow`` enlarges it (hair volume), ``down`` (radians) extends it below the widest line."""
    g = ident.geometry
    a, b, yc = g["face_w"] * (1.0 + grow), 1.1 + grow, -0.25
    t = np.linspace(math.pi - down, 2 * math.pi + down, n)
    return np.stack([a * np.cos(t), yc + b * np.sin(t), np.full(n, -0.35)], axis=1)


@dataclass(frozen=True)
class Camera:
    """Face units -> output pixels for one shot."""

    size: int
    shot: Shot

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(np.asarray(p, dtype=np.float64))
        if p.shape[1] == 2:
            p = np.concatenate([p, np.zeros((len(p), 1))], axis=1)
        sh = self.shot
        c = np.array([0.0, 0.35, -1.0])  # rotate about the centre of the head
        q = p - c
        x = q[:, 0] * math.cos(sh.yaw) + q[:, 2] * math.sin(sh.yaw)
        z = -q[:, 0] * math.sin(sh.yaw) + q[:, 2] * math.cos(sh.yaw)
        y = q[:, 1] * math.cos(sh.pitch) - z * math.sin(sh.pitch)
        x, y = x + c[0], y + c[1]
        cr, sr = math.cos(sh.roll), math.sin(sh.roll)
        unit = FACE_UNIT * self.size * sh.scale
        px = self.size * (0.5 + sh.shift[0]) + unit * (x * cr - y * sr)
        py = self.size * (EYE_LINE_Y + sh.shift[1]) + unit * (x * sr + y * cr)
        return np.stack([px, py], axis=1)

    @property
    def unit(self) -> float:
        return FACE_UNIT * self.size * self.shot.scale


# --------------------------------------------------------------------------- drawing

# Painter draws point p at supersampled pixel round(p * s), whose centre lies at p - 0.5 + 0.5 / s
# output pixels after area downsampling; drawing at p + DRAW_OFFSET puts shapes at p exactly.
DRAW_OFFSET = 0.5 - 0.5 / SUPERSAMPLE


class FacePainter:
    """A :class:`Painter` that takes face-unit points through a :class:`Camera`."""

    def __init__(self, painter: Painter, camera: Camera) -> None:
        self.p, self.cam = painter, camera

    def xy(self, pts: Any) -> np.ndarray:
        return self.cam(np.asarray(pts, dtype=np.float64)) + DRAW_OFFSET

    def poly(self, pts: Any, colour: Any) -> None:
        self.p.poly(self.xy(pts), colour)

    def polyline(self, pts: Any, width: float, colour: Any, closed: bool = False) -> None:
        xy = self.xy(pts)
        w = max(0.5, width * self.cam.unit)
        pairs = list(zip(xy[:-1], xy[1:])) + ([(xy[-1], xy[0])] if closed else [])
        for a, b in pairs:
            self.p.line(a, b, w, colour)

    def ellipse(self, centre: Any, axes: tuple[float, float], colour: Any, angle: float = 0.0) -> None:
        xy = self.xy([centre])[0]
        u = self.cam.unit
        self.p.ellipse(xy, (max(0.3, axes[0] * u), max(0.3, axes[1] * u)), colour, angle=angle + math.degrees(self.cam.shot.roll))


def _mix(a: Any, b: Any, t: float) -> np.ndarray:
    return np.clip((1 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32), 0, 255)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A per-image background (no identity in it): a tinted gradient with soft blobs."""
    c0 = rng.uniform(40, 225, 3)
    c0 = c0.mean() + (c0 - c0.mean()) * rng.uniform(0.1, 0.6)
    c1 = np.clip(c0 + rng.normal(0, 35, 3), 0, 255)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.clip(0.5 + (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle), 0, 1)[..., None]
    img = (1 - t) * c0 + t * c1
    blobs = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = img + blobs[..., None] * rng.uniform(0, 12)
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_back_hair(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray) -> None:
    st, g = ident.style, ident.geometry
    if st["hair_length"] not in ("medium", "long"):
        return
    hair = ident.colours["hair"] * 0.85
    bottom = g["chin_y"] + (0.15 if st["hair_length"] == "medium" else 1.3)
    width = g["face_w"] * (1.22 if st["hair_length"] == "medium" else 1.35) + g["hair_volume"]
    top = skull_arc(ident, grow=g["hair_volume"])
    side = [[width, 0.3, -0.5], [width * (1.05 if st["hair_texture"] != "straight" else 1.0), bottom, -0.6],
            [-width * (1.05 if st["hair_texture"] != "straight" else 1.0), bottom, -0.6], [-width, 0.3, -0.5]]
    fp.poly(np.concatenate([top, side]), hair)


def _draw_body(fp: FacePainter, ident: FaceIdentity, shot: Shot, rng: np.random.Generator) -> None:
    g, skin = ident.geometry, ident.colours["skin"]
    neck_top, base = 0.7, g["chin_y"] + 0.5
    fp.poly([[-0.42, neck_top, -0.4], [0.42, neck_top, -0.4], [0.5, base + 0.4, -0.4], [-0.5, base + 0.4, -0.4]], skin * 0.86)
    cloth = np.clip(np.array(CLOTHES[int(rng.integers(len(CLOTHES)))], np.float32) * rng.uniform(0.85, 1.1), 0, 255)
    fp.poly([[-2.4, base + 0.5, -0.5], [-0.5, base, -0.4], [0, base + 0.35, -0.3], [0.5, base, -0.4], [2.4, base + 0.5, -0.5],
             [2.4, 3.5, -0.5], [-2.4, 3.5, -0.5]], cloth)
    if shot.necktie:
        tie = ident.colours["hat"] * 0.8 + 20
        fp.poly([[-0.09, base + 0.28, -0.3], [0.09, base + 0.28, -0.3], [0.06, base + 0.42, -0.3], [-0.06, base + 0.42, -0.3]], tie)
        fp.poly([[-0.06, base + 0.42, -0.3], [0.06, base + 0.42, -0.3], [0.16, base + 1.4, -0.3], [0, base + 1.55, -0.3], [-0.16, base + 1.4, -0.3]], tie)
    if shot.necklace:
        t = np.linspace(0.15 * math.pi, 0.85 * math.pi, 12)
        fp.polyline(np.stack([0.5 * np.cos(t), base - 0.05 + 0.3 * np.sin(t), np.full(12, -0.3)], axis=1), 0.035, ident.colours["metal"])


def _draw_ears(fp: FacePainter, ident: FaceIdentity, shot: Shot) -> None:
    g, skin = ident.geometry, ident.colours["skin"]
    for side in (-1, 1):
        x = side * (g["face_w"] + 0.02)
        fp.ellipse([x, 0.22, -0.55], (0.12, 0.25 * g["ear_size"]), skin * 0.9)
        fp.ellipse([x, 0.22, -0.5], (0.06, 0.16 * g["ear_size"]), skin * 0.78)
        if shot.earrings:
            fp.ellipse([x, 0.22 + 0.27 * g["ear_size"], -0.5], (0.045, 0.045), ident.colours["metal"])


def _draw_face_base(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray) -> None:
    skin = ident.colours["skin"]
    head = skull_arc(ident)[::-1]  # right -> left over the crown, joining jaw point 0 after 16
    fp.poly(np.concatenate([lm[0:17], head]), skin)
    g = ident.geometry
    # soft shading: cheeks and temples a little darker, the T-zone lighter
    for side in (-1, 1):
        fp.ellipse([side * g["face_w"] * 0.82, 0.45, 0.1], (0.16, 0.5), skin * 0.94)
    fp.ellipse([0, -0.55, 0.3], (0.45, 0.22), _mix(skin, (255, 255, 255), 0.03))
    if g["cheek"] > 0.6:  # high cheekbones: a highlight over a shadow
        for side in (-1, 1):
            fp.ellipse([side * 0.6, 0.64, 0.2], (0.17, 0.06), skin * 0.93)
            fp.ellipse([side * 0.62, 0.44, 0.2], (0.2, 0.07), _mix(skin, (255, 240, 230), 0.06))


def _draw_skin_texture(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray) -> None:
    """The person's own skin texture over the face (drawn before eyes, brows, mouth and hair)."""
    p = fp.p
    outline = np.round(fp.xy(np.concatenate([lm[0:17], skull_arc(ident)[::-1]])) * p.s).astype(np.int32)
    mask = np.zeros(p.rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [outline], 255)
    apply_skin_texture(p.rgb, mask, ident.texture, face_to_pixel(lm, fp.xy(lm) * p.s), SKIN_TEXTURE_STRENGTH)


def _draw_skin_marks(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray, shot: Shot) -> None:
    g, st, skin = ident.geometry, ident.style, ident.colours["skin"]
    if st["rosy"] or st["makeup"]:
        blush = _mix(skin, (225, 90, 110), 0.22 if st["rosy"] else 0.14)
        for side in (-1, 1):
            fp.ellipse([side * 0.58, 0.58, 0.2], (0.2, 0.12), blush)
    for x, y, z in ident.freckles:
        fp.ellipse([x, y, z], (0.018, 0.018), _mix(skin, (120, 70, 40), 0.35))
    for x, y, z, r in ident.moles:
        fp.ellipse([x, y, z], (r, r * 0.9), _mix(skin, (60, 35, 25), 0.75))
    old = float(np.clip((ident.age - 38) / 35, 0, 1))
    line = skin * (1 - 0.18 * old)
    if old > 0:
        w = 0.012 + 0.012 * old
        if not st["bangs"]:
            for yy in (-0.52, -0.62)[: 1 + int(old > 0.5)]:
                fp.polyline([[-0.35, yy, 0.3], [0, yy - 0.02, 0.32], [0.35, yy, 0.3]], w, line)
        for side in (-1, 1):  # crow's feet
            ox = side * (g["eye_dx"] + g["eye_w"] + 0.04)
            fp.polyline([[ox, -0.04, 0.05], [ox + side * 0.1, -0.08, 0.0]], w, line)
            fp.polyline([[ox, 0.03, 0.05], [ox + side * 0.1, 0.06, 0.0]], w, line)
    if old > 0 or shot.smile > 0.5:  # nasolabial folds
        w = 0.012 + 0.01 * old + 0.008 * shot.smile
        for side, wing, corner in ((-1, lm[31], lm[48]), (1, lm[35], lm[54])):
            fp.polyline([wing + [side * 0.06, -0.02, -0.05], (wing + corner) / 2 + [side * 0.1, 0, -0.05], corner + [side * 0.06, 0.05, -0.05]], w, skin * 0.86)
    if st["double_chin"]:
        fp.polyline(lm[6:11] + [0, 0.1, 0], 0.025, skin * 0.86)
    if st["chin_cleft"]:
        fp.polyline([lm[8] + [0, -0.14, 0.05], lm[8] + [0, -0.05, 0.05]], 0.014, skin * 0.8)
    if st["dimples"] and shot.smile > 0.4:
        for corner, side in ((lm[48], -1), (lm[54], 1)):
            fp.ellipse(corner + [side * 0.08, 0.0, 0.0], (0.014, 0.03), skin * 0.8)


def _draw_facial_hair(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray) -> None:
    kind, g = ident.style["facial_hair"], ident.geometry
    if kind == "none":
        return
    skin = ident.colours["skin"]
    hair = ident.colours["hair"] if ident.age < 55 or ident.style["hair_colour"] in ("grey", "white") else _mix(ident.colours["hair"], (160, 160, 160), 0.4)
    if kind in ("stubble", "beard"):
        colour = _mix(skin, hair, 0.3) if kind == "stubble" else hair
        rim = lm[2:15] + [0, 0.03 if kind == "beard" else 0.0, 0]
        upper = [[g["face_w"] * 0.86, 0.5, 0.1], [0.45, 0.66, 0.3], [lm[54][0] + 0.05, lm[54][1] - 0.05, 0.3], [0, g["nose_len"] + 0.12, 0.5],
                 [lm[48][0] - 0.05, lm[48][1] - 0.05, 0.3], [-0.45, 0.66, 0.3], [-g["face_w"] * 0.86, 0.5, 0.1]]
        fp.poly(np.concatenate([rim, upper]), colour)
        return
    if kind == "moustache":
        fp.poly([lm[48] + [-0.03, -0.02, 0], lm[50] + [0, -0.02, 0], lm[52] + [0, -0.02, 0], lm[54] + [0.03, -0.02, 0],
                 lm[35] + [0.03, 0.04, 0], lm[31] + [-0.03, 0.04, 0]], hair)
    if kind == "goatee":
        fp.poly([lm[59] + [0, 0.02, 0], lm[57] + [0, 0.03, 0], lm[55] + [0, 0.02, 0], lm[10] * [0.7, 1, 1], lm[8] + [0, 0.02, 0], lm[6] * [0.7, 1, 1]], hair)
        fp.poly([lm[48] + [-0.02, -0.02, 0], lm[51] + [0, -0.02, 0], lm[54] + [0.02, -0.02, 0], lm[33] + [0, 0.05, 0]], hair)


def _draw_eyes(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray, shot: Shot) -> None:
    g, st = ident.geometry, ident.style
    dark = np.array([35, 28, 28], np.float32)
    for base in (36, 42):
        eye = lm[base:base + 6]
        upper, lower = eye[[0, 1, 2, 3]], eye[[3, 4, 5, 0]]  # both eyes: upper lid corner to corner, lower lid back
        if st["makeup"]:
            fp.poly(np.concatenate([upper, upper[::-1] + [0, -0.08, 0]]), _mix(ident.colours["skin"], ident.colours["shadow"], 0.45))
        fp.poly(eye, (232, 228, 222))
        top, bottom = eye[[1, 2], 1].mean(), eye[[4, 5], 1].mean()
        half_open = max(0.004, (bottom - top) / 2)
        r = 0.55 * g["eye_w"] * g["iris"]
        iris_c = np.array([eye[[0, 3], 0].mean() + shot.gaze[0] * g["eye_w"] * 0.4, (top + bottom) / 2 + shot.gaze[1] * half_open * 0.3, eye[:, 2].max() + 0.01])
        fp.ellipse(iris_c, (r, min(r, half_open * 1.05)), ident.colours["eye"])
        fp.ellipse(iris_c, (r * 0.42, min(r * 0.42, half_open * 0.9)), (15, 12, 12))
        if half_open > 0.02:
            fp.ellipse(iris_c + [r * 0.3, -r * 0.3, 0.01], (r * 0.15, r * 0.15), (245, 245, 245))
        if g["crease"] > 0 and shot.squint < 0.3:  # the upper-lid crease follows the lid a little above it
            lift = g["crease"] * np.array([0.3, 1.0, 1.0, 0.3])[:, None] * [0.0, -1.0, 0.0]
            fp.polyline(upper + lift, 0.012, ident.colours["skin"] * 0.72)
        fp.polyline(upper, 0.03 if st["makeup"] else 0.02, dark)
        fp.polyline(lower, 0.008, ident.colours["skin"] * 0.7)
        if st["bags"]:
            fp.polyline(lower + [0, 0.07, -0.02], 0.02, ident.colours["skin"] * 0.8)


def _draw_brows(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray) -> None:
    g = ident.geometry
    widths = g["brow_thick"] * np.linspace(g["brow_taper"], 1.0, 4)  # outer (tail) -> inner (head)
    for pts in (lm[17:22], lm[22:27][::-1]):
        for k in range(4):
            fp.polyline(pts[k:k + 2], float(widths[k]), ident.colours["brow"])


def _draw_nose(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray) -> None:
    skin = ident.colours["skin"]
    fp.polyline(lm[27:31] + [0.05, 0, 0], 0.025, skin * 0.88)
    fp.polyline(lm[31:36], 0.022, skin * 0.78)
    nw = ident.geometry["nose_w"]
    for a, b in ((31, 32), (35, 34)):
        fp.ellipse((lm[a] + lm[b]) / 2 + [0, -0.01, 0], (0.22 * nw * ident.geometry["nostril"], 0.1 * nw), (60, 40, 38))
    fp.ellipse(lm[30] + [0.02, 0.0, 0], (0.06, 0.05), _mix(skin, (255, 255, 255), 0.12))


def _draw_mouth(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray, shot: Shot) -> None:
    lip = ident.colours["lipstick"] if ident.style["lipstick"] else ident.colours["lip"]
    fp.poly(lm[48:60], lip)
    if shot.mouth_open > 0.2:
        fp.poly(lm[60:68], (55, 22, 25))
        if shot.smile > 0.4:
            upper = lm[60:65]
            gap = lm[66, 1] - lm[62, 1]
            fp.poly(np.concatenate([upper, upper[::-1] + [0, 0.45 * gap, 0]]), (236, 230, 220))
    else:
        fp.polyline(lm[[48, 60, 61, 62, 63, 64, 54]], 0.02, lip * 0.55)


def _draw_hair(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray, rng: np.random.Generator) -> None:
    st, g = ident.style, ident.geometry
    hair = ident.colours["hair"]
    fw = g["face_w"]
    if st["hair_length"] == "bald":
        if ident.age > 45:  # a horseshoe of hair at the sides
            for side in (-1, 1):
                fp.poly([[side * fw * 0.98, -0.35, -0.4], [side * fw * 1.06, -0.2, -0.4], [side * fw * 1.04, 0.12, -0.4], [side * fw * 0.95, 0.05, -0.3]], hair)
        return
    down = {"short": 0.12, "medium": 0.3, "long": 0.3}[st["hair_length"]]
    outer = skull_arc(ident, grow=g["hair_volume"], down=down)
    side_y = outer[0, 1]
    xs = np.linspace(0.78, -0.78, 15) * fw
    if st["bangs"]:
        ys = g["brow_y"] - 0.1 + 0.04 * (np.arange(15) % 2)
    else:
        hl = g["hairline"] - (0.16 if st["receding"] else 0.0)
        ys = hl + 0.32 * (xs / fw) ** 2
        if st["receding"]:
            ys -= 0.16 * np.exp(-((np.abs(xs) - 0.5 * fw) / (0.18 * fw)) ** 2)
    inner = np.concatenate([[[fw * 0.96, side_y, 0.0], [fw * 0.9, -0.35, 0.05]], np.stack([xs, ys, np.full(15, 0.25)], axis=1),
                            [[-fw * 0.9, -0.35, 0.05], [-fw * 0.96, side_y, 0.0]]])
    fp.poly(np.concatenate([outer, inner]), hair)
    strand = hair * 0.72 + 4
    if st["hair_texture"] == "curly":
        for q in outer[::3]:
            fp.ellipse(q, (0.1, 0.1), hair)
        for q in inner[2:-2:2]:
            fp.ellipse(q + [0, -0.02, 0], (0.06, 0.06), hair)
    n_strands = 5 if st["hair_texture"] == "straight" else 4
    for k in range(n_strands):
        x_top = (k / (n_strands - 1) - 0.5) * fw * 0.9
        wobble = 0.0 if st["hair_texture"] == "straight" else 0.06
        line = [[x_top * (0.2 + 0.8 * t) + wobble * math.sin(6 * t + k), -1.3 + t * 0.55, 0.0] for t in np.linspace(0, 1, 5)]
        fp.polyline(line, 0.018, strand)
    if st["sideburns"]:
        for side in (-1, 1):
            fp.poly([[side * fw * 0.99, -0.2, 0.0], [side * fw * 0.86, -0.2, 0.05], [side * fw * 0.88, 0.45, 0.05], [side * fw * 0.99, 0.42, 0.0]], hair)


def _draw_glasses(fp: FacePainter, ident: FaceIdentity, lm: np.ndarray, shot: Shot) -> None:
    g = ident.geometry
    frame = ident.colours["frame"]
    sun = shot.sunglasses
    centres = [lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)]
    rx, ry = g["eye_w"] * 1.55, g["eye_h"] * 1.6 + 0.07
    t = np.linspace(0, 2 * math.pi, 17)[:-1]
    for c in centres:
        if shot.frame == 1:
            shape = np.stack([np.clip(1.25 * np.cos(t), -1, 1) * rx, np.clip(1.25 * np.sin(t), -1, 1) * ry], axis=1)
        else:
            shape = np.stack([np.cos(t) * rx, np.sin(t) * ry], axis=1)
        pts = np.concatenate([c[None, :2] + shape, np.full((16, 1), c[2] + 0.12)], axis=1)
        if sun:
            fp.poly(pts, (22, 22, 26))
        fp.polyline(pts, 0.02 if shot.frame == 2 else 0.035, frame, closed=True)
    inner = sorted(centres, key=lambda c: c[0])
    fp.polyline([inner[0] + [rx, -0.02, 0.12], [0, inner[0][1] - 0.05, 0.3], inner[1] + [-rx, -0.02, 0.12]], 0.03, frame)
    for c, side in ((inner[0], -1), (inner[1], 1)):
        fp.polyline([c + [side * rx, -0.02, 0.1], [side * (g["face_w"] + 0.02), 0.05, -0.5]], 0.03, frame)


def _draw_hat(fp: FacePainter, ident: FaceIdentity, shot: Shot) -> None:
    colour = ident.colours["hat"]
    g = ident.geometry
    if shot.hat_kind == "cap":
        top = skull_arc(ident, grow=g["hair_volume"] + 0.05)
        cut = top[top[:, 1] <= -0.52]
        fp.poly(cut, colour)
        fp.ellipse([0, -0.52, 0.5], (g["face_w"] * 0.95, 0.12), colour * 0.8)
    else:
        top = skull_arc(ident, grow=g["hair_volume"] + 0.08, down=0.05)
        cut = top[top[:, 1] <= -0.45]
        fp.poly(cut, colour)
        fp.poly([[-g["face_w"] * 1.1, -0.58, 0.0], [g["face_w"] * 1.1, -0.58, 0.0], [g["face_w"] * 1.1, -0.43, 0.0], [-g["face_w"] * 1.1, -0.43, 0.0]], colour * 0.8)


def render_face(ident: FaceIdentity, rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One RGB image (size x size, uint8) of ``ident`` and its annotations (landmarks in pixels).

    ``meta["look"]`` is the identity as restyled for this image (its attributes are the image's)."""
    ident = restyle(ident, rng)
    shot = sample_shot(ident, rng)
    cam = Camera(size, shot)
    painter = Painter(size, size)
    painter.rgb[:] = cv2.resize(_background(rng, size), (size * SUPERSAMPLE, size * SUPERSAMPLE), interpolation=cv2.INTER_LINEAR)
    fp = FacePainter(painter, cam)
    lm = landmarks_3d(ident, shot)
    _draw_back_hair(fp, ident, lm)
    _draw_body(fp, ident, shot, rng)
    _draw_ears(fp, ident, shot)
    _draw_face_base(fp, ident, lm)
    _draw_skin_texture(fp, ident, lm)
    _draw_skin_marks(fp, ident, lm, shot)
    _draw_facial_hair(fp, ident, lm)
    _draw_eyes(fp, ident, lm, shot)
    _draw_brows(fp, ident, lm)
    _draw_nose(fp, ident, lm)
    _draw_mouth(fp, ident, lm, shot)
    _draw_hair(fp, ident, lm, rng)
    if shot.glasses:
        _draw_glasses(fp, ident, lm, shot)
    if shot.hat:
        _draw_hat(fp, ident, shot)
    img = cv2.resize(painter.rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    # lighting: a directional gain ramp, overall gain and colour temperature
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    ramp = 1 + shot.light_strength * 2 * ((xx - 0.5) * math.cos(shot.light_angle) + (yy - 0.5) * math.sin(shot.light_angle))
    img *= (shot.gain * ramp)[..., None]
    img *= np.array([1 + shot.temperature, 1.0 - shot.tint, 1 - shot.temperature], np.float32)
    if shot.blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), shot.blur)
    img += rng.normal(0, shot.noise, img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    pts = cam(lm)
    eyes = [pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)]
    five = np.array([eyes[0], eyes[1], pts[30], pts[48], pts[54]])
    seven = np.array([eyes[0], eyes[1], pts[30], pts[48], pts[51], pts[54], pts[57]])
    top = pts[17:27, 1].min() - 0.25 * (pts[:, 1].max() - pts[17:27, 1].min())
    box = [max(0.0, pts[:, 0].min()), max(0.0, top), min(float(size), pts[:, 0].max()), min(float(size), pts[:, 1].max())]
    meta = {
        "landmarks68": _round(pts), "landmarks7": _round(seven), "landmarks5": _round(five),
        "face_box": [round(float(v), 2) for v in box],
        "shot": {"Smiling": int(shot.smile > 0.5), "Mouth_Slightly_Open": int(shot.mouth_open > 0.4), "Blurry": int(shot.blur > 1.2),
                 "Eyeglasses": int(shot.glasses), "Wearing_Hat": int(shot.hat), "Wearing_Earrings": int(shot.earrings),
                 "Wearing_Necklace": int(shot.necklace), "Wearing_Necktie": int(shot.necktie)},
        "pose": {"yaw": round(math.degrees(shot.yaw), 2), "pitch": round(math.degrees(shot.pitch), 2), "roll": round(math.degrees(shot.roll), 2)},
        "expression": {"smile": round(shot.smile, 3), "mouth_open": round(shot.mouth_open, 3)},
        "look": ident,
    }
    return out, meta


def _round(pts: np.ndarray) -> list[list[float]]:
    return np.round(np.asarray(pts, dtype=np.float64), 2).tolist()


# --------------------------------------------------------------------------- plan and write

@dataclass(frozen=True)
class FaceImageSpec:
    """One file to write."""

    filename: str
    identity: int
    index: int  # 1-based within the identity
    partition: int  # 0 train, 1 val, 2 test


def plan_faces(config: FaceSyntheticConfig) -> list[FaceImageSpec]:
    """Every image: CelebA-like identity numbers, partitions by identity, shuffled file order."""
    rng = _rng(config.seed, _STREAM_PLAN)
    n = config.num_identities
    numbers = rng.choice(np.arange(1, max(CELEBA_NUM_IDENTITIES, n) + 1), size=n, replace=False)
    order = rng.permutation(n)
    n_train, n_val = int(round(0.8 * n)), int(round(0.1 * n))
    partition = {int(numbers[i]): (0 if rank < n_train else 1 if rank < n_train + n_val else 2) for rank, i in enumerate(order)}
    low, high = config.images_per_identity
    pairs = []
    for number in sorted(int(x) for x in numbers):
        count = int(_rng(config.seed, _STREAM_PLAN, number).integers(low, high + 1))
        pairs += [(number, k) for k in range(1, count + 1)]
    shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
    return [FaceImageSpec(f"{k + 1:06d}.jpg", number, index, partition[number]) for k, (number, index) in enumerate(shuffled)]


def render_face_spec(spec: FaceImageSpec, config: FaceSyntheticConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """(RGB image, annotations) of one planned image: a pure function of ``(config, spec)``."""
    ident = sample_face_identity(config.seed, spec.identity)
    img, meta = render_face(ident, _rng(config.seed, _STREAM_IMAGE, spec.identity, spec.index), config.size)
    attributes = {**identity_attributes(meta.pop("look")), **meta.pop("shot")}
    meta["celeba"] = {name: attributes[name] for name in CELEBA_ATTRIBUTES}
    meta["attributes"] = {"age": ident.age, "gender": "male" if ident.male else "female", "skin_tone": ident.style["skin_tone"],
                          "skin_tone_index": list(SKIN_TONES).index(ident.style["skin_tone"]), **meta.pop("pose"), **meta.pop("expression")}
    return img, meta


def _write_faces(root: Path, config: FaceSyntheticConfig) -> None:
    specs = plan_faces(config)
    (root / CELEBA_IMAGES).mkdir(parents=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    identity_lines, attr_lines, landmark_lines, partition_lines = [], [], [], []
    entries: dict[str, Any] = {}
    for spec in tqdm(specs, desc="synthetic faces", unit="img", disable=None, leave=False):
        img, meta = render_face_spec(spec, config)
        (root / CELEBA_IMAGES / spec.filename).write_bytes(_encode(".jpg", img[:, :, ::-1], params))
        identity_lines.append(f"{spec.filename} {spec.identity}")
        attr_lines.append(spec.filename + " " + " ".join(f"{1 if meta['celeba'][a] else -1:2d}" for a in CELEBA_ATTRIBUTES))
        landmark_lines.append(spec.filename + " " + " ".join(f"{int(round(v)):4d}" for p in meta["landmarks5"] for v in p))
        partition_lines.append(f"{spec.filename} {spec.partition}")
        entries[f"{CELEBA_IMAGES}/{spec.filename}"] = {k: meta[k] for k in ("landmarks68", "landmarks7", "landmarks5", "face_box", "attributes")}
    n = len(specs)
    (root / CELEBA_IDENTITY).write_text("\n".join(identity_lines) + "\n")
    (root / CELEBA_ATTR).write_text(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(attr_lines) + "\n")
    (root / CELEBA_LANDMARKS).write_text(f"{n}\n" + " ".join(CELEBA_LANDMARK_NAMES) + "\n" + "\n".join(landmark_lines) + "\n")
    (root / CELEBA_PARTITION).write_text("\n".join(partition_lines) + "\n")
    sidecar = {"format": FACE_SIDECAR_FORMAT, "image_size": [config.size, config.size], "images": entries}
    (root / FACE_SIDECAR).write_text(json.dumps(sidecar, sort_keys=True, separators=(",", ":")))
    marker = {"generator": "synthetic-faces", "hash": config_hash(config), "config": config.to_dict()}  # type: ignore[arg-type]
    (root / MARKER_NAME).write_text(json.dumps(marker, sort_keys=True, indent=1))


def generate_synthetic_faces(root: str | Path | None, config: FaceSyntheticConfig, cache_dir: str | Path | None = None) -> Path:
    """Write the face set for ``config`` at ``root`` (default: under ``cache_dir``) unless it is there.

    Atomic like the pedestrian generator: files go to a temporary sibling folder that is
    renamed into place, so a crash or a concurrent run never leaves half a dataset.
    """
    root = Path(root).expanduser().absolute() if root is not None else default_faces_root(config, cache_dir)
    wanted = config_hash(config)  # type: ignore[arg-type]
    if not existing_dataset(root, wanted, "synthetic-faces"):
        log.info("generating synthetic CelebA-layout faces (seed %d, %d identities) into %s", config.seed, config.num_identities, root)
    return generate_atomically(root, wanted, "synthetic-faces", lambda folder: _write_faces(folder, config))


# --------------------------------------------------------------------------- registration

@DATASETS.register("synthetic-faces", description="seeded synthetic aligned faces in the CelebA layout (identities, 40 attributes, 5/7/68 landmarks; generated on first use)")
def synthetic_faces(root: str | Path | None = None, sidecar: str | Path | None = None, *, cache_dir: str | Path | None = None,
                    **settings: Any) -> FaceDataset:
    """Seeded synthetic faces in the CelebA layout, generated on first use, read by the CelebA reader.

    ``settings`` are :class:`FaceSyntheticConfig` fields (``seed``, ``num_identities``, ...);
    ``cache_dir``: the cache the set is generated in when ``root`` is not given (passed by the protocol).
    """
    valid = {f.name for f in fields(FaceSyntheticConfig)}
    for key in settings:
        if key not in valid:
            raise UserError(f"unknown synthetic-faces setting {key!r}: {did_you_mean(key, valid | {'root', 'sidecar'})}")
    folder = generate_synthetic_faces(root, FaceSyntheticConfig(**settings), cache_dir)
    return load_celeba(folder, sidecar=sidecar, name="synthetic-faces")


def _faces_defaults() -> dict[str, Any]:
    """The generator settings, so that ``dataset.<setting>=...`` overrides are known keys."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in fields(FaceSyntheticConfig)}


synthetic_faces.config_defaults = _faces_defaults  # type: ignore[attr-defined]
