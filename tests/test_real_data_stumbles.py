"""The small stumbles of issue 15 on real data, one test each (see README "Your own data")."""
from __future__ import annotations

import io
import json
import logging
import math
import shutil
from pathlib import Path

import pytest

from face_images import write_photo_folder
from evalsuite.cli import main
from evalsuite.config import compose
from evalsuite.data.faces import FaceSample
from evalsuite.data.types import ReidDataset, Sample
from evalsuite.errors import UserError
from evalsuite.metrics.attributes import select_attributes
from evalsuite.registry import PROTOCOLS, load_all


def test_missing_face_box_hint_names_the_face_sidecar_key() -> None:
    from evalsuite.regions import region_mask, region_masks

    face = FaceSample(path="/data/lfw/A/A_0001.jpg", identity="A", root="/data/lfw")
    for call in (lambda: region_masks([face], "face", 32, 32), lambda: region_mask(face, "face", 32, 32)):
        with pytest.raises(UserError) as info:
            call()
        assert "dataset.sidecar=FILE" in str(info.value) and "dataset.annotations" not in str(info.value) and "Market-1501" not in str(info.value)
    person = Sample(path="/m/query/0001_c1s1_000001_00.jpg", pid=1, camid=0, split="query")
    with pytest.raises(UserError, match="dataset.annotations=FILE"):
        region_masks([person], "face", 32, 32)


def test_dataset_name_key_selects_the_dataset_group() -> None:
    load_all()
    cfg = compose(["protocol=image-quality", "dataset.name=market1501", "dataset.root=/data/Market"])
    assert cfg.dataset.name == "market1501" and cfg.dataset.root == "/data/Market" and "seed" not in cfg.dataset
    assert compose(["protocol=image-quality", "dataset=market1501", "dataset.name=market1501"]).dataset.name == "market1501"
    with pytest.raises(UserError, match="name two datasets"):
        compose(["protocol=image-quality", "dataset=market1501", "dataset.name=celeba"])


def test_dataset_name_on_image_quality_is_a_user_error_not_a_type_error(tmp_path: Path, capsys) -> None:
    code = main(["run", "protocol=image-quality", "dataset.name=market1501", f"dataset.root={tmp_path / 'nope'}", f"out={tmp_path / 'out'}",
                 f"cache_dir={tmp_path / 'cache'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Market-1501 not found" in err


def _protocol(name: str, overrides: list[str]):
    load_all()
    cfg = compose([f"protocol={name}", *overrides])
    return PROTOCOLS.build(name, cfg=cfg, cache=None)


def test_titles_name_the_folder_of_a_user_dataset_not_only_its_layout() -> None:
    protocol = _protocol("market1501-reid", ["dataset=market1501", "dataset.root=/data/cuhk03_as_market"])
    protocol.dataset = ReidDataset("market1501", "/data/cuhk03_as_market", [], [], [])
    assert protocol.dataset_label() == "market1501 (cuhk03_as_market)"
    synthetic = _protocol("market1501-reid", ["dataset=synthetic"])
    synthetic.dataset = ReidDataset("synthetic", "/cache/synthetic-market-abc", [], [], [])
    assert synthetic.dataset_label() == "synthetic"


def test_queries_without_a_valid_match_are_counted_in_the_log(caplog) -> None:
    protocol = _protocol("market1501-reid", ["dataset=market1501"])
    query = [Sample("q/0001_c1s1_000001_00.jpg", 1, 0, "query"), Sample("q/0002_c1s1_000001_00.jpg", 2, 0, "query"),
             Sample("q/0003_c2s1_000001_00.jpg", 3, 1, "query")]
    gallery = [Sample("g/0001_c2s1_000001_00.jpg", 1, 1, "gallery"), Sample("g/0002_c1s1_000002_00.jpg", 2, 0, "gallery")]
    protocol.dataset = ReidDataset("market1501", "/data/m", [], query, gallery)
    with caplog.at_level(logging.WARNING):
        protocol._log_unmatched_queries()
    assert "2 of 3 queries have no gallery image of their identity from another camera" in caplog.text
    assert "0002_c1s1_000001_00.jpg" in caplog.text


def test_missing_attribute_labels_hint_names_real_keys() -> None:
    with pytest.raises(UserError) as info:
        select_attributes([{"attributes": {}}], None)
    assert "dataset.sidecar=FILE" in str(info.value) and "drop" not in str(info.value)


def test_image_quality_on_a_face_folder_detects_faces_for_ldsr(tmp_path: Path) -> None:
    photos = write_photo_folder(tmp_path / "two", per_identity=3)
    root = tmp_path / "faces"
    for k in range(3):  # six identity folders, so that the hash split leaves training and evaluation identities
        for person in ("Eileen_Collins", "Grace_Hopper"):
            shutil.copytree(photos / person, root / f"{person}_{k}")
    out = tmp_path / "out"
    assert main(["run", "protocol=image-quality", "dataset=face-folder", f"dataset.root={root}", "anonymizers=[none,mask]",
                 "fid.extractors=[random]", "realness.epochs=1", f"out={out}", f"cache_dir={tmp_path / 'cache'}"]) == 0
    rows = {r["anonymizer"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["none"]["metrics"]["ldsr"] == 1.0 and rows["mask"]["metrics"]["ldsr"] < 0.5  # the detected boxes were masked
    assert math.isnan(rows["none"]["metrics"]["attribute_accuracy"])
    reason = rows["none"]["unavailable"]["attribute_accuracy"]
    assert "dataset.sidecar=FILE" in reason and "drop" not in reason


# --------------------------------------------------------------------------- progress output

def test_progress_in_a_log_is_plain_periodic_lines(monkeypatch) -> None:
    from evalsuite.progress import progress

    monkeypatch.setenv("EVALSUITE_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    for _ in progress(range(2), desc="outer", unit="cell", file=log):
        with progress(total=3, desc="inner", unit="img", leave=False, file=log) as bar:
            for step in range(3):
                bar.update(1)
                bar.set_postfix(loss=step)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[-1].startswith("outer: 2/2") and any(line.startswith("inner: 3/3") and "loss=2" in line for line in lines)


def test_progress_lines_are_rate_limited_and_short_transient_bars_silent(monkeypatch) -> None:
    from evalsuite.progress import progress

    monkeypatch.setenv("EVALSUITE_PROGRESS_INTERVAL", "3600")
    log = io.StringIO()
    for _ in progress(range(500), desc="kept", file=log):
        pass
    for _ in progress(range(500), desc="transient", leave=False, file=log):
        pass
    assert log.getvalue().splitlines() == [next(line for line in log.getvalue().splitlines())] and log.getvalue().startswith("kept: 500/500")


def test_progress_on_a_terminal_is_tqdm(monkeypatch) -> None:
    from tqdm import tqdm

    from evalsuite.progress import LineProgress, progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress(range(3), file=Terminal())
    assert isinstance(bar, tqdm) and not isinstance(bar, LineProgress)
    bar.close()
    assert isinstance(progress(range(3), file=io.StringIO()), LineProgress)
