"""Seeded synthetic album photos written in PIPA's layout (read back by the PIPA loader).

PIPA (Zhang et al. 2015) is a set of Flickr album photos: several people per photo, at
album scale (heads of about 50-200 px), faces mostly visible and frontal, often only the
upper body in frame, and the same person in different clothes in different photosets
(albums / events). This generator writes photos like that:

- **people**: each identity has a face (:func:`~evalsuite.data.synthetic_faces.sample_face_identity`,
  drawn per appearance by :func:`~evalsuite.data.synthetic_faces.render_face`: pose,
  expression, hairstyle, lighting vary) and a build (shoulder width); skin colour comes
  from the rendered face;
- **clothes**: one outfit per (identity, photoset): upper colour / pattern / sleeves /
  neckline and lower colour / type from the pedestrian generator's street palettes; they
  stay within a photoset and change between photosets, so across albums the body is a weak
  cue, as in PIPA;
- **photosets**: a scene (background panorama, light) and a group of members; each photo of
  the photoset shows some of its members side by side at one scale, at a height in the frame
  that often cuts the body at the chest or waist; groups are sometimes shifted so that the
  outer person is partly out of frame; now and then a stranger stands at the edge
  (a ``leftover`` instance, subset 0, as PIPA's leftover people);
- **subsets**: identities are either train (subset 1) or test (subset 3) people and a
  photoset holds people of one subset; every identity appears in ``photosets_per_id``
  photosets, so the PIPA loader's seeded gallery / query halves of a test identity mix
  albums.

Written files (PIPA's layout; the head box is the head with its hair, chin included)::

    <root>/annotations/index.txt           photoset_id photo_id xmin ymin width height identity_id subset_id
    <root>/{train,val,test,leftover}/<photoset_id>_<photo_id>.jpg   (val and leftover stay empty)
    <root>/evalsuite_pipa.json              per index line: 68 face landmarks and face box in photo
                                            pixels, outfit (evalsuite-pipa/1; the loader ignores it)
    <root>/evalsuite_synthetic.json         generator config and hash (written last)

Each photo is a pure function of ``(config, photo plan)``; the plan is a pure function of
the config.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evalsuite.data.pipa import INDEX_RELPATH, SUBSET_FOLDERS, load_pipa
from evalsuite.data.synthetic import (
    LOWER_COLOURS,
    MARKER_NAME,
    UPPER_COLOURS,
    _choice,
    _colour,
    _encode,
    _rng,
    build_scene,
    coerce_fields,
    config_hash,
    default_root,
    generate_atomically,
)
from evalsuite.data.synthetic_faces import FACE_GENERATOR_VERSION, render_face, sample_face_identity
from evalsuite.data.types import ReidDataset
from evalsuite.errors import UserError, did_you_mean
from evalsuite.progress import tqdm
from evalsuite.registry import DATASETS

log = logging.getLogger(__name__)

#: bump when the output changes, so cached sets are regenerated
PIPA_GENERATOR_VERSION = 1
SIDECAR = "evalsuite_pipa.json"
SIDECAR_FORMAT = "evalsuite-pipa/1"
TRAIN_SUBSET, TEST_SUBSET, LEFTOVER_SUBSET = 1, 3, 0
_STREAM_PLAN, _STREAM_BODY, _STREAM_OUTFIT, _STREAM_PHOTOSET, _STREAM_PHOTO = 40, 41, 42, 43, 44
#: face numbers of strangers (never an identity's)
_STRANGER_FACE_OFFSET = 1_000_000
#: head box width / height of a rendered head (about; used only to space people)
_HEAD_ASPECT = 0.8

PATTERNS = {"plain": 0.4, "stripes": 0.15, "checks": 0.12, "logo": 0.13, "jacket": 0.2}
NECKLINES = {"round": 0.55, "v": 0.25, "collar": 0.2}
LOWER_TYPES = {"trousers": 0.75, "skirt": 0.25}


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class PipaSyntheticConfig:
    """Size of the synthetic album set. Ranges are inclusive ``(low, high)`` pairs."""

    seed: int = 0
    num_train_ids: int = 50
    num_test_ids: int = 50
    photosets_per_id: tuple[int, int] = (2, 4)
    people_per_photoset: int = 3
    photos_per_photoset: tuple[int, int] = (2, 4)
    appearance_probability: float = 0.6
    max_people_per_photo: int = 4
    stranger_probability: float = 0.15
    photo_height: int = 480
    photo_width: int = 640
    head_height: tuple[int, int] = (80, 140)
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        coerce_fields(self, "synthetic-pipa")
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> UserError:
            return UserError(f"bad synthetic-pipa settings: {msg}")

        if self.num_train_ids < 1 or self.num_test_ids < 2:
            raise bad(f"num_train_ids={self.num_train_ids} must be >= 1 and num_test_ids={self.num_test_ids} >= 2")
        for name in ("photosets_per_id", "photos_per_photoset", "head_height"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise bad(f"dataset.{name}={[low, high]} must be 1 <= low <= high")
        if self.photosets_per_id[0] < 2:
            raise bad(f"dataset.photosets_per_id={list(self.photosets_per_id)}: every identity needs >= 2 photosets (enrolled in one album, recognized in another)")
        if self.people_per_photoset < 1 or self.max_people_per_photo < 1:
            raise bad("dataset.people_per_photoset and dataset.max_people_per_photo must be >= 1")
        for name in ("appearance_probability", "stranger_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(f"dataset.{name}={getattr(self, name)} must be in [0, 1]")
        if not 24 <= self.head_height[0] or self.head_height[1] > self.photo_height // 2:
            raise bad(f"dataset.head_height={list(self.head_height)} must be >= 24 px and at most half of photo_height={self.photo_height}")
        if self.photo_width < 2 * self.head_height[0] or self.photo_height < 64:
            raise bad(f"photo {self.photo_width}x{self.photo_height} is too small for heads of {self.head_height[0]} px")
        if not 1 <= self.jpeg_quality <= 100:
            raise bad(f"dataset.jpeg_quality={self.jpeg_quality} must be 1..100")

    def to_dict(self) -> dict[str, Any]:
        """The settings plus both generators' versions (part of the hash that names the folder)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"pipa_generator_version": PIPA_GENERATOR_VERSION, "face_generator_version": FACE_GENERATOR_VERSION, **values}


