"""HTML reports, plots and image grids; the page is opened in a real headless Chromium."""
import base64
import io
import json
import logging
import re

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from evalsuite.cli import main
from evalsuite.components import resolve_anonymizer
from evalsuite.config import compose
from evalsuite.registry import load_all
from evalsuite.reporting.browser import check_page, find_chromium
from evalsuite.reporting.plots import find_sweeps, pareto_front, report_plots
from evalsuite.reporting.results import load_results
from evalsuite.reporting.table import build_tables
from evalsuite.run_description import RunSamples, write_samples

load_all()

TINY_DATA = ["dataset.num_train_ids=4", "dataset.num_test_ids=4", "dataset.num_distractors=1", "dataset.num_junk=0"]
LABELS = ["none", "blur", "pixelate8", "mask"]
RANK1 = {"none": 0.9, "blur": 0.4, "pixelate8": 0.5, "mask": 0.1}
SSIM = {"none": 1.0, "blur": 0.7, "pixelate8": 0.75, "mask": 0.3}


def reid_rows(labels=LABELS, attacks=("naive", "adaptive"), seeds=(0, 1)):
    rows = []
    for label in labels:
        spec = resolve_anonymizer(label)
        for attack in attacks:
            for seed in seeds:
                r1 = RANK1.get(label, 0.3) + (0.1 if attack == "adaptive" else 0) + 0.01 * seed
                rows.append({"protocol": "market1501-reid", "protocol_version": "1", "dataset": "synthetic", "config_hash": "c0",
                             "anonymizer": label, "anonymizer_name": spec.name, "anonymizer_params": spec.params, "attack": attack,
                             "seed": seed, "metrics": {"rank1": r1, "mAP": r1 / 2}, "cell_key": f"{label}-{attack}-{seed}",
                             "versions": {"torch": "x"}, "git_commit": "abc", "device": "cpu"})
    return rows


def quality_rows():
    return [{"protocol": "image-quality", "protocol_version": "1", "dataset": "synthetic", "config_hash": "q0",
             "anonymizer": label, "anonymizer_name": label, "anonymizer_params": {}, "attack": "none", "seed": 0,
             "metrics": {"ssim": SSIM[label], "psnr": 20.0 + 10 * SSIM[label]}, "cell_key": f"q-{label}"} for label in LABELS]


