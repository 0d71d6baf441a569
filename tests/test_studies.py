"""`evalsuite study`: several protocol runs behind one command, one combined report."""
import json

import pytest

from evalsuite.cli import main
from evalsuite.config import compose
from evalsuite.registry import STUDIES, load_all
from evalsuite.runner import resolve_components
from evalsuite.studies import register_study

load_all()

TINY_MARKET = ["protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5", "dataset.num_distractors=2",
               "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8", "anonymizers=[none,blur]", "attacks=[naive]"]
TINY_QUALITY = ["protocol=image-quality", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5", "dataset.num_distractors=2",
                "dataset.num_junk=1", "anonymizers=[none,mask]", "table.metrics=[psnr,ssim]"]
BUILTIN = [name for name in STUDIES.names() if not name.startswith("tiny")]
register_study("tiny-test-study", "two tiny parts, for the tests", [("reid", TINY_MARKET), ("quality", TINY_QUALITY)])


def test_every_documented_study_is_registered():
    assert {"deepprivacy", "attack-strength", "upgan", "ppas-tradeoff"} <= set(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_studies_compose_and_name_real_components(name):
    study = STUDIES.build(name)
    for part, overrides in study.part_overrides([]).items():
        cfg = compose([*overrides, "out=/tmp/unused"])
        anonymizers, attacks, _ = resolve_components(cfg)
        assert anonymizers and attacks, part


def test_a_study_runs_every_part_and_writes_one_report(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "tiny-test-study", f"out={out}", f"cache_dir={tmp_path / 'cache'}", "reid:seeds=[1]"]) == 0
    printed = capsys.readouterr().out
    reid = [json.loads(line) for line in (out / "reid" / "results.jsonl").read_text().splitlines()]
    quality = [json.loads(line) for line in (out / "quality" / "results.jsonl").read_text().splitlines()]
    assert {(r["anonymizer"], r["seed"]) for r in reid} == {("none", 1), ("blur", 1)}  # the part override reached only its part
    assert {(r["anonymizer"], r["seed"]) for r in quality} == {("none", 0), ("mask", 0)}
    report = (out / "report.md").read_text()
    assert "market1501-reid" in report and "image-quality" in report and "blur" in report and "mask" in report
    assert report.strip() in printed


@pytest.mark.parametrize("args, fragment", [
    (["nosuchpart:seeds=[1]"], "'nosuchpart'"),
    (["reid:anonymizers=[blurr]"], "'blurr'"),
    (["quality:attacker.epochs=2"], "part quality"),
    (["protocol=face-identification"], "PART:key=value"),
    (["parts=[reid,qualty]"], "'quality'"),
])
def test_bad_study_input_is_one_line_exit_2_and_nothing_written(args, fragment, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "tiny-test-study", f"out={out}", *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(lines) == 1 and fragment in lines[0]
    assert not out.exists()


def test_parts_runs_only_the_named_parts_and_the_report_keeps_earlier_ones(tmp_path, capsys):
    out, cache = tmp_path / "study", f"cache_dir={tmp_path / 'cache'}"
    assert main(["study", "tiny-test-study", f"out={out}", cache, "parts=[quality]"]) == 0
    assert (out / "quality" / "results.jsonl").exists() and not (out / "reid").exists()
    assert "image-quality" in (out / "report.md").read_text() and "market1501-reid" not in (out / "report.md").read_text()
    assert main(["study", "tiny-test-study", f"out={out}", cache, "parts=[reid]"]) == 0
    report = (out / "report.md").read_text()
    assert "image-quality" in report and "market1501-reid" in report  # the earlier part's folder is still reported


def test_ppas_tradeoff_sweeps_the_selection_only():
    """Its ppas rows differ in k / l / t / epsilon alone, so the networks (cached apart) train once per part."""
    study = STUDIES.build("ppas-tradeoff")
    for overrides in study.part_overrides([]).values():
        anonymizers, _, _ = resolve_components(compose([*overrides, "out=/tmp/unused"]))
        ppas = [spec for spec in anonymizers if spec.name == "ppas"]
        assert len(ppas) == 5
        trained = [{k: v for k, v in spec.anonymizer.get_params().items() if k not in ("k", "l", "t", "epsilon")} for spec in ppas]
        assert all(params == trained[0] for params in trained)
        selections = {tuple(spec.anonymizer.get_params()[k] for k in ("k", "l", "t", "epsilon")) for spec in ppas}
        assert len(selections) == 5 and (1, 1.0, 1.0, None) in selections
