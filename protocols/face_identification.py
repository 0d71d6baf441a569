"""``face-identification``: closed-set face identification and verification (UP-GAN Table 1).

Every face of a dataset with identities is an aligned crop; the region (``region.name``,
default ``image``: the whole aligned face, as UP-GAN obscures whole face images) of the
probe faces is anonymized and a face recognizer (``recognizer.name``: ``cnn`` trained here,
``dlib`` or ``arcface`` pretrained; :data:`evalsuite.registry.RECOGNIZERS`) tries to name them.

**Split rule** (closed set; ``split.*``). Identities with fewer than ``split.min_images``
images are dropped; ``split.max_identities`` keeps a seeded random subset of the rest. Each
identity's images (sorted by path) are shuffled with ``np.random.default_rng([split.seed,
sha1(identity)])`` and the first ``n * split.enrol_fraction`` rounded half up (at least 1, at
most n - 1) become its *enrolment* images, the rest its *probe* images. The dataset's own
partition (CelebA's train/val/test, which splits identities) is ignored unless
``split.partitions`` names the ones to keep. The split depends on ``split.*`` only, never
on the run seed.

**Attacker.** The recognizer is trained on the enrolment images (trainable recognizers; a
pretrained one only embeds), a scikit-learn classifier (``classifier.name``: ``logistic``
regression, default, or ``linear_svm``) is fitted on the enrolment embeddings, and:

- identification (``top1``): the classifier's prediction for each probe embedding;
- verification (``roc_auc``, ``tpr_at_fpr1``, ``tpr_at_fpr01``): cosine similarity of every
  probe embedding with every identity template (the renormalised mean of that identity's
  enrolment embeddings); genuine = own identity, impostors = all other identities
  (:mod:`evalsuite.metrics.identification`, with its threshold rule).

**Threat models** (what the enrolment images, used for training and for the classifier, are):

- ``naive`` (UP-GAN threat model I): clean; the probes are anonymized;
- ``adaptive`` (UP-GAN threat model II, "train and test the identifier on obscured images"):
  anonymized, independently of the probes (a fitted anonymizer such as k-Same is fitted on
  the enrolment set and, separately, on the probe set; a stochastic one draws each set's
  noise from its own stream);
- ``parrot`` (Newton et al.): anonymized *together with* the probes, as one set: k-Same
  clusters enrolment and probe faces jointly (a probe can share its surrogate with enrolment
  faces of other people: with ``fit_groups=distinct`` each group takes enrolment faces of
  half the identities and probe faces of the other half, :meth:`FaceIdentification.joint_order`),
  a stochastic anonymizer runs over both in one stream. For
  deterministic anonymizers without fitting (blur, pixelate, mask) parrot equals adaptive.
  In re-identification (``market1501-reid``) parrot differs from adaptive by anonymizing the
  gallery; in this closed-set protocol the enrolment images already are the gallery, so the
  difference is only this joint anonymization.

For ``none`` the adaptive and parrot attackers are the naive one (shared, trained once).

**Fitted anonymizers** (``requires_fit``, k-Same) are fitted on the set they anonymize. With
``fit_groups=distinct`` (default) that set is cut into groups holding at most one image per
identity (group j = the j-th image of every identity), and each group is fitted and
anonymized on its own: k-Same is defined on a face set of distinct people (Newton et al.),
and clusters that pool several images of one person would leak that person's average face.
``fit_groups=split`` fits once on the whole set instead.

Anonymized sets and trained recognizers are cached on disk under a hash of everything that
produced them (as ``market1501-reid`` does); embeddings are kept in memory.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from attacks.face_recognizer import FaceRecognizer
from attacks.threat_models import ThreatModel
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.faces import FaceDataset, FaceSample, read_face_image
from evalsuite.errors import UserError, did_you_mean
from evalsuite.metrics.items import item_scores_entry
from evalsuite.metrics.identification import (
    IDENTIFICATION_METRICS,
    identity_templates,
    top1_accuracy,
    verification_metrics,
    verification_pairs,
)
from evalsuite.protocol import CellResult, Protocol
from evalsuite.regions import region_masks
from evalsuite.registry import DATASETS, PROTOCOLS, RECOGNIZERS
from evalsuite.store import atomic_path

log = logging.getLogger(__name__)

DEFAULT_ANONYMIZERS: list[Any] = [
    "none", "blur5", "blur15", "blur25", "pixelate5", "pixelate15", "pixelate25", "mask", "ksame-pixel",  # ksame-pixel: k=10 by default
]
CLASSIFIERS = ("logistic", "linear_svm")
FIT_GROUPS = ("distinct", "split")
SETS = ("enrol", "probe")


def recognizer_defaults() -> dict[str, dict[str, Any]]:
    """``recognizer.<name>.*`` keys: each registered recognizer's keyword defaults."""
    out: dict[str, dict[str, Any]] = {}
    for entry in RECOGNIZERS:
        extra = getattr(entry.factory, "config_defaults", None)
        if callable(extra):
            params = dict(extra())
        else:
            params = {}
            for name, p in inspect.signature(entry.factory).parameters.items():
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in ("self", "device"):
                    params[name] = None if p.default is p.empty else p.default
        params.update(entry.params)
        out[entry.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    return out


def build_recognizer(name: str, params: dict[str, Any], device: str) -> FaceRecognizer:
    """``RECOGNIZERS.build(name, **params)`` (plus ``device`` where the factory takes one)."""
    entry = RECOGNIZERS.get(name)
    kwargs = dict(params)
    try:
        takes_device = "device" in inspect.signature(entry.factory).parameters
    except (TypeError, ValueError):
        takes_device = False
    if takes_device:
        kwargs["device"] = device
    try:
        recognizer = entry.build(**kwargs)
    except TypeError as exc:
        raise UserError(f"recognizer {name!r}: {exc}; see its settings with `evalsuite list recognizers` and attacks/") from None
    if not isinstance(recognizer, FaceRecognizer):
        raise UserError(f"recognizer {name!r} built a {type(recognizer).__name__}, not a FaceRecognizer (attacks/face_recognizer.py)")
    return recognizer


def closed_set_split(dataset: FaceDataset, enrol_fraction: float, seed: int, min_images: int = 2,
                     max_identities: int | None = None, max_images_per_identity: int | None = None,
                     partitions: list[str] | None = None) -> tuple[list[FaceSample], list[FaceSample], list[str]]:
    """(enrolment samples, probe samples, identities) by the split rule in the module docstring."""
    if not 0 < enrol_fraction < 1:
        raise UserError(f"split.enrol_fraction={enrol_fraction} must lie strictly between 0 and 1")
    if min_images < 2:
        raise UserError(f"split.min_images={min_images} must be >= 2 (an identity needs an enrolment and a probe image)")
    groups = dataset.identities()
    if partitions:
        groups = {k: [s for s in v if s.split in partitions] for k, v in groups.items()}
    eligible = {k: v for k, v in groups.items() if len(v) >= min_images}
    if len(eligible) < 2:
        raise UserError(f"dataset {dataset.name} ({dataset.root}) has {len(eligible)} identities with >= {min_images} images"
                        + (f" in partitions {partitions}" if partitions else "") + "; closed-set identification needs at least 2 (lower split.min_images or use another dataset)")
    names = sorted(eligible)
    if max_identities is not None and max_identities < len(names):
        if max_identities < 2:
            raise UserError(f"split.max_identities={max_identities} must be >= 2")
        keep = np.random.default_rng([seed, 1]).choice(len(names), size=max_identities, replace=False)
        names = [names[i] for i in sorted(keep)]
    enrol, probe = [], []
    for name in names:
        samples = eligible[name]
        rng = np.random.default_rng([seed, int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)])
        order = [samples[i] for i in rng.permutation(len(samples))]
        if max_images_per_identity is not None:
            order = order[:max(2, max_images_per_identity)]
        n_enrol = min(len(order) - 1, max(1, int(np.floor(len(order) * enrol_fraction + 0.5))))
        enrol += order[:n_enrol]
        probe += order[n_enrol:]
    return enrol, probe, names


