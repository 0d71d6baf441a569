"""Detection scenes: decoded images (small splits kept in memory), their instances anonymized
one by one (:mod:`evalsuite.detection.instances`), training targets, and a model's COCO results."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from evalsuite.components import AnonymizerSpec
from evalsuite.data.detection import DetectionSplit
from evalsuite.data.market1501 import read_image
from evalsuite.detection.instances import anonymize_instances, image_generator, instance_regions
from evalsuite.detection.trainable import predict
from evalsuite.errors import UserError

#: splits whose decoded images take at most this many bytes are decoded once and kept in memory
MEMORY_BYTES = 2 * 1024**3


def fits_in_memory(split: DetectionSplit) -> bool:
    """True when the split's decoded images fit in :data:`MEMORY_BYTES`."""
    return sum(3 * img["width"] * img["height"] for img in split.images) <= MEMORY_BYTES


def memoized(sample: Callable[[int], Any]) -> Callable[[int], Any]:
    """``sample`` computed once per index (anonymized training images of a small split)."""
    store: dict[int, Any] = {}

    def wrapped(i: int) -> Any:
        if i not in store:
            store[i] = sample(i)
        return store[i]

    return wrapped


class Scenes:
    """The images of some detection splits, decoded on demand, and their anonymized versions."""

    def __init__(self, splits: dict[str, DetectionSplit], device: str) -> None:
        self.splits = splits
        self.device = device
        self._images: dict[str, list[torch.Tensor | None]] = {}
        self._in_memory: dict[str, bool] = {}

    def image(self, split: str, index: int) -> torch.Tensor:
        """Image ``index`` of ``split`` as uint8 (3, H, W); small splits stay in memory."""
        data = self.splits[split]
        cached = self._images.get(split)
        if cached is not None and cached[index] is not None:
            return cached[index]  # type: ignore[return-value]
        info = data.images[index]
        array = read_image(data.image_path(info))
        if array.shape[:2] != (info["height"], info["width"]):
            raise UserError(f"image {data.image_path(info)} is {array.shape[1]}x{array.shape[0]} but {data.source} says {info['width']}x{info['height']}")
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        if self._in_memory.setdefault(split, fits_in_memory(data)):
            self._images.setdefault(split, [None] * len(data.images))[index] = tensor
        return tensor

    def anonymized(self, split: str, index: int, spec: AnonymizerSpec, seed: int, region: str, dilation: int) -> torch.Tensor:
        """Image ``index`` of ``split`` with every instance of ``region`` anonymized by ``spec``."""
        image = self.image(split, index)
        if spec.is_identity:
            return image
        data = self.splits[split]
        info = data.images[index]
        regions = instance_regions(data, info, region, dilation)
        if not regions:
            return image
        generator = image_generator(seed, info["id"]) if spec.stochastic else None
        return anonymize_instances(spec.anonymizer, image.to(self.device), regions, generator).cpu()

    def target(self, split: str, index: int, categories: list[str]) -> dict[str, torch.Tensor]:
        """Training target of one image: xyxy boxes and 1-based labels of its non-crowd objects."""
        data = self.splits[split]
        label_of = {data.category_id(name): i + 1 for i, name in enumerate(categories)}
        boxes, labels = [], []
        for ann in data.annotations(data.images[index]["id"]):
            label = label_of.get(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
            if label is None or ann.get("iscrowd", 0) or w < 1 or h < 1:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}

    def coco_results(self, model: nn.Module, split: str, images: Callable[[int], torch.Tensor], categories: list[str], batch: int,
                     description: str) -> list[dict[str, Any]]:
        """COCO results of ``model`` on every image ``images(i)`` of ``split``."""
        data = self.splits[split]
        cat_ids = [data.category_id(name) for name in categories]
        results: list[dict[str, Any]] = []
        for start in tqdm(range(0, len(data.images), batch), desc=description, unit="batch", leave=False):
            indices = range(start, min(start + batch, len(data.images)))
            outputs = predict(model, [images(i) for i in indices], self.device)
            for i, out in zip(indices, outputs):
                image_id = data.images[i]["id"]
                for box, score, label in zip(out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist()):
                    if 1 <= label <= len(cat_ids) and cat_ids[label - 1] is not None:
                        results.append({"image_id": image_id, "category_id": cat_ids[label - 1],
                                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score)})
        return results
