"""`evalsuite baseline` and `evalsuite check` (the CI gate) on hand-made results."""
import json

import pytest

from evalsuite.cli import main
from evalsuite.errors import UserError
from evalsuite.reporting.check import Tolerances


def row(anonymizer, attack, seed, metrics, *, protocol="market1501-reid", version="1", dataset="synthetic", config_hash="cfg1"):
    return {"protocol": protocol, "protocol_version": version, "dataset": dataset, "config_hash": config_hash,
            "anonymizer": anonymizer, "anonymizer_name": anonymizer, "anonymizer_params": {}, "attack": attack, "seed": seed,
            "metrics": dict(metrics), "cell_key": f"{protocol}-{version}-{dataset}-{config_hash}-{anonymizer}-{attack}-{seed}"}


BASE = {  # (anonymizer, attack) -> per-seed (rank1, ssim)
    ("none", "naive"): [(0.90, 1.0), (0.92, 1.0), (0.91, 1.0)],
    ("blur", "naive"): [(0.40, 0.60), (0.50, 0.70), (0.45, 0.65)],
    ("mask", "naive"): [(0.10, 0.40), (0.12, 0.42), (0.11, 0.41)],
}


def rows_from(values, **kwargs):
    return [row(a, t, seed, {"rank1": r1, "ssim": s}, **kwargs) for (a, t), per_seed in values.items() for seed, (r1, s) in enumerate(per_seed)]


def shifted(anonymizer, rank1=0.0, ssim=0.0):
    """BASE with one anonymizer's rank1 / ssim moved by the given amounts on every seed."""
    return {key: [(r + (rank1 if key[0] == anonymizer else 0), s + (ssim if key[0] == anonymizer else 0)) for r, s in v] for key, v in BASE.items()}


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def baseline(tmp_path):
    results = write(tmp_path / "base" / "results.jsonl", rows_from(BASE))
    out = tmp_path / "baseline.json"
    assert main(["baseline", str(results.parent), "--out", str(out)]) == 0
    return out


def check(capsys, results, baseline, *args):
    code = main(["check", str(results), "--baseline", str(baseline), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_baseline_records_cells_seeds_and_directions(baseline, tmp_path):
    document = json.loads(baseline.read_text())
    assert document["format"] == "evalsuite-baseline" and document["format_version"] == 2
    (group,) = document["groups"]
    assert (group["protocol"], group["protocol_version"], group["dataset"], group["config_hash"]) == ("market1501-reid", "1", "synthetic", "cfg1")
    assert group["seeds"] == [0, 1, 2]
    assert group["metrics"]["rank1"] == {"higher_is_better": False, "category": "privacy", "unit": "rate", "label": "R1"}
    assert group["metrics"]["ssim"]["higher_is_better"] is True
    blur = next(c for c in group["cells"] if (c["anonymizer"], c["metric"]) == ("blur", "rank1"))
    assert blur["mean"] == pytest.approx(0.45)
    assert blur["sem"] == pytest.approx(((0.005 / 2) / 3) ** 0.5) and blur["n"] == 3 and blur["values"] == {"0": 0.40, "1": 0.50, "2": 0.45}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_baseline_refuses_incomplete_cells(tmp_path, capsys):
    rows = rows_from(BASE)[:-1]  # mask / seed 2 missing
    results = write(tmp_path / "r" / "results.jsonl", rows)
    assert main(["baseline", str(results), "--out", str(tmp_path / "b.json")]) == 2
    assert "lacks seed(s) [2]" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_unchanged_results_pass(baseline, tmp_path, capsys):
    results = write(tmp_path / "again.jsonl", rows_from(BASE))
    code, out, _ = check(capsys, results, baseline)
    assert code == 0
    assert "no cell changed beyond tolerance" in out and "PASS: 6 baseline cells within tolerance" in out


def test_rising_reidentification_fails_beyond_tolerance(baseline, tmp_path, capsys):
    results = write(tmp_path / "worse.jsonl", rows_from(shifted("blur", rank1=0.05)))
    code, out, _ = check(capsys, results, baseline, "--tolerance", "0.02")
    assert code == 1
    line = next(line for line in out.splitlines() if " blur " in line)
    assert "naive" in line and "R1 ↓" in line and "45.0 ± 2.9" in line and "50.0 ± 2.9" in line and "+5.0" in line and line.endswith("WORSE")
    assert "FAIL: 1 of 6 baseline cells" in out
    assert check(capsys, results, baseline, "--tolerance", "0.02", "--tolerance", "rank1=0.06")[0] == 0


def test_directions_decide_what_worse_means(baseline, tmp_path, capsys):
    more_private = write(tmp_path / "a.jsonl", rows_from(shifted("mask", rank1=-0.05)))
    code, out, _ = check(capsys, more_private, baseline, "--tolerance", "0.01")
    assert code == 0 and "improved" in out and "1 improved" in out
    lower_quality = write(tmp_path / "b.jsonl", rows_from(shifted("blur", ssim=-0.05)))
    code, out, _ = check(capsys, lower_quality, baseline, "--tolerance", "0.01")
    assert code == 1 and "SSIM ↑" in out and "WORSE" in out
    higher_quality = write(tmp_path / "c.jsonl", rows_from(shifted("blur", ssim=+0.05)))
    assert check(capsys, higher_quality, baseline, "--tolerance", "0.01")[0] == 0


def test_z_test_tolerates_changes_within_the_seed_noise(baseline, tmp_path, capsys):
    # blur rank1: 0.45 ± 0.029 over three seeds; +0.05 is z = 0.05 / sqrt(2 * 0.029^2) = 1.22
    small = write(tmp_path / "small.jsonl", rows_from(shifted("blur", rank1=0.05)))
    assert check(capsys, small, baseline)[0] == 1
    code, out, _ = check(capsys, small, baseline, "--z", "2")
    assert code == 0 and "+1.22" in out and "insignificant" in out
    large = write(tmp_path / "large.jsonl", rows_from(shifted("blur", rank1=0.2)))
    code, out, _ = check(capsys, large, baseline, "--z", "2")
    assert code == 1 and "+4.90" in out


def test_missing_and_new_cells(baseline, tmp_path, capsys):
    rows = [r for r in rows_from(BASE) if r["anonymizer"] != "mask"]
    rows += [row("pixelate8", "naive", s, {"rank1": 0.3, "ssim": 0.5}) for s in range(3)]
    code, out, _ = check(capsys, write(tmp_path / "r.jsonl", rows), baseline)
    assert code == 1
    assert "MISSING" in out and "pixelate8" in out and " new" in out
    partial = [r for r in rows_from(BASE) if not (r["anonymizer"] == "mask" and r["seed"] == 2)]
    code, out, _ = check(capsys, write(tmp_path / "p.jsonl", partial), baseline)
    assert code == 1 and "INCOMPLETE" in out


@pytest.mark.parametrize("kwargs, fragment", [
    ({"version": "2"}, "protocol version 1, but the results are version 2"),
    ({"dataset": "market1501"}, "covers market1501-reid on synthetic, but the results are on market1501"),
    ({"config_hash": "cfg2"}, "was made with config cfg1, but the results have config cfg2"),
    ({"protocol": "image-quality"}, "has no image-quality results"),
])
def test_mismatched_baseline_is_refused_with_exit_2(baseline, tmp_path, capsys, kwargs, fragment):
    results = write(tmp_path / "r.jsonl", rows_from(BASE, **kwargs))
    code, out, err = check(capsys, results, baseline)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(lines) == 1 and fragment in lines[0], err


def test_config_hash_mismatch_can_be_overridden(baseline, tmp_path, capsys):
    results = write(tmp_path / "r.jsonl", rows_from(BASE, config_hash="cfg2"))
    assert check(capsys, results, baseline, "--ignore-config-hash")[0] == 0


def test_other_metric_set_is_refused(baseline, tmp_path, capsys):
    rows = rows_from(BASE)
    for r in rows:
        r["metrics"]["mAP"] = 0.5
    code, _, err = check(capsys, write(tmp_path / "r.jsonl", rows), baseline)
    assert code == 2 and "only in the results: ['mAP']" in err


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is malformed: not JSON"),
    ('{"format": "something-else"}', 'no "format": "evalsuite-baseline"'),
    ('{"format": "evalsuite-baseline", "format_version": 1, "groups": []}', "'groups' must be a non-empty list"),
    ('{"format": "evalsuite-baseline", "format_version": 1, "groups": [{"protocol": "market1501-reid"}]}', "groups[0].protocol_version is missing"),
])
def test_malformed_baseline_is_one_line_exit_2(tmp_path, capsys, content, fragment):
    results = write(tmp_path / "r.jsonl", rows_from(BASE))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = check(capsys, results, bad)
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert check(capsys, results, tmp_path / "absent.json")[0] == 2