@PROTOCOLS.register("face-identification", description="closed-set face identification + verification under naive / adaptive / parrot attackers (UP-GAN Table 1)")
class FaceIdentification(Protocol):
    version = "1"
    metrics = IDENTIFICATION_METRICS
    dataset_aliases = {"synthetic": "synthetic-faces"}
    table_metrics = IDENTIFICATION_METRICS

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "dataset": {"name": "synthetic-faces"},
            "anonymizers": list(DEFAULT_ANONYMIZERS),
            "attacks": ["naive", "adaptive"],
            "region": {"name": "image", "dilation": 0},
            "image_size": 112,
            "center_crop": 1.0,
            "split": {"enrol_fraction": 0.5, "seed": 0, "min_images": 2, "max_identities": None,
                      "max_images_per_identity": None, "partitions": None},
            "recognizer": {"name": "cnn", **recognizer_defaults()},
            "classifier": {"name": "logistic", "C": 10.0, "max_iter": 2000},
            "fit_groups": "distinct",
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.device = str(cfg.device)
        self.dataset: FaceDataset | None = None
        self.samples: dict[str, list[FaceSample]] = {}
        self.labels: dict[str, np.ndarray] = {}
        self.images: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.identities: list[str] = []
        self._anonymized: dict[str, torch.Tensor] = {}
        self._recognizers: dict[str, FaceRecognizer] = {}
        self._embeddings: dict[tuple[str, str], np.ndarray] = {}
        self._classifiers: dict[tuple[str, str, int], Any] = {}

    # ---------------------------------------------------------------- configuration
    @property
    def recognizer_name(self) -> str:
        return str(self.cfg.recognizer.name)

    def recognizer_params(self) -> dict[str, Any]:
        node = self.cfg.recognizer.get(self.recognizer_name)
        return to_plain(node) if node is not None else {}

    def _check_config(self) -> None:
        name = self.recognizer_name
        if name not in RECOGNIZERS:
            raise UserError(f"unknown recognizer.name {name!r}: {did_you_mean(name, RECOGNIZERS.names())} (see `evalsuite list recognizers`)")
        if str(self.cfg.classifier.name) not in CLASSIFIERS:
            raise UserError(f"classifier.name={self.cfg.classifier.name!r}: use one of {', '.join(CLASSIFIERS)}")
        if str(self.cfg.fit_groups) not in FIT_GROUPS:
            raise UserError(f"fit_groups={self.cfg.fit_groups!r}: use one of {', '.join(FIT_GROUPS)}")
        size = self.cfg.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 16:
            raise UserError(f"image_size={size!r} must be an integer >= 16 (pixels of the square face crops)")
        crop = self.cfg.center_crop
        if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
            raise UserError(f"center_crop={crop!r} must be a fraction in (0, 1] of the shorter image side")

    # ---------------------------------------------------------------- preparation
    def prepare(self) -> None:
        self._check_config()
        params = {k: v for k, v in to_plain(self.cfg.dataset).items() if k != "name"}
        dataset = DATASETS.build(str(self.cfg.dataset.name), **params)
        if not isinstance(dataset, FaceDataset):
            raise UserError(f"dataset {self.cfg.dataset.name!r} is not a face dataset; face-identification reads face-folder, celeba, synthetic-faces (dataset=synthetic)")
        if not dataset.has_identities:
            raise UserError(f"dataset {dataset.name!r} ({dataset.root}) has no identity labels (UTKFace names carry age / gender / race only), "
                            "so closed-set identification cannot be scored on it; use dataset=celeba, dataset=face-folder or dataset=synthetic "
                            "(UTKFace serves attribute-utility protocols)")
        self.dataset = dataset
        split = self.cfg.split
        enrol, probe, self.identities = closed_set_split(
            dataset, float(split.enrol_fraction), int(split.seed), int(split.min_images),
            None if split.max_identities is None else int(split.max_identities),
            None if split.max_images_per_identity is None else int(split.max_images_per_identity),
            None if split.partitions is None else [str(p) for p in split.partitions],
        )
        index = {name: i for i, name in enumerate(self.identities)}
        self.samples = {"enrol": enrol, "probe": probe}
        log.info("%s; closed set: %d identities, %d enrolment / %d probe images", dataset.summary(), len(self.identities), len(enrol), len(probe))
        for name, samples in self.samples.items():
            self.labels[name] = np.array([index[s.identity] for s in samples], dtype=np.int64)
            self.images[name], scales = self._load(samples, name)
            self.masks[name] = self._region_masks(samples, scales)
        build_recognizer(self.recognizer_name, self.recognizer_params(), self.device)  # fail early (missing weights...)

    def _load(self, samples: list[FaceSample], name: str) -> tuple[torch.Tensor, list[tuple[float, float, float]]]:
        """Decode, centre-crop and resize every image: uint8 (N, 3, S, S) and (x0, y0, scale) per image."""
        size, crop = int(self.cfg.image_size), float(self.cfg.center_crop)
        hint = "replace or remove the file (or its line in the dataset's lists)"

        def one(sample: FaceSample) -> tuple[np.ndarray, tuple[float, float, float]]:
            img = read_face_image(sample.path, hint)
            h, w = img.shape[:2]
            side = min(h, w) * crop
            x0, y0 = (w - side) / 2, (h - side) / 2
            if (h, w) == (size, size) and crop == 1:
                return img, (0.0, 0.0, 1.0)
            ix0, iy0, iside = int(round(x0)), int(round(y0)), max(1, int(round(side)))
            patch = img[iy0:iy0 + iside, ix0:ix0 + iside]
            scale = size / iside
            interp = cv2.INTER_AREA if iside > size else cv2.INTER_LINEAR
            return cv2.resize(patch, (size, size), interpolation=interp), (float(ix0), float(iy0), scale)

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(tqdm(pool.map(one, samples), total=len(samples), desc=f"load {name}", unit="img", leave=False))
        arrays = np.stack([r[0] for r in results])
        return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous(), [r[1] for r in results]

    def _region_masks(self, samples: list[FaceSample], scales: list[tuple[float, float, float]]) -> torch.Tensor:
        size = int(self.cfg.image_size)
        region = str(self.cfg.region.name)
        proxies = []
        for sample, (x0, y0, scale) in zip(samples, scales):
            ann = sample.annotations
            box = ann.get("face_box")
            if box is not None:
                ann = {**ann, "face_box": [(box[0] - x0) * scale, (box[1] - y0) * scale, (box[2] - x0) * scale, (box[3] - y0) * scale]}
            proxies.append(SimpleNamespace(annotations=ann, relpath=sample.relpath))
        return region_masks(proxies, region, size, size, dilation=int(self.cfg.region.dilation), fallback="error")  # type: ignore[arg-type]

    def dataset_label(self) -> str:
        return self.dataset.name if self.dataset is not None else str(self.cfg.dataset.name)

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = [f"{s.relpath}:{s.identity}" for name in SETS for s in self.samples[name]]
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "split": to_plain(self.cfg.split),
                "image_size": int(self.cfg.image_size), "center_crop": float(self.cfg.center_crop), "files": stable_hash(files)}

    # ---------------------------------------------------------------- anonymized sets
    def _set_key(self, which: str, spec: AnonymizerSpec, seed: int) -> str:
        key = {"dataset": self.dataset_fingerprint(), "set": which, "anonymizer": spec.key(), "region": to_plain(self.cfg.region)}
        if spec.anonymizer.requires_fit:
            key["fit_groups"] = str(self.cfg.fit_groups)
            if which.startswith("joint"):
                key["joint_order"] = "alternating"  # FaceIdentification.joint_order
        if spec.stochastic:
            key.update(seed=seed, batch_size=int(self.cfg.batch_size))
        return stable_hash(key)

    def anonymized(self, which: str, spec: AnonymizerSpec, seed: int, joint: bool = False) -> tuple[torch.Tensor, str]:
        """The ``enrol`` or ``probe`` set anonymized by ``spec`` (cached) and its key.

        ``joint``: anonymized together with the other set (the parrot attack); only matters
        for fitted or stochastic anonymizers."""
        if spec.is_identity:
            return self.images[which], f"clean-{which}"
        joint = joint and (spec.anonymizer.requires_fit or spec.stochastic)
        key = self._set_key(f"joint-{which}" if joint else which, spec, seed)
        if key not in self._anonymized:
            cached = self.cache.load_array("anonymized", key)
            if cached is not None:
                self._anonymized[key] = torch.from_numpy(cached)
            elif joint:
                both = self._run_anonymizer(torch.cat([self.images[s] for s in SETS]), torch.cat([self.masks[s] for s in SETS]),
                                            [x for s in SETS for x in self.samples[s]], np.concatenate([self.labels[s] for s in SETS]), spec, seed, "enrol+probe",
                                            order=self.joint_order(self.labels["enrol"], self.labels["probe"]))
                n = self.images["enrol"].shape[0]
                for part, result in (("enrol", both[:n]), ("probe", both[n:])):
                    part_key = self._set_key(f"joint-{part}", spec, seed)
                    self.cache.save_array("anonymized", part_key, result.numpy())
                    self._anonymized[part_key] = result
            else:
                result = self._run_anonymizer(self.images[which], self.masks[which], self.samples[which], self.labels[which], spec, seed, which)
                self.cache.save_array("anonymized", key, result.numpy())
                self._anonymized[key] = result
        return self._anonymized[key], key

    def fit_groups(self, labels: np.ndarray, order: np.ndarray | None = None) -> list[np.ndarray]:
        """Index groups a fitted anonymizer is fitted and applied on (``fit_groups``).

        ``distinct``: group j holds the j-th image of every identity, images taken in the
        order of ``order`` (default: as listed)."""
        if str(self.cfg.fit_groups) == "split":
            return [np.arange(len(labels))]
        visit = np.arange(len(labels)) if order is None else np.lexsort((np.arange(len(labels)), order))
        rank = np.zeros(len(labels), dtype=np.int64)
        seen: dict[int, int] = {}
        for i in visit.tolist():
            label = int(labels[i])
            rank[i] = seen.get(label, 0)
            seen[label] = rank[i] + 1
        return [np.flatnonzero(rank == j) for j in range(int(rank.max()) + 1)]

    @staticmethod
    def joint_order(enrol_labels: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
        """The order in which the parrot attack's joint set is grouped: per identity its enrolment
        and probe images alternate, starting with enrolment for even and probe for odd identity
        indices, so that every group mixes enrolment faces of some people with probe faces of others."""
        def within(labels: np.ndarray) -> np.ndarray:
            index, seen = np.zeros(len(labels), dtype=np.int64), {}
            for i, label in enumerate(labels.tolist()):
                index[i] = seen.get(label, 0)
                seen[label] = index[i] + 1
            return index

        return np.concatenate([2 * within(enrol_labels) + enrol_labels % 2, 2 * within(probe_labels) + 1 - probe_labels % 2])

    def _run_anonymizer(self, images: torch.Tensor, masks: torch.Tensor, samples: list[FaceSample], labels: np.ndarray,
                        spec: AnonymizerSpec, seed: int, what: str, order: np.ndarray | None = None) -> torch.Tensor:
        anonymizer = spec.anonymizer
        generator = torch.Generator(device=self.device).manual_seed(seed)
        out = torch.empty_like(images)
        if anonymizer.requires_fit:
            groups = self.fit_groups(labels, order)
            k = int(getattr(anonymizer, "k", 1) or 1)
            big, small = [g for g in groups if len(g) >= k], [g for g in groups if len(g) < k]
            if small:  # groups too small for k-anonymity on their own are pooled (into the last big one if still too small)
                pooled = np.concatenate(small)
                if len(pooled) >= k or not big:
                    big.append(pooled)
                else:
                    big[-1] = np.concatenate([big[-1], pooled])
            groups = big
            for group in tqdm(groups, desc=f"{spec.label} {what}", unit="group", leave=False):
                idx = torch.as_tensor(group)
                x, m = images[idx].to(self.device), masks[idx].to(self.device)
                ann = [samples[i].annotations for i in group]
                anonymizer.fit(x, m, ann)
                out[idx] = anonymizer.anonymize(x, m, ann, generator=generator).cpu()
            return out
        batch = int(self.cfg.batch_size)
        for start in tqdm(range(0, images.shape[0], batch), desc=f"{spec.label} {what}", unit="batch", leave=False):
            stop = start + batch
            ann = [s.annotations for s in samples[start:stop]]
            out[start:stop] = anonymizer.anonymize(images[start:stop].to(self.device), masks[start:stop].to(self.device), ann, generator=generator).cpu()
        return out

    # ---------------------------------------------------------------- recognizers
    def recognizer(self, enrol_key: str, enrol_images: torch.Tensor, seed: int) -> tuple[FaceRecognizer, str, float]:
        """The recognizer trained on ``enrol_images`` (cached on disk when trainable)."""
        params = self.recognizer_params()
        factory = RECOGNIZERS.get(self.recognizer_name).factory
        key_data: dict[str, Any] = {"protocol": "face-identification", "version": self.version, "recognizer": self.recognizer_name,
                                    "recognizer_version": getattr(factory, "version", None), "params": params}
        trainable = bool(getattr(factory, "trainable", False))
        if trainable:
            key_data.update(dataset=self.dataset_fingerprint(), train=enrol_key, seed=seed)
        key = stable_hash(key_data)
        if key in self._recognizers:
            return self._recognizers[key], key, 0.0
        started = time.perf_counter()
        probe = build_recognizer(self.recognizer_name, params, self.device)
        if trainable:
            path = self.cache.path("recognizers", key, ".pt")
            if path.exists():
                try:
                    probe.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                except (RuntimeError, EOFError, OSError, ValueError) as exc:
                    log.warning("cached recognizer %s is unreadable (%s); training again", path, exc)
                    path.unlink(missing_ok=True)
            if not path.exists():
                probe.fit(enrol_images, self.labels["enrol"], seed=seed)
                with atomic_path(path) as tmp:
                    torch.save(probe.state_dict(), tmp)
        self._recognizers[key] = probe
        return probe, key, time.perf_counter() - started

    def _embed(self, recognizer: FaceRecognizer, recognizer_key: str, images: torch.Tensor, set_key: str) -> np.ndarray:
        cache_key = (recognizer_key, set_key)
        if cache_key not in self._embeddings:
            emb = np.asarray(recognizer.embed(images), dtype=np.float32)
            if emb.shape[0] != images.shape[0] or emb.ndim != 2 or not np.isfinite(emb).all():
                raise RuntimeError(f"recognizer {self.recognizer_name!r} returned embeddings of shape {emb.shape} (or non-finite values) for {images.shape[0]} images")
            self._embeddings[cache_key] = emb
        return self._embeddings[cache_key]

    def _classifier(self, seed: int):
        cfg = self.cfg.classifier
        if str(cfg.name) == "logistic":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(C=float(cfg.C), max_iter=int(cfg.max_iter))
        from sklearn.svm import LinearSVC

        return LinearSVC(C=float(cfg.C), max_iter=int(cfg.max_iter), random_state=seed)

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> CellResult:
        assert self.dataset is not None
        timer = time.perf_counter()
        clean = attack.train == "clean" or anonymizer.is_identity
        joint = attack.gallery == "anonymized"
        probe, probe_key = self.anonymized("probe", anonymizer, seed, joint=joint and not clean)
        if clean:
            enrol, enrol_key = self.images["enrol"], "clean-enrol"
        else:
            enrol, enrol_key = self.anonymized("enrol", anonymizer, seed, joint=joint)
        anonymize_s = time.perf_counter() - timer
        recognizer, recognizer_key, train_s = self.recognizer(enrol_key, enrol, seed)
        timer = time.perf_counter()
        enrol_emb = self._embed(recognizer, recognizer_key, enrol, enrol_key)
        probe_emb = self._embed(recognizer, recognizer_key, probe, probe_key)
        embed_s = time.perf_counter() - timer
        timer = time.perf_counter()
        y_enrol, y_probe = self.labels["enrol"], self.labels["probe"]
        # single-threaded BLAS: these problems are small, and spinning BLAS threads on a busy
        # machine made a 0.1 s fit take seconds
        with threadpool_limits(limits=1, user_api="blas"):
            classifier = self._classifiers.get((recognizer_key, enrol_key, seed))
            if classifier is None:
                classifier = self._classifier(seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    classifier.fit(enrol_emb, y_enrol)
                self._classifiers[(recognizer_key, enrol_key, seed)] = classifier
            predicted = classifier.predict(probe_emb)
            hits = (np.asarray(predicted) == np.asarray(y_probe)).astype(np.float64)
            metrics = {"top1": top1_accuracy(predicted, y_probe)}
            templates, classes = identity_templates(enrol_emb, y_enrol)
            genuine, scores = verification_pairs(probe_emb, y_probe, templates, classes)
            verification, extra = verification_metrics(genuine, scores)
        metrics.update(verification)
        evaluate_s = time.perf_counter() - timer
        return CellResult(
            metrics=metrics,
            durations={"anonymize_s": anonymize_s, "train_s": train_s, "embed_s": embed_s, "evaluate_s": evaluate_s},
            extra={**extra, "num_identities": len(self.identities), "num_enrol": int(len(y_enrol)), "num_probe": int(len(y_probe)),
                   "chance_top1": 1.0 / len(self.identities), "recognizer": self.recognizer_name, "recognizer_key": recognizer_key,
                   "item_scores": item_scores_entry({"top1": hits}, [s.relpath for s in self.samples["probe"]])},
        )
