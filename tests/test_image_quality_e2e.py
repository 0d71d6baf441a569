"""End-to-end `evalsuite run protocol=image-quality dataset=synthetic` on a tiny synthetic set, offline."""
import json
import logging
import math

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.registry import ANONYMIZERS
from image_quality_helpers import TINY_SYNTHETIC, TopBandDetector, tiny_synthetic  # noqa: F401  (fixture)

DETECTOR = "test-top-band-detector"
TINY = [
    "protocol=image-quality",
    "dataset=synthetic",
    *(f"dataset.{k}={v}" for k, v in TINY_SYNTHETIC.items()),
    f"anonymizers=[none,mask,{DETECTOR}]",
    "download=false",  # never touch the network from tests
    "fid.size=64",
    "fid.kid_subsets=10",
    "realness.epochs=1",
    "attributes.epochs=1",
]


@pytest.fixture(scope="module", autouse=True)
def detector_registered():
    if DETECTOR not in ANONYMIZERS:
        ANONYMIZERS.add(DETECTOR, TopBandDetector, description="test-only: anonymizes the top 15% of each image, found by a rule")
    yield


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    return tmp_path_factory.mktemp("torch-home")  # an empty hub cache: no Inception, no LPIPS backbone


@pytest.fixture(scope="module")
def run_out(tmp_path_factory, torch_home):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("run") / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(torch_home))
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("evalsuite.metrics.optional_tools")
    logger.addHandler(handler)
    try:
        code = main(["run", *TINY, f"cache_dir={cache}", f"out={out}"])
    finally:
        mp.undo()
        logger.removeHandler(handler)
    assert code == 0
    return out, cache, records


def rows(out):
    return {r["anonymizer"]: r for r in (json.loads(line) for line in (out / "results.jsonl").read_text().splitlines())}


def test_table_has_every_quality_column_and_sane_values(run_out):
    out, _, _ = run_out
    table = (out / "table.md").read_text()
    for header in ("PSNR ↑", "SSIM ↑", "mask-SSIM ↑", "MS-SSIM ↑", "LPIPS ↓", "FID (random net) ↓", "KID (random net) ↓", "FID (Inception) ↓", "LDSR ↑", "Fooling ↑", "Attr. acc. ↑"):
        assert header in table, header
    by = rows(out)
    assert set(by) == {"none", "mask", DETECTOR}
    none, mask = by["none"]["metrics"], by["mask"]["metrics"]
    assert none["psnr"] == math.inf and none["ssim"] == 1.0 and none["mask_ssim"] == 1.0 and none["ms_ssim"] == pytest.approx(1.0)
    assert abs(none["fid_random"]) < 1e-6
    assert mask["fid_random"] > 100 * max(abs(none["fid_random"]), 1e-9)
    assert mask["mask_ssim"] < 0.5 and mask["psnr"] < 40 and mask["ms_ssim"] < 1.0
    assert 0.0 <= mask["fooling_rate"] <= 1.0 and 0.0 <= mask["attribute_accuracy"] <= 1.0
    assert none["fooling_rate"] == pytest.approx(math.ceil(0.93 * by["none"]["num_eval_images"]) / by["none"]["num_eval_images"])
    assert 0.0 <= none["ldsr"] <= 1.0 and by["none"]["ldsr_faces"] > 0
    assert by["none"]["attribute_accuracy_per_attribute"]["upper_colour"].keys() == {"anonymized", "original"}


def test_weights_absent_offline_leave_lpips_and_inception_empty_with_the_reason(run_out, torch_home):
    out, _, _ = run_out
    for row in rows(out).values():
        metrics, unavailable = row["metrics"], row["unavailable"]
        assert math.isnan(metrics["lpips"]) and math.isnan(metrics["fid_inception"]) and math.isnan(metrics["kid_inception"])
        assert "alexnet-owt-7be5be79.pth" in unavailable["lpips"] and "lpips.backbone_weights" in unavailable["lpips"]
        assert "weights-inception-2015-12-05-6726825d.pth" in unavailable["fid_inception"] and "fid.inception_weights" in unavailable["fid_inception"]
        assert str(torch_home) in unavailable["lpips"]
        assert row["feature_extractors"]["random"]["extractor"] == "evalsuite-random-inception"
    table = (out / "table.md").read_text()
    assert "nan" in table.split("| none |")[1].splitlines()[0]


def test_leak_rate_only_for_the_detecting_anonymizer(run_out, tiny_synthetic):
    out, _, _ = run_out
    by = rows(out)
    assert "leak_rate" not in by["mask"]["metrics"]
    # independent expectation: head boxes of the evaluation images against the detector's top band
    from evalsuite.regions import region_masks

    samples = tiny_synthetic.query + tiny_synthetic.gallery
    heads = region_masks(samples, "head", 128, 64).numpy()[:, 0]
    band = round(0.15 * 128)
    coverage = heads[:, :band].sum((1, 2)) / heads.sum((1, 2))
    assert by[DETECTOR]["metrics"]["leak_rate"] == pytest.approx(float(np.mean(coverage < 0.5)))
    assert by[DETECTOR]["leak_regions"] == len(samples)


