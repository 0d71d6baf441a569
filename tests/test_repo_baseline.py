"""This repository's own CI gate: a fresh small run of the command in results/baselines/README.md
against the committed baseline passes, a doctored copy fails, another protocol version is refused."""
import json
import re
import shlex
from pathlib import Path

import pytest

from evalsuite.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "results" / "baselines"
BASELINE = BASELINES / "market1501-reid-synthetic.json"


def readme_command(verb):
    """The arguments of the `evalsuite VERB ...` command recorded in results/baselines/README.md."""
    text = (BASELINES / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line)
            if words[:2] == ["evalsuite", verb]:
                return words[2:]
    raise AssertionError(f"no `evalsuite {verb}` command in results/baselines/README.md")


def replace_arg(args, key, value):
    return [a for a in args if not a.startswith(f"{key}=")] + [f"{key}={value}"]


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci")
    args = replace_arg(readme_command("run"), "out", root / "run")
    args = replace_arg(args, "cache_dir", root / "cache")
    assert main(["run", *args]) == 0
    return root / "run"


def check_args():
    """The `evalsuite check` options of the README (everything after the results / --baseline pair)."""
    args = readme_command("check")
    options = []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--baseline":
            skip = True
            continue
        if index == 0:
            continue  # the results folder
        options.append(arg)
    return options


def gate(capsys, results, baseline=BASELINE):
    code = main(["check", str(results), "--baseline", str(baseline), *check_args()])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_readme_commands_match_the_committed_baseline():
    document = json.loads(BASELINE.read_text())
    (group,) = document["groups"]
    run = readme_command("run")
    assert "protocol=market1501-reid" in run and "dataset=synthetic" in run
    assert f"seeds={group['seeds']}".replace(" ", "") in [a.replace(" ", "") for a in run]
    assert readme_command("baseline")[-1] == "results/baselines/market1501-reid-synthetic.json"


@pytest.mark.slow
def test_fresh_run_passes_the_gate(fresh_run, capsys):
    code, out, err = gate(capsys, fresh_run)
    assert code == 0, out + err
    assert "PASS" in out


@pytest.mark.slow
def test_doctored_rank1_fails_the_gate(fresh_run, tmp_path, capsys):
    rows = [json.loads(line) for line in (fresh_run / "results.jsonl").read_text().splitlines()]
    target = next(r for r in rows if r["anonymizer"] == "blur" and r["attack"] == "naive")
    target["metrics"]["rank1"] = min(1.0, target["metrics"]["rank1"] + 0.25)
    doctored = tmp_path / "results.jsonl"
    doctored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = gate(capsys, doctored)
    assert code == 1
    worse = [line for line in out.splitlines() if line.endswith("WORSE")]
    assert len(worse) == 1 and " blur " in worse[0] and " naive " in worse[0] and "R1 ↓" in worse[0]


@pytest.mark.slow
def test_baseline_of_another_protocol_version_is_refused(fresh_run, tmp_path, capsys):
    document = json.loads(BASELINE.read_text())
    document["groups"][0]["protocol_version"] = "0"
    other = tmp_path / "v0.json"
    other.write_text(json.dumps(document))
    code, out, err = gate(capsys, fresh_run, other)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(lines) == 1 and "protocol version 0, but the results are version 1" in lines[0]
