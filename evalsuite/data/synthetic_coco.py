"""Seeded synthetic street scenes written as a COCO-format detection dataset.

Each image is one camera's scene (a window of the same panoramas the synthetic Market-1501
generator uses) with several synthetic pedestrians standing on the ground plane: people
further away are smaller and stand higher, nearer people occlude further ones. People,
cameras and the drawing are those of :mod:`evalsuite.data.synthetic` (identities with face
and body attributes, views front / back / side, camera light, blur and noise).

Categories: ``person`` (id 1; box and segmentation of the visible part, 17 COCO keypoints)
and ``face`` (id 2; the face box of people not seen from the back). Persons less than a
quarter visible and faces smaller than ``min_face_size`` pixels are ``iscrowd=1``: the
evaluation ignores them, the anonymizers still cover them. A face more than half hidden
behind a nearer person is not annotated.

Written files (COCO layout, read back by :func:`evalsuite.data.coco.load_coco`)::

    <root>/train/000001.jpg ...          <root>/val/000001.jpg ...
    <root>/annotations/instances_train.json
    <root>/annotations/instances_val.json
    <root>/evalsuite_synthetic_coco.json  generator config and hash (written last)

Every image is a pure function of ``(config, split, index)``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from evalsuite.progress import tqdm

from evalsuite.data.synthetic import (
    COCO_KEYPOINTS,
    VIEWS,
    Camera,
    Painter,
    Pose,
    SyntheticConfig,
    _apply_camera,
    _face_box,
    _keypoints,
    _mask_box,
    _rng,
    draw_person,
    existing_dataset,
    generate_atomically,
    sample_camera,
    sample_identity,
)
from evalsuite.errors import UserError

log = logging.getLogger(__name__)

#: bump when the generator's output changes, so cached datasets are regenerated
GENERATOR_VERSION = 1
MARKER_NAME = "evalsuite_synthetic_coco.json"
SPLITS = ("train", "val")
PERSON_ID, FACE_ID = 1, 2
CATEGORIES = [
    {"id": PERSON_ID, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS), "skeleton": []},
    {"id": FACE_ID, "name": "face", "supercategory": "person"},
]
_STREAM_SCENE = 20  # random streams disjoint from the Market-1501 generator's (0..5)
_IDENTITY_OFFSET = 1_000_000  # identity keys of scene people (never a Market pid or distractor)
MIN_VISIBLE_FRACTION = 0.25


@dataclass(frozen=True)
class SyntheticCocoConfig:
    """Size and sampling parameters of the synthetic scene dataset."""

    seed: int = 0
    num_train_images: int = 160
    num_val_images: int = 60
    height: int = 128
    width: int = 176
    num_cameras: int = 6
    persons_per_image: tuple[int, int] = (1, 4)
    person_height: tuple[int, int] = (36, 110)  # pixels, top of head to soles
    max_overlap: float = 0.3  # largest IoU between two people's boxes
    min_face_size: int = 6  # faces with a smaller side are iscrowd (ignored by AP)
    back_view_probability: float = 0.3
    side_view_probability: float = 0.3
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                if f.name.endswith("probability") or f.name == "max_overlap":
                    value = float(value)
                elif isinstance(f.default, tuple):
                    value = tuple(int(v) for v in value)
                    if len(value) != 2:
                        raise ValueError
                else:
                    value = int(value)
            except (TypeError, ValueError):
                kind = "a pair of integers [low, high]" if isinstance(f.default, tuple) else ("a number" if isinstance(f.default, float) else "an integer")
                raise UserError(f"synthetic-coco dataset setting {f.name}={value!r}: expected {kind}") from None
            object.__setattr__(self, f.name, value)
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> UserError:
            return UserError(f"bad synthetic-coco dataset settings: {msg}")

        if self.num_train_images < 1 or self.num_val_images < 1:
            raise bad("num_train_images and num_val_images must be >= 1")
        if not 1 <= self.num_cameras <= 9:
            raise bad(f"num_cameras={self.num_cameras} must be 1..9")
        if self.height < 64 or self.width < 64:
            raise bad(f"image size {self.height}x{self.width} is too small (>= 64x64)")
        low, high = self.persons_per_image
        if not 1 <= low <= high:
            raise bad(f"persons_per_image={[low, high]} must be 1 <= low <= high")
        low, high = self.person_height
        if not 16 <= low <= high <= self.height:
            raise bad(f"person_height={[low, high]} must be 16 <= low <= high <= height ({self.height})")
        if not 0 <= self.max_overlap <= 1:
            raise bad("max_overlap must be in [0, 1]")
        if self.min_face_size < 0:
            raise bad("min_face_size must be >= 0")
        p_back, p_side = self.back_view_probability, self.side_view_probability
        if not (0 <= p_back <= 1 and 0 <= p_side <= 1 and p_back + p_side <= 1):
            raise bad("back_view_probability and side_view_probability must be in [0, 1] and sum to <= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise bad("jpeg_quality must be 1..100")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def config_hash(config: SyntheticCocoConfig) -> str:
    """Short stable hash of the generator version and ``config`` (names cache folders)."""
    payload = json.dumps({"version": GENERATOR_VERSION, **config.to_dict()}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def default_root(config: SyntheticCocoConfig, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/datasets/synthetic-coco-<hash>``; without ``cache_dir`` the default cache
    (:func:`evalsuite.config.cache_dir`: ``$EVALSUITE_CACHE`` or ``~/.cache/evalsuite``)."""
    from evalsuite.config import cache_dir as default_cache

    base = Path(cache_dir).expanduser() if cache_dir else default_cache()
    return base / "datasets" / f"synthetic-coco-{config_hash(config)}"