def test_tolerance_parsing():
    tolerances = Tolerances.parse(["0.01", "rank1=0.02"])
    assert tolerances.for_metric("rank1") == 0.02 and tolerances.for_metric("ssim") == 0.01
    for bad in ("x", "rank1=-1", "rank1=nan"):
        with pytest.raises(UserError):
            Tolerances.parse([bad])


def test_tolerance_for_an_unknown_metric_is_refused(baseline, tmp_path, capsys):
    results = write(tmp_path / "r.jsonl", rows_from(BASE))
    code, _, err = check(capsys, results, baseline, "--tolerance", "rank_1=0.1")
    assert code == 2 and "did you mean 'rank1'" in err


def test_gate_reads_metric_directions_from_the_runs_run_json(tmp_path, capsys):
    """A metric the registry does not know (a plugin's, not installed here): the run's run.json
    says higher is better, so a rise is an improvement; without run.json it is only a change."""
    values = {("none", "naive"): [0.5, 0.52, 0.51], ("blur", "naive"): [0.3, 0.31, 0.32]}
    rows = [row(a, t, seed, {"plugin_score": v}) for (a, t), per_seed in values.items() for seed, v in enumerate(per_seed)]
    write(tmp_path / "base" / "results.jsonl", rows)
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(tmp_path / "base"), "--out", str(baseline)]) == 0
    risen = [{**r, "metrics": {"plugin_score": r["metrics"]["plugin_score"] + (0.2 if r["anonymizer"] == "blur" else 0)}} for r in rows]
    plain = write(tmp_path / "plain" / "results.jsonl", risen)
    code, out, _ = check(capsys, plain.parent, baseline, "--tolerance", "0.01")
    assert code == 1 and "CHANGED" in out  # no direction known: any change beyond tolerance fails
    described = write(tmp_path / "described" / "results.jsonl", risen)
    spec = {"name": "plugin_score", "description": "a plugin's score", "higher_is_better": True, "category": "utility", "unit": "rate", "label": "Plugin"}
    (described.parent / "run.json").write_text(json.dumps({"format": 1, "runs": {"cfg1": {"metrics": {"plugin_score": spec}}}}))
    code, out, _ = check(capsys, described.parent, baseline, "--tolerance", "0.01")
    assert code == 0 and "improved" in out and "Plugin ↑" in out
