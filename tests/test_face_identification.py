"""The face-identification protocol: split rule, fit groups, and end-to-end CLI runs on a tiny set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.data.faces import FaceDataset, FaceSample
from evalsuite.errors import UserError
from evalsuite.closed_set import closed_set_split, fit_groups, joint_order
from protocols.face_identification import FaceIdentification

TINY = [
    "protocol=face-identification",
    "dataset=synthetic",
    "dataset.num_identities=6",
    "dataset.images_per_identity=[5,5]",
    "dataset.size=32",
    "image_size=32",
    "recognizer.cnn.input_size=24",
    "recognizer.cnn.width=4",
    "recognizer.cnn.epochs=2",
    "recognizer.cnn.batch_size=8",
    "anonymizers=[none,blur5,mask,ksame-pixel-k2]",
    "attacks=[naive,adaptive,parrot]",
]
METRICS = {"top1", "roc_auc", "tpr_at_fpr1", "tpr_at_fpr01", "attacked_psnr", "attacked_ssim"}


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def first_run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", *TINY, f"cache_dir={cache}", f"out={out}"]) == 0
    return out


def test_run_writes_every_metric_for_every_cell(first_run: Path, cache: Path) -> None:
    stored = rows(first_run)
    assert {(r["anonymizer"], r["attack"]) for r in stored} == {
        (a, t) for a in ("none", "blur5", "mask", "ksame-pixel-k2") for t in ("naive", "adaptive", "parrot")}
    for row in stored:
        assert set(row["metrics"]) == METRICS and all(0 <= v <= 1 for k, v in row["metrics"].items() if k != "attacked_psnr")
        assert row["dataset"] == "synthetic-faces" and row["num_identities"] == 6 and row["num_probe"] == 12 and row["num_enrol"] == 18
        assert "tpr_at_fpr1_threshold" in row and row["num_impostor_pairs"] == 12 * 5
        hits = row["item_scores"]["values"]["top1"]  # one 0/1 per probe; top-1 is their mean
        assert len(hits) == row["num_probe"] and sum(hits) / len(hits) == pytest.approx(row["metrics"]["top1"])
    table = (first_run / "table.md").read_text().replace(" (weak attacker!)", "")  # a tiny recognizer may be flagged
    assert "| Anonymizer | naive top-1 ↓ | naive AUC ↓ | naive TPR@1% ↓ | naive TPR@0.1% ↓ | adaptive top-1 ↓ |" in table
    by = {(r["anonymizer"], r["attack"]): r for r in stored}
    # none: every threat model is the naive attacker (one recognizer)
    assert by[("none", "naive")]["metrics"] == by[("none", "adaptive")]["metrics"] == by[("none", "parrot")]["metrics"]
    # blur is deterministic and unfitted: parrot (joint anonymization) equals adaptive
    assert by[("blur5", "parrot")]["metrics"] == by[("blur5", "adaptive")]["metrics"]
    assert by[("blur5", "parrot")]["recognizer_key"] == by[("blur5", "adaptive")]["recognizer_key"]
    # mask-out leaves one grey image: verification cannot beat chance
    assert by[("mask", "naive")]["metrics"]["roc_auc"] == 0.5 and by[("mask", "naive")]["metrics"]["tpr_at_fpr1"] == 0.0
    # recognizers: clean + adaptive (blur5, mask, ksame) + parrot ksame (blur's parrot = adaptive; mask's too)
    assert len(list((cache / "recognizers").glob("*.pt"))) == 5


def test_rerun_reuses_every_cell_without_duplicates(first_run: Path, cache: Path, capsys: pytest.CaptureFixture) -> None:
    before = (first_run / "results.jsonl").read_text()
    assert main(["run", *TINY, f"cache_dir={cache}", f"out={first_run}"]) == 0
    assert "0 cells computed, 12 reused" in capsys.readouterr().out
    assert (first_run / "results.jsonl").read_text() == before


def test_killed_run_resumes_only_missing_cells(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    original = FaceIdentification.evaluate
    calls: list[tuple[str, str]] = []

    def dying(self, anonymizer, attack, seed):
        calls.append((anonymizer.label, attack.name))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, anonymizer, attack, seed)

    monkeypatch.setattr(FaceIdentification, "evaluate", dying)
    args = ["run", *TINY, "anonymizers=[none,blur5]", "attacks=[naive,adaptive]", f"cache_dir={cache}", f"out={tmp_path / 'out'}"]
    assert main(args) == 130
    assert len(rows(tmp_path / "out")) == 2
    calls.clear()
    assert main(args) == 0
    assert len(calls) == 2
    stored = rows(tmp_path / "out")
    assert len(stored) == 4 and len({r["cell_key"] for r in stored}) == 4
    capsys.readouterr()


def test_cold_cache_same_numbers(first_run: Path, tmp_path: Path) -> None:
    args = [*TINY, "anonymizers=[none,ksame-pixel-k2]", "attacks=[naive,parrot]"]
    assert main(["run", *args, f"cache_dir={tmp_path / 'cold'}", f"out={tmp_path / 'again'}"]) == 0
    key = lambda r: (r["anonymizer"], r["attack"])
    again = {key(r): r["metrics"] for r in rows(tmp_path / "again")}
    first = {key(r): r["metrics"] for r in rows(first_run)}
    assert again == {k: first[k] for k in again}


@pytest.mark.parametrize("override, fragment", [
    ("recognizer.name=cnnn", "'cnn'"),
    ("recognizer.cnn.epoch=2", "'recognizer.cnn.epochs'"),
    ("classifier.name=forest", "logistic"),
    ("fit_groups=all", "distinct"),
    ("split.enrol_fraction=1.0", "split.enrol_fraction"),
    ("region.name=torso", "torso"),
    ("region.name=head", "head_box"),
    ("split.partitions=[gallery]", "split.partitions='gallery': dataset synthetic-faces has no gallery split; it has train"),
    ("table.metrics=[top_1]", "'top1'"),
])
def test_bad_settings_exit_2_before_writing(override: str, fragment: str, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["run", *TINY, override, f"cache_dir={cache}", f"out={out}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert not out.exists()


def test_face_region_masks_the_landmark_box(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.cache import Cache
    from evalsuite.config import compose

    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    proto = FaceIdentification(compose([*TINY, "region.name=face", "region.dilation=1"]), Cache(cache))
    proto.prepare()
    masks = proto.masks["query"]
    assert masks.shape == (12, 1, 32, 32) and 0.2 < masks.float().mean() < 0.9  # the face, not the whole crop
    for sample, mask in zip(proto.samples["query"], masks[:, 0]):
        pts = np.array(sample.landmarks[68])
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        assert mask[max(y0, 0):min(y1, 32), max(x0, 0):min(x1, 32)].all()
        assert not mask[0].all()  # the top row is hair / background


# --------------------------------------------------------------------------- the split rule

def _dataset(counts: dict[str, int]) -> FaceDataset:
    samples = [FaceSample(path=f"/d/{name}/{k:03d}.jpg", identity=name, root="/d") for name, n in counts.items() for k in range(n)]
    return FaceDataset(name="toy", root="/d", samples=samples)


def test_split_rule_is_per_identity_seeded_and_disjoint() -> None:
    ds = _dataset({"a": 10, "b": 5, "c": 2, "d": 1})
    enrol, probe, names = closed_set_split(ds, enrol_fraction=0.5, seed=0)
    assert names == ["a", "b", "c"]  # d has one image: it cannot be both enrolled and probed
    count = lambda xs, n: sum(s.identity == n for s in xs)
    assert [count(enrol, n) for n in names] == [5, 3, 1] and [count(probe, n) for n in names] == [5, 2, 1]  # 2.5 rounds up
    assert not {s.path for s in enrol} & {s.path for s in probe}
    again = closed_set_split(ds, 0.5, seed=0)
    assert [s.path for s in again[0]] == [s.path for s in enrol]
    other = closed_set_split(ds, 0.5, seed=1)
    assert [s.path for s in other[0]] != [s.path for s in enrol]
    # one identity's split does not depend on which other identities are present
    alone = closed_set_split(_dataset({"a": 10, "z": 3}), 0.5, seed=0)[0]
    assert [s.path for s in alone if s.identity == "a"] == [s.path for s in enrol if s.identity == "a"]
    assert len(closed_set_split(_dataset({n: 4 for n in "abcdefgh"}), 0.5, 0, max_identities=3)[2]) == 3


def test_split_refuses_too_few_identities() -> None:
    with pytest.raises(UserError, match="at least 2"):
        closed_set_split(_dataset({"a": 5, "b": 1}), 0.5, 0)


def test_distinct_fit_groups_hold_one_image_per_identity() -> None:
    labels = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2])
    groups = fit_groups(labels, "distinct")
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(labels)))
    assert all(len(set(labels[g].tolist())) == len(g) for g in groups)
    assert [len(g) for g in groups] == [3, 3, 2, 1]
    assert [len(g) for g in fit_groups(labels, "split")] == [9]


def test_parrot_joint_groups_mix_enrolment_and_probe_faces() -> None:
    enrol, probe = np.repeat(np.arange(4), 3), np.repeat(np.arange(4), 2)
    labels = np.concatenate([enrol, probe])
    groups = fit_groups(labels, "distinct", joint_order(enrol, probe))
    is_probe = np.arange(len(labels)) >= len(enrol)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(labels)))
    assert all(len(set(labels[g].tolist())) == len(g) for g in groups)  # still one image per identity
    assert all(is_probe[g].any() and not is_probe[g].all() for g in groups[:4])  # enrolment and probe faces together
    # without the joint order every group would be enrolment-only or probe-only
    assert all(is_probe[g].all() or not is_probe[g].any() for g in fit_groups(labels, "distinct"))


def test_reconstruction_attacks_restore_the_probes_before_the_recognizer(tmp_path):
    args = [*TINY[:-2], "anonymizers=[none,blur5]", "attacks=[naive,adaptive,reconstruction,reconstruction-adaptive]",
            "reconstruction.epochs=2", "reconstruction.batch_size=8", "reconstruction.width=8", "reconstruction.depth=2"]
    assert main(["run", *args, f"cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'out'}"]) == 0
    stored = {(r["anonymizer"], r["attack"]): r for r in (json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert len(stored) == 8
    assert stored[("none", "reconstruction")]["metrics"] == stored[("none", "naive")]["metrics"]
    assert stored[("blur5", "reconstruction")]["metrics"]["attacked_psnr"] != stored[("blur5", "naive")]["metrics"]["attacked_psnr"]
    assert stored[("blur5", "reconstruction")]["recognizer_key"] == stored[("blur5", "naive")]["recognizer_key"]  # trained on clean enrolment
    assert stored[("blur5", "reconstruction-adaptive")]["recognizer_key"] != stored[("blur5", "adaptive")]["recognizer_key"]  # on reconstructions
