"""End-to-end runs of `evalsuite run` on a tiny synthetic dataset with a one-epoch attacker."""
import json

import pytest

from evalsuite.cache import Cache
from evalsuite.cli import main
from evalsuite.reproducibility import numerics_key

TINY = [
    "protocol=market1501-reid",
    "dataset=synthetic",
    "dataset.num_train_ids=6",
    "dataset.num_test_ids=5",
    "dataset.num_distractors=3",
    "dataset.num_junk=1",
    "attacker.epochs=1",
    "attacker.batch_size=8",
    "attacker.height=64",
    "attacker.width=32",
    "anonymizers=[none,mask]",
    "attacks=[naive,adaptive]",
]
REQUIRED = {"protocol", "protocol_version", "dataset", "anonymizer", "anonymizer_params", "attack", "seed", "metrics", "config_hash", "versions", "git_commit", "durations"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run(args, capsys):
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def first_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
    return out


def test_run_writes_rows_table_and_config(first_run, cache):
    stored = rows(first_run)
    assert len(stored) == 4
    assert {(r["anonymizer"], r["attack"]) for r in stored} == {("none", "naive"), ("none", "adaptive"), ("mask", "naive"), ("mask", "adaptive")}
    for row in stored:
        assert REQUIRED <= set(row)
        assert set(row["metrics"]) == {"rank1", "rank5", "rank10", "mAP", "mAP_official", "mINP", "reid_tpr_at_fpr1", "reid_tpr_at_fpr01", "attacked_psnr", "attacked_ssim"}
        assert all(0.0 <= v <= 1.0 for k, v in row["metrics"].items() if k != "attacked_psnr") and 5 < row["metrics"]["attacked_psnr"] <= 100
        assert row["versions"]["torch"] and row["dataset"] == "synthetic"
    assert len({r["config_hash"] for r in stored}) == 1
    table = (first_run / "table.md").read_text().replace(" (weak attacker!)", "")  # a one-epoch attacker may be flagged
    assert "| Anonymizer | naive R1 ↓ | naive mAP ↓ | adaptive R1 ↓ | adaptive mAP ↓ |" in table
    assert "| none |" in table and "| mask |" in table
    assert (first_run / "config.yaml").exists()
    # the clean attacker serves naive for every anonymizer and adaptive for `none`: 2 trainings
    assert len(list((cache / "attackers").glob("*.pt"))) == 2
    none_rows = {r["attack"]: r["metrics"] for r in stored if r["anonymizer"] == "none"}
    assert none_rows["naive"] == none_rows["adaptive"]


def test_rows_keep_per_query_scores_and_their_numerics(first_run):
    for row in rows(first_run):
        scores = row["item_scores"]
        assert scores["items"] == row["num_valid_queries"] and len(scores["items_sha1"]) == 16
        assert set(scores["values"]) == {"rank1", "rank5", "rank10", "mAP", "mAP_official", "mINP"}  # TPR@FPR is over pairs, not a mean over queries
        for metric, per_query in scores["values"].items():
            value = row["metrics"][metric]
            assert len(per_query) == scores["items"]
            assert sum(per_query) / len(per_query) == pytest.approx(value, abs=1e-5)  # each metric is their mean
        assert set(scores["values"]["rank1"]) <= {0, 1}
        numerics = row["numerics"]
        assert numerics["deterministic"] is False and numerics["num_threads"] >= 1
        assert numerics["cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"}
    assert len({r["item_scores"]["items_sha1"] for r in rows(first_run)}) == 1  # every cell scored the same queries


def test_rerun_reuses_every_cell_without_duplicates(first_run, cache, capsys):
    before = (first_run / "results.jsonl").read_text()
    code, out, _ = run([*TINY, f"cache_dir={cache}", f"out={first_run}"], capsys)
    assert code == 0
    assert "0 cells computed, 4 reused" in out
    assert (first_run / "results.jsonl").read_text() == before


def test_same_seed_same_numbers_with_a_cold_cache(first_run, tmp_path, capsys):
    code, _, _ = run([*TINY, f"cache_dir={tmp_path / 'cold'}", f"out={tmp_path / 'again'}"], capsys)
    assert code == 0
    key = lambda r: (r["anonymizer"], r["attack"])  # noqa: E731
    assert {key(r): r["metrics"] for r in rows(tmp_path / "again")} == {key(r): r["metrics"] for r in rows(first_run)}


def test_killed_run_resumes_without_redoing_cells(cache, tmp_path, monkeypatch, capsys):
    from protocols.market1501_reid import Market1501Reid

    original = Market1501Reid.evaluate
    calls = []

    def dying(self, anonymizer, attack, seed):
        calls.append((anonymizer.label, attack.name))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, anonymizer, attack, seed)

    monkeypatch.setattr(Market1501Reid, "evaluate", dying)
    args = [*TINY, f"cache_dir={cache}", f"out={tmp_path / 'out'}"]
    assert run(args, capsys)[0] == 130
    assert len(rows(tmp_path / "out")) == 2
    calls.clear()
    assert run(args, capsys)[0] == 0
    assert len(calls) == 2  # only the two missing cells
    stored = rows(tmp_path / "out")
    assert len(stored) == 4 and len({r["cell_key"] for r in stored}) == 4