def write_run(folder, rows, config=None, samples=None):
    """A run folder: results.jsonl, config.yaml and (``samples``: labels) run.json with saved sample images."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if config is not None:
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(config))
    if samples is not None:
        config_hash = rows[0]["config_hash"]
        entry = {"config_hash": config_hash, "samples": write_samples(folder, config_hash, fake_samples(samples))}
        (folder / "run.json").write_text(json.dumps({"format": 1, "runs": {config_hash: entry}}))
    return folder


def fake_samples(labels, n=4, h=128, w=64):
    """Saved samples as a run writes them: 64x128 crops, a body-like region, one output per anonymizer."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g)
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    masks[:, :, 20:110, 16:48] = True
    outputs = {label: torch.where(masks, torch.full_like(images, 40 * i), images) for i, label in enumerate(labels) if label != "none"}
    return RunSamples(set_name="query", sample_ids=[f"query/{i:04d}_c1s1_000000_00.jpg" for i in range(n)], indices=list(range(n)),
                      images=images, masks=masks, region="body", seed=0, outputs=outputs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A re-id run with a config.yaml and saved samples, and an image-quality run."""
    root = tmp_path_factory.mktemp("runs")
    cfg = compose(["protocol=market1501-reid", "dataset=synthetic", *TINY_DATA, f"anonymizers=[{','.join(LABELS)}]",
                   "seeds=[0,1]", f"cache_dir={root / 'cache'}"])
    reid = write_run(root / "reid", reid_rows(), cfg, samples=LABELS)
    quality = write_run(root / "quality", quality_rows())
    return reid, quality


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report.html"
    plots = out.parent / "plots"
    assert main(["report", str(runs[0]), str(runs[1]), "--format", "html", "--out", str(out), "--plots", str(plots), "--title", "tiny report"]) == 0
    return out


def _png_size(data):
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_html_is_self_contained_with_tables_plots_grid_config_and_versions(page):
    text = page.read_text()
    assert page.stat().st_size < 2_000_000
    sources = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in text and "https://" not in text and "<link" not in text and "<script" not in text
    for source in sources:
        width, height = _png_size(base64.b64decode(source.split(",", 1)[1]))
        assert width > 100 and height > 100
    ids = re.findall(r'<figure id="([^"]+)"', text)
    assert "frontier-rank1-ssim" in ids and "grid-market1501-reid-synthetic" in ids
    assert {"bar-market1501-reid-synthetic-rank1", "bar-market1501-reid-synthetic-mAP", "bar-image-quality-synthetic-ssim"} <= set(ids)
    assert text.count('<table class="results">') == 2
    assert '<th colspan="2" class="group">naive</th>' in text and "<th>R1 ↓</th>" in text
    assert '<td class="best">10.5<span class="sem"> ± 0.5</span></td>' in text  # mask, naive R1: the lowest
    assert "<th>SSIM ↑</th>" in text  # image-quality has no attacker: no attack level
    assert "num_train_ids: 4" in text and "<dt>torch</dt>" in text and "abc" in text


def test_plots_written_as_png_files(page):
    names = sorted(p.name for p in (page.parent / "plots").iterdir())
    assert "frontier-rank1-ssim.png" in names and "grid-market1501-reid-synthetic.png" in names
    grid = (page.parent / "plots" / "grid-market1501-reid-synthetic.png").read_bytes()
    width, height = _png_size(grid)
    assert width > 3 * 60 and height > 4 * 100  # 4 columns (original + 3) x 4 samples of 64x128 crops


def test_run_without_samples_gets_a_one_line_note_instead_of_a_grid(runs, tmp_path, caplog):
    bare = write_run(tmp_path / "bare", reid_rows(), OmegaConf.load(runs[0] / "config.yaml"))  # an older run: no run.json
    with caplog.at_level(logging.WARNING):
        assert main(["report", str(bare), "--format", "html", "--out", str(tmp_path / "r.html")]) == 0
    assert "image grid for market1501-reid v1 on synthetic (config c0) skipped: its run folder holds no saved sample images" in caplog.text
    text = (tmp_path / "r.html").read_text()
    assert 'id="grid-' not in text and "<h2>Image grids</h2>" in text
    assert '<p class="note">No image grid for market1501-reid v1 on synthetic (config c0): its run folder holds no saved sample images' in text
    assert not (tmp_path / "cache").exists()  # nothing rebuilt


def test_grid_shows_the_saved_samples(runs, tmp_path):
    """The grid's anonymizer columns are the saved PNGs: mask's column (filled with 120) shows its fill."""
    from evalsuite.reporting.grids import load_inputs

    group = next(g for g in load_results([runs[0]]) if g.key.protocol == "market1501-reid")
    inputs = load_inputs(group, ["blur", "mask"], 3)
    assert inputs.labels == ["blur", "mask"] and len(inputs.images) == 3 and inputs.region == "body"
    assert (inputs.outputs[1][0][30, 20] == 120).all() and (inputs.outputs[0][0][30, 20] == 40).all()
    assert inputs.masks[0][30, 20] and not inputs.masks[0][5, 5]
    assert inputs.missing == []


def test_frontier_default_axes_and_pareto_front(runs):
    groups = load_results(list(runs))
    tables = build_tables(groups)
    plots = {p.name: p for p in report_plots(tables, groups)}
    frontier = plots["frontier-rank1-ssim"]
    assert "x: adaptive R1 (market1501-reid on synthetic)" in frontier.caption and "y: SSIM (image-quality on synthetic)" in frontier.caption
    assert frontier.png.startswith(b"\x89PNG")
    # rank1 lower is better, SSIM higher is better: each front point trades privacy for quality; "bad" is dominated
    points = {"none": (0.91, 1.0), "blur": (0.51, 0.7), "pixelate8": (0.61, 0.75), "mask": (0.21, 0.3), "bad": (0.7, 0.5)}
    assert pareto_front(points, x_higher_better=False, y_higher_better=True) == ["mask", "blur", "pixelate8", "none"]
    assert pareto_front(points, x_higher_better=True, y_higher_better=True) == ["none"]


def test_sweeps_found_from_parameters_and_presets(tmp_path):
    labels = ["none", "blur5", "blur15", "blur25", "blur", "pixelate5", "pixelate15", "pixelate25", "pixelate8", "pixelate16", "mask"]
    folder = write_run(tmp_path / "sweep", reid_rows(labels, attacks=("naive",), seeds=(0,)))
    group = load_results([folder])[0]
    sweeps = {(s.family, s.param): [label for _, label in s.members] for s in find_sweeps(group)}
    # blur presets change sigma and kernel size together: ordered by sigma; pixelate8/16 (grid) are only two points
    assert sweeps == {("blur", "sigma"): ["blur5", "blur15", "blur25", "blur"], ("pixelate", "block_size"): ["pixelate5", "pixelate15", "pixelate25"]}
    names = [p.name for p in report_plots(build_tables([group]), [group])]
    assert "sweep-blur-sigma" in names and "sweep-pixelate-block_size" in names
    assert not any(n.startswith("frontier") for n in names)  # no quality metric: no frontier


def test_page_renders_in_headless_chromium(page, tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    if find_chromium() is None:
        pytest.skip("no chromium / chromedriver on PATH: apt-get install chromium chromium-driver (.ci/run does this when it can)")
    shot = tmp_path / "report.png"
    check = check_page(page, shot)
    assert check.title == "tiny report"
    expected = len(re.findall(r"<img ", page.read_text()))
    assert len(check.images) == expected >= 5
    assert not check.broken_images, check.broken_images
    assert all(i["naturalWidth"] > 100 for i in check.images)
    assert check.tables == 2 and check.cells == 4 * 4 + 4 * 2
    assert "naive" in check.headers and "R1 ↓" in check.headers and "SSIM ↑" in check.headers
    width, height = _png_size(shot.read_bytes())
    assert width >= 1000 and height > 2000  # full page: tables, plots and the grid
