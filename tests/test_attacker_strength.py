"""The attacker-strength guard: chance levels, skill, and the flag in the run table, the report and the gate."""
import json
import math

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.metrics.chance import closed_set_chance, reid_chance, verification_chance
from evalsuite.metrics.reid import evaluate_reid
from evalsuite.registry import load_all
from evalsuite.reporting.formats import markdown
from evalsuite.reporting.results import load_results
from evalsuite.reporting.strength import Strength, attacker_strength, gate_strength
from evalsuite.reporting.table import build_tables

load_all()


# ------------------------------------------------------------------ chance levels

def test_reid_chance_by_hand():
    # one query, ten gallery items of which one matches (other camera): rank-k = k / 10, E[AP] = H_10 / 10
    chance = reid_chance([1], [1] + [2] * 9, [0], [1] * 10)
    assert chance["rank1"] == pytest.approx(0.1)
    assert chance["rank5"] == pytest.approx(0.5)
    assert chance["rank10"] == pytest.approx(1.0)
    assert chance["mAP"] == pytest.approx(sum(1 / i for i in range(1, 11)) / 10)


def test_reid_chance_removes_junk_and_skips_queries_without_matches():
    # query 0: its same-camera twin is junk, one match left among 4 kept items; query 1 (pid 9) has no match
    chance = reid_chance([1, 9], [1, 1, 2, 3, 4], [0, 0], [0, 1, 1, 1, 1])
    assert chance["rank1"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="no query has a match"):
        reid_chance([9], [1, 2], [0], [1, 1])


def test_reid_chance_matches_random_rankings_through_the_evaluator():
    rng = np.random.default_rng(0)
    q_pids, g_pids = rng.integers(0, 15, 60), rng.integers(0, 15, 200)
    q_cams, g_cams = rng.integers(0, 3, 60), rng.integers(0, 3, 200)
    exact = reid_chance(q_pids, g_pids, q_cams, g_cams)
    draws = [evaluate_reid(rng.random((60, 200)), q_pids, g_pids, q_cams, g_cams) for _ in range(300)]
    for metric in ("rank1", "rank5", "rank10", "mAP"):
        simulated = np.mean([getattr(d, metric) for d in draws])
        assert simulated == pytest.approx(exact[metric], abs=0.01), metric


def test_closed_set_and_verification_chance():
    assert closed_set_chance(50) == {"top1": 0.02}
    assert verification_chance({"tpr_at_fpr1": 0.01}) == {"roc_auc": 0.5, "tpr_at_fpr1": 0.01}
    with pytest.raises(ValueError):
        closed_set_chance(0)


# ------------------------------------------------------------------ the guard on hand-made rows

def _rows(clean_naive, clean_adaptive, *, with_none=True):
    rows = []
    cells = {("none", "naive"): clean_naive, ("none", "adaptive"): clean_adaptive, ("blur", "naive"): 0.05, ("blur", "adaptive"): 0.06}
    for (anonymizer, attack), rank1 in cells.items():
        if anonymizer == "none" and not with_none:
            continue
        for seed in (0, 1):
            rows.append({"protocol": "market1501-reid", "protocol_version": "1", "dataset": "synthetic", "config_hash": "c",
                         "anonymizer": anonymizer, "anonymizer_name": anonymizer, "anonymizer_params": {}, "attack": attack, "seed": seed,
                         "metrics": {"rank1": rank1, "mAP": rank1}, "chance": {"rank1": 0.05, "mAP": 0.08},
                         "cell_key": f"{anonymizer}-{attack}-{seed}"})
    return rows


def _groups(tmp_path, rows):
    path = tmp_path / "run" / "results.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_results([path])


def test_skill_and_status():
    assert Strength("naive", "rank1", chance=0.05, threshold=0.2, clean=0.05 + 0.95 * 0.3).skill == pytest.approx(0.3)
    assert Strength("naive", "rank1", chance=0.05, threshold=0.2, clean=0.15).status == "weak"
    assert Strength("naive", "rank1", chance=0.05, threshold=0.2, clean=0.9).status == "ok"
    assert Strength("naive", "rank1", chance=0.05, threshold=0.2, clean=None).status == "unknown"


