"""``detection-validate``: a fixed detector evaluated on anonymized validation images.

The validate-on-anonymized experiment of Paper A (Table 1: WIDER FACE face detection AP of
DSFD on anonymized faces) and Paper D (Tables 2-3, "Validate w/ Anon. Data"): every face or
person of the validation images is anonymized (``region.name``), a detector that never saw
anonymized data runs on them, and COCO box AP against the original annotations says how much
of what the detector needs the anonymizer kept. Higher is better for utility.

Detectors (``detector.name``):
- ``torchvision``: a pretrained torchvision COCO detector, ``detector.model`` (fasterrcnn_resnet50_fpn,
  retinanet_resnet50_fpn, fcos_resnet50_fpn, keypointrcnn_resnet50_fpn, ...; the ``_v2`` models)
  with the state dict torchvision publishes for it in ``detector.weights``
  (:mod:`evalsuite.detection.pretrained`; never downloaded). Its COCO labels are matched to the
  dataset's categories by name. This is the real-data path: keypoint R-CNN on COCO
  ``person_keypoints`` gives Box AP and Kp. AP (``kp_ap``) as in Paper D Table 2 "Validate w/
  Anon. Data" (there a detectron2 Keypoint R-50 FPN: 53.6 / 64.0 on the originals; torchvision's
  keypointrcnn_resnet50_fpn publishes 54.6 / 65.0); a box detector with ``dataset.categories=null``
  gives the all-category AP and AP_person of Paper C Table 4 (there mask AP of a Mask R-CNN);
- ``trained``: a torchvision detector (``detector.arch``: fcos / retinanet / fasterrcnn) trained
  on the clean training split once per seed and cached, or read from ``detector.weights``;
- ``dlib-hog``, ``dlib-cnn``: dlib's face detectors (offline, real images; category face);
- ``opencv-hog``: OpenCV's HOG people detector (offline, real images; category person);
- ``auto`` (default): ``torchvision`` when ``detector.model`` is set; ``trained`` on synthetic data or
  with ``detector.weights``, else
  ``dlib-hog`` on a face-only dataset (WIDER FACE) and ``opencv-hog`` on one with persons.
AP is computed on the categories the detector reports; keypoint AP (``kp_ap``, ``kp_ap50``,
``kp_ap75``) when the detector predicts keypoints and the dataset's persons have them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from evalsuite.progress import tqdm

from attacks.threat_models import NoAttacker
from evalsuite.components import AnonymizerSpec
from evalsuite.config import stable_hash
from evalsuite.detection import pretrained
from evalsuite.detection.offline import OFFLINE_DETECTORS, OfflineDetector
from evalsuite.errors import UserError
from evalsuite.metrics.detection import KEYPOINT_METRICS, coco_keypoint_scores, has_keypoints
from evalsuite.protocol import CellResult
from evalsuite.registry import PROTOCOLS
from protocols.detection_common import DetectionProtocol, trainable_defaults

log = logging.getLogger(__name__)

DETECTOR_NAMES = ("auto", "trained", "torchvision", *OFFLINE_DETECTORS)


@PROTOCOLS.register("detection-validate", description="detection AP of a fixed detector on anonymized validation images (Paper A Table 1, Paper D 'validate w/ anon. data')")
class DetectionValidate(DetectionProtocol):
    version = "1"
    metrics = DetectionProtocol.metrics + KEYPOINT_METRICS
    table_metrics = (*DetectionProtocol.table_metrics, "kp_ap")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        detector = {"name": "auto", "model": None, "weights": None, "upsample": 1, "threshold": -0.5, "models_dir": None, **trainable_defaults()}
        return cls.base_config(detector)

    def __init__(self, cfg, cache) -> None:
        super().__init__(cfg, cache)
        self.detector_name = "auto"
        self.offline: OfflineDetector | None = None
        self.pretrained: pretrained.PretrainedConfig | None = None
        self.label_map: dict[int, int] = {}

    def prepare(self) -> None:
        name = str(self.cfg.detector.name)
        if name not in DETECTOR_NAMES:
            raise UserError(f"detector.name={name!r} is not a detector of detection-validate; use one of {', '.join(DETECTOR_NAMES)}")
        weights = self.cfg.detector.weights
        if name == "torchvision" or (name == "auto" and self.cfg.detector.get("model")):
            self.pretrained = self.pretrained_config()
            name = "torchvision"
        trained = name == "trained" or (name == "auto" and (weights or str(self.cfg.dataset.name).startswith("synthetic")))
        self.splits_needed = ("train", "val") if trained and not weights else ("val",)
        self.trainable_config()  # bad detector.* values fail here, before any output
        super().prepare()
        if self.pretrained is not None:
            self.detector_name = f"torchvision {self.pretrained.model}"
            val = self.splits["val"]
            wanted = self.cfg.detector.get("categories")
            categories = pretrained.scored_categories(self.pretrained, val, self.categories(), explicit=wanted is not None)
            self.label_map = pretrained.label_map(self.pretrained.model, val, categories)
            self.pretrained_model()  # a missing or mismatching file fails here, before any output
            if self.pretrained.predicts_keypoints and not self.keypoint_category():
                log.info("detection-validate: %s has no person keypoints, so no keypoint AP (COCO: dataset.kind=person_keypoints)", self.dataset_label())
        elif trained:
            self.detector_name = "trained"
            if weights:
                self.load_detector_weights(str(weights))
        else:
            if name == "auto":
                name = "dlib-hog" if self.splits["val"].category_id("person") is None else "opencv-hog"
            self.detector_name = name
            detector = self.cfg.detector
            self.offline = OfflineDetector(name, upsample=detector.upsample, threshold=detector.threshold,
                                           models_dir=str(detector.models_dir) if detector.models_dir else None).load()
            if self.splits["val"].category_id(self.offline.category) is None:
                raise UserError(f"detector {name} finds {self.offline.category}s but {self.dataset_label()} has only {', '.join(self.splits['val'].category_names())}; choose another detector.name")
        log.info("detection-validate: detector %s", self.detector_name if self.offline is None else self.offline.name)

    def evaluate(self, anonymizer: AnonymizerSpec, attack: NoAttacker, seed: int) -> CellResult:
        data = self.splits["val"]
        started = time.perf_counter()
        base_key = {
            "protocol": "detection-validate", "version": self.version, "dataset": self.dataset_fingerprint(),
            "anonymizer": anonymizer.key(), "region": self.region, "dilation": self.dilation,
            "anonymizer_seed": seed if anonymizer.stochastic else None,
        }
        train_s = 0.0
        model_key = None
        if self.pretrained is not None:
            model, model_key = self.pretrained_model()
            names = {c["id"]: c["name"] for c in data.categories}
            categories = [names[cid] for cid in self.label_map.values()]
            key = {**base_key, "detector": model_key, "categories": categories}
            detector_label = f"{self.pretrained.model} ({Path(str(self.pretrained.weights)).name})"
            detections, reused = self.cached_detections(key, lambda: self.run_trained(
                model, "val", self.scenes.anonymized("val", anonymizer, seed), categories, f"detect {anonymizer.label}", self.label_map))
        elif self.offline is None:
            categories = self.categories()
            if self.cfg.detector.weights:
                model, model_key = self.load_detector_weights(str(self.cfg.detector.weights))
            else:
                model, model_key, train_s = self.trained_detector(None, seed)
            key = {**base_key, "detector": model_key, "score_threshold": float(self.cfg.detector.score_threshold)}
            detector_label = f"{self.cfg.detector.arch} ({'weights' if self.cfg.detector.weights else 'trained on clean train split'})"
            detections, reused = self.cached_detections(
                key, lambda: self.run_trained(model, "val", self.scenes.anonymized("val", anonymizer, seed), categories, f"detect {anonymizer.label}"))
        else:
            detector = self.offline
            categories = [detector.category]
            key = {**base_key, "detector": detector.key()}
            detector_label = detector.name
            detections, reused = self.cached_detections(key, lambda: self._run_offline(detector, anonymizer, seed))
        detect_s = time.perf_counter() - started - train_s
        timer = time.perf_counter()
        metrics = self.scores("val", detections, categories)
        person = self.keypoint_category()
        if self.pretrained is not None and self.pretrained.predicts_keypoints and person is not None:
            metrics.update(coco_keypoint_scores(data.coco, detections, person))
        return CellResult(
            metrics=metrics,
            durations={"train_s": train_s, "detect_s": detect_s, "evaluate_s": time.perf_counter() - timer},
            extra={"detector": detector_label, "region": self.region, "num_val_images": len(data.images),
                   "num_detections": len(detections), "detector_key": model_key, "detections_reused": reused},
        )

    def pretrained_config(self) -> pretrained.PretrainedConfig:
        """The torchvision detector of the ``detector.*`` keys (UserError for a bad model name or no weights)."""
        d = self.cfg.detector
        return pretrained.PretrainedConfig(str(d.get("model")), str(d.weights) if d.weights else None, int(d.min_size), int(d.max_size),
                                           float(d.score_threshold), int(d.detections_per_img))

    def pretrained_model(self) -> tuple[Any, str]:
        """The torchvision detector with its weight file loaded (once), and its cache key."""
        assert self.pretrained is not None
        key = stable_hash(self.pretrained.key())
        if key not in self._models:
            self._models[key] = pretrained.load(self.pretrained, self.device)
        return self._models[key], key

    def keypoint_category(self) -> int | None:
        """The id of ``person`` when it is scored and its val annotations have keypoints, else None."""
        person = self.splits["val"].category_id("person")
        return person if person in self.label_map.values() and has_keypoints(self.splits["val"].coco, person) else None

    def _run_offline(self, detector: OfflineDetector, spec: AnonymizerSpec, seed: int) -> list[dict[str, Any]]:
        data = self.splits["val"]
        category_id = data.category_id(detector.category)
        results = []
        images = self.scenes.anonymized("val", spec, seed)
        for i in tqdm(range(len(data.images)), desc=f"{detector.name} {spec.label}", unit="img", leave=False):
            image = images(i)
            array = image.permute(1, 2, 0).contiguous().numpy()
            for x, y, w, h, score in detector.detect(array):
                results.append({"image_id": data.images[i]["id"], "category_id": category_id, "bbox": [x, y, w, h], "score": score})
        return results

