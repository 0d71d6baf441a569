"""lfw-verification: pairs files, drawn pairs, k-fold metrics, and CLI runs on tiny trees built here."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.data.faces import FaceSample
from evalsuite.data.lfw_pairs import Pair, draw_pairs, image_numbers, read_pairs, write_pairs
from evalsuite.data.synthetic_faces import FaceImageSpec, FaceSyntheticConfig, render_face_spec
from evalsuite.errors import UserError
from evalsuite.metrics.pair_verification import best_accuracy_threshold, fold_summary, k_fold_verification
from evalsuite.metrics.roc import tpr_at_fprs

PEOPLE = ["Ann_Able", "Bo_Bell", "Cy_Cole", "Di_Dorn", "Ed_Eko", "Flo_Finch", "Gus_Gray", "Hal_Hope"]
PER_PERSON = 4
TINY_CNN = ["image_size=32", "recognizer.cnn.input_size=24", "recognizer.cnn.width=4", "recognizer.cnn.epochs=2", "recognizer.cnn.batch_size=8"]


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- pairs files

def test_reads_the_official_10_fold_format_and_the_single_set_format(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("2\t1\nAnn_Able\t1\t3\nAnn_Able\t2\tBo_Bell\t4\nCy_Cole\t1\t2\nCy_Cole\t3\tDi_Dorn\t1\n")
    folds = read_pairs(path)
    assert folds == [[Pair("Ann_Able", 1, "Ann_Able", 3), Pair("Ann_Able", 2, "Bo_Bell", 4)],
                     [Pair("Cy_Cole", 1, "Cy_Cole", 2), Pair("Cy_Cole", 3, "Di_Dorn", 1)]]
    assert [p.same for p in folds[1]] == [True, False]
    dev = tmp_path / "pairsDevTest.txt"
    dev.write_text("1\nAnn_Able 1 2\nAnn_Able 1 Bo_Bell 1\n")
    assert read_pairs(dev) == [[Pair("Ann_Able", 1, "Ann_Able", 2), Pair("Ann_Able", 1, "Bo_Bell", 1)]]


@pytest.mark.parametrize("text, fragment", [
    ("", "first line"),
    ("10 300\nAnn 1 2\n", "promises 10 fold(s) of 300"),
    ("1 1\nAnn 1 Bo 2\nAnn 1 2\n", "expects a matched (name i j) pair"),
    ("1 1\nAnn 1 2\nAnn one Bo 2\n", "integer image numbers"),
])
def test_malformed_pairs_files_are_one_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_pairs(path)
    assert fragment in str(info.value) and str(path) in str(info.value)
    with pytest.raises(UserError, match="pairs.file=/path/to/pairs.txt"):
        read_pairs(tmp_path / "missing.txt")


def test_drawn_pairs_follow_lfw_rules_and_round_trip(tmp_path: Path) -> None:
    counts = {f"p{k}": 3 + k % 3 for k in range(12)}
    folds = draw_pairs(counts, folds=3, per_fold=6, seed=1)
    assert draw_pairs(counts, folds=3, per_fold=6, seed=1) == folds and draw_pairs(counts, 3, 6, seed=2) != folds
    people = [{n for p in fold for n in (p.name1, p.name2)} for fold in folds]
    assert all(not (a & b) for i, a in enumerate(people) for b in people[i + 1:])  # folds share no person
    for fold in folds:
        assert sum(p.same for p in fold) == 6 and len(fold) == 12 and len(set(fold)) == 12
        for p in fold:
            assert 1 <= p.number1 <= counts[p.name1] and 1 <= p.number2 <= counts[p.name2]
            assert (p.number1 < p.number2) if p.same else (p.name1 != p.name2)
    mismatched = [p for fold in folds for p in fold if not p.same]
    assert len({frozenset([(p.name1, p.number1), (p.name2, p.number2)]) for p in mismatched}) == len(mismatched)
    assert 0 < sum(p.name1 < p.name2 for p in mismatched) < len(mismatched)  # both orders: either side may be the anonymized one
    written = write_pairs(tmp_path / "pairs.txt", folds)
    assert written.read_text().splitlines()[0] == "3 6"
    assert read_pairs(written) == [sorted(f, key=lambda p: not p.same) for f in folds]
    with pytest.raises(UserError, match="lower pairs.per_fold"):
        draw_pairs({"a": 2, "b": 2}, folds=1, per_fold=3, seed=0)


def test_image_numbers_use_lfw_names_else_the_rank_within_the_identity() -> None:
    samples = [FaceSample("/r/Ann_Able/Ann_Able_0003.jpg", "Ann_Able"), FaceSample("/r/Ann_Able/Ann_Able_0001.jpg", "Ann_Able"),
               FaceSample("/r/img/000009.jpg", "17"), FaceSample("/r/img/000002.jpg", "17")]
    assert image_numbers(samples) == {("Ann_Able", 3): 0, ("Ann_Able", 1): 1, ("17", 2): 2, ("17", 1): 3}


# --------------------------------------------------------------------------- k-fold metrics

def test_accuracy_threshold_is_chosen_on_the_other_folds() -> None:
    assert best_accuracy_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == pytest.approx(0.5)
    same = np.array([True, False] * 4)
    fold = np.repeat([0, 1], 4)
    clean = np.where(same, 0.9, 0.1)
    # the test fold's matched pairs score 0.6: a threshold calibrated on clean pairs (0.5) accepts
    # them, one calibrated on these shifted pairs of the other fold (0.35 / 0.1 -> 0.225) too
    shifted = np.where(same, 0.6, 0.2)
    per_fold = k_fold_verification(clean, shifted, same, fold)
    assert per_fold["pair_accuracy"].tolist() == [1.0, 1.0] and per_fold["threshold"].tolist() == [0.5, 0.5]
    lowered = np.where(same, 0.45, 0.1)  # below the clean threshold: the naive attacker rejects every matched pair
    naive = k_fold_verification(clean, lowered, same, fold)
    adaptive = k_fold_verification(lowered, lowered, same, fold)
    assert naive["pair_accuracy"].tolist() == [0.5, 0.5] and adaptive["pair_accuracy"].tolist() == [1.0, 1.0]
    assert naive["pair_auc"].tolist() == adaptive["pair_auc"].tolist() == [1.0, 1.0]  # AUC needs no threshold
    summary = fold_summary({"x": np.array([0.9, 0.95, 1.0])})["x"]
    assert summary["mean"] == pytest.approx(0.95) and summary["std"] == pytest.approx(0.05) and summary["se"] == pytest.approx(0.05 / np.sqrt(3))


def test_tar_at_far_of_one_fold_equals_the_roc_rule() -> None:
    rng = np.random.default_rng(0)
    same = rng.random(4000) < 0.5
    scores = rng.normal(size=4000) + 1.5 * same
    per_fold = k_fold_verification(scores, scores, same, np.zeros(4000, dtype=int))
    expected, _ = tpr_at_fprs(same, scores, [1e-2, 1e-3])
    assert per_fold["pair_tar_at_far1"][0] == pytest.approx(expected[0]) and per_fold["pair_tar_at_far01"][0] == pytest.approx(expected[1])
    assert per_fold["pair_tar_at_far1_far"][0] <= 1e-2 and 0 < per_fold["pair_tar_at_far01"][0] < per_fold["pair_tar_at_far1"][0] < 1


# --------------------------------------------------------------------------- CLI runs

@pytest.fixture(scope="module")
def lfw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LFW-layout folder of synthetic faces (``<root>/<name>/<name>_0001.jpg``) and its pairs.txt beside it."""
    base = tmp_path_factory.mktemp("lfw")
    root = base / "lfw"
    config = FaceSyntheticConfig(num_identities=len(PEOPLE), images_per_identity=(PER_PERSON, PER_PERSON), size=32)
    for k, name in enumerate(PEOPLE):
        (root / name).mkdir(parents=True)
        for i in range(1, PER_PERSON + 1):
            image, _ = render_face_spec(FaceImageSpec("x.jpg", 100 + k, i, 0), config)
            cv2.imwrite(str(root / name / f"{name}_{i:04d}.jpg"), image[:, :, ::-1])
    # the pairs use 6 people; the other 2 train the cnn
    write_pairs(base / "pairs.txt", draw_pairs({name: PER_PERSON for name in PEOPLE[:6]}, folds=2, per_fold=4, seed=0))
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_face_folder_run_with_official_pairs(lfw_tree: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "protocol=lfw-verification", "dataset=face-folder", f"dataset.root={lfw_tree}", *TINY_CNN,
            "anonymizers=[none,blur5,mask]", "pairs.anonymize=both", f"cache_dir={cache}", f"out={out}"]
    assert main(args) == 0
    by = {(r["anonymizer"], r["attack"]): r for r in rows(out)}
    assert set(by) == {(a, t) for a in ("none", "blur5", "mask") for t in ("naive", "adaptive")}
    for row in by.values():
        assert set(row["metrics"]) == {"pair_accuracy", "pair_auc", "pair_tar_at_far1", "pair_tar_at_far01"}
        assert all(0 <= v <= 1 for v in row["metrics"].values())
        assert row["num_folds"] == 2 and row["num_matched_pairs"] == row["num_mismatched_pairs"] == 8
        assert row["pairs_file"] == str(lfw_tree.parent / "pairs.txt") and row["anonymize"] == "both"
        assert row["chance"]["pair_accuracy"] == 0.5 and row["chance"]["pair_tar_at_far01"] == 1e-3
        assert len(row["folds"]["pair_accuracy"]["values"]) == 2
        assert row["folds"]["pair_accuracy"]["mean"] == pytest.approx(row["metrics"]["pair_accuracy"])
    assert by[("none", "naive")]["metrics"] == by[("none", "adaptive")]["metrics"]
    assert by[("blur5", "naive")]["calibration"] == "clean" and by[("blur5", "adaptive")]["calibration"] == "anonymized"
    assert by[("blur5", "naive")]["recognizer_key"] != by[("blur5", "adaptive")]["recognizer_key"]  # the cnn adapts
    # mask-out with both faces anonymized: every pair scores the same, nothing is recognised
    masked = by[("mask", "naive")]["metrics"]
    assert masked == {"pair_accuracy": 0.5, "pair_auc": 0.5, "pair_tar_at_far1": 0.0, "pair_tar_at_far01": 0.0}
    assert "naive acc" in (out / "table.md").read_text()


