"""The shared pipeline every protocol builds on: image sets, anonymized sets, artifacts.

- :class:`ImageSet`: the decoded images of some samples (decoded once, through the sample:
  PIPA person crops, face files, plain files), their region masks, sample ids (the dataset's
  stable relative paths) and annotations.
- :class:`AnonymizedSets`: an image set anonymized by a configured anonymizer. The ONLY
  place that reads the anonymizer declarations (``fit_on``, ``regions``, ``stochastic``,
  ``is_identity``; :mod:`anonymizers.base`): it clones the configured instance (a grid cell
  never mutates a shared one), fits it as declared (once on the training set and caches the
  fitted state, or on exactly each set it anonymizes), runs the whole-set entry point and
  caches the result in memory and on disk under a key holding the data, the region, the
  anonymizer's parameters and code version, the fit data and (stochastic ones) the seed.
  Own-region anonymizers' detections are kept with the images for ``leak_rate``.
- :class:`Artifacts`: get-or-build for files in the cache (trained attackers, fitted
  anonymizers): an unreadable entry (truncated, corrupt) is logged in one line and rebuilt.
- :mod:`evalsuite.anonymized_scenes`: the same for scenes of several sizes (detection images),
  anonymized instance by instance.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from evalsuite.progress import tqdm

from anonymizers.base import Anonymized, Anonymizer, load_state_file, save_state
from evalsuite.arrays import DiskArray, NpyWriter, as_tensor, chunk_rows, images_row_bytes
from evalsuite.cache import Cache
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash
from evalsuite.errors import UserError
from evalsuite.store import atomic_path

log = logging.getLogger(__name__)

T = TypeVar("T")


# --------------------------------------------------------------------------- decoding

def read_sample(sample: Any) -> np.ndarray:
    """One sample's image as uint8 (H, W, 3) RGB: a PIPA person crop, a face file or a plain file."""
    from evalsuite.data.faces import FaceSample, read_face_image
    from evalsuite.data.pipa import read_person_image

    if isinstance(sample, FaceSample):
        return read_face_image(sample.path)
    return read_person_image(sample)  # PersonCrop -> its crop, any other Sample -> the file


def decode_samples(samples: Sequence[Any], description: str, read: Callable[[Any], np.ndarray] = read_sample) -> torch.Tensor:
    """Decode every sample into one uint8 tensor (N, 3, H, W); UserError when sizes differ."""
    if not samples:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    with tqdm(total=len(samples), desc=description, unit="img", leave=False) as progress:
        return _decode(samples, read, samples[0], None, progress)


def _decode(samples: Sequence[Any], read: Callable[[Any], np.ndarray], first: Any, shape: tuple[int, ...] | None, progress: Any) -> torch.Tensor:
    """``samples`` decoded into (n, 3, H, W); every image must have ``shape`` (default: the first one's), as ``first`` has."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = []
        for array in pool.map(read, samples):
            arrays.append(array)
            progress.update(1)
    shape = shape or arrays[0].shape
    for sample, array in zip(samples, arrays):
        if array.shape != shape:
            raise UserError(f"image {sample.path} is {array.shape[1]}x{array.shape[0]} but {first.path} is {shape[1]}x{shape[0]}; "
                            "the images of one set must share one size (re-id crops: 64x128; face protocols resize to image_size)")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def decoded_on_disk(cache: Cache, samples: Sequence[Any], description: str) -> DiskArray:
    """``samples`` decoded chunk by chunk into a cache entry (uint8 (N, 3, H, W) ``.npy``), read
    lazily; keyed by the files' paths, sizes and modification times."""
    files = []
    for sample in samples:
        stat = Path(sample.path).stat()
        files.append([str(sample.path), stat.st_size, stat.st_mtime_ns])
    key = stable_hash({"kind": "decoded-set", "format": 1, "files": files})

    def write(handle: Any) -> None:
        first = read_sample(samples[0])
        rows = chunk_rows(first.nbytes)
        with tqdm(total=len(samples), desc=description, unit="img", leave=False) as progress:
            writer = NpyWriter(handle, (len(samples), first.shape[2], *first.shape[:2]), np.uint8)
            for start in range(0, len(samples), rows):
                writer.write(_decode(samples[start:start + rows], read_sample, samples[0], first.shape, progress))
            writer.finish()

    return cached_rows(cache, "decoded", key, write)