def default_pipa_root(config: PipaSyntheticConfig, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/datasets/synthetic-pipa-<hash>`` (default cache: :func:`evalsuite.config.cache_dir`)."""
    return default_root(config, cache_dir).with_name(f"synthetic-pipa-{config_hash(config)}")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class Person:
    """One person instance of a photo: PIPA's identity id and subset, and which face draws it."""

    identity: int
    subset: int
    face: int  # sample_face_identity number
    photoset: int  # index of the photoset (the outfit's key)


@dataclass(frozen=True)
class PhotoSpec:
    """One photo to write: its PIPA ids, subset folder, photoset index and people (left to right)."""

    photoset_id: str
    photo_id: str
    subset: int
    photoset: int
    index: int  # photo number within the whole set (its random stream)
    people: tuple[Person, ...]

    @property
    def relpath(self) -> str:
        return f"{SUBSET_FOLDERS[self.subset]}/{self.photoset_id}_{self.photo_id}.jpg"


def _memberships(rng: np.random.Generator, identities: list[int], config: PipaSyntheticConfig) -> list[list[int]]:
    """Photoset members: each identity joins ``photosets_per_id`` distinct photosets, the
    least-filled first (ties at random), so photosets hold about ``people_per_photoset`` people."""
    low, high = config.photosets_per_id
    counts = {i: int(rng.integers(low, high + 1)) for i in identities}
    n_sets = max(high, math.ceil(sum(counts.values()) / config.people_per_photoset))
    members: list[list[int]] = [[] for _ in range(n_sets)]
    for identity in rng.permutation(identities).tolist():
        order = sorted(rng.permutation(n_sets).tolist(), key=lambda s: len(members[s]))
        for s in order[: counts[identity]]:
            members[s].append(identity)
    return [m for m in members if m]


def plan_photos(config: PipaSyntheticConfig) -> list[PhotoSpec]:
    """Every photo of the set, train photosets first; a pure function of ``config``."""
    rng = _rng(config.seed, _STREAM_PLAN)
    train_ids = list(range(config.num_train_ids))
    test_ids = list(range(config.num_train_ids, config.num_train_ids + config.num_test_ids))
    photosets = [(TRAIN_SUBSET, m) for m in _memberships(rng, train_ids, config)] + [(TEST_SUBSET, m) for m in _memberships(rng, test_ids, config)]
    # Flickr-like ids: 17-digit photoset ids and 10-digit photo ids, all distinct
    photoset_ids = sorted(rng.choice(10**8, size=len(photosets), replace=False).tolist())
    used: set[int] = set()

    def photo_id() -> str:
        while (number := int(rng.integers(10**9))) in used:
            pass
        used.add(number)
        return f"{10**9 + number}"

    specs: list[PhotoSpec] = []
    next_stranger = config.num_train_ids + config.num_test_ids
    for p, (subset, members) in enumerate(photosets):
        n_photos = int(rng.integers(config.photos_per_photoset[0], config.photos_per_photoset[1] + 1))
        shown = rng.random((n_photos, len(members))) < config.appearance_probability
        for m in range(len(members)):  # everyone appears at least once in each of their photosets
            if not shown[:, m].any():
                shown[int(rng.integers(n_photos)), m] = True
        for k in range(n_photos):
            people = [members[m] for m in np.flatnonzero(shown[k]).tolist()]
            if not people:
                continue
            rng.shuffle(people)
            # a full photo shows its first max_people; the others move to a photo of their own
            groups = [people[i : i + config.max_people_per_photo] for i in range(0, len(people), config.max_people_per_photo)]
            for group in groups:
                row = [Person(i, subset, i + 1, p) for i in group]
                if rng.random() < config.stranger_probability:
                    stranger = Person(next_stranger, LEFTOVER_SUBSET, _STRANGER_FACE_OFFSET + next_stranger, p)
                    row = [stranger, *row] if rng.random() < 0.5 else [*row, stranger]
                    next_stranger += 1
                specs.append(PhotoSpec(f"{10**16 + photoset_ids[p]}", photo_id(), subset, p, len(specs), tuple(row)))
    return specs


# --------------------------------------------------------------------------- heads

@dataclass(frozen=True)
class Head:
    """A rendered head cut out of its portrait: RGB, alpha, and where its features are."""

    rgb: np.ndarray  # (S, S, 3) uint8 portrait
    alpha: np.ndarray  # (S, S) float32 in [0, 1]: the head, hair included, chin and a little neck
    landmarks: np.ndarray  # (68, 2) portrait pixels
    box: tuple[float, float, float, float]  # head box x0, y0, x1, y1 in portrait pixels
    face_box: tuple[float, float, float, float]
    skin: np.ndarray  # (3,) float32 RGB


def cut_out_head(portrait: np.ndarray, landmarks: np.ndarray, face_box: Any) -> Head:
    """The head of a :func:`render_face` portrait, separated from the portrait's background.

    The portrait's background is smooth (a gradient with soft blobs under a lighting ramp), so
    a quadratic surface per channel fitted to the pixels away from the head predicts it; the
    head is what differs from that prediction, together with the face outline the landmarks
    give for sure, cut below the chin (the body is drawn separately).
    """
    size = portrait.shape[0]
    pts = np.asarray(landmarks, np.float64)
    jaw = pts[0:17]
    eye_y = float(pts[36:48, 1].mean())
    chin_y = float(jaw[:, 1].max())
    drop = chin_y - eye_y  # eye line to chin
    cx = float(pts[27:31, 0].mean())
    x0, x1 = float(jaw[:, 0].min()), float(jaw[:, 0].max())
    fw = x1 - x0
    box = (x0 - 0.12 * fw, eye_y - 1.05 * drop, x1 + 0.12 * fw, chin_y + 0.05 * drop)
    cut_y = chin_y + 0.3 * drop
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # the head's outer bound (hair and hats included): nothing outside it is head
    head_top = eye_y - 1.12 * drop
    cy, ry = (head_top + cut_y) / 2, (cut_y - head_top) / 2
    region = ((xx - cx) / (0.7 * fw)) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    img = portrait.astype(np.float32)
    design = np.stack([np.ones_like(xx), xx / size, yy / size], axis=-1)
    sample = ~region & (yy < chin_y)
    if sample.sum() < 60:
        sample = ~region
    residual = np.zeros((size, size), np.float32)
    for _ in range(3):  # refit without the outliers (long hair reaching the border)
        coef, *_ = np.linalg.lstsq(design[sample], img[sample], rcond=None)
        residual = np.abs(img - design @ coef).max(axis=-1)
        keep = sample & (residual < 18)
        if keep.sum() >= 60:
            sample = keep
    sure = np.zeros((size, size), np.uint8)
    crown = [(cx + 0.5 * fw * math.cos(t), eye_y - 0.2 * drop + 0.75 * drop * math.sin(t)) for t in np.linspace(math.pi, 2 * math.pi, 13)]
    outline = np.array([*jaw.tolist(), *crown[::-1]], np.float64)  # jaw runs left to right under the chin, the crown back
    cv2.fillPoly(sure, [np.round(outline).astype(np.int32)], 1)
    threshold = max(30.0, 4.0 * float(np.median(residual[sample])))  # a poorly fitted background needs more
    fg = ((residual > threshold) & region).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) | sure
    fg[int(math.ceil(cut_y)):] = 0
    _, labels = cv2.connectedComponents(fg, connectivity=8)
    attached = set(np.unique(labels[(sure > 0) & (labels > 0)]).tolist())
    fg = np.isin(labels, list(attached)).astype(np.uint8)
    # fill holes: what the border cannot reach is inside the head
    flood = np.pad(1 - fg, 1, constant_values=1)
    cv2.floodFill(flood, None, (0, 0), 2)
    fg = np.where(flood[1:-1, 1:-1] == 2, 0, 1).astype(np.uint8)
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.7)
    cheeks = [(pts[2] + pts[30]) / 2, (pts[14] + pts[30]) / 2, (pts[29] + pts[31]) / 2]
    patches = [img[max(0, int(y) - 1) : int(y) + 2, max(0, int(x) - 1) : int(x) + 2].reshape(-1, 3) for x, y in cheeks]
    skin = np.median(np.concatenate(patches), axis=0).astype(np.float32)
    return Head(portrait, alpha, pts[:, :2], box, tuple(float(v) for v in face_box), skin)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bodies

