"""pixelate blocks=fitted against the OpenCV recipe (area down, nearest up) it documents."""
import cv2
import numpy as np
import pytest
import torch

import anonymizers  # noqa: F401  (registers the built-ins)
from anonymizers.pixelate import mask_boxes, pixelate
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS


def _cv2_recipe(image: np.ndarray, box, s: int) -> np.ndarray:
    y0, y1, x0, x1 = box
    crop = image[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    small = cv2.resize(crop, (max(1, w // s), max(1, h // s)), interpolation=cv2.INTER_AREA)
    out = image.copy()
    out[y0:y1, x0:x1] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return out


@pytest.mark.parametrize("s", [3, 5, 8])
def test_fitted_blocks_match_opencv_within_one_level_on_cpu_and_batched_paths(s):
    rng = np.random.default_rng(s)
    images = torch.from_numpy(rng.integers(0, 256, (12, 3, 50, 37), dtype=np.uint8))
    masks = torch.zeros(12, 1, 50, 37, dtype=torch.bool)
    for b in range(12):
        y0, x0 = rng.integers(0, 20), rng.integers(0, 15)
        masks[b, :, y0 : y0 + rng.integers(s, 30), x0 : x0 + rng.integers(s, 22)] = True  # rectangles: the box is the mask
    anonymizer = ANONYMIZERS.build("pixelate", block_size=s, blocks="fitted")
    ours = anonymizer.anonymize(images, masks).permute(0, 2, 3, 1).numpy().astype(int)
    boxes = mask_boxes(masks).tolist()
    batched = pixelate(images, mask_boxes(masks), block_size=s, fitted=True)
    batched = torch.where(masks, batched, images).permute(0, 2, 3, 1).numpy().astype(int)
    for b, box in enumerate(boxes):
        reference = _cv2_recipe(np.ascontiguousarray(images[b].permute(1, 2, 0).numpy()), box, s).astype(int)
        assert np.abs(ours[b] - reference).max() <= 1
        assert np.abs(batched[b] - reference).max() <= 1


def test_fitted_cells_are_larger_than_anchored_blocks_when_the_box_is_not_a_multiple():
    image = torch.arange(23, dtype=torch.float32).repeat(23, 1)[None, None].expand(1, 3, 23, 23).to(torch.uint8).contiguous()
    mask = torch.ones(1, 1, 23, 23, dtype=torch.bool)
    fitted = ANONYMIZERS.build("pixelate", block_size=5, blocks="fitted").anonymize(image, mask)[0, 0, 0]
    anchored = ANONYMIZERS.build("pixelate", block_size=5).anonymize(image, mask)[0, 0, 0]
    assert len(torch.unique(fitted)) == 4 and len(torch.unique(anchored)) == 5  # 23 // 5 stretched cells vs 5 blocks (the last of 3 px)


def test_bad_blocks_values():
    with pytest.raises(UserError, match="blocks must be 'anchored'"):
        ANONYMIZERS.build("pixelate", blocks="stretched")
    with pytest.raises(UserError, match="blocks=fitted applies to block_size"):
        ANONYMIZERS.build("pixelate", grid=8, blocks="fitted")