def test_weak_attack_is_flagged_per_column_in_the_table(tmp_path):
    groups = _groups(tmp_path, _rows(clean_naive=0.10, clean_adaptive=0.90))
    strengths = {(s.attack, s.metric): s.status for s in attacker_strength(groups[0])}
    assert strengths == {("naive", "rank1"): "weak", ("naive", "mAP"): "weak", ("adaptive", "rank1"): "ok", ("adaptive", "mAP"): "ok"}
    text = markdown(build_tables(groups, metrics=["rank1"]))
    assert "| naive R1 ↓ (weak attacker!) | adaptive R1 ↓ |" in text
    assert "WARNING, WEAK ATTACKER: naive R1 10.0% on clean data (chance 5.0%, skill 0.05 < 0.20)" in text
    assert "Attacker on clean data: adaptive R1 90.0%" in text


def test_threshold_is_configurable(tmp_path):
    groups = _groups(tmp_path, _rows(clean_naive=0.10, clean_adaptive=0.90))
    assert {s.status for s in attacker_strength(groups[0], min_skill=0.01)} == {"ok"}
    assert "WEAK" not in markdown(build_tables(groups, min_skill=0.01))


def test_without_a_clean_row_the_strength_is_unknown_not_ok(tmp_path):
    groups = _groups(tmp_path, _rows(0.9, 0.9, with_none=False))
    assert {s.status for s in attacker_strength(groups[0])} == {"unknown"}
    assert "Attacker strength unknown for naive R1" in markdown(build_tables(groups))
    fails, lines = gate_strength(groups)
    assert not fails and any("strength unknown" in line for line in lines)


def test_rows_without_chance_levels_are_not_judged(tmp_path):
    rows = _rows(0.1, 0.1)
    for r in rows:
        del r["chance"]
    groups = _groups(tmp_path, rows)
    assert attacker_strength(groups[0]) == []
    assert gate_strength(groups) == (False, [])


def test_gate_fails_on_a_weak_attacker_unless_allowed(tmp_path):
    groups = _groups(tmp_path, _rows(clean_naive=0.10, clean_adaptive=0.90))
    fails, lines = gate_strength(groups)
    assert fails and any(line.startswith("FAIL: WEAK ATTACKER") for line in lines)
    fails, lines = gate_strength(groups, allow_weak=True)
    assert not fails and any(line.startswith("WARNING, WEAK ATTACKER") for line in lines)
    assert gate_strength(_groups(tmp_path, _rows(0.9, 0.9)))[0] is False


# ------------------------------------------------------------------ a deliberately under-trained attacker, end to end

UNDERTRAINED = [
    "protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=12", "dataset.num_distractors=3",
    "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8", "attacker.lr=1e-9",  # a learning rate that learns nothing
    "anonymizers=[none,mask]", "attacks=[naive]",
]


@pytest.fixture(scope="module")
def undertrained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("weak")
    out = root / "out"
    assert main(["run", *UNDERTRAINED, f"cache_dir={root / 'cache'}", f"out={out}"]) == 0
    return out


def test_undertrained_attacker_is_flagged_in_run_table_report_and_gate(undertrained_run, tmp_path, capsys):
    rows = [json.loads(line) for line in (undertrained_run / "results.jsonl").read_text().splitlines()]
    chance = rows[0]["chance"]
    assert set(chance) == {"rank1", "rank5", "rank10", "mAP"} and all(0 < v < 1 for v in chance.values())
    clean = next(r for r in rows if r["anonymizer"] == "none")["metrics"]["rank1"]
    assert (clean - chance["rank1"]) / (1 - chance["rank1"]) < 0.2  # the premise: this attacker is near chance
    assert "WARNING, WEAK ATTACKER" in (undertrained_run / "table.md").read_text()

    assert main(["report", str(undertrained_run), "--format", "html", "--out", str(tmp_path / "r.html"), "--grid-samples", "0"]) == 0
    assert 'class="note warning">WARNING, WEAK ATTACKER' in (tmp_path / "r.html").read_text()

    assert main(["baseline", str(undertrained_run), "--out", str(tmp_path / "b.json")]) == 0
    capsys.readouterr()
    assert main(["check", str(undertrained_run), "--baseline", str(tmp_path / "b.json")]) == 1
    assert "FAIL: WEAK ATTACKER" in capsys.readouterr().out
    assert main(["check", str(undertrained_run), "--baseline", str(tmp_path / "b.json"), "--allow-weak-attacker"]) == 0
    assert main(["check", str(undertrained_run), "--baseline", str(tmp_path / "b.json"), "--min-skill", "1.5"]) == 2