@dataclass(frozen=True)
class Outfit:
    """What one person wears in one photoset."""

    upper: str
    upper_rgb: tuple[float, float, float]
    secondary: str
    secondary_rgb: tuple[float, float, float]
    pattern: str
    sleeves: str
    neckline: str
    lower: str
    lower_rgb: tuple[float, float, float]
    lower_type: str
    period: float  # stripes / checks period in head heights

    def key(self) -> tuple[Any, ...]:
        """What tells two outfits apart (names, not shades)."""
        return (self.upper, self.secondary, self.pattern, self.sleeves, self.neckline, self.lower, self.lower_type)


def sample_outfit(seed: int, identity: int, photoset: int) -> Outfit:
    """The clothes of ``identity`` in ``photoset``: drawn afresh for every photoset."""
    rng = _rng(seed, _STREAM_OUTFIT, identity, photoset)
    upper, upper_rgb = _colour(rng, UPPER_COLOURS)
    far = {k: v for k, v in UPPER_COLOURS.items() if np.abs(np.array(v[0]) - upper_rgb).sum() > 150}
    secondary, secondary_rgb = _colour(rng, far or UPPER_COLOURS, exclude=upper)
    pattern = _choice(rng, PATTERNS)
    lower, lower_rgb = _colour(rng, LOWER_COLOURS)
    return Outfit(
        upper=upper, upper_rgb=tuple(upper_rgb.tolist()), secondary=secondary, secondary_rgb=tuple(secondary_rgb.tolist()),
        pattern=pattern, sleeves="long" if pattern == "jacket" or rng.random() < 0.6 else "short", neckline=_choice(rng, NECKLINES),
        lower=lower, lower_rgb=tuple(lower_rgb.tolist()), lower_type=_choice(rng, LOWER_TYPES), period=float(rng.uniform(0.12, 0.25)),
    )


