"""The report table builder and its Markdown / LaTeX / CSV renderers, on hand-made result rows."""
import csv
import io
import json
import re
import shutil
import subprocess

import pytest

from evalsuite.cli import main
from evalsuite.errors import UserError
from evalsuite.registry import load_all
from evalsuite.reporting import ReportOptions, generate_report
from evalsuite.reporting.formats import csv_text, latex, markdown
from evalsuite.reporting.results import load_results
from evalsuite.reporting.table import build_tables

load_all()


def row(anonymizer, attack, seed, metrics, *, protocol="market1501-reid", version="1", dataset="synthetic", config_hash="cfg1", name=None, params=None):
    name = name or anonymizer
    params = params if params is not None else {}
    key = f"{protocol}|{version}|{dataset}|{config_hash}|{anonymizer}|{json.dumps(params, sort_keys=True)}|{attack}|{seed}"
    return {"protocol": protocol, "protocol_version": version, "dataset": dataset, "config_hash": config_hash,
            "anonymizer": anonymizer, "anonymizer_name": name, "anonymizer_params": params, "attack": attack,
            "seed": seed, "metrics": metrics, "cell_key": key}


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def reid_rows():
    """none / blur / mask under naive and adaptive, seeds 0 and 1; rank1 + mAP (+ ssim)."""
    values = {  # (anonymizer, attack): [(rank1, mAP, ssim) per seed]
        ("none", "naive"): [(0.90, 0.80, 1.0), (0.92, 0.82, 1.0)],
        ("none", "adaptive"): [(0.90, 0.80, 1.0), (0.92, 0.82, 1.0)],
        ("blur", "naive"): [(0.40, 0.30, 0.60), (0.50, 0.34, 0.62)],
        ("blur", "adaptive"): [(0.60, 0.50, 0.60), (0.62, 0.52, 0.62)],
        ("mask", "naive"): [(0.10, 0.05, 0.40), (0.12, 0.07, 0.42)],
        ("mask", "adaptive"): [(0.30, 0.20, 0.40), (0.34, 0.22, 0.42)],
    }
    params = {"none": {}, "blur": {"sigma": 7.0, "kernel_size": None}, "mask": {"fill": 127}}
    return [row(a, t, seed, {"rank1": r1, "mAP": m, "ssim": s}, params=params[a])
            for (a, t), per_seed in values.items() for seed, (r1, m, s) in enumerate(per_seed)]


def tables_for(tmp_path, rows, **kwargs):
    groups = load_results([write(tmp_path / "run" / "results.jsonl", rows)])
    return build_tables(groups, **kwargs)


def test_markdown_mean_sem_bold_best_and_arrows(tmp_path):
    tables = tables_for(tmp_path, reid_rows(), metrics=["rank1", "ssim"])
    lines = markdown(tables).splitlines()
    assert lines[0] == "**market1501-reid (v1) on synthetic**"
    assert lines[2] == "| Anonymizer | naive R1 ↓ | naive SSIM ↑ | adaptive R1 ↓ | adaptive SSIM ↑ |"
    assert lines[3] == "|:---|---:|---:|---:|---:|"
    # none first and never bold; rank1 best = lowest, SSIM best = highest among the anonymizers
    assert lines[4] == "| none | 91.0 ± 1.0 | 1.000 ± 0.000 | 91.0 ± 1.0 | 1.000 ± 0.000 |"
    assert lines[5] == "| blur | 45.0 ± 5.0 | **0.610 ± 0.010** | 61.0 ± 1.0 | **0.610 ± 0.010** |"
    assert lines[6] == "| mask | **11.0 ± 1.0** | 0.410 ± 0.010 | **32.0 ± 2.0** | 0.410 ± 0.010 |"
    assert "mean over seeds [0, 1] ± standard error" in lines[8]


def test_incomplete_cells_are_missing_not_averaged(tmp_path):
    rows = [r for r in reid_rows() if not (r["anonymizer"] == "mask" and r["attack"] == "adaptive" and r["seed"] == 1)]
    table = tables_for(tmp_path, rows, metrics=["rank1"])[0]
    text = markdown([table])
    assert "| mask | **11.0 ± 1.0** | incomplete (1/2 seeds) |" in text
    # the partial mask cell does not compete, and a column with one contender has no "best"
    assert "| blur | 45.0 ± 5.0 | 61.0 ± 1.0 |" in text
    cell = table.cell("mask", 1)
    assert cell.status == "incomplete" and cell.mean is None and cell.n == 1 and cell.expected == 2


def test_a_metric_missing_from_one_row_makes_that_cell_incomplete(tmp_path):
    rows = reid_rows()
    del rows[-1]["metrics"]["mAP"]  # mask / adaptive / seed 1 lacks mAP
    table = tables_for(tmp_path, rows, metrics=["rank1", "mAP"])[0]
    mask_adaptive = {c.metric: table.cell("mask", i) for i, c in enumerate(table.columns) if c.attack == "adaptive"}
    assert mask_adaptive["rank1"].status == "ok" and mask_adaptive["mAP"].status == "incomplete"


