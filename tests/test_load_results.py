"""evalsuite.load_results: run folders as a tidy pandas DataFrame (one row per cell and metric)."""
import json
import logging

import pandas as pd
import pytest

import evalsuite
from evalsuite.errors import UserError


def _row(key, anonymizer, seed, rank1, mAP=None, **extra):
    metrics = {"rank1": rank1, **({"mAP": mAP} if mAP is not None else {}), "my_metric": 2.5}
    return {"cell_key": key, "protocol": "market1501-reid", "protocol_version": "1", "dataset": "synthetic", "config_hash": "c1",
            "anonymizer": anonymizer, "anonymizer_name": anonymizer.rstrip("0123456789"), "anonymizer_params": {"sigma": 7} if anonymizer.startswith("blur") else {},
            "attack": "naive", "seed": seed, "metrics": metrics, "versions": {"torch": "2.4.0", "evalsuite": "0.1.0"},
            "durations": {"total_s": 1.5}, "git_commit": "abc", "finished_at": "2024-05-01T12:00:00+00:00", **extra}


def _write(folder, rows, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return folder


def test_one_row_per_cell_and_metric_with_params_seeds_versions(tmp_path):
    run = _write(tmp_path / "run", [_row("a", "none", 0, 0.9, 0.8), _row("b", "blur", 0, 0.5, 0.4), _row("c", "blur", 1, 0.3, 0.2)])
    (run / "config.yaml").write_text("protocol: market1501-reid\n")
    frame = evalsuite.load_results(run)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 3 * 3  # three cells x (rank1, mAP, my_metric)
    assert list(frame.columns[:11]) == ["protocol", "protocol_version", "dataset", "config_hash", "anonymizer", "anonymizer_name", "attack", "seed", "cell_key", "metric", "value"]
    blur = frame[(frame.anonymizer == "blur") & (frame.metric == "rank1")].sort_values("seed")
    assert blur["value"].tolist() == [0.5, 0.3] and blur["seed"].tolist() == [0, 1]
    assert (blur["anonymizer_params.sigma"] == 7).all()
    assert (frame["versions.torch"] == "2.4.0").all() and (frame["durations.total_s"] == 1.5).all()
    assert str(frame["finished_at"].dtype).startswith("datetime64") and frame["seed"].dtype == "int64"
    rank1 = frame[frame.metric == "rank1"].iloc[0]
    assert rank1["higher_is_better"] == False and rank1["category"] == "privacy" and rank1["unit"] == "rate"  # noqa: E712
    assert frame[frame.metric == "my_metric"]["category"].isna().all()  # undeclared metric: no spec
    assert (frame["config_file"] == str(run / "config.yaml")).all() and (frame["source"] == str(run / "results.jsonl")).all()
    # the README example: mean and standard error over seeds per anonymizer, attack and metric
    summary = frame.groupby(["anonymizer", "attack", "metric"])["value"].agg(["mean", "sem", "count"])
    assert summary.loc[("blur", "naive", "rank1"), "mean"] == pytest.approx(0.4)
    assert summary.loc[("blur", "naive", "rank1"), "count"] == 2


def test_several_runs_merge_and_a_cell_stored_twice_counts_once(tmp_path, caplog):
    first = _write(tmp_path / "a", [_row("a", "none", 0, 0.9), _row("b", "blur", 0, 0.5)])
    second = _write(tmp_path / "b", [_row("b", "blur", 0, 0.6), _row("d", "mask", 0, 0.1, extra_field=3)],
                    tail=json.dumps(_row("e", "mask", 1, 0.2))[:40])  # a torn last line of a killed run
    (second / "configs").mkdir()
    (second / "configs" / "c1.yaml").write_text("protocol: market1501-reid\n")
    with caplog.at_level(logging.WARNING):
        frame = evalsuite.load_results([first, str(second / "results.jsonl")])
    assert sorted(frame["cell_key"].unique()) == ["a", "b", "d"]
    assert frame[(frame.cell_key == "b") & (frame.metric == "rank1")]["value"].tolist() == [0.5]  # the first kept
    assert "stored twice with different metrics" in caplog.text and "torn last line" in caplog.text
    assert frame[frame.cell_key == "d"]["extra_field"].eq(3).all()
    assert frame[frame.cell_key == "d"]["config_file"].eq(str(second / "configs" / "c1.yaml")).all()


def test_missing_or_foreign_results_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist; pass a run folder"):
        evalsuite.load_results([tmp_path / "nowhere"])
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(UserError, match="lacks protocol"):
        evalsuite.load_results(tmp_path / "x.jsonl")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    assert evalsuite.load_results(tmp_path / "empty").empty


def test_the_report_and_the_gate_read_results_through_the_same_reader(tmp_path, capsys):
    """One reader (evalsuite.analysis.read_sources): a bad row is refused with the same line by
    load_results, the report and the gate; good rows give the report's cells the frame's values."""
    from evalsuite.cli import main
    from evalsuite.reporting import ReportOptions, generate_report
    from evalsuite.reporting.results import load_results as load_groups

    run = _write(tmp_path / "run", [_row("a", "none", 0, 0.9, 0.8), _row("b", "blur", 0, 0.5, 0.4), _row("c", "blur", 1, 0.3, 0.2)])
    frame = evalsuite.load_results(run)
    (group,) = load_groups([run])
    for (anonymizer, attack, metric), cell in group.cells.items():
        expected = frame[(frame.anonymizer == anonymizer) & (frame.attack == attack) & (frame.metric == metric)].set_index("seed")["value"].to_dict()
        assert cell.values == expected
    bad = _write(tmp_path / "bad", [_row("a", "none", 0, 0.9), {k: v for k, v in _row("b", "blur", 0, 0.5).items() if k != "dataset"}])
    message = f"{bad / 'results.jsonl'}:2 lacks dataset; is this an evalsuite results.jsonl?"
    with pytest.raises(UserError) as from_frame:
        evalsuite.load_results(bad)
    with pytest.raises(UserError) as from_report:
        generate_report([bad], ReportOptions())
    assert str(from_frame.value) == str(from_report.value) == message
    assert main(["baseline", str(bad), "--out", str(tmp_path / "baseline.json")]) == 2  # the gate's baseline maker
    assert message in capsys.readouterr().err and not (tmp_path / "baseline.json").exists()