def test_reference_features_are_reused_from_the_cache(run_out, torch_home, monkeypatch):
    """A second protocol on the same cache: one pass for the one new anonymized set, none for the originals."""
    from evalsuite.cache import Cache
    from evalsuite.components import resolve_anonymizer, resolve_attack
    from evalsuite.config import compose
    from protocols.image_quality import ImageQuality

    out, cache, _ = run_out
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    cfg = compose([*TINY, "anonymizers=[none,pixelate8]", f"cache_dir={cache}"])
    protocol = ImageQuality(cfg, Cache.for_config(cfg))  # the run's cache: keys folded with the thread count
    protocol.prepare()
    for name in ("none", "pixelate8"):
        protocol.evaluate(resolve_anonymizer(name), resolve_attack("none"), 0)
    assert protocol.tools.bank.passes["random"] == 1


def test_unavailable_metrics_are_logged_once(run_out):
    _, _, records = run_out
    messages = [r.getMessage() for r in records]
    assert len([m for m in messages if m.startswith("lpips left empty")]) == 1
    assert len([m for m in messages if m.startswith("fid_inception / kid_inception left empty")]) == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["attacks=[naive]"], "attacks=[none]"),
        (["splits.eval=[train]"], "overlap"),
        (["splits.eval=[bounding_box_test]"], "splits.eval='bounding_box_test' is not a split: the splits are train, val, test, gallery, query"),
        (["splits.train=[val]"], "has no val split; it has train, gallery, query"),
        (["realness.accept_originals=1.5"], "realness.accept_originals"),
        (["fid.extractors=[clip]"], "fid.extractors"),
        (["attributes.names=[no_such_attribute]"], "no_such_attribute"),
        (["lpips.backbone_weights=/nonexistent/alexnet.pth"], "/nonexistent/alexnet.pth"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, fragment, tmp_path, capsys):
    code = main(["run", *TINY, *args, f"cache_dir={tmp_path / 'c'}", f"out={tmp_path / 'o'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert fragment in err[-1] and err[-1].startswith("evalsuite: error:")
    assert not (tmp_path / "o" / "results.jsonl").exists()


FACES = [
    "protocol=image-quality", "download=false", "fid.size=64", "fid.kid_subsets=5", "realness.epochs=1", "attributes.epochs=1",
    "image_size=32", "fid.extractors=[random]", "anonymizers=[none,blur5,ksame-pixel-k2]",
]


def test_image_quality_reads_synthetic_faces_and_runs_ksame(tmp_path, torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    out = tmp_path / "out"
    args = [*FACES, "dataset=synthetic-faces", "dataset.num_identities=6", "dataset.images_per_identity=[4,4]", "dataset.size=32"]
    assert main(["run", *args, f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    stored = rows(out)
    assert set(stored) == {"none", "blur5", "ksame-pixel-k2"}
    assert stored["none"]["metrics"]["ssim"] == pytest.approx(1.0)
    for name in ("blur5", "ksame-pixel-k2"):  # k-same is fitted on each set it anonymizes (train, eval), never refused
        assert stored[name]["metrics"]["ssim"] < 1.0 and stored[name]["num_eval_images"] > 0


def test_image_quality_reads_a_face_folder_of_mixed_sizes(tmp_path, torch_home, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    rng = np.random.default_rng(0)
    for person in range(6):
        for image in range(3):
            folder = tmp_path / "faces" / f"person{person}"
            folder.mkdir(parents=True, exist_ok=True)
            size = 40 + 8 * image
            Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(folder / f"{image}.png")
    out = tmp_path / "out"
    args = [*FACES, "anonymizers=[none,mask]", "dataset=face-folder", f"dataset.root={tmp_path / 'faces'}"]
    assert main(["run", *args, f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    stored = rows(out)
    assert stored["mask"]["metrics"]["ssim"] < stored["none"]["metrics"]["ssim"]
    assert stored["mask"]["num_eval_images"] + stored["mask"]["num_train_images"] == 18


def test_ksame_runs_in_image_quality_on_person_crops(tmp_path, torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    out = tmp_path / "out"
    args = [*TINY[:-6], "download=false", "fid.size=64", "fid.kid_subsets=5", "realness.epochs=1", "attributes.epochs=1",
            "fid.extractors=[random]", "anonymizers=[none,ksame-pixel-k2]"]
    assert main(["run", *args, f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 0
    assert rows(out)["ksame-pixel-k2"]["metrics"]["mask_ssim"] < 1.0
