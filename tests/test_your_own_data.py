"""README "Your own data": every command of its code block, run on a small tree built here."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalsuite.cli import main
from face_images import _variant, astronaut, grace_hopper, ASTRONAUT_FACE, GRACE_FACE, write_photo_folder
from test_detection_readers import _coco_dict, _write_image
from test_face_data import _celeba
from test_market1501_loader import make_market
from test_pipa import make_tree
from test_reid_datasets import make_cuhk03, make_duke, make_msmt17

README = Path(__file__).resolve().parents[1] / "README.md"
REID_TINY = ["attacker.epochs=1", "attacker.batch_size=4", "attacker.height=32", "attacker.width=16", "anonymizers=[none,blur]", "attacks=[naive]"]
TINY = {
    "market1501-reid": REID_TINY,
    "face-identification": ["anonymizers=[none,blur5]", "attacks=[naive]"],
    "image-quality": ["anonymizers=[none,mask]", "fid.extractors=[random]", "realness.epochs=1"],
    "person-recognition": ["attacker.epochs=1", "attacker.channels=4", "attacker.embedding_dim=16", "anonymizers=[none,blackhead]", "attacks=[naive]"],
    "detection-validate": ["anonymizers=[none,mask]"],
}


def readme_commands() -> list[list[str]]:
    """The commands of the first bash block of README's "Your own data" section, split into words."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Your own data"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def _utkface(root: Path) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for index in range(8):
        image, box = (astronaut(), ASTRONAUT_FACE) if index % 2 else (grace_hopper(), GRACE_FACE)
        name = f"{30 + index}_{index % 2}_{index % 5}_2017011617452{index}125.jpg.chip.jpg"
        cv2.imwrite(str(root / name), _variant(image, box, rng, 200)[:, :, ::-1])
    return root


def _pipa(root: Path) -> Path:
    lines, photos, head = [], {}, (100, 20, 30, 30)
    for photo, identity in enumerate([7, 7, 9, 9, 9]):
        lines.append(("11", f"{photo}", *head, identity, 1))
        photos[("train", "11", f"{photo}")] = head
    for photo, identity in enumerate([3, 3, 3, 3, 5, 5, 5]):
        lines.append(("22", f"{photo}", *head, identity, 3))
        photos[("test", "22", f"{photo}")] = head
    return make_tree(root, lines, photos)


def _coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(_coco_dict()))
    for name in ("a.jpg", "b.jpg"):
        _write_image(root / "val2017" / name)
    return root


def _wider(root: Path) -> Path:
    (root / "wider_face_split").mkdir(parents=True)
    (root / "WIDER_val" / "images" / "0--Parade").mkdir(parents=True)
    cv2.imwrite(str(root / "WIDER_val" / "images" / "0--Parade" / "astronaut.jpg"), astronaut()[:, :, ::-1])
    (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text("0--Parade/astronaut.jpg\n1\n177 78 90 92 0 0 0 0 0 0\n")
    return root


BUILDERS = {
    "market1501": make_market, "dukemtmc": make_duke, "cuhk03": make_cuhk03, "msmt17": make_msmt17,
    "face-folder": lambda parent: write_photo_folder(parent / "lfw", per_identity=3, faceless=True),
    "celeba": lambda parent: _celeba(parent / "celeba"), "utkface": lambda parent: _utkface(parent / "UTKFace"),
    "pipa": lambda parent: _pipa(parent / "PIPA"), "coco": lambda parent: _coco(parent / "coco"), "wider-face": lambda parent: _wider(parent / "WIDER_FACE"),
}


def _prepared(words: list[str], tmp_path: Path) -> tuple[list[str], str]:
    """The README command's arguments with dataset.root pointing at a tree built for it, and its dataset."""
    assert words[0] == "evalsuite"
    args = words[1:]
    dataset = next(w.split("=", 1)[1] for w in args if w.startswith("dataset="))
    root = BUILDERS[dataset](tmp_path / "data")
    return [f"dataset.root={root}" if w.startswith("dataset.root=") else w for w in args], dataset


def test_the_section_has_one_command_per_supported_dataset() -> None:
    datasets = [next(w for w in words if w.startswith("dataset=")) for words in readme_commands() if words[1] == "run"]
    assert sorted(d.split("=")[1] for d in datasets) == sorted(BUILDERS)


def test_the_data_check_commands(tmp_path: Path, capsys) -> None:
    checks = [words for words in readme_commands() if words[1:3] == ["data", "check"]]
    assert checks
    for words in checks:
        args, dataset = _prepared(words, tmp_path / words[2])
        assert main(args) == 0
        assert capsys.readouterr().out.rstrip().endswith("result: OK")


RUNS = [words for words in readme_commands() if words[1] == "run"]


@pytest.mark.parametrize("words", RUNS, ids=[next(w for w in words if w.startswith("dataset=")) for words in RUNS])
def test_the_run_commands(words: list[str], tmp_path: Path) -> None:
    args, dataset = _prepared(words, tmp_path)
    protocol = next(w.split("=", 1)[1] for w in args if w.startswith("protocol="))
    extra = [*TINY[protocol], *(["dataset.image_size=[32,16]"] if dataset in ("dukemtmc", "cuhk03", "msmt17") else [])]
    out = tmp_path / "out"
    assert main([*args, *extra, f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 2 and all(r["dataset"].split(" (")[0] == dataset and r["dataset"] != dataset for r in rows), [r["dataset"] for r in rows]