def cached_rows(cache: Cache, kind: str, key: str, write: Callable[[Any], None]) -> DiskArray:
    """The ``.npy`` cache entry ``kind``/``key`` as a :class:`DiskArray`, written by ``write(handle)``
    under the entry's lock when it is missing or unreadable."""
    path = cache.path(kind, key, ".npy")
    found = _disk_array(path, kind)
    if found is not None:
        return found
    with cache.lock(kind, key, ".npy"):
        found = _disk_array(path, kind)  # written by another process while we waited
        if found is None:
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                write(handle)
            found = DiskArray(path)
    return found


def _disk_array(path: Path, what: str) -> DiskArray | None:
    if not path.exists():
        return None
    try:
        return DiskArray(path)
    except (ValueError, OSError, EOFError) as exc:
        log.warning("cached %s %s is unreadable (%s); rebuilding it", what, path, exc)
        path.unlink(missing_ok=True)
        return None


def face_crops(samples: Sequence[Any], size: int, crop: float, description: str) -> tuple[torch.Tensor, list[dict]]:
    """Centre-cropped (``crop`` of the shorter side), resized ``size`` x ``size`` faces and their
    annotations with the face box and the landmarks moved into crop coordinates."""
    import cv2

    from evalsuite.data.faces import read_face_image

    hint = "replace or remove the file (or its line in the dataset's lists)"
    geometry: dict[int, tuple[float, float, float]] = {}

    def one(item: tuple[int, Any]) -> np.ndarray:
        index, sample = item
        img = read_face_image(sample.path, hint)
        h, w = img.shape[:2]
        side = min(h, w) * crop
        if (h, w) == (size, size) and crop == 1:
            geometry[index] = (0.0, 0.0, 1.0)
            return img
        ix0, iy0, iside = int(round((w - side) / 2)), int(round((h - side) / 2)), max(1, int(round(side)))
        patch = img[iy0:iy0 + iside, ix0:ix0 + iside]
        geometry[index] = (float(ix0), float(iy0), size / iside)
        interp = cv2.INTER_AREA if iside > size else cv2.INTER_LINEAR
        return cv2.resize(patch, (size, size), interpolation=interp)

    images = decode_samples(list(enumerate(samples)), description, one) if samples else torch.empty(0, 3, size, size, dtype=torch.uint8)
    annotations = []
    for index, sample in enumerate(samples):
        ann = dict(sample.annotations)
        box = ann.get("face_box")
        x0, y0, scale = geometry[index]
        if box is not None:
            ann["face_box"] = [(box[0] - x0) * scale, (box[1] - y0) * scale, (box[2] - x0) * scale, (box[3] - y0) * scale]
        moved = lambda points: [[(p[0] - x0) * scale, (p[1] - y0) * scale, *p[2:]] for p in points]  # noqa: E731
        if ann.get("landmarks"):
            ann["landmarks"] = moved(ann["landmarks"])
        if ann.get("face_landmarks"):
            ann["face_landmarks"] = {count: moved(points) for count, points in ann["face_landmarks"].items()}
        annotations.append(ann)
    return images, annotations


