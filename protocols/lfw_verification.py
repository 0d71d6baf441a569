"""``lfw-verification``: LFW's pair verification protocol on anonymized faces (10 folds of pairs).

**Pairs** (``pairs.*``, :mod:`evalsuite.data.lfw_pairs`): LFW's official ``pairs.txt`` (10
folds of 300 matched + 300 mismatched pairs; also the single-set ``pairsDevTest.txt``) from
``pairs.file``, by default ``<dataset.root>/pairs.txt`` or the file beside the root. For the
synthetic faces (``dataset=synthetic``), or with ``pairs.file=generate`` for any face set,
seeded pairs are drawn in the same format (``pairs.folds``, ``pairs.per_fold``, ``pairs.seed``;
people disjoint across folds, drawn from identities outside the dataset's ``train``
partition, or from a seeded half of all identities when that leaves fewer than 5 people per
fold, as on the default synthetic set) and written to the cache folder.

**Anonymization** (``pairs.anonymize``): ``one`` anonymizes the second image of each pair and
keeps the first clean (a protected photo matched against a clean one); ``both`` anonymizes both.

**Recognizer** (``recognizer.name``, :mod:`evalsuite.face_recognizers`): any face recognizer;
the score of a pair is the cosine similarity of its embeddings. A trainable one (``cnn``) is
trained on the images of the identities that appear in no pair (LFW's "outside data").

**Threat models** and the threshold (:mod:`evalsuite.metrics.pair_verification`): for each
fold, thresholds are chosen on the other nine folds and applied to it.

- ``naive``: recognizer trained on clean images; the accuracy threshold chosen on the clean pairs;
- ``adaptive``: the accuracy threshold chosen on the anonymized pairs, and a trainable
  recognizer trained on anonymized images (``both``) or on clean plus anonymized images
  (``one``, whose pairs mix the two). A pretrained recognizer cannot adapt its embedding:
  only the threshold adapts, so its AUC and TAR equal the naive ones.

TAR at FAR thresholds come from the anonymized pairs of the other folds under both threat
models, so that the FAR holds on the pairs scored.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.threat_models import ThreatModel
from evalsuite.closed_set import FIT_GROUPS, pooled_fit_groups
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash, to_plain
from evalsuite.data.faces import FaceDataset
from evalsuite.data.lfw_pairs import Pair, draw_pairs, image_numbers, read_pairs, write_pairs
from evalsuite.data.synthetic import generated_fingerprint
from evalsuite.errors import UserError
from evalsuite.face_recognizers import ConfiguredRecognizer
from evalsuite.metrics.chance import pair_accuracy_chance
from evalsuite.metrics.pair_verification import FAR_TARGETS, PAIR_METRICS, fold_summary, k_fold_verification
from evalsuite.metrics.roc import roc_points
from evalsuite.pipeline import AnonymizedSet, AnonymizedSets, ImageSet, face_crop_settings
from evalsuite.protocol import CellResult, Protocol
from evalsuite.registry import PROTOCOLS, RECOGNIZERS
from evalsuite.store import atomic_path
from protocols.face_identification import FaceIdentification

log = logging.getLogger(__name__)

DEFAULT_ANONYMIZERS: list[Any] = ["none", "blur5", "blur15", "pixelate5", "pixelate15", "mask"]
ANONYMIZE = ("one", "both")


@PROTOCOLS.register("lfw-verification", description="LFW pair verification (official pairs.txt, 10 folds): accuracy, AUC, TAR@FAR with one or both faces anonymized")
class LfwVerification(Protocol):
    version = "1"
    metrics = PAIR_METRICS
    table_metrics = PAIR_METRICS
    supported_attacks = ("naive", "adaptive")
    dataset_aliases = {"synthetic": "synthetic-faces"}
    sample_set = "pairs"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        shared = FaceIdentification.default_config()  # the same face crops, region and recognizers as face-identification
        return {**{key: shared[key] for key in ("dataset", "attacks", "region", "image_size", "center_crop", "recognizer", "fit_groups")},
                "anonymizers": list(DEFAULT_ANONYMIZERS), "table": {"metrics": list(cls.table_metrics)},
                "pairs": {"file": None, "anonymize": "one", "folds": 10, "per_fold": 300, "seed": 0}}

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.device = str(cfg.device)
        self.recognizer = ConfiguredRecognizer(cfg.recognizer, self.device)
        self.dataset: FaceDataset | None = None
        self.pairs_file = ""
        self.pair_index = np.zeros((0, 2), dtype=np.int64)  # (pairs, 2) indices into the "pairs" image set
        self.same = np.zeros(0, dtype=bool)
        self.fold = np.zeros(0, dtype=np.int64)
        self.labels: dict[str, np.ndarray] = {}
        self.samples: dict[str, list[Any]] = {}

    # ---------------------------------------------------------------- preparation
    def prepare(self) -> None:
        self.recognizer.check()
        size, crop = face_crop_settings(self.cfg.image_size, self.cfg.center_crop)
        if str(self.cfg.pairs.anonymize) not in ANONYMIZE:
            raise UserError(f"pairs.anonymize={self.cfg.pairs.anonymize!r}: use one (the second image of each pair) or both")
        if str(self.cfg.fit_groups) not in FIT_GROUPS:
            raise UserError(f"fit_groups={self.cfg.fit_groups!r}: use one of {', '.join(FIT_GROUPS)}")
        dataset = self.build_dataset()
        if not isinstance(dataset, FaceDataset) or not dataset.has_identities:
            raise UserError(f"dataset {self.cfg.dataset.name!r} is not a face dataset with identities; lfw-verification reads face-folder (LFW layout), celeba or synthetic-faces (dataset=synthetic)")
        self.dataset = dataset
        folds = self._folds(dataset)
        numbers = image_numbers(dataset.samples)
        used: dict[int, int] = {}
        index = []
        for f, fold in enumerate(folds):
            for k, pair in enumerate(fold):
                index.append([used.setdefault(self._image(numbers, pair.name1, pair.number1, f, k), len(used)),
                              used.setdefault(self._image(numbers, pair.name2, pair.number2, f, k), len(used))])
        self.pair_index = np.asarray(index, dtype=np.int64)
        self.same = np.asarray([p.same for fold in folds for p in fold])
        self.fold = np.repeat(np.arange(len(folds)), [len(fold) for fold in folds])
        in_pairs = {name for fold in folds for p in fold for name in (p.name1, p.name2)}
        outside = {k: v for k, v in dataset.identities().items() if k not in in_pairs and len(v) >= 2}
        self.samples = {"pairs": [dataset.samples[i] for i in used], "train": [s for v in outside.values() for s in v]}
        if self.trainable and len(outside) < 2:
            raise UserError(f"recognizer {self.recognizer.name!r} is trained here, on identities that appear in no pair, and {dataset.root} has "
                            f"{len(outside)} such identities with 2+ images; use a pretrained recognizer (recognizer.name=dlib or arcface)")
        for name, samples in self.samples.items():
            ids = {identity: k for k, identity in enumerate(sorted({s.identity for s in samples}))}
            self.labels[name] = np.asarray([ids[s.identity] for s in samples], dtype=np.int64)
        self.sets["pairs"] = ImageSet.from_faces("pairs", self.samples["pairs"], {**to_plain(self.cfg.region), "fallback": "error"}, size, crop)
        if self.trainable:  # else the train set is decoded only if an anonymizer fits on it
            self._train_set()
        log.info("%s; %d folds, %d matched + %d mismatched pairs over %d images (%s); %d outside identities (%d images) for training",
                 dataset.summary(), len(folds), self.same.sum(), (~self.same).sum(), len(used), self.pairs_file, len(outside), len(self.samples["train"]))
        context = {"protocol": "lfw-verification", "dataset": self.dataset_fingerprint(), "region": to_plain(self.cfg.region), "fit_groups": str(self.cfg.fit_groups)}
        self.anonymized_sets = AnonymizedSets(self.cache, context, self.device, int(self.cfg.batch_size), protocol="lfw-verification")
        self.recognizer.prepare(self.anonymized_sets.artifacts)

    @property
    def trainable(self) -> bool:
        return bool(getattr(RECOGNIZERS.get(self.recognizer.name).factory, "trainable", False))

    def _folds(self, dataset: FaceDataset) -> list[list[Pair]]:
        """The pairs of ``pairs.file``, or drawn (synthetic faces, ``pairs.file=generate``)."""
        cfg, file = self.cfg.pairs, self.cfg.pairs.file
        if file is None and dataset.name != "synthetic-faces":
            root = Path(dataset.root)
            found = next((p for p in (root / "pairs.txt", root.parent / "pairs.txt") if p.is_file()), None)
            if found is None:
                raise UserError(f"no pairs file: neither {root / 'pairs.txt'} nor {root.parent / 'pairs.txt'} exists; set pairs.file=/path/to/pairs.txt "
                                "(LFW's official pairs) or pairs.file=generate to draw pairs from this dataset")
            file = str(found)
        if file is not None and str(file) != "generate":
            self.pairs_file = str(Path(str(file)).expanduser().absolute())
            return read_pairs(self.pairs_file)
        groups = dataset.identities()
        held_out = {k: len(v) for k, v in groups.items() if all(s.split != "train" for s in v)}
        if len(held_out) == len(groups) or len(held_out) < 5 * int(cfg.folds):  # no train partition, or too few people per fold: a seeded half
            names = sorted(groups)
            keep = np.random.default_rng(int(cfg.seed)).permutation(len(names))[: len(names) // 2]
            held_out = {names[k]: len(groups[names[k]]) for k in sorted(keep)}
        folds = draw_pairs(held_out, int(cfg.folds), int(cfg.per_fold), int(cfg.seed))
        if self.cache is None:
            self.pairs_file = "drawn, not written (no cache)"
            return folds
        target = Path(self.cache.root) / "lfw-pairs" / f"pairs-{stable_hash({'ids': held_out, 'draw': [int(cfg.folds), int(cfg.per_fold), int(cfg.seed)]})}.txt"
        with atomic_path(target) as temporary:  # Ray workers draw the same pairs and may write at once
            write_pairs(temporary, folds)
        self.pairs_file = str(target)
        return folds

    def _image(self, numbers: dict[tuple[str, int], int], name: str, number: int, fold: int, k: int) -> int:
        assert self.dataset is not None
        if (name, number) not in numbers:
            have = sum(1 for key in numbers if key[0] == name)
            raise UserError(f"{self.pairs_file}: pair {k + 1} of fold {fold + 1} names image {number} of {name!r} "
                            f"({Path(self.dataset.root) / name / f'{name}_{number:04d}.jpg'}), but {self.dataset.root} has "
                            f"{have} image(s) of {name!r}; use the pairs file of this dataset, or complete the dataset")
        return numbers[(name, number)]

    def dataset_fingerprint(self) -> dict[str, Any]:
        assert self.dataset is not None
        return {"name": self.dataset.name, "config": to_plain(self.cfg.dataset), "image_size": int(self.cfg.image_size),
                "center_crop": float(self.cfg.center_crop), "pairs": stable_hash([self.pair_index.tolist(), self.same.tolist(), self.fold.tolist()]),
                "files": stable_hash({name: [f"{s.relpath}:{s.identity}" for s in samples] for name, samples in self.samples.items()}),
                **generated_fingerprint(self.dataset.root)}

    # ---------------------------------------------------------------- anonymized sets
    def anonymized(self, name: str, spec: AnonymizerSpec, seed: int) -> tuple[torch.Tensor, str]:
        """Set ``name`` (``pairs`` or ``train``) anonymized by ``spec`` (the shared pipeline, cached) and its key."""
        assert self.anonymized_sets is not None
        sets = self.anonymized_sets
        if spec.is_identity:
            return self.images[name], f"clean-{name}"
        groups = pooled_fit_groups(self.labels[name], str(self.cfg.fit_groups), int(getattr(spec.anonymizer, "k", 1) or 1)) if sets.fits_per_set(spec) else None
        result = sets.get(self.sets[name], spec, seed, train=self._train_set(), groups=groups)
        return result.images, result.key

    def _train_set(self) -> ImageSet | None:
        """The outside identities' images (decoded on first use: ``fit_on: train`` anonymizers fit on them)."""
        if "train" not in self.sets and self.samples.get("train"):
            self.sets["train"] = ImageSet.from_faces("train", self.samples["train"], {**to_plain(self.cfg.region), "fallback": "error"},
                                                     int(self.cfg.image_size), float(self.cfg.center_crop))
        return self.sets.get("train")

    def sample_output(self, name: str, spec: AnonymizerSpec, seed: int) -> AnonymizedSet:
        images, key = self.anonymized(name, spec, seed)
        return AnonymizedSet(images, None, key)

    # ---------------------------------------------------------------- one grid cell
    def _scores(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """Cosine similarity of each pair: its first image's embedding in ``emb_a``, its second's in ``emb_b``."""
        a, b = np.asarray(emb_a, dtype=np.float64)[self.pair_index[:, 0]], np.asarray(emb_b, dtype=np.float64)[self.pair_index[:, 1]]
        return np.einsum("ij,ij->i", a, b) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)

    def evaluate(self, anonymizer: AnonymizerSpec, attack: ThreatModel, seed: int) -> CellResult:
        timer = time.perf_counter()
        both = str(self.cfg.pairs.anonymize) == "both"
        adaptive = attack.train != "clean" and not anonymizer.is_identity
        anon, anon_key = self.anonymized("pairs", anonymizer, seed)
        train_images, train_labels, train_key = self.images.get("train"), self.labels["train"], "clean-train"
        if adaptive and self.trainable:
            images, key = self.anonymized("train", anonymizer, seed)
            if both:
                train_images, train_key = images, key
            else:  # pairs mix clean and anonymized faces: learn from both
                train_images, train_key = torch.cat([self.images["train"], images]), f"clean+{key}"
                train_labels = np.concatenate([train_labels, train_labels])
        anonymize_s = time.perf_counter() - timer
        recognizer, recognizer_key, train_s = self.recognizer.trained(
            {"protocol": "lfw-verification", "version": self.version}, {"dataset": self.dataset_fingerprint(), "train": train_key},
            train_images, train_labels, seed)
        timer = time.perf_counter()
        clean_emb = self.recognizer.embed(recognizer, recognizer_key, self.images["pairs"], "clean-pairs")
        anon_emb = self.recognizer.embed(recognizer, recognizer_key, anon, anon_key)
        embed_s = time.perf_counter() - timer
        test = self._scores(anon_emb if both else clean_emb, anon_emb)
        calibration = test if adaptive else self._scores(clean_emb, clean_emb)
        summary = fold_summary(k_fold_verification(calibration, test, self.same, self.fold))
        metrics = {name: summary[name]["mean"] for name in PAIR_METRICS}
        log.info("%s / %s: %d-fold accuracy %.4f ± %.4f (std), AUC %.4f ± %.4f", anonymizer.label, attack.name, len(np.unique(self.fold)),
                 metrics["pair_accuracy"], summary["pair_accuracy"]["std"], metrics["pair_auc"], summary["pair_auc"]["std"])
        matched, mismatched = int(self.same.sum()), int((~self.same).sum())
        chance = {"pair_accuracy": pair_accuracy_chance(matched, mismatched), "pair_auc": 0.5, **FAR_TARGETS}
        return CellResult(
            metrics=metrics,
            durations={"anonymize_s": anonymize_s, "train_s": train_s, "embed_s": embed_s},
            extra={"folds": summary, "num_folds": int(len(np.unique(self.fold))), "num_matched_pairs": matched, "num_mismatched_pairs": mismatched,
                   "pairs_file": self.pairs_file, "anonymize": "both" if both else "one", "calibration": "anonymized" if adaptive else "clean",
                   "chance": chance, "recognizer": self.recognizer.name, "recognizer_key": recognizer_key},
            curves=roc_points(self.same, test),
        )