def test_synthetic_run_draws_official_format_pairs(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "protocol=lfw-verification", "dataset=synthetic", "dataset.num_identities=30", "dataset.images_per_identity=[4,4]",
            "dataset.size=32", *TINY_CNN, "pairs.folds=3", "pairs.per_fold=5", "anonymizers=[none,pixelate5]", "attacks=[naive]",
            f"cache_dir={cache}", f"out={out}"]
    assert main(args) == 0
    stored = rows(out)
    assert {r["anonymizer"] for r in stored} == {"none", "pixelate5"} and all(r["dataset"] == "synthetic-faces" for r in stored)
    pairs_file = Path(stored[0]["pairs_file"])
    assert pairs_file.parent == cache / "lfw-pairs" and pairs_file.read_text().splitlines()[0] == "3 5"
    assert [len(f) for f in read_pairs(pairs_file)] == [10, 10, 10] and stored[0]["num_folds"] == 3


def test_generate_draws_pairs_from_half_of_a_folder_without_partitions(lfw_tree: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", "protocol=lfw-verification", "dataset=face-folder", f"dataset.root={lfw_tree}", *TINY_CNN, "pairs.file=generate",
                 "pairs.folds=2", "pairs.per_fold=3", "anonymizers=[none]", "attacks=[naive]", f"cache_dir={cache}", f"out={out}"]) == 0
    row = rows(out)[0]
    folds = read_pairs(row["pairs_file"])
    people = {n for fold in folds for p in fold for n in (p.name1, p.name2)}
    assert len(people) == len(PEOPLE) // 2 and people < set(PEOPLE)  # the other half trains the cnn
    assert [len(f) for f in folds] == [6, 6] and row["num_matched_pairs"] == 6


