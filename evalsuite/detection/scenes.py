"""Detection scenes: decoded images (small splits kept in memory), the splits as
:class:`evalsuite.anonymized_scenes.SceneSet` for the pipeline to anonymize instance by instance
(:class:`evalsuite.anonymized_scenes.AnonymizedScenes`, :mod:`evalsuite.detection.instances`),
training targets, and a model's COCO results."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from evalsuite.progress import tqdm

from evalsuite.components import AnonymizerSpec
from evalsuite.data.detection import DetectionSplit
from evalsuite.data.market1501 import read_image
from evalsuite.detection.instances import instance_regions
from evalsuite.detection.trainable import predict
from evalsuite.errors import UserError
from evalsuite.anonymized_scenes import AnonymizedScenes, SceneSet

#: splits whose decoded images take at most this many bytes are decoded once and kept in memory
MEMORY_BYTES = 2 * 1024**3


def fits_in_memory(split: DetectionSplit) -> bool:
    """True when the split's decoded images fit in :data:`MEMORY_BYTES`."""
    return sum(3 * img["width"] * img["height"] for img in split.images) <= MEMORY_BYTES


class Scenes:
    """The images of some detection splits, decoded on demand, and their anonymized versions
    (after :meth:`bind`: every instance of ``region``, grown by ``dilation`` pixels)."""

    def __init__(self, splits: dict[str, DetectionSplit], device: str) -> None:
        self.splits = splits
        self.device = device
        self._images: dict[str, list[torch.Tensor | None]] = {}
        self._in_memory: dict[str, bool] = {}
        self.pipeline: AnonymizedScenes | None = None
        self.region, self.dilation = "image", 0
        self.fingerprints: dict[str, str] = {}

    def bind(self, pipeline: AnonymizedScenes, region: str, dilation: int, fingerprints: dict[str, str]) -> None:
        """Anonymize through ``pipeline``; ``fingerprints``: a hash of each split's images and annotations."""
        self.pipeline, self.region, self.dilation, self.fingerprints = pipeline, region, dilation, fingerprints

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
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # decoders may hand back read-only memory
        if self._in_memory.setdefault(split, fits_in_memory(data)):
            self._images.setdefault(split, [None] * len(data.images))[index] = tensor
        return tensor

    def scene_set(self, split: str) -> SceneSet:
        """``split`` as the pipeline's scene set: its images and the instances of the region in each."""
        data = self.splits[split]
        return SceneSet(split, [str(img["file_name"]) for img in data.images], lambda i: self.image(split, i),
                        lambda i: instance_regions(data, data.images[i], self.region, self.dilation), [int(img["id"]) for img in data.images],
                        self.fingerprints[split], sum(3 * img["width"] * img["height"] for img in data.images))

    def anonymized(self, split: str, spec: AnonymizerSpec, seed: int) -> Callable[[int], torch.Tensor]:
        """Image i of ``split`` with every instance of the region anonymized by ``spec``, as a function of i."""
        assert self.pipeline is not None, "bind() first"
        return self.pipeline.get(self.scene_set(split), spec, seed)

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
                     description: str, label_map: dict[int, int] | None = None) -> list[dict[str, Any]]:
        """COCO results of ``model`` on every image ``images(i)`` of ``split``: label ``k`` is
        ``categories[k - 1]``, or category id ``label_map[k]`` when a map is given (other labels
        are dropped). Keypoints, when the model predicts them, come along as ``[x1, y1, v1, ...]``."""
        data = self.splits[split]
        if label_map is None:
            label_map = {k: cid for k, cid in enumerate((data.category_id(name) for name in categories), start=1) if cid is not None}
        results: list[dict[str, Any]] = []
        for start in tqdm(range(0, len(data.images), batch), desc=description, unit="batch", leave=False):
            indices = range(start, min(start + batch, len(data.images)))
            outputs = predict(model, [images(i) for i in indices], self.device)
            for i, out in zip(indices, outputs):
                image_id = data.images[i]["id"]
                keypoints = out["keypoints"].flatten(1).tolist() if "keypoints" in out else None
                for j, (box, score, label) in enumerate(zip(out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist())):
                    if label in label_map:
                        result = {"image_id": image_id, "category_id": label_map[label],
                                  "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score)}
                        if keypoints is not None:
                            result["keypoints"] = keypoints[j]
                        results.append(result)
        return results

    def samples(self, split: str, specs: list[AnonymizerSpec], seed: int, count: int) -> Any:
        """A :class:`~evalsuite.run_description.RunSamples` of up to ``count`` scenes of ``split``
        that show at least one instance and share the most common size (the region outlined: the
        union of the instances), with every anonymizer's output as the cells produced it; or a
        string saying why there are none."""
        from collections import Counter

        from evalsuite.run_description import RunSamples

        data = self.splits[split]
        sizes = Counter((img["height"], img["width"]) for img in data.images)
        shown = [i for i, img in enumerate(data.images) if (img["height"], img["width"]) == sizes.most_common(1)[0][0]
                 and instance_regions(data, img, self.region, self.dilation)] if sizes else []
        if not shown:
            return f"no {split} scene shows a {self.region} instance"
        indices = [shown[round(j * (len(shown) - 1) / max(1, count - 1))] for j in range(min(count, len(shown)))]
        indices = sorted(set(indices))
        masks = [torch.from_numpy(np.any([m for m, _ in instance_regions(data, data.images[i], self.region, self.dilation)], axis=0))[None] for i in indices]
        samples = RunSamples(set_name=split, sample_ids=[str(data.images[i]["file_name"]) for i in indices], indices=indices,
                             images=torch.stack([self.image(split, i) for i in indices]), masks=torch.stack(masks), region=self.region, seed=seed)
        scenes = self.scene_set(split)
        assert self.pipeline is not None
        for spec in specs:
            images = self.pipeline.get(scenes, spec, seed)
            samples.outputs[spec.label] = torch.stack([images(i) for i in indices])
            samples.set_keys[spec.label] = "clean" if spec.is_identity else self.pipeline.key(scenes, spec, seed)
        return samples