def test_delta_to_original_and_order(tmp_path):
    table = tables_for(tmp_path, reid_rows(), metrics=["rank1"], attacks=["naive"], order=["mask", "blur"], delta=True)[0]
    assert table.rows == ["none", "mask", "blur"]
    lines = markdown([table]).splitlines()
    assert lines[4] == "| none | 91.0 ± 1.0 |"
    assert lines[5] == "| mask | **11.0 ± 1.0** (-80.0) |"
    assert lines[6] == "| blur | 45.0 ± 5.0 (-46.0) |"
    assert "difference to none in percentage points" in lines[8]


def test_unknown_metric_has_no_arrow_no_bold_and_three_decimals(tmp_path):
    rows = [row(a, "naive", 0, {"rank1": r, "mystery": m}) for a, r, m in (("none", 0.9, 1.5), ("blur", 0.5, 0.25), ("mask", 0.1, 0.125))]
    table = tables_for(tmp_path, rows, metrics=["rank1", "mystery"])[0]
    lines = markdown([table]).splitlines()
    assert lines[2] == "| Anonymizer | naive R1 ↓ | naive mystery |"
    assert lines[5] == "| blur | 50.0 | 0.250 |"
    assert lines[6] == "| mask | **10.0** | 0.125 |"


def test_protocol_without_attacker_drops_the_attack_level(tmp_path):
    rows = [row(a, "none", 0, {"ssim": s, "psnr": p}, protocol="image-quality") for a, s, p in (("none", 1.0, 99.0), ("blur", 0.7, 25.5), ("mask", 0.4, 12.25))]
    table = tables_for(tmp_path, rows, metrics=["ssim", "psnr"])[0]
    assert not table.show_attack
    lines = markdown([table]).splitlines()
    assert lines[2] == "| Anonymizer | SSIM ↑ | PSNR ↑ |"
    assert lines[5] == "| blur | **0.700** | **25.50** |"
    tex = latex([table])
    assert "\\multicolumn" not in tex and "Anonymizer & SSIM $\\uparrow$ & PSNR $\\uparrow$ \\\\" in tex


def test_other_config_or_version_is_a_separate_table_never_averaged(tmp_path):
    rows = [row("blur", "naive", 0, {"rank1": 0.4}), row("none", "naive", 0, {"rank1": 0.9}),
            row("blur", "naive", 0, {"rank1": 0.8}, config_hash="cfg2"), row("none", "naive", 0, {"rank1": 0.95}, config_hash="cfg2"),
            row("blur", "naive", 0, {"rank1": 0.2}, version="2"), row("none", "naive", 0, {"rank1": 0.9}, version="2")]
    tables = tables_for(tmp_path, rows, metrics=["rank1"])
    assert len(tables) == 3
    assert {t.title for t in tables} == {"market1501-reid (v1) on synthetic, config cfg1", "market1501-reid (v1) on synthetic, config cfg2",
                                         "market1501-reid (v2) on synthetic, config cfg1"}
    means = sorted(t.cell("blur", 0).mean for t in tables)
    assert means == [0.2, 0.4, 0.8]


def test_runs_merge_and_duplicate_cells_count_once(tmp_path):
    rows = reid_rows()
    first = write(tmp_path / "a" / "results.jsonl", [r for r in rows if r["seed"] == 0])
    second = write(tmp_path / "b" / "results.jsonl", rows)  # seed 0 again (same cell_keys) and seed 1
    groups = load_results([first, second.parent])
    assert len(groups) == 1
    stats = groups[0].cell("blur", "naive", "rank1")
    assert stats.values == {0: 0.40, 1: 0.50} and stats.complete


def test_one_label_for_two_parameter_sets_is_refused(tmp_path):
    rows = [row("blur", "naive", 0, {"rank1": 0.4}, params={"sigma": 7}), row("blur", "naive", 1, {"rank1": 0.5}, params={"sigma": 3})]
    with pytest.raises(UserError, match="label 'blur' names two different anonymizers"):
        load_results([write(tmp_path / "r.jsonl", rows)])


def test_tidy_csv_one_row_per_cell_value(tmp_path):
    rows = [r for r in reid_rows() if not (r["anonymizer"] == "mask" and r["attack"] == "adaptive" and r["seed"] == 1)]
    text = csv_text(tables_for(tmp_path, rows, metrics="all", delta=True))
    records = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == 3 * 2 * 3  # anonymizers x attacks x metrics
    blur = next(r for r in records if (r["anonymizer"], r["attack"], r["metric"]) == ("blur", "naive", "rank1"))
    assert float(blur["mean"]) == pytest.approx(0.45) and float(blur["sem"]) == pytest.approx(0.05)
    assert blur["n_seeds"] == "2" and blur["seeds"] == "0 1" and blur["status"] == "ok"
    assert float(blur["delta_to_original"]) == pytest.approx(-0.46) and blur["higher_is_better"] == "false" and blur["category"] == "privacy"
    assert json.loads(blur["anonymizer_params"]) == {"sigma": 7.0, "kernel_size": None}
    partial = next(r for r in records if (r["anonymizer"], r["attack"], r["metric"]) == ("mask", "adaptive", "rank1"))
    assert partial["status"] == "incomplete" and partial["mean"] == "" and partial["n_seeds"] == "1" and partial["expected_seeds"] == "2"


