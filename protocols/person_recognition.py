"""``person-recognition``: head obfuscation against naeil-style recognizers (Sun et al. 2018, Table 1).

The head box of every full-person image is anonymized (``region.name=head``) and two
recognizers (:mod:`attacks.person_recognizer`) name the person: on the head crop
(``head_accuracy``) and on the whole image (``body_head_accuracy``). Beside them: the body+head
recognizer's attention (``head_contribution``, :mod:`evalsuite.metrics.attention`) and the
anonymized queries' ``ssim`` / ``mask_ssim``.

Splits (:mod:`evalsuite.splits`): ``train`` (the CNN feature extractors; identities disjoint
from the test ones, as naeil's PIPA train set), ``gallery`` (enrollment: the identity SVM)
and ``query`` (recognized). Only identities in both gallery and query are used. On the
synthetic set the gallery holds 1-2 images per camera of a test identity and the queries one
from each of 2-3 cameras; ``dataset=pipa`` splits each test identity's instances in seeded halves.

Threat models (what the recognizers saw when they were trained):

- ``naive``: CNNs on the clean train split, SVM on the clean gallery (UP-GAN's threat model I);
- ``adaptive``: CNNs on the anonymized train split, SVM on the anonymized gallery (threat
  model II). Our reading of Sun et al.'s "retrained [naeil's recognizers] on our data-splits",
  after Oh et al. (2016), whose recognizers adapt; Sun et al. do not say whether the CNNs
  were retrained too; we adapt both;
- ``reconstruction``: a de-anonymizer (:mod:`attacks.reconstruction`; L1 only, the SVM scores
  are no perceptual loss) learns to undo the anonymizer from the (anonymized, original)
  training pairs; the clean recognizers see its reconstructions of the queries;
- ``reconstruction-adaptive``: recognizers trained on the reconstructed train split and the
  SVM on the reconstructed gallery.

k-Same is fitted on the split it anonymizes (it is defined on a closed set). Anonymized sets
and CNN state dicts are cached by a hash of everything that produced them; SVMs and features
are kept in memory.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch

from attacks.person_recognizer import (
    RECOGNIZER_REGIONS,
    IdentitySVM,
    PersonRecognizer,
    RecognizerConfig,
    boxes_tensor,
)
from attacks.reconstruction import ReconstructionAttack, ReconstructionConfig, reconstruction_quality
from attacks.threat_models import ThreatModel
from evalsuite.closed_set import shared_identities
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.types import ReidDataset, Sample
from evalsuite.errors import UserError
from evalsuite.metrics.attention import DEFAULT_SIGMA, head_contribution, saliency_maps
from evalsuite.metrics.person_recognition import PERSON_RECOGNITION_METRICS, accuracy
from evalsuite.metrics.quality import mean_quality
from evalsuite.pipeline import AnonymizedSets, ImageSet
from evalsuite.protocol import CellResult, Protocol
from evalsuite.regions import region_masks
from evalsuite.registry import ANONYMIZERS, PROTOCOLS
from evalsuite.trained_models import Memo, TrainedModels, training_source
from evalsuite.data.synthetic import generated_fingerprint

log = logging.getLogger(__name__)

METRIC_OF_REGION = {"head": "head_accuracy", "body+head": "body_head_accuracy"}
TABLE_METRICS = (*PERSON_RECOGNITION_METRICS, "head_contribution", "ssim", "mask_ssim")
ALL_METRICS = (*TABLE_METRICS, "attacked_psnr", "attacked_ssim")
DEFAULT_ANONYMIZERS = (
    "none", "blur5", "blur15", "blur25", "blurhead", "pixelate5", "pixelate15", "pixelatehead", "mask", "blackhead", "ksame-pixel",
)


def default_anonymizers() -> list[str]:
    """The default rows; ``ksame-pixel`` only when its module is installed."""
    return [name for name in DEFAULT_ANONYMIZERS if name != "ksame-pixel" or name in ANONYMIZERS]


@PROTOCOLS.register("person-recognition", description="head obfuscation vs naeil-style head / body+head recognizers (CNN + linear SVM), recognizer attention, SSIM / mask-SSIM (Sun et al. 2018 Table 1)")
class PersonRecognition(Protocol):
    version = "1"
    metrics = ALL_METRICS
    supported_attacks = ("naive", "adaptive", "reconstruction", "reconstruction-adaptive")
    table_metrics = TABLE_METRICS
    sample_set = "query"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "dataset": {"name": "pipa"},
            "anonymizers": default_anonymizers(),
            "attacks": ["naive", "adaptive"],
            "region": {"name": "head", "dilation": 0},
            "attacker": RecognizerConfig().as_dict(),
            "attention": {"sigma": DEFAULT_SIGMA},
            "reconstruction": ReconstructionConfig().as_dict(),
            "table": {"metrics": list(cls.table_metrics)},
        }

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.recognizer_config = RecognizerConfig.from_dict(to_plain(cfg.attacker))
        self.device = str(cfg.device)
        sigma = cfg.attention.sigma
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise UserError(f"attention.sigma={sigma!r} must be a non-negative number of pixels (0 = no smoothing)")
        self.dataset: ReidDataset | None = None
        self.samples: dict[str, list[Sample]] = {}
        self.head_masks: dict[str, torch.Tensor] = {}
        self.boxes: dict[str, torch.Tensor] = {}
        self.labels: dict[str, np.ndarray] = {}
        self._recognizers: TrainedModels[PersonRecognizer] | None = None
        self._features: Memo[np.ndarray] = Memo()
        self._svms: Memo[IdentitySVM] = Memo()
        self._quality: Memo[dict[str, float]] = Memo()
        self._attacked_quality: Memo[dict[str, float]] = Memo()

    # ---------------------------------------------------------------- preparation
    def prepare(self) -> None:
        dataset = self.build_dataset()
        if not isinstance(dataset, ReidDataset):
            raise UserError(f"dataset {self.cfg.dataset.name!r} is not a person dataset with train / gallery / query splits; use dataset=synthetic or dataset=pipa")
        self.dataset = dataset
        gallery, query, enrolled = shared_identities(dataset.split("gallery"), dataset.split("query"))
        self.samples = {"train": list(dataset.split("train")), "gallery": gallery, "query": query}
        for split, samples in self.samples.items():
            if not samples:
                raise UserError(f"dataset {dataset.root}: no {split} images{' with identities shared by gallery and query' if split != 'train' else ''}; check dataset.root")
        if len(enrolled) < 2:
            raise UserError(f"dataset {dataset.root}: the gallery and query share {len(enrolled)} identity; person recognition needs at least 2")
        region = self.cfg.region
        for split, samples in self.samples.items():
            missing = [s for s in samples if s.annotations.get("head_box") is None]
            if missing:
                raise UserError(
                    f"{len(missing)} of {len(samples)} {split} images have no head_box annotation (e.g. {missing[0].relpath}); "
                    "person-recognition needs a head box for every image: use dataset=synthetic or dataset=pipa, or supply dataset.annotations=FILE"
                )
            self.sets[split] = ImageSet.from_samples(split, samples, {**to_plain(region), "fallback": "error"})
            _, _, h, w = self.sets[split].images.shape
            self.head_masks[split] = region_masks(samples, "head", h, w, dilation=0)
            self.boxes[split] = boxes_tensor([s.annotations["head_box"] for s in samples])
            self.labels[split] = np.array([s.pid for s in samples])
        # the CNNs classify the training identities: labels 0..N-1 whatever the loader did
        self.labels["train"] = np.unique(self.labels["train"], return_inverse=True)[1].reshape(-1)
        context = {"protocol": "person-recognition", "dataset": self.dataset_fingerprint(), "region": to_plain(self.cfg.region)}
        self.anonymized_sets = AnonymizedSets(self.cache, context, self.device, int(self.cfg.batch_size), protocol="person-recognition")
        self._recognizers = TrainedModels(self.anonymized_sets.artifacts, "person_recognizers", "recognizer")
        self.reconstruction = ReconstructionAttack(self.anonymized_sets.artifacts, ReconstructionConfig.from_dict(to_plain(self.cfg.reconstruction)),
                                                   self.device, "person-recognition")
        log.info("person-recognition: %d train images / %d ids, %d gallery (enrollment) / %d query images of %d ids (chance %.1f%%)",
                 len(self.samples["train"]), self.num_train_ids, len(gallery), len(query), len(enrolled), 100.0 / len(enrolled))

    @property
    def num_train_ids(self) -> int:
        return int(self.labels["train"].max()) + 1

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        files = [f"{s.relpath}:{s.pid}:{s.annotations['head_box']}" for samples in self.samples.values() for s in samples]
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "files": stable_hash(files), **generated_fingerprint(self.dataset.root)}

    # ---------------------------------------------------------------- anonymized sets
    def anonymized(self, split: str, spec: AnonymizerSpec, seed: int) -> tuple[torch.Tensor, str]:
        """The split anonymized by ``spec`` (the shared pipeline: fitted as declared, cached) and its key."""
        assert self.anonymized_sets is not None
        result = self.anonymized_sets.get(self.sets[split], spec, seed, train=self.sets["train"])
        return result.images, result.key

    def attacked(self, split: str, spec: AnonymizerSpec, seed: int, reconstruct: bool) -> tuple[torch.Tensor, str]:
        """The split as the attacker sees it: anonymized and, under the reconstruction attacks, reconstructed."""
        images, key = self.anonymized(split, spec, seed)
        if reconstruct and not spec.is_identity:
            train, train_key = self.anonymized("train", spec, seed)
            images, key = self.reconstruction.apply(images, key, train, train_key, self.images["train"], seed)
        return images, key

    def _training_source(self, attack: ThreatModel, spec: AnonymizerSpec, seed: int) -> dict[str, Any]:
        assert self.anonymized_sets is not None
        set_key = lambda: self.anonymized_sets.set_key(self.sets["train"], spec, seed, train=self.sets["train"])  # noqa: E731
        if self._adapted(attack, spec) and attack.reconstruct:
            return {"images": "reconstructed", "deanonymizer": self.reconstruction.key(set_key(), seed, None)}
        return training_source(not self._adapted(attack, spec), set_key)

    # ---------------------------------------------------------------- recognizers
    def _adapted(self, attack: ThreatModel, spec: AnonymizerSpec) -> bool:
        return attack.train == "anonymized" and not spec.is_identity

    def recognizer(self, region: str, attack: ThreatModel, spec: AnonymizerSpec, seed: int) -> tuple[PersonRecognizer, str, float]:
        """The region's feature extractor for this threat model; trained once per training data, config and seed."""
        assert self.anonymized_sets is not None and self._recognizers is not None
        adapted = self._adapted(attack, spec)
        source = self._training_source(attack, spec, seed)
        config = {k: v for k, v in self.recognizer_config.as_dict().items() if k != "svm_c"}
        key = stable_hash({"protocol": "person-recognition", "version": self.version, "dataset": self.dataset_fingerprint(), "region": region, "train": source, "recognizer": config, "seed": seed})
        if key in self._recognizers:
            return self._recognizers[key], key, 0.0
        recognizer = PersonRecognizer(self.recognizer_config, region, num_classes=self.num_train_ids, device=self.device, seed=seed)

        def train() -> PersonRecognizer:
            images = self.attacked("train", spec, seed, attack.reconstruct)[0] if adapted else self.images["train"]
            what = f"{'reconstructed ' if attack.reconstruct else ''}{spec.label}" if adapted else "clean"
            return recognizer.fit(images, self.boxes["train"], torch.as_tensor(self.labels["train"]), description=f"train {region} recognizer ({what}, seed {seed})")

        recognizer, seconds = self._recognizers.get(key, recognizer.load, train, lambda r: r.model.state_dict(), what=f"{region} recognizer")
        return recognizer, key, seconds

    def _embed(self, recognizer: PersonRecognizer, recognizer_key: str, images: torch.Tensor, split: str, set_key: str) -> np.ndarray:
        return self._features.get((recognizer_key, set_key), lambda: recognizer.embed(images, self.boxes[split], batch_size=max(64, int(self.cfg.batch_size))))

    def _svm(self, recognizer: PersonRecognizer, recognizer_key: str, gallery: torch.Tensor, gallery_key: str, seed: int) -> IdentitySVM:
        return self._svms.get((recognizer_key, gallery_key), lambda: IdentitySVM(c=self.recognizer_config.svm_c, seed=seed).fit(
            self._embed(recognizer, recognizer_key, gallery, "gallery", gallery_key), self.labels["gallery"]))

    def quality(self, query: torch.Tensor, query_key: str) -> dict[str, float]:
        """Mean SSIM and mask-SSIM (on the anonymized region; nan when empty) of the anonymized query images."""
        return self._quality.get(query_key, lambda: {k: v for k, v in mean_quality(self.images["query"], query, self.masks["query"]).items() if k in ("ssim", "mask_ssim")})

    # ---------------------------------------------------------------- one grid cell
    def evaluate(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> CellResult:
        assert self.dataset is not None
        timer = time.perf_counter()
        anonymized_query, anonymized_key = self.anonymized("query", anonymizer, seed)
        query, query_key = self.attacked("query", anonymizer, seed, attack.reconstruct)
        adapted = self._adapted(attack, anonymizer)
        gallery, gallery_key = self.attacked("gallery", anonymizer, seed, attack.reconstruct) if adapted else (self.images["gallery"], "clean-gallery")
        durations = {"anonymize_s": time.perf_counter() - timer, "train_s": 0.0}
        metrics: dict[str, float] = {}
        keys: dict[str, str] = {}
        timer = time.perf_counter()
        for region in RECOGNIZER_REGIONS:
            recognizer, key, train_s = self.recognizer(region, attack, anonymizer, seed)
            durations["train_s"] += train_s
            keys[region] = key
            svm = self._svm(recognizer, key, gallery, gallery_key, seed)
            predicted = svm.predict(self._embed(recognizer, key, query, "query", query_key))
            metrics[METRIC_OF_REGION[region]] = accuracy(predicted, self.labels["query"])
        durations["recognize_s"] = time.perf_counter() - timer - durations["train_s"]

        timer = time.perf_counter()
        body = self._recognizers[keys["body+head"]]  # type: ignore[index]
        svm = self._svm(body, keys["body+head"], gallery, gallery_key, seed)
        maps = saliency_maps(
            lambda x, boxes: body.class_scores(x.to(self.device), boxes, svm), query, self.boxes["query"],
            sigma=float(self.cfg.attention.sigma), batch_size=int(self.cfg.batch_size),
        )
        metrics["head_contribution"] = head_contribution(maps, self.head_masks["query"])
        durations["attention_s"] = time.perf_counter() - timer

        timer = time.perf_counter()
        metrics.update(self.quality(anonymized_query, anonymized_key))
        metrics.update(self._attacked_quality.get(query_key, lambda: reconstruction_quality(query, self.images["query"])))
        durations["quality_s"] = time.perf_counter() - timer
        identities = len(set(self.labels["gallery"].tolist()))
        return CellResult(metrics=metrics, durations=durations, extra={
            "num_train": len(self.samples["train"]), "num_enroll": len(self.samples["gallery"]), "num_test": len(self.samples["query"]),
            "num_identities": identities, "chance": {metric: 1.0 / identities for metric in METRIC_OF_REGION.values()}, "recognizer_keys": keys})