@pytest.mark.parametrize("setup, override, fragment", [
    ("no_pairs", "", "pairs.file=/path/to/pairs.txt"),
    ("missing_image", "", "names image 9 of 'Ann_Able'"),
    ("", "pairs.anonymize=first", "pairs.anonymize='first'"),
    ("", "recognizer.name=cnn dataset.root=ALL_IN_PAIRS", "identities that appear in no pair"),
])
def test_bad_inputs_exit_2_before_writing(lfw_tree: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          setup: str, override: str, fragment: str) -> None:
    root = lfw_tree
    if setup or "ALL_IN_PAIRS" in override:
        root = tmp_path / "copy" / "lfw"
        root.parent.mkdir()
        import shutil
        shutil.copytree(lfw_tree, root)
        people = PEOPLE if "ALL_IN_PAIRS" in override else PEOPLE[:6]
        folds = draw_pairs({name: PER_PERSON for name in people}, folds=2, per_fold=4, seed=0)
        if setup == "missing_image":
            folds[1][0] = Pair("Ann_Able", 9, "Ann_Able", 1)
        if setup != "no_pairs":
            write_pairs(root / "pairs.txt", folds)
    extra = [o for o in override.split() if "ALL_IN_PAIRS" not in o]
    out = tmp_path / "out"
    code = main(["run", "protocol=lfw-verification", "dataset=face-folder", f"dataset.root={root}", *TINY_CNN, *extra,
                 f"cache_dir={cache}", f"out={out}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert not out.exists()


def test_pretrained_recognizer_adapts_only_its_threshold(lfw_tree: Path, cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("insightface")
    pytest.importorskip("onnx")
    import warnings

    from test_arcface_insightface import tiny_pack

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's legacy ONNX exporter
        pack, _ = tiny_pack(tmp_path / "pack")
    out = tmp_path / "out"
    assert main(["run", "protocol=lfw-verification", "dataset=face-folder", f"dataset.root={lfw_tree}", "image_size=32",
                 "recognizer.name=arcface", f"recognizer.arcface.model_pack={pack}", "recognizer.arcface.align=dlib",
                 "anonymizers=[none,blur5]", f"cache_dir={cache}", f"out={out}"]) == 0
    by = {(r["anonymizer"], r["attack"]): r for r in rows(out)}
    naive, adaptive = by[("blur5", "naive")], by[("blur5", "adaptive")]
    assert naive["recognizer"] == "arcface" and naive["recognizer_key"] == adaptive["recognizer_key"]  # nothing is trained
    for name in ("pair_auc", "pair_tar_at_far1", "pair_tar_at_far01"):  # thresholds from the tested pairs, one embedding
        assert naive["metrics"][name] == adaptive["metrics"][name]
    assert naive["folds"]["threshold"]["values"] != adaptive["folds"]["threshold"]["values"]  # clean vs anonymized calibration