def test_checkpoint_weights_are_loaded_not_trained(first_run, cache, tmp_path, capsys):
    naive_none = next(r for r in rows(first_run) if r["anonymizer"] == "none" and r["attack"] == "naive")
    weights = Cache(cache, context=numerics_key(naive_none["numerics"])).path("attackers", naive_none["attacker_key"], ".pt")
    assert weights.is_file()
    args = [*TINY, "attacks=[naive]", f"attacker.weights={weights}", f"cache_dir={tmp_path / 'c'}", f"out={tmp_path / 'o'}"]
    assert run(args, capsys)[0] == 0
    loaded = next(r for r in rows(tmp_path / "o") if r["anonymizer"] == "none")
    assert loaded["metrics"] == naive_none["metrics"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["dataset.root=/nonexistent/Market-1501-v15.09.15"], ["/nonexistent/Market-1501-v15.09.15", "dataset.root=", "dataset=synthetic"]),
        ([*TINY, "attacker.weights=/nonexistent/osnet.pth"], ["/nonexistent/osnet.pth", "attacker.weights"]),
        ([*TINY, "anonymizers=[blurr]"], ["'blurr'", "'blur'"]),
        ([*TINY, "attacks=[naif]"], ["'naif'", "'naive'"]),
        ([*TINY, "attacker.epoch=2"], ["'attacker.epochs'"]),
        ([*TINY, "region.name=torso"], ["torso", "body"]),
        ([*TINY, "anonymizers=[{name:blur,sigma:-1}]"], ["sigma", "must be"]),
        ([*TINY, "table.metrics=[rank1,map]"], ["'map'", "'mAP'"]),
        ([*TINY, "device=cuda:7"] if not __import__("torch").cuda.is_available() else [*TINY, "device=nonsense"], ["device="]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, fragments, cache, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run([*args, f"cache_dir={cache}", f"out={out}"], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()


def test_list_shows_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("anonymizers:", "attacks:", "protocols:", "datasets:", "metrics:", "pixelate16", "parrot", "market1501-reid", "synthetic", "mAP_official"):
        assert name in out


def test_synth_writes_market_layout(tmp_path, capsys):
    target = tmp_path / "synth"
    assert main(["synth", f"out={target}", "num_train_ids=3", "num_test_ids=3", "num_distractors=1", "num_junk=0"]) == 0
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        assert any((target / folder).glob("*.jpg"))
    assert (target / "evalsuite_annotations.json").exists()
    assert main(["synth", f"out={tmp_path / 'x'}", "num_train_idz=3"]) == 2
