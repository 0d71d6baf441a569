"""A one-photo WIDER FACE tree for the detection tests: scikit-image's astronaut, her face annotated."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

#: the astronaut's face box in the tree's bbx_gt list ([x, y, w, h])
ASTRONAUT_BOX = [177, 78, 90, 92]


def astronaut_wider_tree(root: Path) -> Path:
    """``root`` as a WIDER FACE folder with one validation image (skipped without scikit-image)."""
    data = pytest.importorskip("skimage.data")
    (root / "wider_face_split").mkdir(parents=True)
    (root / "WIDER_val" / "images" / "0--Parade").mkdir(parents=True)
    cv2.imwrite(str(root / "WIDER_val" / "images" / "0--Parade" / "astronaut.jpg"), data.astronaut()[:, :, ::-1])
    line = " ".join(map(str, ASTRONAUT_BOX))
    (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(f"0--Parade/astronaut.jpg\n1\n{line} 0 0 0 0 0 0\n")
    return root
