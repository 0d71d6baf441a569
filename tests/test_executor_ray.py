"""executor=ray (local Ray, 2 workers) gives the rows of executor=serial, bit for bit."""
import json

import pytest

from evalsuite.cli import main

ray = pytest.importorskip("ray", reason="executor=ray needs Ray: pip install -e '.[test]' (or '.[ray]')")

TINY = [
    "protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5",
    "dataset.num_distractors=3", "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8",
    "attacker.height=64", "attacker.width=32", "anonymizers=[none,mask,blur]", "attacks=[naive,adaptive]",
]
pytestmark = pytest.mark.slow  # about a minute on 2 cores: Ray's start and two workers loading torch


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def by_cell(stored):
    return {(r["anonymizer"], r["attack"], r["seed"]): r for r in stored}


def test_ray_with_two_workers_gives_the_serial_rows(tmp_path, capsys):
    # separate cold caches: every attacker is trained once by the serial run and once by a Ray worker
    assert main(["run", *TINY, f"cache_dir={tmp_path / 'c1'}", f"out={tmp_path / 'serial'}"]) == 0
    assert main(["run", *TINY, "executor=ray", "executor.workers=2", f"cache_dir={tmp_path / 'c2'}", f"out={tmp_path / 'ray'}"]) == 0
    assert "6 cells computed, 0 reused" in capsys.readouterr().out
    serial, parallel = by_cell(rows(tmp_path / "serial")), by_cell(rows(tmp_path / "ray"))
    assert len(serial) == len(parallel) == 6 and set(serial) == set(parallel)
    for cell, row in serial.items():
        other = parallel[cell]
        assert other["metrics"] == row["metrics"], cell  # bit-identical floats
        assert other["item_scores"] == row["item_scores"], cell
        for key in ("cell_key", "config_hash", "attacker_key"):
            assert other[key] == row[key], (cell, key)
        assert (row["executor"], other["executor"]) == ("serial", "ray")
        assert other["numerics"]["num_threads"] == row["numerics"]["num_threads"] == 1
    # 3 attackers (clean, mask, blur), each trained once, by whichever worker took it
    assert len(list((tmp_path / "c2" / "attackers").glob("*.pt"))) == 3
    assert sum(r["durations"]["artifacts_s"] > 0 for r in parallel.values()) == 3  # each build credited to one cell
    # a rerun on the same out= computes nothing and starts no worker
    assert main(["run", *TINY, "executor=ray", "executor.workers=2", f"cache_dir={tmp_path / 'c2'}", f"out={tmp_path / 'ray'}"]) == 0
    assert "0 cells computed, 6 reused" in capsys.readouterr().out
