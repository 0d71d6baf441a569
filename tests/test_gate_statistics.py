"""The statistical CI gate: intervals from seeds and a bootstrap over items, effect sizes,
and the refusal of baselines too small to detect the effect size asked for."""
import json
import math

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.errors import UserError
from evalsuite.metrics.items import item_scores_entry, items_fingerprint
from evalsuite.reporting.baseline import load_baseline
from evalsuite.reporting.check import EffectSizes, Tolerances, compare
from evalsuite.reporting.intervals import CellSample, bootstrap_se, compare_cells, pooled_seed_sd, uncertainty
from evalsuite.reporting.results import load_results
from test_ci_gate import check, write  # the same helpers as the tolerance gate's tests

QUERIES = [f"query/{i:04d}_c1s1_000001_00.jpg" for i in range(300)]


def hits_for(rate: float, seed: int, difficulty: np.ndarray) -> np.ndarray:
    """Per-query rank-1 outcomes of one attacker: easy queries (low difficulty) are hit first."""
    rng = np.random.default_rng(seed)
    noisy = difficulty + rng.normal(0, 0.15, difficulty.size)  # attackers differ query by query
    return (noisy < np.quantile(noisy, rate)).astype(float)


def make_rows(rates: dict[tuple[str, str], list[float]], items: int = 300, shift_seed: int = 0, flip: dict | None = None):
    """Rows with per-query rank-1 and mAP-like scores; ``flip`` adds hits to one cell."""
    difficulty = np.random.default_rng(123).uniform(0, 1, items)
    ids = QUERIES[:items]
    rows = []
    for (anonymizer, attack), per_seed in rates.items():
        for seed, rate in enumerate(per_seed):
            hits = hits_for(rate, 1000 * shift_seed + 10 * seed + sum(map(ord, anonymizer)) % 7, difficulty)
            if flip and (anonymizer, attack) == flip["cell"]:
                misses = np.flatnonzero(hits == 0)
                hits[misses[: int(flip["share"] * items)]] = 1
            ap = np.clip(hits * 0.8 + 0.1 * (1 - difficulty), 0, 1)
            rows.append({"protocol": "market1501-reid", "protocol_version": "1", "dataset": "synthetic", "config_hash": "cfg1",
                         "anonymizer": anonymizer, "anonymizer_name": anonymizer, "anonymizer_params": {}, "attack": attack,
                         "seed": seed, "metrics": {"rank1": float(hits.mean()), "mAP": float(ap.mean())},
                         "cell_key": f"{shift_seed}-{anonymizer}-{attack}-{seed}",
                         "item_scores": item_scores_entry({"rank1": hits, "mAP": ap}, ids)})
    return rows


RATES = {("none", "naive"): [0.40, 0.44, 0.42], ("blur", "naive"): [0.12, 0.15, 0.10], ("mask", "naive"): [0.01, 0.0, 0.02]}


@pytest.fixture()
def baseline(tmp_path):
    results = write(tmp_path / "base" / "results.jsonl", make_rows(RATES))
    out = tmp_path / "baseline.json"
    assert main(["baseline", str(results.parent), "--out", str(out)]) == 0
    return out


def test_bootstrap_se_agrees_with_the_binomial_formula_and_is_repeatable():
    values = (np.random.default_rng(0).uniform(size=400) < 0.3).astype(float)
    analytic = math.sqrt(values.mean() * (1 - values.mean()) / values.size)
    se = bootstrap_se(values)
    assert se == bootstrap_se(values)  # fixed generator: same inputs, same interval
    assert abs(se - analytic) / analytic < 0.08
    assert bootstrap_se(np.zeros(50)) == 0.0


def test_seed_spread_is_pooled_so_a_cell_stuck_at_zero_keeps_an_interval():
    stuck = CellSample(values={0: 0.0, 1: 0.0, 2: 0.0})
    noisy = CellSample(values={0: 0.40, 1: 0.46, 2: 0.43})
    pooled = pooled_seed_sd([stuck, noisy])
    assert pooled == pytest.approx(math.sqrt(((0.40 - 0.43) ** 2 + 0.03**2 + 0) / 4))
    unc = uncertainty(stuck, pooled)
    assert unc.se_seed == pytest.approx(pooled / math.sqrt(3)) and unc.se > 0
    single = uncertainty(CellSample(values={0: 0.2}), pooled)
    assert single.se_seed == 0.0 and single.sd_seed is None  # one seed: only items can speak


def test_paired_bootstrap_is_tighter_than_unpaired_when_items_are_shared():
    difficulty = np.random.default_rng(1).uniform(size=300)
    base = {s: hits_for(0.4, s, difficulty) for s in range(3)}
    cur = {s: hits_for(0.4, 100 + s, difficulty) for s in range(3)}
    sha = items_fingerprint(QUERIES)
    b = CellSample(values={s: float(v.mean()) for s, v in base.items()}, item_scores=base, items_sha1=sha)
    c = CellSample(values={s: float(v.mean()) for s, v in cur.items()}, item_scores=cur, items_sha1=sha)
    ub, uc = uncertainty(b, None), uncertainty(c, None)
    paired = compare_cells(b.mean, ub.se_seed, b.item_means(), sha, ub.se_items, c, uc)
    unpaired = compare_cells(b.mean, ub.se_seed, b.item_means(), "other-items", ub.se_items, c, uc)
    assert paired.paired and not unpaired.paired
    assert paired.se < unpaired.se