def cameras_for(config: SyntheticCocoConfig) -> list[Camera]:
    """The scene cameras: the Market generator's cameras, built at this image size."""
    market = SyntheticConfig(seed=config.seed, height=config.height, width=config.width, num_cameras=config.num_cameras,
                             back_view_probability=config.back_view_probability,
                             side_view_probability=config.side_view_probability)
    return [sample_camera(config.seed, c, market) for c in range(config.num_cameras)]


# --------------------------------------------------------------------------- one scene

def _background(cam: Camera, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, int]:
    """A window of the camera's panorama (float32 RGB) and the image row of its horizon."""
    sh, sw = cam.scene.shape[:2]
    y0 = int(np.clip(height - cam.horizon * height + rng.normal(0, 4), 0, sh - height))
    x0 = int(rng.integers(0, sw - width + 1))
    img = cam.scene[y0:y0 + height, x0:x0 + width] * np.float32(rng.uniform(0.92, 1.08))
    return img, int(np.clip(height - y0, 0, height - 1))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place_people(config: SyntheticCocoConfig, cam: Camera, horizon: int, rng: np.random.Generator) -> list[Pose]:
    """Poses on the ground plane (feet lower for taller people), far ones first."""
    height, width = config.height, config.width
    low, high = config.person_height
    wanted = int(rng.integers(config.persons_per_image[0], config.persons_per_image[1] + 1))
    poses: list[Pose] = []
    boxes: list[tuple[float, ...]] = []
    span = max(height - horizon, 1)
    for _ in range(wanted):
        for _attempt in range(30):
            h = float(rng.uniform(low, high))
            feet = horizon + (h / high) * span * float(rng.uniform(0.85, 1.15))
            feet = float(np.clip(feet, 0.95 * h, height + 0.1 * h))
            cx = float(rng.uniform(0.04, 0.96) * width)
            box = (cx - 0.17 * h, feet - h, cx + 0.17 * h, feet)
            if all(_iou(box, other) <= config.max_overlap for other in boxes):
                break
        else:
            continue  # no room left for another person
        view = VIEWS[int(rng.choice(3, p=cam.view_weights))]
        poses.append(Pose(view=view, facing=1 if rng.random() < 0.5 else -1, phase=float(rng.uniform(0, 2 * np.pi)),
                          height=h, cx=cx, feet_y=feet))
        boxes.append(box)
    return sorted(poses, key=lambda p: p.feet_y)