def body_build(seed: int, identity: int) -> float:
    """Shoulder width of ``identity`` in face widths (stays across photosets)."""
    return float(_rng(seed, _STREAM_BODY, identity).uniform(2.0, 2.8))


def _fill(img: np.ndarray, pts: Any, colour: Any) -> None:
    arr = np.round(np.asarray(pts, np.float64) * 4).astype(np.int32)
    cv2.fillPoly(img, [arr], tuple(float(c) for c in np.clip(colour, 0, 255)), lineType=cv2.LINE_AA, shift=2)


def _fill_pattern(img: np.ndarray, pts: Any, outfit: Outfit, unit: float) -> None:
    """Fill a polygon with the outfit's upper pattern (stripes / checks move with the polygon)."""
    pts = np.asarray(pts, np.float64)
    _fill(img, pts, outfit.upper_rgb)
    if outfit.pattern not in ("stripes", "checks"):
        return
    h, w = img.shape[:2]
    x0, y0 = max(0, int(pts[:, 0].min())), max(0, int(pts[:, 1].min()))
    x1, y1 = min(w, int(math.ceil(pts[:, 0].max())) + 1), min(h, int(math.ceil(pts[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((pts - [x0, y0]) * 4).astype(np.int32)], 1, shift=2)
    period = max(3.0, outfit.period * unit)
    yy, xx = np.mgrid[y0:y1, x0:x1] - np.array([pts[:, 1].min(), pts[:, 0].min()])[:, None, None]
    on = (yy % period) < period / 2
    if outfit.pattern == "checks":
        on = on ^ ((xx % period) < period / 2)
    where = (mask > 0) & on
    img[y0:y1, x0:x1][where] = np.asarray(outfit.secondary_rgb, np.float32)


def draw_body(img: np.ndarray, head: Head, at: tuple[float, float], outfit: Outfit, build: float, rng: np.random.Generator) -> None:
    """A frontal upper body (neck, torso, arms, hips and legs) under ``head`` pasted at ``at``
    (its portrait's top-left corner in the photo), drawn into ``img`` (float32 RGB) in place."""
    ox, oy = at
    pts = head.landmarks + [ox, oy]
    chin_x, chin_y = float(pts[8, 0]), float(pts[8, 1])
    x0, y0, x1, y1 = head.box
    hh = y1 - y0  # head height: the body's unit
    fw = float(pts[0:17, 0].max() - pts[0:17, 0].min())
    cx = (float(pts[27:31, 0].mean()) + chin_x) / 2 + rng.normal(0, 0.03) * fw
    skin, top, lower = head.skin, np.asarray(outfit.upper_rgb), np.asarray(outfit.lower_rgb)
    half = build * fw / 2
    shoulder_y = chin_y + 0.32 * hh
    waist_y, hip_y, feet_y = chin_y + 2.0 * hh, chin_y + 2.9 * hh, chin_y + 7.0 * hh
    # legs, then hips / skirt
    if outfit.lower_type == "skirt":
        _fill(img, [(cx - 0.85 * half, waist_y), (cx + 0.85 * half, waist_y), (cx + 1.15 * half, chin_y + 4.3 * hh), (cx - 1.15 * half, chin_y + 4.3 * hh)], lower)
        for side in (-1, 1):
            _fill(img, [(cx + side * 0.15 * half, chin_y + 4.2 * hh), (cx + side * 0.6 * half, chin_y + 4.2 * hh), (cx + side * 0.5 * half, feet_y), (cx + side * 0.25 * half, feet_y)], skin * 0.92)
    else:
        for side in (-1, 1):
            _fill(img, [(cx + side * 0.02 * half, hip_y), (cx + side * 0.85 * half, waist_y + 0.3 * hh), (cx + side * 0.6 * half, feet_y), (cx + side * 0.12 * half, feet_y)], lower)
        _fill(img, [(cx - 0.85 * half, waist_y), (cx + 0.85 * half, waist_y), (cx + 0.87 * half, hip_y), (cx - 0.87 * half, hip_y)], lower)
    # neck
    neck = 0.22 * fw
    _fill(img, [(chin_x - neck, chin_y - 0.25 * hh), (chin_x + neck, chin_y - 0.25 * hh), (cx + 1.1 * neck, shoulder_y + 0.1 * hh), (cx - 1.1 * neck, shoulder_y + 0.1 * hh)], skin * 0.88)
    # arms (behind the torso's edge), sleeves in the top's colour
    for side in (-1, 1):
        swing = rng.normal(0, 0.12)
        shoulder = np.array([cx + side * 0.92 * half, shoulder_y + 0.12 * hh])
        elbow = shoulder + [side * (0.18 + swing) * hh, 1.45 * hh]
        wrist = elbow + [side * rng.normal(0, 0.15) * hh - side * 0.05 * hh, 1.2 * hh]
        arm = 0.2 * hh * min(build / 2.6, 1.2)
        for a, b, colour in ((shoulder, elbow, top), (elbow, wrist, top if outfit.sleeves == "long" else skin)):
            d = (b - a) / max(np.linalg.norm(b - a), 1e-6)
            n = np.array([-d[1], d[0]]) * arm
            _fill(img, [a - n, a + n, b + n * 0.85, b - n * 0.85], colour)
        if outfit.sleeves == "short":
            d = elbow - shoulder
            cuff = shoulder + 0.45 * d
            n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6) * arm * 1.05
            _fill(img, [shoulder - n, shoulder + n, cuff + n, cuff - n], top)
        cv2.ellipse(img, (int(round(wrist[0] * 4)), int(round((wrist[1] + 0.12 * hh) * 4))), (max(1, int(arm * 4)), max(1, int(arm * 5))),
                    0, 0, 360, tuple(float(c) for c in skin * 0.95), -1, cv2.LINE_AA, 2)
    # torso
    torso = [(cx - 0.55 * half, shoulder_y - 0.05 * hh), (cx + 0.55 * half, shoulder_y - 0.05 * hh), (cx + half, shoulder_y + 0.15 * hh),
             (cx + 0.9 * half, waist_y), (cx + 0.87 * half, hip_y - 0.3 * hh), (cx - 0.87 * half, hip_y - 0.3 * hh), (cx - 0.9 * half, waist_y),
             (cx - half, shoulder_y + 0.15 * hh)]
    _fill_pattern(img, torso, outfit, hh)
    if outfit.pattern == "jacket":  # an open jacket over a shirt of the secondary colour
        _fill(img, [(cx - 0.3 * half, shoulder_y), (cx + 0.3 * half, shoulder_y), (cx + 0.22 * half, hip_y - 0.3 * hh), (cx - 0.22 * half, hip_y - 0.3 * hh)], outfit.secondary_rgb)
    elif outfit.pattern == "logo":
        centre = (int(round(cx * 4)), int(round((shoulder_y + 0.8 * hh) * 4)))
        cv2.circle(img, centre, int(0.3 * half * 4), tuple(float(c) for c in outfit.secondary_rgb), -1, cv2.LINE_AA, 2)
    # neckline
    if outfit.neckline == "v":
        _fill(img, [(cx - 1.2 * neck, shoulder_y - 0.06 * hh), (cx + 1.2 * neck, shoulder_y - 0.06 * hh), (cx, shoulder_y + 0.45 * hh)], skin * 0.88)
    elif outfit.neckline == "collar":
        for side in (-1, 1):
            _fill(img, [(cx + side * 1.3 * neck, shoulder_y - 0.1 * hh), (cx + side * 0.1 * neck, shoulder_y + 0.12 * hh), (cx + side * 1.6 * neck, shoulder_y + 0.2 * hh)], (235, 235, 230))
    else:
        cv2.ellipse(img, (int(round(cx * 4)), int(round((shoulder_y - 0.05 * hh) * 4))), (max(1, int(1.2 * neck * 4)), max(1, int(0.12 * hh * 4))),
                    0, 0, 180, tuple(float(c) for c in skin * 0.88), -1, cv2.LINE_AA, 2)


def paste_head(img: np.ndarray, head: Head, at: tuple[float, float]) -> None:
    """Alpha-blend ``head`` into ``img`` (float32 RGB) with its portrait's top-left corner at ``at`` (whole pixels)."""
    ox, oy = int(round(at[0])), int(round(at[1]))
    size = head.rgb.shape[0]
    h, w = img.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, -ox), max(0, -oy), min(size, w - ox), min(size, h - oy)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    alpha = head.alpha[sy0:sy1, sx0:sx1, None]
    region = img[oy + sy0 : oy + sy1, ox + sx0 : ox + sx1]
    region[:] = region * (1 - alpha) + head.rgb[sy0:sy1, sx0:sx1].astype(np.float32) * alpha


