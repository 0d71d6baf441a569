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

**Fitted anonymizers** (``fit_on: anonymized_set``, k-Same) are fitted on the set they anonymize. With
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from attacks.face_recognizer import FaceRecognizer
from attacks.threat_models import ThreatModel
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.faces import FaceDataset, FaceSample
from evalsuite.errors import UserError, did_you_mean
from evalsuite.metrics.chance import closed_set_chance, verification_chance
from evalsuite.metrics.items import item_scores_entry
from evalsuite.metrics.roc import roc_points
from evalsuite.metrics.identification import (
    FPR_TARGETS,
    IDENTIFICATION_METRICS,
    identity_templates,
    top1_accuracy,
    verification_metrics,
    verification_pairs,
)
from evalsuite.pipeline import AnonymizedSet, AnonymizedSets, ImageSet, face_crops
from evalsuite.protocol import CellResult, Protocol
from evalsuite.registry import PROTOCOLS, RECOGNIZERS

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
    sample_set = "probe"

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
        self.identities: list[str] = []
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
        dataset = self.build_dataset()
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
        region = {"name": str(self.cfg.region.name), "dilation": int(self.cfg.region.dilation), "fallback": "error"}
        for name, samples in self.samples.items():
            self.labels[name] = np.array([index[s.identity] for s in samples], dtype=np.int64)
            images, annotations = face_crops(samples, int(self.cfg.image_size), float(self.cfg.center_crop), f"load {name}")
            self.sets[name] = ImageSet.from_samples(name, samples, region, images=images, annotations=annotations)
        context = {"protocol": "face-identification", "dataset": self.dataset_fingerprint(), "region": to_plain(self.cfg.region), "fit_groups": str(self.cfg.fit_groups)}
        self.anonymized_sets = AnonymizedSets(self.cache, context, self.device, int(self.cfg.batch_size), protocol="face-identification")
        build_recognizer(self.recognizer_name, self.recognizer_params(), self.device)  # fail early (missing weights...)

    def dataset_label(self) -> str:
        return self.dataset.name if self.dataset is not None else str(self.cfg.dataset.name)

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = [f"{s.relpath}:{s.identity}" for name in SETS for s in self.samples[name]]
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "split": to_plain(self.cfg.split),
                "image_size": int(self.cfg.image_size), "center_crop": float(self.cfg.center_crop), "files": stable_hash(files)}

    # ---------------------------------------------------------------- anonymized sets
    def anonymized(self, which: str, spec: AnonymizerSpec, seed: int, joint: bool = False) -> tuple[torch.Tensor, str]:
        """The ``enrol`` or ``probe`` set anonymized by ``spec`` (the shared pipeline, cached) and its key.

        ``joint``: anonymized together with the other set (the parrot attack); only matters
        for anonymizers fitted on the set they anonymize or stochastic ones. Anonymizers
        fitted on training data (``fit_on: train``) are fitted on the clean enrolment set."""
        assert self.anonymized_sets is not None
        sets = self.anonymized_sets
        if spec.is_identity:
            return self.images[which], f"clean-{which}"
        if joint and (sets.fits_per_set(spec) or spec.stochastic):
            both = ImageSet.concat("enrol+probe", [self.sets[s] for s in SETS])
            labels = np.concatenate([self.labels[s] for s in SETS])
            groups = self.anonymizer_groups(spec, labels, self.joint_order(self.labels["enrol"], self.labels["probe"]))
            result = sets.get(both, spec, seed, train=self.sets["enrol"], groups=groups)
            n = len(self.sets["enrol"])
            return (result.images[:n] if which == "enrol" else result.images[n:]), f"{result.key}-{which}"
        result = sets.get(self.sets[which], spec, seed, train=self.sets["enrol"], groups=self.anonymizer_groups(spec, self.labels[which]))
        return result.images, result.key

    def sample_output(self, name: str, spec: AnonymizerSpec, seed: int) -> AnonymizedSet:
        """Run samples: the probe set anonymized on its own (as the naive and adaptive cells use it)."""
        images, key = self.anonymized(name, spec, seed)
        return AnonymizedSet(images, None, key)

    def anonymizer_groups(self, spec: AnonymizerSpec, labels: np.ndarray, order: np.ndarray | None = None) -> list[np.ndarray] | None:
        """The :meth:`fit_groups` of an anonymizer fitted on the set it anonymizes, groups smaller
        than its k pooled (into the last big one if still too small); None for other anonymizers."""
        assert self.anonymized_sets is not None
        if not self.anonymized_sets.fits_per_set(spec):
            return None
        groups = self.fit_groups(labels, order)
        k = int(getattr(spec.anonymizer, "k", 1) or 1)
        big, small = [g for g in groups if len(g) >= k], [g for g in groups if len(g) < k]
        if small:
            pooled = np.concatenate(small)
            if len(pooled) >= k or not big:
                big.append(pooled)
            else:
                big[-1] = np.concatenate([big[-1], pooled])
        return big

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

    # ---------------------------------------------------------------- recognizers
    def recognizer(self, enrol_key: str, enrol_images: torch.Tensor, seed: int) -> tuple[FaceRecognizer, str, float]:
        """The recognizer trained on ``enrol_images`` (cached on disk when trainable)."""
        params = self.recognizer_params()
        factory = RECOGNIZERS.get(self.recognizer_name).factory
        key_data: dict[str, Any] = {"protocol": "face-identification", "version": self.version, "recognizer": self.recognizer_name,
                                    "recognizer_version": getattr(factory, "version", None), "params": params,
                                    # weight files named by a setting: a replaced file is another recognizer
                                    "files": {k: [Path(v).expanduser().stat().st_size, Path(v).expanduser().stat().st_mtime_ns]
                                              for k, v in params.items() if isinstance(v, str) and Path(v).expanduser().is_file()}}
        trainable = bool(getattr(factory, "trainable", False))
        if trainable:
            key_data.update(dataset=self.dataset_fingerprint(), train=enrol_key, seed=seed)
        key = stable_hash(key_data)
        if key in self._recognizers:
            return self._recognizers[key], key, 0.0
        started = time.perf_counter()
        probe = build_recognizer(self.recognizer_name, params, self.device)
        if trainable:
            assert self.anonymized_sets is not None
            self.anonymized_sets.artifacts.get_or_build(
                "recognizers", key, ".pt", lambda path: probe.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)),
                lambda: probe.fit(enrol_images, self.labels["enrol"], seed=seed), lambda _, path: torch.save(probe.state_dict(), path), what="recognizer")
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
                   "chance": {**closed_set_chance(len(self.identities)), **verification_chance(FPR_TARGETS)}, "recognizer": self.recognizer_name, "recognizer_key": recognizer_key,
                   "item_scores": item_scores_entry({"top1": hits}, [s.relpath for s in self.samples["probe"]])},
            curves=roc_points(genuine, scores),
        )