# ------------------------------------------------------------------ LaTeX

def _tabular_rows(tex):
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    return [line for line in body.splitlines() if line.strip().endswith("\\\\")]


def test_latex_booktabs_grouped_headers_and_structure(tmp_path):
    tables = tables_for(tmp_path, reid_rows(), metrics=["rank1", "mAP"], delta=True)
    tex = latex(tables)
    assert "\\begin{tabular}{lrrrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "Anonymizer & \\multicolumn{2}{c}{naive} & \\multicolumn{2}{c}{adaptive} \\\\" in tex
    assert "\\cmidrule(lr){2-3} \\cmidrule(lr){4-5}" in tex
    assert " & R1 $\\downarrow$ & mAP $\\downarrow$ & R1 $\\downarrow$ & mAP $\\downarrow$ \\\\" in tex
    assert "mask & \\textbf{11.0 $\\pm$ 1.0} ($-80.0$)" in tex
    assert "Rates in \\%" in tex
    for line in _tabular_rows(tex):  # every body row has the header's column count
        assert line.count("&") == 4, line
    assert tex.count("{") == tex.count("}")


def test_latex_compiles_or_parses(tmp_path):
    rows = reid_rows() + [row("pixel_8%&#", "naive", s, {"rank1": 0.3, "mAP": 0.2, "ssim": 0.5}) for s in (0, 1)]
    tex = latex(tables_for(tmp_path, rows, metrics=["rank1", "mAP"], delta=True), standalone=True)
    assert "pixel\\_8\\%\\&\\#" in tex
    checked = []
    if shutil.which("pdflatex"):
        (tmp_path / "t.tex").write_text(tex)
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:]
        assert (tmp_path / "t.pdf").stat().st_size > 0
        checked.append("pdflatex")
    try:
        from pylatexenc import latexwalker
    except ImportError:
        latexwalker = None
    if latexwalker is not None:
        nodes, _, _ = latexwalker.LatexWalker(tex, tolerant_parsing=False).get_latex_nodes()
        envs = [n for n in nodes if n.isNodeType(latexwalker.LatexEnvironmentNode)]
        assert [e.environmentname for e in envs] == ["document"]
        inner = [n.environmentname for n in envs[0].nodelist if n.isNodeType(latexwalker.LatexEnvironmentNode)]
        assert inner == ["table"]
        checked.append("pylatexenc")
    if not checked:
        pytest.skip("neither pdflatex nor pylatexenc is installed; the structural checks above still ran")


# ------------------------------------------------------------------ CLI

def test_cli_report_writes_each_format_and_infers_it_from_the_suffix(tmp_path, capsys):
    results = write(tmp_path / "run" / "results.jsonl", reid_rows())
    for suffix, marker in ((".md", "| Anonymizer |"), (".tex", "\\toprule"), (".csv", "protocol,protocol_version")):
        out = tmp_path / f"report{suffix}"
        assert main(["report", str(results.parent), "--out", str(out), "--grid-samples", "0"]) == 0
        assert marker in out.read_text()
    assert main(["report", str(results), "--metrics", "rank1", "--attacks", "naive"]) == 0
    stdout = capsys.readouterr().out
    assert "| Anonymizer | naive R1 ↓ |" in stdout and "adaptive" not in stdout.split("\n\n")[1]


@pytest.mark.parametrize("args, fragment", [
    (["/nonexistent/run"], "/nonexistent/run does not exist"),
    (["RUN", "--metrics", "rank_1"], "did you mean 'rank1'"),
    (["RUN", "--order", "blurr"], "did you mean 'blur'"),
    (["RUN", "--out", "x.pdf"], "pass --format"),
    (["EMPTY"], "is a folder without results.jsonl"),
])
def test_cli_report_bad_input_is_one_line_exit_2(tmp_path, capsys, args, fragment):
    results = write(tmp_path / "run" / "results.jsonl", reid_rows())
    (tmp_path / "empty").mkdir()
    args = [str(results.parent) if a == "RUN" else str(tmp_path / "empty") if a == "EMPTY" else str(tmp_path / a) if a == "x.pdf" else a for a in args]
    assert main(["report", *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(err) == 1 and fragment in err[0], err


def test_generate_report_is_atomic_and_repeatable(tmp_path):
    results = write(tmp_path / "run" / "results.jsonl", reid_rows())
    out = tmp_path / "t.md"
    first = generate_report([results], ReportOptions(out=out))
    assert out.read_text() == first == generate_report([results], ReportOptions(format="md"))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert re.search(r"\| mask \| \*\*11\.0 ± 1\.0\*\*", first)