# --------------------------------------------------------------------------- photos

@dataclass(frozen=True)
class Scene:
    """A photoset's place and light: a background panorama, colour gain and exposure."""

    panorama: np.ndarray  # float32 RGB, 2x the photo's height, 3x its width
    gain: np.ndarray
    scale: float  # typical head height (px) of the photoset's photos
    row: float  # typical head-top height in the frame (fraction of the photo height)


@functools.lru_cache(maxsize=8)
def sample_scene(config: PipaSyntheticConfig, photoset: int) -> Scene:
    """The photoset's scene (a pure function of ``(config.seed, photoset)``)."""
    rng = _rng(config.seed, _STREAM_PHOTOSET, photoset)
    # built at a quarter of the size and enlarged: soft, out-of-focus backgrounds at album scale
    small = build_scene(rng, max(16, config.photo_height // 4), max(16, config.photo_width // 8))
    panorama = cv2.resize(small, (small.shape[1] * 4, small.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
    panorama = cv2.GaussianBlur(panorama, (0, 0), 2.0)
    low, high = config.head_height
    return Scene(panorama=panorama, gain=(rng.uniform(0.85, 1.12) * (1 + rng.normal(0, 0.04, 3))).astype(np.float32),
                 scale=float(rng.uniform(low, high)), row=float(rng.uniform(0.06, 0.4)))


@dataclass(frozen=True)
class Instance:
    """One person as written: their line of index.txt and the truth behind it."""

    person: Person
    head_box: tuple[int, int, int, int]  # x, y, width, height (PIPA's integers)
    landmarks: list[list[float]]  # 68 points in photo pixels
    face_box: list[float]  # x0, y0, x1, y1 in photo pixels
    outfit: Outfit


def render_photo(spec: PhotoSpec, config: PipaSyntheticConfig) -> tuple[np.ndarray, list[Instance]]:
    """(RGB photo, its people left to right) of one planned photo: a pure function of ``(config, spec)``."""
    rng = _rng(config.seed, _STREAM_PHOTO, spec.index)
    scene = sample_scene(config, spec.photoset)
    H, W = config.photo_height, config.photo_width
    ph, pw = scene.panorama.shape[:2]
    wy, wx = int(rng.integers(0, ph - H + 1)), int(rng.integers(0, pw - W + 1))
    img = scene.panorama[wy : wy + H, wx : wx + W].copy()
    n = len(spec.people)
    low, high = config.head_height
    scale = float(np.clip(scene.scale * rng.uniform(0.85, 1.15), low, high))
    spacing = rng.uniform(1.3, 1.7)  # head centres, in head widths
    scale = max(min(scale, 0.95 * W / (n * spacing * _HEAD_ASPECT)), 24.0)
    step = spacing * _HEAD_ASPECT * scale
    span = (n - 1) * step
    margin = 0.6 * _HEAD_ASPECT * scale
    left = float(rng.uniform(margin, max(margin, W - margin - span)))
    if rng.random() < 0.25:  # the group at one edge: the outer person's body leaves the frame
        left = margin if rng.random() < 0.5 else max(margin, W - margin - span)
    heads, places = [], []
    for k, person in enumerate(spec.people):
        size = scale * (0.75 if person.subset == LEFTOVER_SUBSET else 1.0) * rng.uniform(0.93, 1.07)
        face_rng = _rng(config.seed, _STREAM_PHOTO, spec.index, 1 + k)
        # the head box is about 0.8 of the portrait's height (render_face's framing)
        portrait, meta = render_face(sample_face_identity(config.seed, person.face), face_rng, max(32, int(round(size / 0.8))))
        head = cut_out_head(portrait, meta["landmarks68"], meta["face_box"])
        x0, y0, x1, y1 = head.box
        centre_x = left + k * step + rng.normal(0, 0.05) * step
        top_y = scene.row * H + rng.normal(0, 0.08) * (y1 - y0)
        ox = float(np.clip(centre_x - (x0 + x1) / 2, -x0, W - x1))
        oy = float(np.clip(top_y - y0, -y0, H - y1))
        heads.append(head)
        places.append((float(round(ox)), float(round(oy))))
    outfits = [sample_outfit(config.seed, p.identity, p.photoset) for p in spec.people]
    order = np.argsort([h.box[3] - h.box[1] for h in heads], kind="stable")  # smaller (farther) people behind
    for k in order:
        draw_body(img, heads[k], places[k], outfits[k], body_build(config.seed, spec.people[k].identity), rng)
    for k in order:  # every head over every body: faces stay visible, as in album photos
        paste_head(img, heads[k], places[k])
    instances = []
    for person, head, (ox, oy), outfit in zip(spec.people, heads, places, outfits):
        x0, y0, x1, y1 = head.box
        bx0, by0 = max(0, int(round(x0 + ox))), max(0, int(round(y0 + oy)))
        bx1, by1 = min(W, int(round(x1 + ox))), min(H, int(round(y1 + oy)))
        instances.append(Instance(person, (bx0, by0, bx1 - bx0, by1 - by0), np.round(head.landmarks + [ox, oy], 2).tolist(),
                                  [round(v + o, 2) for v, o in zip(head.face_box, (ox, oy, ox, oy))], outfit))
    # the camera: exposure and colour of the photoset, a little blur and sensor noise
    img *= scene.gain * rng.uniform(0.92, 1.08)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.7)))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 3.0))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), instances


