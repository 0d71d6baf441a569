"""The results store under several writers, torn lines, stale temporary files and config clashes."""
import json
import logging
import multiprocessing
import os

import pytest

from evalsuite.errors import UserError
from evalsuite.store import CONFIG_HEADER, ResultsStore, check_writable_out, read_rows, remove_stale_temps


def _row(key, value=0.5):
    return {"cell_key": key, "anonymizer": "blur", "attack": "naive", "seed": 0, "metrics": {"rank1": value}}


def _writer(out_dir, worker, count, shared):
    """One process appending ``count`` own rows and the ``shared`` rows every writer appends."""
    store = ResultsStore(out_dir)
    for i in range(count):
        store.append(_row(f"w{worker}-{i}", value=i / count))
        if i < shared:
            store.append(_row(f"shared-{i}"))


def test_concurrent_writers_keep_every_row_once(tmp_path):
    workers, count, shared = 4, 40, 10
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, count, shared)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    keys = [json.loads(line)["cell_key"] for line in lines]
    assert len(keys) == len(set(keys)) == workers * count + shared
    assert {f"w{w}-{i}" for w in range(workers) for i in range(count)} <= set(keys)


def test_a_store_sees_rows_other_writers_appended(tmp_path):
    first, second = ResultsStore(tmp_path), ResultsStore(tmp_path)
    assert first.append(_row("a"))
    assert second.has("a")
    assert not second.append(_row("a"))  # already stored by the other writer: not twice
    assert (tmp_path / "results.jsonl").read_text().count("\n") == 1


def test_torn_last_line_is_ignored_then_cut_off_by_the_next_writer(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    whole = json.dumps(_row("a")) + "\n"
    path.write_text(whole + json.dumps(_row("b"))[:25])  # a writer killed mid-row
    with caplog.at_level(logging.WARNING):
        assert [r["cell_key"] for r in read_rows(path)] == ["a"]
    assert "torn last line" in caplog.text
    store = ResultsStore(tmp_path)
    assert store.done_keys() == {"a"}
    assert store.append(_row("b"))
    assert path.read_text() == whole + json.dumps(_row("b"), sort_keys=True) + "\n"


def test_complete_last_row_without_newline_is_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_row("a")))
    assert [r["cell_key"] for r in read_rows(path)] == ["a"]
    store = ResultsStore(tmp_path)
    store.append(_row("b"))
    assert [json.loads(line)["cell_key"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_a_bad_line_before_the_end_is_a_user_error_naming_it(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"cell_key": "a"}\n{not json\n{"cell_key": "b"}\n')
    with pytest.raises(UserError, match=r"results.jsonl:2 is not valid JSON"):
        ResultsStore(tmp_path)


def test_opening_a_store_removes_temporary_files_of_killed_writers(tmp_path):
    stale = [tmp_path / ".results.jsonl.x1y2.tmp", tmp_path / ".table.md.somehost-123.abc.tmp", tmp_path / "configs" / ".c0.yaml.h-1.q.tmp"]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text("half")
    (tmp_path / "notes.tmp").write_text("not ours")  # only hidden .*.tmp files are temporaries
    from evalsuite.store import _HOST

    live_report = tmp_path / f".report.html.{_HOST}-{os.getpid()}.z.tmp"  # a live process writing a report here
    live_report.write_text("being written")
    ResultsStore(tmp_path)
    assert not any(p.exists() for p in stale)
    assert (tmp_path / "notes.tmp").exists() and live_report.exists()


def test_remove_stale_temps_keeps_files_of_live_writers(tmp_path):
    from evalsuite.store import _HOST

    dead = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    live = tmp_path / f".a.npy.{_HOST}-{os.getpid()}.r1.tmp"
    gone = tmp_path / f".b.npy.{_HOST}-{dead.pid}.r2.tmp"
    other_host = tmp_path / f".c.npy.elsewhere-{dead.pid}.r3.tmp"
    for path in (live, gone, other_host):
        path.write_text("x")
    assert remove_stale_temps(tmp_path) == [gone]
    assert live.exists() and other_host.exists()
    # the cache cleans each kind's folder the same way, once per process
    from evalsuite.cache import Cache

    kind = tmp_path / "anonymized"
    kind.mkdir()
    (kind / gone.name).write_text("x")
    (kind / live.name).write_text("x")
    Cache(tmp_path).path("anonymized", "k", ".npy")
    assert not (kind / gone.name).exists() and (kind / live.name).exists()


def test_config_yaml_is_written_once_and_another_config_kept_beside_it(tmp_path, caplog):
    store = ResultsStore(tmp_path)
    first = store.save_config("a: 1\n", "hash1")
    assert first == tmp_path / "config.yaml"
    assert first.read_text() == f"{CONFIG_HEADER}hash1\na: 1\n"
    assert store.save_config("a: 1\nanonymizers: [blur]\n", "hash1") == first  # same numbers: nothing new
    with caplog.at_level(logging.WARNING):
        other = store.save_config("a: 2\n", "hash2")
    assert other == tmp_path / "configs" / "hash2.yaml"
    assert other.read_text() == f"{CONFIG_HEADER}hash2\na: 2\n"
    assert first.read_text() == f"{CONFIG_HEADER}hash1\na: 1\n"  # never replaced
    assert "another config" in caplog.text


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: (p / "out").write_text("x"), "is an existing file, not a folder"),
        (lambda p: (p / "file").write_text("x") and None, "cannot be created"),
        (lambda p: (p / "out").mkdir() or (p / "out" / "results.jsonl").mkdir(), "is not a readable and writable file"),
    ],
    ids=["out-is-a-file", "parent-is-a-file", "results-is-a-folder"],
)
def test_unusable_out_is_a_user_error_and_nothing_is_written(tmp_path, make, fragment):
    make(tmp_path)
    out = tmp_path / ("file/sub" if fragment == "cannot be created" else "out")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match=fragment):
        check_writable_out(out)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unwritable_out_folder_is_a_user_error(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path / "out") else real_access(path, mode))
    with pytest.raises(UserError, match=r"is not writable by this user; choose another out=DIR"):
        check_writable_out(tmp_path / "out")
    with pytest.raises(UserError, match=r"cannot be created: .*out is not writable"):
        check_writable_out(tmp_path / "out" / "run")
