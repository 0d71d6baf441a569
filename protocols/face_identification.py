"""``face-identification``: closed-set face identification and verification (UP-GAN Table 1).

Every face of a dataset with identities is an aligned crop; the region (``region.name``,
default ``image``: the whole aligned face, as UP-GAN obscures whole face images) of the
probe faces is anonymized and a face recognizer (``recognizer.name``: ``cnn`` trained here,
``dlib`` or ``arcface`` pretrained; :data:`evalsuite.registry.RECOGNIZERS`) tries to name them.

**Split rule** (closed set; ``split.*``, :func:`evalsuite.closed_set.closed_set_split`): each
identity's images are split by a seeded shuffle into *enrolment* and *probe* images
(``split.enrol_fraction``); the split depends on ``split.*`` only, never on the run seed.
The enrolment images are the ``gallery`` set, the probes the ``query`` set (:mod:`evalsuite.splits`);
``split.partitions`` names the dataset partitions (splits) to draw from.

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
  half the identities and probe faces of the other half, :func:`evalsuite.closed_set.joint_order`),
  a stochastic anonymizer runs over both in one stream. For
  deterministic anonymizers without fitting (blur, pixelate, mask) parrot equals adaptive.
  (In ``market1501-reid`` parrot also anonymizes the gallery; here the enrolment set is it.)
- ``reconstruction`` / ``reconstruction-adaptive`` (:mod:`attacks.reconstruction`): a
  de-anonymizer learnt from the (anonymized, clean) enrolment pairs restores the probes
  (and, adaptive, the enrolment images) before the naive / adaptive recognizer sees them.

For ``none`` the adaptive and parrot attackers are the naive one (shared, trained once).

**Fitted anonymizers** (``fit_on: anonymized_set``, k-Same) are fitted on the set they anonymize,
in the groups ``fit_groups`` names (:func:`evalsuite.closed_set.fit_groups`: ``distinct``, the
default, holds at most one image per identity in a group; ``split`` fits on the whole set).
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from attacks.reconstruction import ReconstructionAttack, ReconstructionConfig, reconstruction_quality
from attacks.threat_models import ThreatModel
from evalsuite.closed_set import CLASSIFIERS, FIT_GROUPS, closed_set_split, fit_identity_classifier, joint_order, pooled_fit_groups
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.faces import FaceDataset, FaceSample
from evalsuite.data.synthetic import generated_fingerprint
from evalsuite.errors import UserError
from evalsuite.face_recognizers import ConfiguredRecognizer, recognizer_defaults
from evalsuite.metrics.chance import closed_set_chance, verification_chance
from evalsuite.metrics.identification import (FPR_TARGETS, IDENTIFICATION_METRICS, identity_templates, top1_accuracy, verification_metrics,
                                              verification_pairs)
from evalsuite.metrics.items import item_scores_entry
from evalsuite.metrics.roc import roc_points
from evalsuite.pipeline import AnonymizedSet, AnonymizedSets, ImageSet, face_crop_settings
from evalsuite.protocol import CellResult, Protocol
from evalsuite.registry import PROTOCOLS
from evalsuite.splits import check_splits, dataset_splits
from evalsuite.trained_models import Memo

log = logging.getLogger(__name__)

DEFAULT_ANONYMIZERS: list[Any] = [
    "none", "blur5", "blur15", "blur25", "pixelate5", "pixelate15", "pixelate25", "mask", "ksame-pixel",  # ksame-pixel: k=10 by default
]
SETS = ("gallery", "query")  # evalsuite.splits: gallery = the enrolment images, query = the probes


@PROTOCOLS.register("face-identification", description="closed-set face identification + verification under naive / adaptive / parrot attackers (UP-GAN Table 1)")
class FaceIdentification(Protocol):
    version = "1"
    metrics = IDENTIFICATION_METRICS + ("attacked_psnr", "attacked_ssim")
    supported_attacks = ("naive", "adaptive", "parrot", "reconstruction", "reconstruction-adaptive")
    dataset_aliases = {"synthetic": "synthetic-faces"}
    table_metrics = IDENTIFICATION_METRICS
    sample_set, fit_set = "query", "gallery"  # fit_on=train anonymizers learn from the clean enrolment images

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
            "reconstruction": ReconstructionConfig().as_dict(),  # de-anonymizer (L1 only here: recognizers expose no gradients)
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.device = str(cfg.device)
        self.dataset: FaceDataset | None = None
        self.samples: dict[str, list[FaceSample]] = {}
        self.labels: dict[str, np.ndarray] = {}
        self.identities: list[str] = []
        self.recognizer = ConfiguredRecognizer(cfg.recognizer, self.device)
        self._classifiers, self._attacked_quality = Memo[Any](), Memo[dict[str, float]]()  # per (recognizer, enrolment, seed); per probe set

    def _check_config(self) -> None:
        self.recognizer.check()
        if str(self.cfg.classifier.name) not in CLASSIFIERS:
            raise UserError(f"classifier.name={self.cfg.classifier.name!r}: use one of {', '.join(CLASSIFIERS)}")
        if str(self.cfg.fit_groups) not in FIT_GROUPS:
            raise UserError(f"fit_groups={self.cfg.fit_groups!r}: use one of {', '.join(FIT_GROUPS)}")
        face_crop_settings(self.cfg.image_size, self.cfg.center_crop)

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
        gallery, query, self.identities = closed_set_split(
            dataset, float(split.enrol_fraction), int(split.seed), int(split.min_images),
            None if split.max_identities is None else int(split.max_identities),
            None if split.max_images_per_identity is None else int(split.max_images_per_identity),
            None if split.partitions is None else check_splits(list(split.partitions), dataset_splits(dataset), f"dataset {dataset.name}", "split.partitions"),
        )
        index = {name: i for i, name in enumerate(self.identities)}
        self.samples = {"gallery": gallery, "query": query}
        log.info("%s; closed set: %d identities, %d gallery (enrolment) / %d query (probe) images", dataset.summary(), len(self.identities), len(gallery), len(query))
        region = {**to_plain(self.cfg.region), "fallback": "error"}
        for name, samples in self.samples.items():
            self.labels[name] = np.array([index[s.identity] for s in samples], dtype=np.int64)
            self.sets[name] = ImageSet.from_faces(name, samples, region, int(self.cfg.image_size), float(self.cfg.center_crop))
        context = {"protocol": "face-identification", "dataset": self.dataset_fingerprint(), "region": to_plain(self.cfg.region), "fit_groups": str(self.cfg.fit_groups)}
        self.anonymized_sets = AnonymizedSets(self.cache, context, self.device, int(self.cfg.batch_size), protocol="face-identification")
        self.recognizer.prepare(self.anonymized_sets.artifacts)
        self.reconstruction = ReconstructionAttack(self.anonymized_sets.artifacts, ReconstructionConfig.from_dict(to_plain(self.cfg.reconstruction)),
                                                   self.device, "face-identification")

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        from evalsuite.data.face_boxes import boxes_fingerprint

        files = [f"{s.relpath}:{s.identity}" for name in SETS for s in self.samples[name]]
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "split": to_plain(self.cfg.split),
                "image_size": int(self.cfg.image_size), "center_crop": float(self.cfg.center_crop), "files": stable_hash(files),
                **boxes_fingerprint([s for name in SETS for s in self.samples[name]], self.cfg.region), **generated_fingerprint(self.dataset.root)}

    # ---------------------------------------------------------------- anonymized sets
    def anonymized(self, which: str, spec: AnonymizerSpec, seed: int, joint: bool = False) -> tuple[torch.Tensor, str]:
        """The ``gallery`` (enrolment) or ``query`` (probe) set anonymized by ``spec`` (the shared pipeline, cached) and its key.

        ``joint``: anonymized together with the other set (the parrot attack); only matters
        for anonymizers fitted on the set they anonymize or stochastic ones. Anonymizers
        fitted on training data (``fit_on: train``) are fitted on the clean enrolment set."""
        assert self.anonymized_sets is not None
        sets = self.anonymized_sets
        if spec.is_identity:
            return self.images[which], f"clean-{which}"
        if joint and (sets.fits_per_set(spec) or spec.stochastic):
            both = ImageSet.concat("gallery+query", [self.sets[s] for s in SETS])
            labels = np.concatenate([self.labels[s] for s in SETS])
            groups = self.anonymizer_groups(spec, labels, joint_order(self.labels["gallery"], self.labels["query"]))
            result = sets.get(both, spec, seed, train=self.sets["gallery"], groups=groups)
            n = len(self.sets["gallery"])
            return (result.images[:n] if which == "gallery" else result.images[n:]), f"{result.key}-{which}"
        result = sets.get(self.sets[which], spec, seed, train=self.sets["gallery"], groups=self.anonymizer_groups(spec, self.labels[which]))
        return result.images, result.key

    def sample_output(self, name: str, spec: AnonymizerSpec, seed: int) -> AnonymizedSet:
        """Run samples: the query (probe) set anonymized on its own (as the naive and adaptive cells use it)."""
        images, key = self.anonymized(name, spec, seed)
        return AnonymizedSet(images, None, key)

    def anonymizer_groups(self, spec: AnonymizerSpec, labels: np.ndarray, order: np.ndarray | None = None) -> list[np.ndarray] | None:
        """The fit groups (``fit_groups``) of an anonymizer fitted on the set it anonymizes; None for other anonymizers."""
        assert self.anonymized_sets is not None
        if not self.anonymized_sets.fits_per_set(spec):
            return None
        return pooled_fit_groups(labels, str(self.cfg.fit_groups), int(getattr(spec.anonymizer, "k", 1) or 1), order)

    # ---------------------------------------------------------------- recognizers
    def _fitted_classifier(self, enrol_emb: np.ndarray, recognizer_key: str, enrol_key: str, seed: int) -> Any:
        """The identity classifier fitted on the enrolment embeddings (once per recognizer, enrolment set and seed)."""
        cfg = self.cfg.classifier
        return self._classifiers.get((recognizer_key, enrol_key, seed), lambda: fit_identity_classifier(
            str(cfg.name), float(cfg.C), int(cfg.max_iter), seed, enrol_emb, self.labels["gallery"]))

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> CellResult:
        assert self.dataset is not None
        timer = time.perf_counter()
        clean = attack.train == "clean" or anonymizer.is_identity
        joint = attack.gallery == "anonymized"
        probe, probe_key = self.anonymized("query", anonymizer, seed, joint=joint and not clean)
        if clean:
            enrol, enrol_key = self.images["gallery"], "clean-gallery"
        else:
            enrol, enrol_key = self.anonymized("gallery", anonymizer, seed, joint=joint)
        if attack.reconstruct and not anonymizer.is_identity:  # the de-anonymizer learns from the (anonymized, clean) enrolment pairs
            pairs = (*self.anonymized("gallery", anonymizer, seed), self.images["gallery"], seed)
            probe, probe_key = self.reconstruction.apply(probe, probe_key, *pairs)
            enrol, enrol_key = (enrol, enrol_key) if clean else self.reconstruction.apply(enrol, enrol_key, *pairs)
        anonymize_s = time.perf_counter() - timer
        recognizer, recognizer_key, train_s = self.recognizer.trained(
            {"protocol": "face-identification", "version": self.version}, {"dataset": self.dataset_fingerprint(), "train": enrol_key},
            enrol, self.labels["gallery"], seed)
        timer = time.perf_counter()
        enrol_emb = self.recognizer.embed(recognizer, recognizer_key, enrol, enrol_key)
        probe_emb = self.recognizer.embed(recognizer, recognizer_key, probe, probe_key)
        embed_s = time.perf_counter() - timer
        timer = time.perf_counter()
        y_enrol, y_probe = self.labels["gallery"], self.labels["query"]
        # single-threaded BLAS: these problems are small, and spinning BLAS threads on a busy
        # machine made a 0.1 s fit take seconds
        with threadpool_limits(limits=1, user_api="blas"):
            predicted = self._fitted_classifier(enrol_emb, recognizer_key, enrol_key, seed).predict(probe_emb)
            hits = (np.asarray(predicted) == np.asarray(y_probe)).astype(np.float64)
            metrics = {"top1": top1_accuracy(predicted, y_probe)}
            templates, classes = identity_templates(enrol_emb, y_enrol)
            genuine, scores = verification_pairs(probe_emb, y_probe, templates, classes)
            verification, extra = verification_metrics(genuine, scores)
        metrics.update({**verification, **self._attacked_quality.get(probe_key, lambda: reconstruction_quality(probe, self.images["query"]))})
        evaluate_s = time.perf_counter() - timer
        return CellResult(
            metrics=metrics,
            durations={"anonymize_s": anonymize_s, "train_s": train_s, "embed_s": embed_s, "evaluate_s": evaluate_s},
            extra={**extra, "num_identities": len(self.identities), "num_enrol": int(len(y_enrol)), "num_probe": int(len(y_probe)),
                   "chance": {**closed_set_chance(len(self.identities)), **verification_chance(FPR_TARGETS)}, "recognizer": self.recognizer.name, "recognizer_key": recognizer_key,
                   "item_scores": item_scores_entry({"top1": hits}, [s.relpath for s in self.samples["query"]]), **self.row_fields(anonymizer, seed)},
            curves=roc_points(genuine, scores),
        )
