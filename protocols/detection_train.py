"""``detection-train``: train a detector on anonymized images, validate on the original ones.

The train-on-anonymized experiment of Paper F (Tables 1-3) and Paper D (Tables 2-3, "Train
w/ Anon. Data"): every person (``region.name=body``) or face (``region.name=face``) of the
training split is anonymized, a torchvision detector (``detector.arch``: FCOS by default,
RetinaNet or Faster R-CNN, on a small ResNet-FPN, from scratch unless
``detector.backbone_weights`` points to ImageNet weights) is trained on it, and COCO box AP
is measured on the ORIGINAL validation split. Run several seeds (``seeds=[0,1,2]``, as Paper
F) for mean ± standard error; the ``none`` row is the "original" baseline that deltas are
taken against.

The embedded default (``dataset=synthetic``) is small enough for a CPU: 128x176 scenes,
160 training images, 12 epochs. GPU settings for real datasets are in the README.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from attacks.threat_models import NoAttacker
from evalsuite.components import AnonymizerSpec
from evalsuite.protocol import CellResult
from evalsuite.registry import PROTOCOLS
from protocols.detection_common import DetectionProtocol, trainable_defaults

log = logging.getLogger(__name__)


@PROTOCOLS.register("detection-train", description="detection AP on original validation images of a detector trained on anonymized data (Paper F Table 1, Paper D 'train w/ anon. data')")
class DetectionTrain(DetectionProtocol):
    version = "1"
    splits_needed = ("train", "val")
    sample_set = "train"  # the anonymized images are the training images

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return cls.base_config(trainable_defaults())

    def prepare(self) -> None:
        self.trainable_config()  # bad detector.* values fail here, before any output
        super().prepare()
        missing = [c for c in self.categories() if self.splits["val"].category_id(c) is None]
        if missing:
            log.warning("the val split has no %s category; its AP is not reported", ", ".join(missing))

    def evaluate(self, anonymizer: AnonymizerSpec, attack: NoAttacker, seed: int) -> CellResult:
        data = self.splits["val"]
        model, model_key, train_s = self.trained_detector(anonymizer, seed)
        timer = time.perf_counter()
        categories = [c for c in self.categories() if data.category_id(c) is not None]
        key = {"protocol": "detection-train", "version": self.version, "dataset": self.dataset_fingerprint(),
               "detector": model_key, "score_threshold": float(self.cfg.detector.score_threshold)}
        detections, reused = self.cached_detections(
            key, lambda: self.run_trained(model, "val", lambda i: self.scenes.image("val", i), categories, f"detect ({anonymizer.label}-trained)"))
        detect_s = time.perf_counter() - timer
        timer = time.perf_counter()
        metrics = self.scores("val", detections, categories)
        return CellResult(
            metrics=metrics,
            durations={"train_s": train_s, "detect_s": detect_s, "evaluate_s": time.perf_counter() - timer},
            extra={"detector": f"{self.cfg.detector.arch}/{self.cfg.detector.backbone}", "region": self.region,
                   "num_train_images": len(self.splits["train"].images), "num_val_images": len(data.images),
                   "num_detections": len(detections), "detector_key": model_key, "detections_reused": reused},
        )
