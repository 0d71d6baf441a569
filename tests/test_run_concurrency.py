"""Several `evalsuite run` processes on one out= folder, and runs killed with SIGKILL mid-write."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evalsuite.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5",
    "dataset.num_distractors=3", "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8",
    "attacks=[naive,adaptive]",
]
pytestmark = pytest.mark.slow


def env():
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def cells(out):
    """(anonymizer, attack, seed) -> metrics; fails on a duplicated cell."""
    stored = rows(out)
    keys = [r["cell_key"] for r in stored]
    assert len(keys) == len(set(keys)), "a cell is stored twice"
    return {(r["anonymizer"], r["attack"], r["seed"]): r["metrics"] for r in stored}


def temps(folder):
    return [p for p in folder.rglob("*.tmp")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory):
    """An uninterrupted run of [none, mask, blur] x [naive, adaptive]."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(["run", *TINY, "anonymizers=[none,mask,blur]", f"cache_dir={cache}", f"out={out}"]) == 0
    return cells(out)


def test_two_runs_started_together_into_one_out_keep_every_row(tmp_path, reference):
    out, cache = tmp_path / "out", tmp_path / "cache"  # a cold cache: both train attackers at once
    commands = [[sys.executable, "-m", "evalsuite", "run", *TINY, anonymizers, f"cache_dir={cache}", f"out={out}"]
                for anonymizers in ("anonymizers=[none,mask]", "anonymizers=[none,blur]")]
    procs = [subprocess.Popen(c, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr[-2000:]
        assert "cells computed" in stdout
    stored = cells(out)
    # none x 2 attacks is in both lists: 6 distinct cells, each stored once, none lost
    assert set(stored) == {(a, t, 0) for a in ("none", "mask", "blur") for t in ("naive", "adaptive")}
    assert stored == reference
    assert (out / "config.yaml").exists() and not (out / "configs").exists()  # same numbers-config: one config.yaml
    assert temps(out) == []


KILLER = """
import os, signal, sys
import evalsuite.store as store

mode = sys.argv[1]
if mode == "row":  # the second row is half written when the process dies
    real_write_all, written = store._write_all, []
    def dying_write_all(fd, data):
        written.append(data)
        if len(written) == 2:
            os.write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real_write_all(fd, data)
    store._write_all = dying_write_all
else:  # the table's temporary file exists, half written, when the process dies
    real_atomic_write_text = store.atomic_write_text
    def dying_atomic_write_text(path, text):
        if path.name == "table.md":
            with store.atomic_path(path) as tmp:
                tmp.write_text(text[: len(text) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        real_atomic_write_text(path, text)
    store.atomic_write_text = dying_atomic_write_text

from evalsuite.cli import main
sys.exit(main(["run", *sys.argv[2:]]))
"""


@pytest.mark.parametrize("where", ["row", "table", "external"])
def test_kill_9_leaves_no_temporary_files_and_the_rerun_resumes_to_identical_numbers(where, tmp_path, cache, reference, capsys, caplog):
    out = tmp_path / "out"
    args = [*TINY, "anonymizers=[none,mask,blur]", f"cache_dir={cache}", f"out={out}"]
    if where == "external":  # a real kill -9 from outside, once the first row is stored
        proc = subprocess.Popen([sys.executable, "-m", "evalsuite", "run", *args], cwd=tmp_path, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            results = out / "results.jsonl"
            if results.exists() and results.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    else:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), where, *args], cwd=tmp_path, env=env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        if where == "row":
            data = (out / "results.jsonl").read_bytes()
            assert data.count(b"\n") == 1 and not data.endswith(b"\n")  # one row and half of the next
        else:
            assert len(temps(out)) == 1 and len(rows(out)) == 6  # every row, and the table's temporary file
    code = main(["run", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert temps(out) == []
    assert cells(out) == reference
    if where == "row":
        assert "removed a torn last line" in caplog.text
        assert "5 cells computed, 1 reused" in captured.out
    if where == "table":
        assert "0 cells computed, 6 reused" in captured.out
        assert "| blur |" in (out / "table.md").read_text()
