"""End-to-end `evalsuite run protocol=person-recognition` on a tiny synthetic set."""
import json
import math

import pytest

from evalsuite.cli import main

TINY = [
    "protocol=person-recognition",
    "dataset=synthetic",
    "dataset.num_train_ids=6",
    "dataset.num_test_ids=5",
    "dataset.num_distractors=2",
    "dataset.num_junk=1",
    "attacker.epochs=2",
    "attacker.channels=4",
    "attacker.embedding_dim=16",
    "anonymizers=[none,blackhead]",
    "attacks=[naive,adaptive]",
]
METRICS = {"head_accuracy", "body_head_accuracy", "head_contribution", "ssim", "mask_ssim", "attacked_psnr", "attacked_ssim"}


def run(args, capsys):
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def first_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
    return out


def test_run_reports_every_column(first_run, cache):
    stored = rows(first_run)
    assert {(r["anonymizer"], r["attack"]) for r in stored} == {(a, t) for a in ("none", "blackhead") for t in ("naive", "adaptive")}
    for row in stored:
        assert set(row["metrics"]) == METRICS
        for name in ("head_accuracy", "body_head_accuracy", "head_contribution"):
            assert 0.0 <= row["metrics"][name] <= 1.0
        assert row["num_identities"] == 5 and row["chance"] == pytest.approx({"head_accuracy": 0.2, "body_head_accuracy": 0.2})
        assert row["num_test"] > 0 and row["num_enroll"] > row["num_identities"] - 1
    metrics = {(r["anonymizer"], r["attack"]): r["metrics"] for r in stored}
    assert metrics[("none", "naive")]["ssim"] == 1.0 and metrics[("none", "naive")]["mask_ssim"] == 1.0
    black = metrics[("blackhead", "naive")]
    assert black["ssim"] < 1.0 and black["mask_ssim"] < 0.5 and black["ssim"] > black["mask_ssim"]
    assert metrics[("none", "naive")] == metrics[("none", "adaptive")]  # `none` adapts to nothing
    table = (first_run / "table.md").read_text()
    header = table.splitlines()[2]
    for column in ("naive head ↓", "naive body+head ↓", "naive head contrib. ↑", "naive SSIM ↑", "naive mask-SSIM ↑", "adaptive head ↓"):
        assert column in header
    # clean recognizers (head, body+head) serve every naive cell; blackhead's adaptive pair is separate
    assert len(list((cache / "person_recognizers").glob("*.pt"))) == 4


def test_rerun_reuses_cells_and_cold_cache_gives_the_same_numbers(first_run, cache, tmp_path, capsys):
    code, out, _ = run([*TINY, f"cache_dir={cache}", f"out={first_run}"], capsys)
    assert code == 0 and "0 cells computed, 4 reused" in out
    code, _, _ = run([*TINY, "anonymizers=[blackhead]", "attacks=[adaptive]", f"cache_dir={tmp_path / 'cold'}", f"out={tmp_path / 'again'}"], capsys)
    assert code == 0
    (again,) = rows(tmp_path / "again")
    (before,) = [r for r in rows(first_run) if (r["anonymizer"], r["attack"]) == ("blackhead", "adaptive")]
    assert again["metrics"] == before["metrics"]


