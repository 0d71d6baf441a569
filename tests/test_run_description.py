"""Self-describing runs: OUT/run.json, OUT/samples/, reports that read only run folders, cache_dir passed explicitly."""
import json
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from evalsuite.cache import Cache
from evalsuite.cli import main
from evalsuite.components import resolve_anonymizer
from evalsuite.config import compose
from evalsuite.data.market1501 import read_image
from evalsuite.registry import DATASETS, load_all
from evalsuite.run_description import RunSamples, pick_indices, safe_name, write_run_description

load_all()

# tests/ has no __init__.py, so pytest puts it on sys.path
from test_run_e2e import TINY as E2E_TINY  # noqa: E402

TINY = [*E2E_TINY[:-2], "anonymizers=[none,mask,ksame-pixel-k2]", "attacks=[naive]"]


def png(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run_json(out):
    return json.loads((out / "run.json").read_text())


# --------------------------------------------------------------------------- unit

def test_pick_indices_distinct_identities_deterministic_without_junk():
    identities = [-1, 3, 3, 1, 2, 2, 5, 4, 1]
    assert pick_indices(identities, 10) == [1, 3, 4, 6, 7]  # first image of each of 1..5, junk left out
    assert pick_indices(identities, 2) == pick_indices(list(identities), 2) == [3, 1]  # ids 1 and 3 of the sorted five
    assert pick_indices([None, None, 7], 5) == [0, 1, 2]  # unknown identities: each image its own


def test_safe_name_keeps_plain_names_and_separates_odd_ones():
    assert safe_name("query/0001_c1s1_000001_00.jpg") == "query__0001_c1s1_000001_00"
    assert safe_name("blur") == "blur"
    assert safe_name("pixelate(block_size=5)") != safe_name("pixelate[block_size=5]")
    assert "/" not in safe_name("a/../b c")


class StubProtocol:
    """What write_run_description reads of a protocol; samples are 2 fake 16x8 images."""

    version = "7"
    metrics = ("rank1",)
    table_metrics = ("rank1",)

    def __init__(self):
        self.cfg = OmegaConf.create({"protocol": "market1501-reid", "dataset": {"name": "synthetic"}})

    def dataset_fingerprint(self):
        return {"files": "abc"}

    def dataset_label(self):
        return "synthetic"

    def run_samples(self, specs, seed, count):
        images = torch.full((2, 3, 16, 8), 10, dtype=torch.uint8)
        masks = torch.zeros(2, 1, 16, 8, dtype=torch.bool)
        masks[:, :, 4:12, 2:6] = True
        outputs = {s.label: torch.full_like(images, int(s.label[4:]) + 100) for s in specs}
        return RunSamples("query", ["query/a.jpg", "query/b.jpg"], [0, 1], images, masks, "body", seed, outputs, {s.label: f"key-{s.label}" for s in specs})


def test_concurrent_runs_merge_into_one_run_json(tmp_path):
    """Eight writers at once, each with its own anonymizer and seed: every one is in run.json, with its samples."""
    out = tmp_path / "out"
    protocol = StubProtocol()
    barrier = threading.Barrier(8)
    errors = []

    def writer(i):
        try:
            spec = resolve_anonymizer({"name": "blur", "label": f"blur{i}"})
            barrier.wait()
            write_run_description(out, protocol, protocol.cfg, [resolve_anonymizer("none"), spec], [SimpleNamespace(name="naive")], [i], "h0")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entry = run_json(out)["runs"]["h0"]
    assert set(entry["anonymizers"]) == {"none", *(f"blur{i}" for i in range(8))}
    assert entry["seeds"] == list(range(8))
    assert entry["metrics"]["rank1"]["higher_is_better"] is False and entry["protocol"]["version"] == "7"
    saved = entry["samples"]["anonymized"]
    assert set(saved) == {f"blur{i}" for i in range(8)}  # the identity has no samples: the originals are its output
    for i in range(8):
        record = saved[f"blur{i}"]
        assert record["seed"] == i and record["set_key"] == f"key-blur{i}"
        assert (png(out / record["files"][1]) == 100 + i).all()
    assert (png(out / entry["samples"]["original"][0]) == 10).all()
    assert not list(out.rglob("*.tmp"))


def test_report_takes_metric_labels_and_directions_from_run_json(tmp_path, capsys):
    """A plugin metric that is not installed here keeps its label, direction and decimals."""
    out = tmp_path / "run"
    out.mkdir()
    rows = [{"protocol": "image-quality", "protocol_version": "1", "dataset": "synthetic", "config_hash": "q0", "anonymizer": label,
             "anonymizer_name": label, "anonymizer_params": {}, "attack": "none", "seed": 0, "metrics": {"plugin_score": value},
             "cell_key": f"k-{label}"} for label, value in (("none", 1.0), ("blur", 0.5), ("mask", 0.25))]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(out)]) == 0
    assert "plugin_score |" in capsys.readouterr().out  # unknown: the bare name
    spec = {"name": "plugin_score", "description": "a plugin's score", "higher_is_better": True, "category": "quality", "unit": "score",
            "decimals": 3, "label": "Plugin"}
    (out / "run.json").write_text(json.dumps({"format": 1, "runs": {"q0": {"metrics": {"plugin_score": spec}}}}))
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Plugin ↑" in text and "**0.500**" in text  # higher is better: blur is best; 3 decimals


# --------------------------------------------------------------------------- a tiny run

