import json

import pytest

from evalsuite.errors import UserError
from evalsuite.report import markdown_table, mean_and_sem
from evalsuite.store import ResultsStore


def _row(key, anonymizer="blur", attack="naive", seed=0, r1=0.5):
    return {"cell_key": key, "anonymizer": anonymizer, "attack": attack, "seed": seed, "metrics": {"rank1": r1, "mAP": r1 / 2}}


def test_store_appends_without_duplicates_and_survives_reopen(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(_row("a"))
    store.append(_row("a"))
    store.append(_row("b", seed=1))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["cell_key"] for line in lines] == ["a", "b"]
    assert ResultsStore(tmp_path).done_keys() == {"a", "b"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_results_file_is_a_user_error(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"cell_key": "a"}\n{not json\n')
    with pytest.raises(UserError, match=r"results.jsonl:2"):
        ResultsStore(tmp_path)


def test_mean_and_sem():
    mean, sem = mean_and_sem([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4)
    assert sem == pytest.approx(0.2 / 3**0.5)
    assert mean_and_sem([0.3]) == (0.3, None)


def test_markdown_table_layout_and_values():
    rows = [_row("1", "none", r1=0.9), _row("1b", "none", seed=1, r1=0.9), _row("2", "blur", r1=0.5), _row("3", "blur", seed=1, r1=0.7), _row("4", "blur", "adaptive", r1=0.8)]
    table = markdown_table(rows, ["none", "blur"], ["naive", "adaptive"], ["rank1", "mAP"])
    lines = table.splitlines()
    assert lines[0] == "| Anonymizer | naive R1 ↓ | naive mAP ↓ | adaptive R1 ↓ | adaptive mAP ↓ |"
    assert lines[2] == "| none | 90.0 ± 0.0 | 45.0 ± 0.0 | – | – |"
    # blur / adaptive has seed 0 only while the run has seeds 0 and 1: shown as incomplete, never averaged
    assert lines[3] == "| blur | 60.0 ± 10.0 | 30.0 ± 5.0 | incomplete (1/2 seeds) | incomplete (1/2 seeds) |"
