"""deterministic=true: the CPU code path, oneDNN, MKL and threads pinned, and recorded in every row."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.reproducibility import PINNED_ENVIRONMENT, numerics_context, requested_in

ROOT = Path(__file__).resolve().parents[1]
TINY = ["protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5",
        "dataset.num_distractors=3", "dataset.num_junk=1", "attacker.epochs=2", "attacker.batch_size=8",
        "anonymizers=[none,blur]", "attacks=[naive,adaptive]", "seeds=[0]"]


def test_requested_in_reads_the_override_before_parsing():
    assert requested_in(["protocol=x", "deterministic=true"])
    assert requested_in(["deterministic=True"]) and not requested_in(["deterministic=false"]) and not requested_in(["x=deterministic=true"])


def test_deterministic_refuses_a_second_thread():
    from evalsuite.errors import UserError

    with pytest.raises(UserError, match="num_threads=2"):
        with numerics_context(True, 2):
            pass


def run_in_subprocess(tmp_path: Path, name: str, capability: str | None, extra: list[str]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENVIRONMENT}
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = tmp_path / name
    cmd = [sys.executable, "-m", "evalsuite.cli", "run", *TINY, *extra, f"out={out}", f"cache_dir={tmp_path / ('cache-' + name)}"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_deterministic_mode_gives_identical_numbers_whatever_code_path_the_process_would_pick(tmp_path):
    runs = {cap or "native": run_in_subprocess(tmp_path, cap or "native", cap, ["deterministic=true"]) for cap in (None, "avx2", "default")}
    key = lambda r: (r["anonymizer"], r["attack"])  # noqa: E731
    reference = {key(r): (r["metrics"], r["item_scores"]) for r in runs["native"]}
    for name, rows in runs.items():
        assert {key(r): (r["metrics"], r["item_scores"]) for r in rows} == reference, name
        for row in rows:
            numerics = row["numerics"]
            assert numerics["deterministic"] and numerics["cpu_capability"] == "DEFAULT" and numerics["num_threads"] == 1
            assert numerics["mkldnn"] is False and numerics["environment"]["MKL_CBWR"] == "COMPATIBLE"