def _draw(img: np.ndarray, ident: Any, pose: Pose, cam: Camera) -> tuple[np.ndarray, dict[str, Any]]:
    """Composite one person over ``img`` in place; returns its coverage (float32) and skeleton."""
    height, width = img.shape[:2]
    painter = Painter(height, width)
    sk = draw_person(painter, ident, pose)
    size = (width, height)
    alpha = cv2.resize(painter.alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    premult = cv2.resize(painter.rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    rounding = cv2.GaussianBlur(alpha, (0, 0), 2.0)
    rows = np.arange(height, dtype=np.float32)[:, None]
    yy = np.clip((rows - (pose.feet_y - pose.height)) / pose.height, 0, 1)
    shade = (0.82 + 0.18 * np.clip(rounding * 1.3, 0, 1)) * (1 + cam.light_top * (0.5 - yy))
    img *= 1 - alpha[..., None]
    img += premult * shade[..., None]
    return alpha, sk


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from faster_coco_eval.core import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def render_scene(config: SyntheticCocoConfig, cameras: list[Camera], split: str, index: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(uint8 RGB image, annotations without ids / image_id) of scene ``index`` of ``split``."""
    rng = _rng(config.seed, _STREAM_SCENE, SPLITS.index(split), index)
    cam = cameras[int(rng.integers(len(cameras)))]
    height, width = config.height, config.width
    img, horizon = _background(cam, rng, height, width)
    img = np.ascontiguousarray(img)
    poses = _place_people(config, cam, horizon, rng)
    drawn = []
    for k, pose in enumerate(poses):  # far to near
        key = _IDENTITY_OFFSET + (SPLITS.index(split) * 100_000 + index) * 16 + k
        ident = sample_identity(config.seed, key)
        alpha, sk = _draw(img, ident, pose, cam)
        drawn.append((alpha >= 0.5, sk, pose, ident))
    image = _apply_camera(img, cam, rng)
    annotations: list[dict[str, Any]] = []
    nearer = np.zeros((height, width), dtype=bool)
    for full, sk, pose, ident in reversed(drawn):  # near to far: what is in front is known
        visible = full & ~nearer
        area = int(visible.sum())
        box = _mask_box(visible)
        if box is not None:
            fraction = area / max(int(full.sum()), 1)
            keypoints = [v for point in _keypoints(sk, pose, height, width) for v in point]
            annotations.append({
                "category_id": PERSON_ID, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "area": area,
                "iscrowd": int(fraction < MIN_VISIBLE_FRACTION), "segmentation": _rle(visible),
                "keypoints": keypoints, "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
                "view": pose.view, "attributes": dict(ident.attributes),
            })
        face = _face_box(sk, pose, height, width)
        if face is not None:
            x0, y0, x1, y1 = face
            hidden = float(nearer[y0:y1, x0:x1].mean()) if (x1 > x0 and y1 > y0) else 1.0
            if hidden <= 0.5:
                w, h = x1 - x0, y1 - y0
                annotations.append({
                    "category_id": FACE_ID, "bbox": [x0, y0, w, h], "area": w * h,
                    "iscrowd": int(min(w, h) < config.min_face_size), "view": pose.view,
                })
        nearer |= full
    return image, annotations


# --------------------------------------------------------------------------- writing

def _write_dataset(root: Path, config: SyntheticCocoConfig) -> None:
    cameras = cameras_for(config)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    for split, count in (("train", config.num_train_images), ("val", config.num_val_images)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in tqdm(range(1, count + 1), desc=f"synthetic coco {split}", unit="img", disable=None, leave=False):
            image, anns = render_scene(config, cameras, split, index)
            name = f"{index:06d}.jpg"
            ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], jpeg)
            if not ok:
                raise RuntimeError("could not encode a JPEG image")
            (root / split / name).write_bytes(buf.tobytes())
            images.append({"id": index, "file_name": name, "width": config.width, "height": config.height})
            for ann in anns:
                annotations.append({"id": len(annotations) + 1, "image_id": index, **ann})
        coco = {
            "info": {"description": f"evalsuite synthetic scenes ({split})", "version": str(GENERATOR_VERSION)},
            "images": images, "annotations": annotations, "categories": CATEGORIES,
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, separators=(",", ":")))
    marker = {"generator_version": GENERATOR_VERSION, "hash": config_hash(config), "config": config.to_dict()}
    (root / MARKER_NAME).write_text(json.dumps(marker, sort_keys=True, indent=1))


def generate_synthetic_coco(root: str | Path | None, config: SyntheticCocoConfig, cache_dir: str | Path | None = None) -> Path:
    """Write the dataset for ``config`` at ``root`` (default: under ``cache_dir``) unless it is there.

    Atomic like the Market generator: written into a temporary sibling, then renamed.
    """
    root = Path(root).expanduser().absolute() if root is not None else default_root(config, cache_dir)
    if not existing_dataset(root, config_hash(config), "synthetic-coco", MARKER_NAME):
        log.info("generating synthetic COCO-format scenes (seed %d) into %s", config.seed, root)
    return generate_atomically(root, config_hash(config), "synthetic-coco", lambda folder: _write_dataset(folder, config), MARKER_NAME)


__all__ = ["SyntheticCocoConfig", "config_hash", "default_root", "generate_synthetic_coco", "render_scene"]