@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runjson")
    cache, out, elsewhere = root / "cache", root / "out", root / "elsewhere"
    old = os.environ.get("EVALSUITE_CACHE")
    os.environ["EVALSUITE_CACHE"] = str(elsewhere)  # the config's cache_dir must win, passed explicitly
    try:
        before = dict(os.environ)
        assert main(["run", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
        after = dict(os.environ)
    finally:
        if old is None:
            os.environ.pop("EVALSUITE_CACHE", None)
        else:
            os.environ["EVALSUITE_CACHE"] = old
    return SimpleNamespace(out=out, cache=cache, elsewhere=elsewhere, before=before, after=after)


@pytest.mark.slow
def test_run_leaves_the_environment_alone_and_generates_data_in_cache_dir(first_run):
    assert first_run.after == first_run.before
    assert list((first_run.cache / "datasets").glob("synthetic-*"))
    assert not first_run.elsewhere.exists()


@pytest.mark.slow
def test_run_json_describes_metrics_components_and_versions(first_run):
    rows = [json.loads(line) for line in (first_run.out / "results.jsonl").read_text().splitlines()]
    (config_hash,) = {r["config_hash"] for r in rows}
    entry = run_json(first_run.out)["runs"][config_hash]
    assert entry["metrics"]["rank1"]["higher_is_better"] is False and entry["metrics"]["mAP"]["category"] == "privacy"
    assert entry["table_metrics"] == ["rank1", "mAP"]
    mask = entry["anonymizers"]["mask"]
    assert mask["module"] == "anonymizers.mask" and mask["params"] == {"fill": "gray"} and mask["description"]
    assert mask["code_version"] == resolve_anonymizer("mask").anonymizer.code_hash()
    assert entry["anonymizers"]["ksame-pixel-k2"]["fit_on"] == "anonymized_set" and entry["anonymizers"]["none"]["is_identity"]
    assert entry["attacks"]["naive"]["train"] == "clean" and entry["attacks"]["naive"]["description"]
    assert entry["protocol"]["name"] == "market1501-reid" and entry["protocol"]["version"] == rows[0]["protocol_version"]
    assert entry["dataset"]["label"] == "synthetic" and entry["dataset"]["fingerprint"]["config"]["num_train_ids"] == 6
    assert entry["versions"]["torch"] and entry["versions"]["python"]
    assert entry["seeds"] == [0] and entry["config_hash"] == config_hash


@pytest.mark.slow
def test_samples_are_the_cached_anonymized_sets_at_those_indices(first_run):
    cfg = compose([*TINY, f"cache_dir={first_run.cache}"])
    cache = Cache.for_config(cfg)
    (entry,) = run_json(first_run.out)["runs"].values()
    samples = entry["samples"]
    assert samples["set"] == "query" and samples["region"] == "body" and 4 <= len(samples["ids"]) <= 6
    pids = [sid.split("/")[-1][:4] for sid in samples["ids"]]
    assert len(set(pids)) == len(pids)  # distinct identities
    (root,) = (first_run.cache / "datasets").glob("synthetic-*")
    for sid, path in zip(samples["ids"], samples["original"]):
        assert np.array_equal(png(first_run.out / path), read_image(root / sid))
    assert set(samples["anonymized"]) == {"mask", "ksame-pixel-k2"}
    for label, record in samples["anonymized"].items():
        cached = cache.load_array("anonymized", record["set_key"])
        assert cached is not None and cached.shape[0] > len(samples["ids"])  # the whole query set the cells anonymized
        for index, path in zip(samples["indices"], record["files"]):
            assert np.array_equal(png(first_run.out / path), cached[index].transpose(1, 2, 0)), label
    assert (png(first_run.out / samples["outlined"][0]) != png(first_run.out / samples["original"][0])).any()


@pytest.mark.slow
def test_report_renders_grids_from_samples_without_any_dataset(first_run, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the report must not build a dataset")

    monkeypatch.setattr(DATASETS, "get", refuse)
    monkeypatch.setattr(DATASETS, "build", refuse)
    page, plots = tmp_path / "r.html", tmp_path / "plots"
    assert main(["report", str(first_run.out), "--format", "html", "--out", str(page), "--plots", str(plots)]) == 0
    assert 'id="grid-market1501-reid-synthetic"' in page.read_text()
    with Image.open(plots / "grid-market1501-reid-synthetic.png") as grid:
        assert grid.size[0] > 3 * 60 and grid.size[1] > 4 * 100  # original + 2 anonymizers, 4 samples of 64x128


@pytest.mark.slow
def test_second_run_into_the_same_out_merges(first_run, tmp_path):
    out = tmp_path / "out"
    import shutil

    shutil.copytree(first_run.out, out)
    (entry,) = run_json(out)["runs"].values()
    mask_file = out / entry["samples"]["anonymized"]["mask"]["files"][0]
    mask_bytes, mask_mtime = mask_file.read_bytes(), mask_file.stat().st_mtime_ns
    assert main(["run", *TINY[:-2], "anonymizers=[none,blur]", "attacks=[naive]", "seeds=[1]", f"cache_dir={first_run.cache}", f"out={out}"]) == 0
    (merged,) = run_json(out)["runs"].values()
    assert set(merged["anonymizers"]) == {"none", "mask", "ksame-pixel-k2", "blur"} and merged["seeds"] == [0, 1]
    assert set(merged["samples"]["anonymized"]) == {"mask", "ksame-pixel-k2", "blur"}
    assert merged["samples"]["anonymized"]["blur"]["seed"] == 1 and merged["samples"]["anonymized"]["mask"]["seed"] == 0
    assert mask_file.read_bytes() == mask_bytes and mask_file.stat().st_mtime_ns == mask_mtime  # kept, not rewritten
