"""Verification ROC curves (stored per cell, TPR@FPR for re-id) and `sweep=` strength sweeps, end to end."""
import json
import re

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.components import sweep_entries
from evalsuite.errors import UserError
from evalsuite.metrics.identification import tpr_at_fpr
from evalsuite.metrics.roc import FPR_GRID, reid_pairs, reid_verification, roc_points, tpr_at_fprs
from evalsuite.registry import load_all
from evalsuite.reporting.browser import check_page, find_chromium

load_all()


# ------------------------------------------------------------------ the operating points

def test_tpr_at_fprs_equals_the_roc_curve_rule_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(30, 300))
        genuine = rng.random(n) < 0.3
        if genuine.all() or not genuine.any():
            continue
        scores = np.round(rng.normal(genuine * 1.5, 1.0), int(rng.integers(0, 3)))  # rounding makes ties
        for target in (0.001, 0.01, 0.1, 0.5):
            reference = tpr_at_fpr(genuine, scores, target)
            tpr, fpr = tpr_at_fprs(genuine, scores, [target])
            assert tpr[0] == pytest.approx(reference.tpr, abs=1e-12) and fpr[0] == pytest.approx(reference.fpr, abs=1e-12)


def test_reid_verification_by_hand():
    # query pid 1 cam 0; gallery: pid 1 cam 0 (junk), pid 1 cam 1 (genuine), pids 2..5 (impostors)
    dist = np.array([[0.0, 0.5, 0.1, 0.9, 0.95, 0.99]])
    metrics, curve = reid_verification(dist, reid_pairs([1], [1, 1, 2, 3, 4, 5], [0], [0, 1, 1, 1, 1, 1]))
    # one impostor (0.1) is closer than the genuine match: at FPR <= 1% no impostor may pass, so the genuine one is missed
    assert metrics == {"reid_tpr_at_fpr1": 0.0, "reid_tpr_at_fpr01": 0.0}
    assert int(curve["num_genuine"]) == 1 and int(curve["num_impostor"]) == 4
    at_quarter = curve["tpr"][np.argmin(np.abs(curve["fpr_grid"] - 0.25))]
    assert at_quarter == 1.0  # one impostor allowed through: the genuine pair passes
    assert np.array_equal(curve["fpr_grid"], FPR_GRID) and np.all(np.diff(curve["tpr"]) >= 0)


def test_roc_points_cover_the_targets():
    assert {0.01, 0.001} <= set(FPR_GRID.tolist())
    curve = roc_points([True, False, True, False], [0.9, 0.1, 0.8, 0.2])
    assert curve["tpr"][-1] == 1.0 and curve["tpr"][0] == 1.0  # separable: full TPR at every FPR


# ------------------------------------------------------------------ sweep=

def test_sweep_entries_labels_and_errors():
    entries = sweep_entries({"anonymizer": {"name": "pixelate", "grid": None}, "param": "block_size", "values": [2, 4]})
    assert entries == [{"name": "pixelate", "grid": None, "block_size": 2, "label": "pixelate(block_size=2,grid=None)"},
                       {"name": "pixelate", "grid": None, "block_size": 4, "label": "pixelate(block_size=4,grid=None)"}]
    for bad in ({"anonymizer": "blur", "param": "sigma"}, {"anonymizer": "blur", "param": "sigma", "values": [1]},
                {"anonymizer": "blur", "param": "sigma", "values": [1, 1]}, {"anonymizer": 3, "param": "sigma", "values": [1, 2]},
                {"anonymizer": "blur", "param": "label", "values": [1, 2]}):
        with pytest.raises(UserError, match="sweep"):
            sweep_entries(bad)


def test_bad_sweep_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "protocol=market1501-reid", "dataset=synthetic", "sweep={anonymizer:blur,param:sigma,values:[3]}", f"out={out}", f"cache_dir={tmp_path / 'c'}"])
    assert code == 2 and not out.exists()
    code = main(["run", "protocol=market1501-reid", "dataset=synthetic", "sweep={anonymizer:blur,param:nope,values:[1,2]}", f"out={out}", f"cache_dir={tmp_path / 'c'}"])
    assert code == 2 and not out.exists()


TINY = ["protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5", "dataset.num_distractors=3",
        "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8", "anonymizers=[none]", "attacks=[naive,adaptive]",
        "sweep={anonymizer:pixelate,param:block_size,values:[2,4,8]}"]
SWEEP_LABELS = ["pixelate(block_size=2)", "pixelate(block_size=4)", "pixelate(block_size=8)"]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    out = root / "out"
    assert main(["run", *TINY, f"cache_dir={root / 'cache'}", f"out={out}"]) == 0
    quality = root / "quality"  # an image-quality run of the same anonymizers, merged into the report
    quality.mkdir()
    rows = [{"protocol": "image-quality", "protocol_version": "1", "dataset": "synthetic", "config_hash": "q", "anonymizer": label,
             "anonymizer_name": "pixelate", "anonymizer_params": {}, "attack": "none", "seed": 0, "metrics": {"ssim": 0.9 - 0.2 * i},
             "cell_key": f"q{i}"} for i, label in enumerate(["none", *SWEEP_LABELS])]
    (quality / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out, quality


def test_sweep_run_stores_a_curve_per_cell_and_reid_tpr_at_fpr(sweep_run):
    out, _ = sweep_run
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["anonymizer"] for r in rows} == {"none", *SWEEP_LABELS} and len(rows) == 8
    for row in rows:
        assert {"reid_tpr_at_fpr1", "reid_tpr_at_fpr01"} <= set(row["metrics"])
        with np.load(out / row["curves_file"]) as curve:
            tpr = curve["tpr"]
            assert tpr.shape == FPR_GRID.shape and np.all(np.diff(tpr) >= 0)
            assert tpr[np.argmin(np.abs(curve["fpr_grid"] - 0.01))] == pytest.approx(row["metrics"]["reid_tpr_at_fpr1"])


def test_report_draws_roc_det_and_the_sweep_with_quality_on_a_second_axis(sweep_run, tmp_path):
    out, quality = sweep_run
    page = tmp_path / "report.html"
    assert main(["report", str(out), str(quality), "--format", "html", "--out", str(page), "--plots", str(tmp_path / "plots"), "--grid-samples", "0"]) == 0
    text = page.read_text()
    ids = re.findall(r'<figure id="([^"]+)"', text)
    assert {"roc-market1501-reid-naive", "roc-market1501-reid-adaptive", "sweep-pixelate-block_size"} <= set(ids)
    assert "dotted, right axis = ssim from image-quality" in text
    if find_chromium() is None:
        pytest.skip("no chromium / chromedriver on PATH: apt-get install chromium chromium-driver (.ci/run does this when it can)")
    pytest.importorskip("selenium")
    check = check_page(page, tmp_path / "shot.png")
    assert not check.broken_images and len(check.images) == len(re.findall(r"<img ", text)) >= 3
    assert all(i["naturalWidth"] > 300 for i in check.images)