def face_crop_settings(image_size: Any, center_crop: Any) -> tuple[int, float]:
    """``image_size`` and ``center_crop`` of face protocols, checked (UserError naming the key)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise UserError(f"image_size={image_size!r} must be an integer >= 16 (pixels of the square face crops)")
    if isinstance(center_crop, bool) or not isinstance(center_crop, (int, float)) or not 0 < center_crop <= 1:
        raise UserError(f"center_crop={center_crop!r} must be a fraction in (0, 1] of the shorter image side")
    return int(image_size), float(center_crop)


# --------------------------------------------------------------------------- image sets

@dataclass
class ImageSet:
    """Decoded images of a list of samples with their region masks, ids and annotations.

    ``images`` and ``masks`` are tensors, or :class:`evalsuite.arrays.DiskArray` files read in
    chunks (:meth:`from_samples` with a cache): then every pass over the set streams, and the
    sets anonymized from it are files too (:class:`AnonymizedSets`)."""

    name: str
    images: torch.Tensor | DiskArray  # uint8 (N, 3, H, W), CPU
    masks: torch.Tensor | DiskArray  # bool (N, 1, H, W), CPU
    sample_ids: list[str]
    annotations: list[dict]
    #: with ``region.source=detect``: the masks the annotations give, to measure what the detector missed
    annotated_masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if not (self.masks.shape[0] == len(self.sample_ids) == len(self.annotations) == n):
            raise ValueError(f"image set {self.name}: {n} images, {self.masks.shape[0]} masks, {len(self.sample_ids)} ids, {len(self.annotations)} annotations")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def on_disk(self) -> bool:
        """True when the images are a file read in chunks."""
        return isinstance(self.images, DiskArray)

    @property
    def fingerprint(self) -> str:
        """A hash of the ids and sizes (the data context is added by :class:`AnonymizedSets`)."""
        return stable_hash({"ids": self.sample_ids, "shape": list(self.images.shape)})

    @classmethod
    def from_samples(cls, name: str, samples: Sequence[Any], region: dict[str, Any], images: torch.Tensor | None = None,
                     annotations: list[dict] | None = None, cache: Cache | None = None) -> "ImageSet":
        """Decode ``samples`` (unless ``images`` is given) and make their ``region`` masks
        (``name``, ``dilation``, ``fallback`` as in :func:`evalsuite.regions.region_masks`).

        With ``cache``, images and annotated masks are decoded chunk by chunk into cache
        entries and read lazily, so that memory does not grow with the set."""
        from types import SimpleNamespace

        from evalsuite.regions import region_masks

        streamed = images is None and cache is not None and len(samples) > 0
        if images is None:
            images = decoded_on_disk(cache, samples, f"load {name}") if streamed else decode_samples(samples, f"load {name}")  # type: ignore[arg-type]
        annotations = [dict(s.annotations) for s in samples] if annotations is None else annotations
        proxies = [SimpleNamespace(annotations=a, relpath=s.relpath) for s, a in zip(samples, annotations)]
        _, _, h, w = images.shape
        dilation = region.get("dilation")

        def masks_of(items: Sequence[Any]) -> torch.Tensor:
            return region_masks(items, str(region["name"]), h, w, dilation=None if dilation is None else int(dilation),  # type: ignore[arg-type]
                                fallback=str(region.get("fallback") or "image"))

        if streamed:
            masks: torch.Tensor | DiskArray = masks_on_disk(cache, images, proxies, region, masks_of)  # type: ignore[arg-type]
        else:
            masks = masks_of(proxies)
        source = str(region.get("source") or "annotations")
        if source == "annotations":
            return cls(name, images, masks, [s.relpath for s in samples], annotations)
        if source != "detect":
            raise UserError(f"region.source={source!r}: use annotations (masks from the dataset's annotations) or detect (masks from region.detector)")
        detected = detect_regions(images, region, name)
        return cls(name, images, detected, [s.relpath for s in samples], annotations, annotated_masks=as_tensor(masks))

    @classmethod
    def from_faces(cls, name: str, samples: Sequence[Any], region: dict[str, Any], size: int, crop: float) -> "ImageSet":
        """:meth:`from_samples` of the :func:`face_crops` of ``samples`` (face boxes moved into the crops)."""
        images, annotations = face_crops(samples, size, crop, f"load {name}")
        return cls.from_samples(name, samples, region, images=images, annotations=annotations)

    def subset(self, index: Sequence[int] | np.ndarray, name: str | None = None) -> "ImageSet":
        """The images ``index`` (in memory)."""
        idx = [int(i) for i in index]
        t = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(name or self.name, self.images[t], self.masks[t], [self.sample_ids[i] for i in idx], [self.annotations[i] for i in idx],
                        None if self.annotated_masks is None else self.annotated_masks[t])

    def in_memory(self) -> "ImageSet":
        """This set with its images and masks in memory (for whole-set steps: fitting)."""
        if not self.on_disk and not isinstance(self.masks, DiskArray):
            return self
        return ImageSet(self.name, as_tensor(self.images), as_tensor(self.masks), self.sample_ids, self.annotations, self.annotated_masks)

    @staticmethod
    def concat(name: str, sets: Sequence["ImageSet"]) -> "ImageSet":
        annotated = [s.annotated_masks for s in sets]
        return ImageSet(name, torch.cat([as_tensor(s.images) for s in sets]), torch.cat([as_tensor(s.masks) for s in sets]),
                        [i for s in sets for i in s.sample_ids], [a for s in sets for a in s.annotations],
                        None if any(a is None for a in annotated) else torch.cat(annotated))  # type: ignore[arg-type]

    def detection_leak(self) -> dict[str, float]:
        """``{"leak_rate": ...}``: the share of annotated regions the detector left uncovered (``region.source=detect``), else nothing."""
        if self.annotated_masks is None:
            return {}
        from evalsuite.metrics.leak import leak_rate

        rate, count = leak_rate(self.annotated_masks, self.masks)
        return {"leak_rate": rate} if count else {}


def masks_on_disk(cache: Cache, images: DiskArray, proxies: Sequence[Any], region: dict[str, Any],
                  masks_of: Callable[[Sequence[Any]], torch.Tensor]) -> DiskArray:
    """The region masks of ``proxies`` computed chunk by chunk into a cache entry (bool (N, 1, H, W))."""
    key = stable_hash({"kind": "region-masks", "format": 1, "images": images.path.name, "region": region,
                       "annotations": stable_hash([[p.relpath, p.annotations] for p in proxies])})

    def write(handle: Any) -> None:
        writer = NpyWriter(handle, (len(proxies), 1, images.shape[2], images.shape[3]), np.bool_)
        rows = chunk_rows(images.shape[2] * images.shape[3])
        for start in range(0, len(proxies), rows):
            writer.write(masks_of(proxies[start:start + rows]))
        writer.finish()

    return cached_rows(cache, "masks", key, write)


def detect_regions(images: torch.Tensor, region: dict[str, Any], name: str) -> torch.Tensor:
    """``region.source=detect``: the bool (N, 1, H, W) masks ``region.detector`` finds for ``region.name``."""
    from evalsuite.region_detectors import build_detector

    settings = dict(region.get("detector") or {})
    detector_name = settings.pop("name", None)
    if not detector_name:
        raise UserError("region.source=detect needs region.detector.name (dlib-hog, dlib-cnn, opencv-hog, keypoint-rcnn; see evalsuite/region_detectors.py)")
    detector = build_detector(str(detector_name), **settings)
    if hasattr(detector, "load"):
        detector.load()  # a missing weight file fails here, before anything is written
    dilation = int(region.get("dilation") or 0)
    masks = []
    for start in tqdm(range(0, images.shape[0], 64), desc=f"detect {region['name']} in {name}", unit="batch", leave=False):
        masks.append(detector.detect(images[start : start + 64], str(region["name"]), dilation).masks)
    found = torch.cat(masks) if masks else torch.zeros(0, 1, *images.shape[-2:], dtype=torch.bool)
    log.info("%s: %s found a %s in %d of %d images", name, detector_name, region["name"], int(found.flatten(1).any(1).sum()), images.shape[0])
    return found


@dataclass
class AnonymizedSet:
    """An image set as an anonymizer left it, the regions it found (own-region ones) and its cache key."""

    images: torch.Tensor
    detections: torch.Tensor | None
    key: str


# --------------------------------------------------------------------------- artifacts

class Artifacts:
    """Get-or-build for files in the cache, rebuilding unreadable entries with one log line."""

    def __init__(self, cache: Cache | None) -> None:
        self.cache = cache

    def get_or_build(self, kind: str, key: str, suffix: str, load: Callable[[Path], T], build: Callable[[], T],
                     save: Callable[[T, Path], None], what: str = "") -> tuple[T, bool]:
        """(value, True when read from the cache). Without a cache everything is built.

        The build runs under the entry's lock (:meth:`Cache.lock`): of several processes that
        need one entry, one builds it and the others wait and read it."""
        if self.cache is None:
            return build(), False
        path = self.cache.path(kind, key, suffix)
        found, value = self._load(path, load, what or kind)
        if found:
            return value, True
        with self.cache.lock(kind, key, suffix):
            found, value = self._load(path, load, what or kind)  # built by another process while we waited
            if found:
                return value, True
            value = build()
            with atomic_path(path) as tmp:
                save(value, tmp)
        return value, False

    @staticmethod
    def _load(path: Path, load: Callable[[Path], T], what: str) -> tuple[bool, T | None]:
        if not path.exists():
            return False, None
        try:
            return True, load(path)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a truncated / foreign file, whatever the reader raises
            log.warning("cached %s %s is unreadable (%s: %s); rebuilding it", what, path, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            path.unlink(missing_ok=True)
            return False, None


# --------------------------------------------------------------------------- anonymized sets

def refuse_declarations(specs: Sequence[AnonymizerSpec], reasons: dict[str, str], protocol: str) -> None:
    """UserError (before any output) for the first anonymizer whose declaration a protocol cannot honour.

    ``reasons`` maps ``fit_on:<value>`` or ``regions:<value>`` to the scientific reason."""
    for spec in specs:
        for declared in (f"fit_on:{getattr(spec.anonymizer, 'fit_on', 'nothing')}", f"regions:{getattr(spec.anonymizer, 'regions', 'given')}"):
            if declared in reasons:
                raise UserError(f"anonymizer {spec.label} ({declared.replace(':', '=')}) cannot run in {protocol}: {reasons[declared]}; remove it from anonymizers")


class AnonymizedSets:
    """Anonymized image sets, fitted per the anonymizer's declarations, cached by key.

    ``context``: what else makes the images (dataset fingerprint, region settings, crop
    size...); it enters every key. ``cache=None`` keeps everything in memory only."""

    def __init__(self, cache: Cache | None, context: dict[str, Any], device: str = "cpu", batch_size: int = 64, protocol: str = "") -> None:
        self.cache = cache
        self.artifacts = Artifacts(cache)
        self.context = context
        self.device = device
        self.batch_size = int(batch_size)
        self.protocol = protocol
        self._sets: dict[str, AnonymizedSet] = {}
        self._fitted: dict[str, Anonymizer] = {}

    # -- declarations (read here only)
    @staticmethod
    def fit_on(spec: AnonymizerSpec) -> str:
        return str(getattr(spec.anonymizer, "fit_on", "nothing"))

    @staticmethod
    def finds_own_regions(spec: AnonymizerSpec) -> bool:
        return getattr(spec.anonymizer, "regions", "given") == "own"

    @staticmethod
    def is_identity(spec: AnonymizerSpec) -> bool:
        return bool(spec.anonymizer.is_identity)

    @staticmethod
    def depends_on_seed(spec: AnonymizerSpec) -> bool:
        """True when the anonymized images (or the fitted state) depend on the run seed."""
        return bool(spec.anonymizer.stochastic) or AnonymizedSets.fit_on(spec) == "train"

    @staticmethod
    def fits_per_set(spec: AnonymizerSpec) -> bool:
        """True for anonymizers fitted on exactly the set they anonymize (k-Same)."""
        return AnonymizedSets.fit_on(spec) == "anonymized_set"

    def bind(self, specs: Sequence[AnonymizerSpec], sets: Sequence[ImageSet]) -> None:
        """Tell every anonymizer the sample ids it will see (before any output is written)."""
        ids = sorted({i for s in sets for i in s.sample_ids})
        for spec in specs:
            spec.anonymizer.bind_dataset(ids)

    # -- keys
    def set_key(self, image_set: ImageSet, spec: AnonymizerSpec, seed: int, *, train: ImageSet | None = None,
                groups: Sequence[np.ndarray] | None = None) -> str:
        """The key of ``image_set`` anonymized by ``spec`` (see :meth:`get`), without computing it."""
        if self.is_identity(spec):
            return f"clean-{image_set.name}-{image_set.fingerprint}"
        fit: dict[str, Any] | None = None
        if self.fit_on(spec) == "train":
            fit = {"on": "train", "train": None if train is None else train.fingerprint}
        elif self.fit_on(spec) == "anonymized_set":
            fit = {"on": "anonymized_set", "groups": None if groups is None else stable_hash([np.asarray(g).tolist() for g in groups])}
        data: dict[str, Any] = {"kind": "anonymized-set", "context": self.context, "set": image_set.fingerprint, "anonymizer": spec.key(), "fit": fit}
        if self.depends_on_seed(spec):
            data.update(seed=seed, batch_size=self.batch_size)
        return stable_hash(data)

    # -- fitting
    def fitted(self, spec: AnonymizerSpec, train: ImageSet | None, seed: int) -> Anonymizer:
        """A clone of the configured anonymizer, fitted as declared ``fit_on: train`` (state cached)."""
        if train is None:
            raise UserError(f"anonymizer {spec.label} is fitted on training images (fit_on=train), and {self.protocol or 'this protocol'} has no training split to fit it on; remove it from anonymizers")
        key = stable_hash({"kind": "fitted-anonymizer", "context": self.context, "train": train.fingerprint, "anonymizer": spec.key(), "seed": seed})
        if key not in self._fitted:
            anonymizer = spec.anonymizer.clone()

            def build() -> dict[str, Any]:
                whole = train.in_memory()  # fitting is a whole-set step by the anonymizer contract
                anonymizer.fit(whole.images.to(self.device), whole.masks.to(self.device), whole.annotations, whole.sample_ids,
                               seed=seed, device=self.device, cache=self.cache)
                return anonymizer.state_dict()

            state, cached = self.artifacts.get_or_build("fitted", key, ".safetensors", load_state_file, build, save_state, what=f"fitted {spec.label}")
            if cached:
                anonymizer.load_state(state)
            self._fitted[key] = anonymizer
        return self._fitted[key]

    def row_fields(self, spec: AnonymizerSpec, train: ImageSet | None, seed: int) -> dict[str, Any]:
        """What the anonymizer fitted on ``train`` adds to result rows (:meth:`Anonymizer.row_fields`); {} unless ``fit_on: train``."""
        if self.fit_on(spec) != "train" or train is None:
            return {}
        return dict(self.fitted(spec, train, seed).row_fields())

    # -- anonymized sets
    def get(self, image_set: ImageSet, spec: AnonymizerSpec, seed: int, *, train: ImageSet | None = None,
            groups: Sequence[np.ndarray] | None = None) -> AnonymizedSet:
        """``image_set`` anonymized by ``spec``.

        ``train``: the training set ``fit_on: train`` anonymizers are fitted on. ``groups``:
        for ``fit_on: anonymized_set``, index groups fitted and anonymized each on their own
        (default: the whole set as one group)."""
        if self.is_identity(spec):
            return AnonymizedSet(image_set.images, None, self.set_key(image_set, spec, seed))
        key = self.set_key(image_set, spec, seed, train=train, groups=groups)
        if key in self._sets:
            return self._sets[key]
        result = self._cached(image_set, spec, key)
        if result is None:
            # under the set's lock: of several processes needing it, one anonymizes, the others read
            with self.cache.lock("anonymized", key, ".npy") if self.cache is not None else nullcontext():
                result = self._cached(image_set, spec, key)
                if result is None:
                    result = self._build(image_set, spec, seed, train, groups, key)
        self._sets[key] = result
        return result

    def streams(self, image_set: ImageSet, spec: AnonymizerSpec) -> bool:
        """True when ``image_set`` is anonymized chunk by chunk into the cache: a set on disk,
        an anonymizer fitted on nothing or on ``train`` that uses the base class's batch loop
        (adapters that override ``anonymize_set`` see the whole set, as their programs expect)."""
        return (self.cache is not None and image_set.on_disk and not self.fits_per_set(spec)
                and type(spec.anonymizer).anonymize_set is Anonymizer.anonymize_set)

    def _build(self, image_set: ImageSet, spec: AnonymizerSpec, seed: int, train: ImageSet | None,
               groups: Sequence[np.ndarray] | None, key: str) -> AnonymizedSet:
        if self.streams(image_set, spec):
            return self._stream(image_set, spec, seed, train, key)
        out = self._run(image_set.in_memory(), spec, seed, train, groups)
        if self.cache is None:
            return AnonymizedSet(out.images, out.detections, key)
        if out.detections is not None:  # first: a reader that finds the images finds these too
            self.cache.save_array("detected", key, out.detections.numpy())
        path = self.cache.save_array("anonymized", key, out.images.numpy())
        if image_set.on_disk:  # a set on disk stays on disk
            detections = self.cache.path("detected", key, ".npy") if out.detections is not None else None
            return AnonymizedSet(DiskArray(path), None if detections is None else DiskArray(detections), key)
        return AnonymizedSet(out.images, out.detections, key)

    def _cached(self, image_set: ImageSet, spec: AnonymizerSpec, key: str) -> AnonymizedSet | None:
        """The set as cached on disk under ``key``, or None (read lazily when ``image_set`` is on disk)."""
        if self.cache is None:
            return None
        if image_set.on_disk:
            found = _disk_array(self.cache.path("anonymized", key, ".npy"), "anonymized")
            if found is None or found.shape != image_set.images.shape or found.dtype != np.uint8:
                return None
            detected = _disk_array(self.cache.path("detected", key, ".npy"), "detected") if self.finds_own_regions(spec) else None
            return AnonymizedSet(found, detected, key)
        cached = self.cache.load_array("anonymized", key)
        if cached is None or cached.shape != tuple(image_set.images.shape):
            return None
        detected = self.cache.load_array("detected", key) if self.finds_own_regions(spec) else None
        return AnonymizedSet(torch.from_numpy(cached), None if detected is None else torch.from_numpy(detected), key)

    def _stream(self, image_set: ImageSet, spec: AnonymizerSpec, seed: int, train: ImageSet | None, key: str) -> AnonymizedSet:
        """Anonymize ``image_set`` chunk by chunk straight into the cache. Chunks are whole
        multiples of the batch size and share one generator, so every batch and every random
        draw is the one a single whole-set call makes."""
        assert self.cache is not None
        generator = torch.Generator(device=self.device).manual_seed(seed)
        anonymizer = self.fitted(spec, train, seed) if self.fit_on(spec) == "train" else spec.anonymizer.clone()
        description = f"{spec.label} {image_set.name}"
        chunk = chunk_rows(images_row_bytes(image_set.images), self.batch_size)
        n = len(image_set)
        path = self.cache.path("anonymized", key, ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        reports = False
        with tempfile.TemporaryFile(dir=path.parent) as spill:  # detections, if any, until the images are complete
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                writer = NpyWriter(handle, tuple(image_set.images.shape), np.uint8)
                found: NpyWriter | None = None
                for start in tqdm(range(0, n, chunk), desc=description, unit="chunk", leave=False, disable=n <= chunk):
                    part = ImageSet(image_set.name, image_set.images[start:start + chunk], image_set.masks[start:start + chunk],
                                    image_set.sample_ids[start:start + chunk], image_set.annotations[start:start + chunk])
                    out = self._anonymize(anonymizer, part, generator, description)
                    writer.write(out.images)
                    reports = out.detections is not None if start == 0 else reports
                    if reports != (out.detections is not None):
                        raise RuntimeError(f"{description}: the anonymizer reported detections for some batches only")
                    if out.detections is not None:
                        found = found or NpyWriter(spill, tuple(image_set.masks.shape), np.bool_)
                        found.write(out.detections)
                writer.finish()
                if found is not None:  # written before the images appear: a reader that finds them finds these too
                    found.finish()
                    spill.seek(0)
                    with atomic_path(self.cache.path("detected", key, ".npy")) as det, open(det, "wb") as target:
                        shutil.copyfileobj(spill, target)
        detections = self.cache.path("detected", key, ".npy") if found is not None else None
        return AnonymizedSet(DiskArray(path), None if detections is None else DiskArray(detections), key)

    def _run(self, image_set: ImageSet, spec: AnonymizerSpec, seed: int, train: ImageSet | None, groups: Sequence[np.ndarray] | None) -> Anonymized:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        fit_on = self.fit_on(spec)
        if fit_on != "anonymized_set":
            anonymizer = self.fitted(spec, train, seed) if fit_on == "train" else spec.anonymizer.clone()
            return self._anonymize(anonymizer, image_set, generator, f"{spec.label} {image_set.name}")
        parts = groups if groups is not None else [np.arange(len(image_set))]
        images = image_set.images.clone()
        detections: torch.Tensor | None = None
        for part in tqdm(parts, desc=f"{spec.label} {image_set.name}", unit="group", leave=False, disable=len(parts) == 1):
            subset = image_set.subset(part)
            anonymizer = spec.anonymizer.clone()
            anonymizer.fit(subset.images.to(self.device), subset.masks.to(self.device), subset.annotations, subset.sample_ids,
                           seed=seed, device=self.device, cache=self.cache)
            out = self._anonymize(anonymizer, subset, generator, f"{spec.label} {image_set.name}")
            index = torch.as_tensor(np.asarray(part), dtype=torch.long)
            images[index] = out.images
            if out.detections is not None:
                detections = torch.zeros_like(image_set.masks) if detections is None else detections
                detections[index] = out.detections
        return Anonymized(images, detections)

    def _anonymize(self, anonymizer: Anonymizer, image_set: ImageSet, generator: torch.Generator, description: str) -> Anonymized:
        log.debug("anonymizing %s (%d images)", description, len(image_set))
        out = anonymizer.anonymize_set(image_set.images, image_set.masks, image_set.annotations, image_set.sample_ids, generator,
                                       batch_size=self.batch_size, device=self.device)
        if out.images.dtype != torch.uint8 or tuple(out.images.shape) != tuple(image_set.images.shape):
            raise RuntimeError(f"{description}: the anonymizer returned {tuple(out.images.shape)} {out.images.dtype} for {tuple(image_set.images.shape)} uint8 images")
        if getattr(anonymizer, "regions", "given") == "given":
            # given-region anonymizers change only the region, whatever they computed elsewhere
            mask = image_set.masks.expand_as(out.images)
            return Anonymized(torch.where(mask, out.images.cpu(), image_set.images), None)
        return Anonymized(out.images.cpu(), None if out.detections is None else out.detections.cpu())