def test_head_region_is_what_gets_anonymized(first_run):
    """With the head box as the region, SSIM outside it is perfect: whole-image SSIM stays high."""
    black = next(r for r in rows(first_run) if r["anonymizer"] == "blackhead")
    assert black["metrics"]["ssim"] > 0.8 and not math.isnan(black["metrics"]["mask_ssim"])


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["attacks=[parrot]"], ["'parrot'", "attacks=[naive,adaptive,reconstruction,reconstruction-adaptive]"]),
        (["attacker.epochs=0"], ["attacker.epochs"]),
        (["attention.sigma=-1"], ["attention.sigma"]),
        (["anonymizers=[blakhead]"], ["'blakhead'", "'blackhead'"]),
        (["region.name=torso"], ["torso", "head"]),
        (["dataset=pipa", "dataset.root=/nonexistent/PIPA", "dataset.height=128"], ["/nonexistent/PIPA", "dataset.root=", "dataset=synthetic"]),
        (["table.metrics=[head_acc]"], ["'head_acc'", "'head_accuracy'"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, fragments, cache, tmp_path, capsys):
    out = tmp_path / "out"
    base = TINY if "dataset=pipa" not in args else ["protocol=person-recognition"]
    code, _, err = run([*base, *args, f"cache_dir={cache}", f"out={out}"], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()


def test_dataset_without_head_boxes_is_refused(cache, tmp_path, capsys):
    target = tmp_path / "market"
    assert main(["synth", f"out={target}", "num_train_ids=3", "num_test_ids=3", "num_distractors=1", "num_junk=0"]) == 0
    (target / "evalsuite_annotations.json").unlink()  # real Market-1501 has no head boxes
    capsys.readouterr()
    code, _, err = run(["protocol=person-recognition", "dataset=market1501", f"dataset.root={target}", f"cache_dir={cache}", f"out={tmp_path / 'o'}"], capsys)
    assert code == 2
    assert "head_box" in err and "dataset.annotations=" in err


def test_pipa_tree_runs_end_to_end(cache, tmp_path, capsys):
    """The PIPA reader's body crops go through the whole protocol."""
    # tests/ has no __init__.py, so pytest puts it on sys.path
    from test_pipa import make_tree

    lines, photos = [], {}
    for n, (identity, subset) in enumerate([(1, 1)] * 3 + [(2, 1)] * 3 + [(4, 3)] * 2 + [(5, 3)] * 2 + [(6, 3)] * 2):
        head = (60 + 3 * n, 20 + n, 24, 26)
        lines.append(("7", str(n), *head, identity, subset))
        photos[("train" if subset == 1 else "test", "7", str(n))] = head
    root = make_tree(tmp_path / "PIPA", lines, photos)
    args = ["protocol=person-recognition", "dataset=pipa", f"dataset.root={root}", "attacker.epochs=1", "attacker.channels=4",
            "attacker.embedding_dim=8", "anonymizers=[none,blackhead]", "attacks=[naive]", f"cache_dir={cache}", f"out={tmp_path / 'out'}"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    stored = rows(tmp_path / "out")
    assert len(stored) == 2 and all(set(r["metrics"]) == METRICS for r in stored)
    assert all(r["num_identities"] == 3 and r["num_test"] == 3 and r["num_enroll"] == 3 for r in stored)
    black = next(r for r in stored if r["anonymizer"] == "blackhead")["metrics"]
    assert black["mask_ssim"] < 0.5 < black["ssim"]


def test_html_report_with_ksame_renders_its_image_grid(cache, tmp_path, caplog, monkeypatch):
    """The grid shows the samples the run saved (k-Same's as the run fitted it); the report builds no dataset."""
    from evalsuite.registry import DATASETS

    out = tmp_path / "out"
    args = [*TINY[:-2], "anonymizers=[none,blurhead,ksame-pixel-k2]", "attacks=[naive]"]
    assert main(["run", *args, f"cache_dir={cache}", f"out={out}"]) == 0

    def refuse(*a, **k):
        raise AssertionError("the report must not build a dataset")

    monkeypatch.setattr(DATASETS, "get", refuse)
    monkeypatch.setattr(DATASETS, "build", refuse)
    page = tmp_path / "report.html"
    plots = tmp_path / "plots"
    assert main(["report", str(out), "--format", "html", "--out", str(page), "--plots", str(plots)]) == 0
    assert "grid-person-recognition-synthetic" in page.read_text()
    assert (plots / "grid-person-recognition-synthetic.png").stat().st_size > 1000
    assert not [r for r in caplog.records if "image grid" in r.getMessage() and "skipped" in r.getMessage()]