# --------------------------------------------------------------------------- writing

def _write(root: Path, config: PipaSyntheticConfig) -> None:
    specs = plan_photos(config)
    for folder in SUBSET_FOLDERS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / INDEX_RELPATH).parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    lines, truth = [], []
    for spec in tqdm(specs, desc="synthetic pipa", unit="photo", disable=None, leave=False):
        photo, instances = render_photo(spec, config)
        (root / spec.relpath).write_bytes(_encode(".jpg", photo[:, :, ::-1], params))
        for inst in instances:
            x, y, w, h = inst.head_box
            lines.append(f"{spec.photoset_id} {spec.photo_id} {x} {y} {w} {h} {inst.person.identity} {inst.person.subset}")
            truth.append({"photo": spec.relpath, "photoset": spec.photoset, "identity": inst.person.identity, "subset": inst.person.subset,
                          "head_box": list(inst.head_box), "face_box": inst.face_box, "landmarks68": inst.landmarks,
                          "outfit": asdict(inst.outfit)})
    (root / INDEX_RELPATH).write_text("\n".join(lines) + "\n")
    sidecar = {"format": SIDECAR_FORMAT, "photo_size": [config.photo_height, config.photo_width],
               "note": "entry i describes line i + 1 of annotations/index.txt", "instances": truth}
    (root / SIDECAR).write_text(json.dumps(sidecar, sort_keys=True, separators=(",", ":")))
    marker = {"generator": "synthetic-pipa", "hash": config_hash(config), "config": config.to_dict()}  # type: ignore[arg-type]
    (root / MARKER_NAME).write_text(json.dumps(marker, sort_keys=True, indent=1))