def test_baseline_stores_intervals_and_item_means(baseline):
    document = json.loads(baseline.read_text())
    cell = next(c for c in document["groups"][0]["cells"] if (c["anonymizer"], c["metric"]) == ("blur", "rank1"))
    unc = cell["uncertainty"]
    assert unc["items"] == 300 and len(cell["item_means"]) == 300
    assert unc["ci"][0] < cell["mean"] < unc["ci"][1]
    assert unc["se"] == pytest.approx(math.sqrt(unc["se_seed"] ** 2 + unc["se_items"] ** 2))
    assert np.mean(cell["item_means"]) == pytest.approx(cell["mean"], abs=1e-6)
    assert load_baseline(baseline).groups[0].cell("blur", "naive", "rank1").expected_se_of_change() == pytest.approx(unc["se_change"])


def test_a_rerun_with_other_attackers_passes(baseline, tmp_path, capsys):
    rerun = write(tmp_path / "rerun" / "results.jsonl", make_rows({k: [v + 0.01 for v in vals] for k, vals in RATES.items()}, shift_seed=7))
    code, out, err = check(capsys, rerun, baseline, "--effect-size", "0.1", "--effect-size", "mAP=0.1")
    assert code == 0, out + err
    assert "PASS" in out and "95% interval" in out


def test_a_realistic_regression_fails_only_its_cell(baseline, tmp_path, capsys):
    # blur leaks 15 more points of rank-1 (45 of 300 queries): a weakened blur, say
    doctored = write(tmp_path / "doc" / "results.jsonl", make_rows(RATES, shift_seed=7, flip={"cell": ("blur", "naive"), "share": 0.15}))
    code, out, _ = check(capsys, doctored, baseline, "--effect-size", "0.1")
    assert code == 1
    worse = [line for line in out.splitlines() if line.endswith("WORSE")]
    assert worse and all(" blur " in line for line in worse)
    assert any("R1" in line for line in worse)


def test_a_small_significant_change_below_the_effect_size_passes(tmp_path, capsys):
    rates = {("none", "naive"): [0.40, 0.40, 0.40]}
    base_rows = make_rows(rates, items=300)
    results = write(tmp_path / "base" / "results.jsonl", base_rows)
    out_path = tmp_path / "b.json"
    assert main(["baseline", str(results.parent), "--out", str(out_path)]) == 0
    capsys.readouterr()
    same_attackers = make_rows(rates, items=300, flip={"cell": ("none", "naive"), "share": 0.03})
    for row in same_attackers:
        row["cell_key"] += "-new"
    current = write(tmp_path / "cur" / "results.jsonl", same_attackers)
    code, out, _ = check(capsys, current, out_path, "--effect-size", "0.2")
    assert code == 0, out
    line = next(line for line in out.splitlines() if " R1 " in line)
    assert line.endswith("minor")  # +3 points, clearly real, but the interval rules out +20


def test_a_baseline_too_small_for_the_effect_size_is_refused(tmp_path, capsys):
    small = write(tmp_path / "small" / "results.jsonl", make_rows(RATES, items=25))
    out_path = tmp_path / "small.json"
    assert main(["baseline", str(small.parent), "--out", str(out_path)]) == 0
    capsys.readouterr()
    code, out, err = check(capsys, small, out_path, "--effect-size", "0.05")
    assert code == 2 and out == ""
    (line,) = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert "too small to detect a regression of 0.05" in line and "it needs about" in line and "seeds" in line and "items" in line


def test_effect_size_needs_a_baseline_with_intervals(tmp_path, capsys):
    rows = make_rows(RATES)
    for row in rows:
        row.pop("item_scores")
        row["seed"] = 0
        row["cell_key"] += "-one-seed"
    results = write(tmp_path / "one" / "results.jsonl", [r for r in rows if r["cell_key"].endswith("-0-one-seed")])
    out_path = tmp_path / "one.json"
    assert main(["baseline", str(results.parent), "--out", str(out_path)]) == 0
    capsys.readouterr()
    code, _, err = check(capsys, results, out_path, "--effect-size", "0.1")
    assert code == 2 and "has no intervals" in err


def test_effect_size_and_tolerance_are_exclusive(baseline, tmp_path, capsys):
    results = write(tmp_path / "r" / "results.jsonl", make_rows(RATES))
    code, _, err = check(capsys, results, baseline, "--effect-size", "0.1", "--tolerance", "0.05")
    assert code == 2 and "do not combine" in err
    code, _, err = check(capsys, results, baseline, "--confidence", "0.9")
    assert code == 2 and "add --effect-size" in err
    with pytest.raises(UserError, match="--confidence"):
        EffectSizes(Tolerances(default=0.1), confidence=1.5)


def test_compare_api_reports_intervals(baseline, tmp_path):
    results = write(tmp_path / "r" / "results.jsonl", make_rows(RATES, shift_seed=3))
    result = compare(load_results([results]), load_baseline(baseline), effect=EffectSizes(Tolerances(default=0.1)))
    cell = next(c for c in result.comparisons if (c.anonymizer, c.metric) == ("none", "rank1"))
    low, high = cell.interval
    assert low < cell.delta < high and high - low > 0