def generate_synthetic_pipa(root: str | Path | None, config: PipaSyntheticConfig, cache_dir: str | Path | None = None) -> Path:
    """Write the album set for ``config`` at ``root`` (default: under ``cache_dir``) unless it is there (atomically)."""
    root = Path(root).expanduser().absolute() if root is not None else default_pipa_root(config, cache_dir)
    wanted = config_hash(config)  # type: ignore[arg-type]
    return generate_atomically(root, wanted, "synthetic-pipa", lambda folder: _write(folder, config))


# --------------------------------------------------------------------------- registration

@DATASETS.register("synthetic-pipa", description="seeded synthetic album photos in PIPA's layout (several people per photo, large frontal faces, clothes per photoset; generated on first use)")
def synthetic_pipa(root: str | Path | None = None, *, cache_dir: str | Path | None = None, split_seed: int = 0, height: int = 128, width: int = 64,
                   **settings: Any) -> ReidDataset:
    """Seeded synthetic album photos in PIPA's layout, generated on first use, read by the PIPA loader.

    ``settings`` are :class:`PipaSyntheticConfig` fields (``seed``, ``num_train_ids``, ...);
    ``split_seed`` / ``height`` / ``width`` are the PIPA loader's; ``cache_dir``: where the set
    is generated when ``root`` is not given (passed by the protocol).
    """
    valid = {f.name for f in fields(PipaSyntheticConfig)}
    for key in settings:
        if key not in valid:
            raise UserError(f"unknown synthetic-pipa setting dataset.{key}: {did_you_mean(key, valid | {'root', 'split_seed', 'height', 'width'})}")
    config = PipaSyntheticConfig(**settings)
    root_path = Path(root).expanduser().absolute() if root is not None else default_pipa_root(config, cache_dir)
    if not (root_path / MARKER_NAME).is_file():
        log.info("generating synthetic PIPA-layout album photos (seed %d, %d + %d identities) into %s", config.seed, config.num_train_ids, config.num_test_ids, root_path)
    folder = generate_synthetic_pipa(root_path, config)
    return load_pipa(folder, train_subsets=[TRAIN_SUBSET], test_subset=TEST_SUBSET, split_seed=split_seed, height=height, width=width, name="synthetic-pipa")


def _pipa_defaults() -> dict[str, Any]:
    """The generator settings, so that ``dataset.<setting>=...`` overrides are known keys."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in fields(PipaSyntheticConfig)}


synthetic_pipa.config_defaults = _pipa_defaults  # type: ignore[attr-defined]
