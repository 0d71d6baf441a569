"""Qualitative image grids, read from the run folders: ``OUT/run.json`` and ``OUT/samples/``.

A run saves a few evaluation images of distinct identities and every anonymizer's output of
them, taken from the very anonymized sets its cells measured (:mod:`evalsuite.run_description`).
A grid shows them: rows = samples, columns = the original (region outlined) then every
anonymizer in table order. Nothing is recomputed here: no dataset is loaded and no
anonymizer is built. A group whose runs saved no samples (runs made before samples were
saved, protocols that save none) gets a one-line note instead of a grid.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from evalsuite.reporting.plots import Plot, to_png
from evalsuite.reporting.results import Group, RunSource

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 4
OUTLINE_COLOR = "lime"
NO_SAMPLES = "its run folder holds no saved sample images (a run made before evalsuite saved them; run it again into the same out= to add them)"


@dataclass
class GridInputs:
    """What one grid shows, read from the saved samples."""

    set_name: str
    sample_ids: list[str]
    images: list[np.ndarray]  # uint8 (H, W, 3) originals
    masks: list[np.ndarray]  # bool (H, W) regions
    region: str
    labels: list[str]  # anonymizer labels, table order, identity excluded
    outputs: list[list[np.ndarray]]  # per label, per sample
    seeds: list[int]
    missing: list[str]  # labels of the group without saved samples


def _read_png(source: RunSource, relative: str, mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    path = source.folder / relative
    with Image.open(path) as image:
        return np.asarray(image.convert(mode))


def load_inputs(group: Group, order: Sequence[str], num_samples: int) -> GridInputs | str:
    """The grid's images from the group's saved samples; the reason string when there are none."""
    described = group.run_entries()
    with_samples = [(s, e["samples"]) for s, e in described if isinstance(e.get("samples"), dict) and e["samples"].get("ids")]
    if not with_samples:
        notes = [str(e["samples_note"]) for _, e in described if e.get("samples_note")]
        if notes:
            return f"the run saved no sample images: {notes[0]}"
        return NO_SAMPLES if not described else "its run.json lists no sample images"
    base_source, base = with_samples[0]
    ids = list(base["ids"])[:num_samples]
    count = len(ids)
    found: dict[str, tuple[RunSource, dict[str, Any]]] = {}
    for source, samples in with_samples:
        if list(samples["ids"])[:count] != ids:
            continue
        for label, record in (samples.get("anonymized") or {}).items():
            found.setdefault(label, (source, record))
    wanted = [label for label in order if label in group.anonymizers and not group.anonymizers[label].is_identity]
    labels = [label for label in wanted if label in found]
    if not labels:
        return f"its saved samples show none of the anonymizers {wanted}"
    try:
        images = [_read_png(base_source, p) for p in base["original"][:count]]
        masks = [_read_png(base_source, p, "L") > 127 for p in base["region_masks"][:count]]
        outputs = [[_read_png(found[label][0], p) for p in found[label][1]["files"][:count]] for label in labels]
    except (OSError, KeyError, ValueError) as exc:
        return f"its saved sample images cannot be read ({type(exc).__name__}: {exc})"
    seeds = sorted({int(found[label][1].get("seed", 0)) for label in labels})
    return GridInputs(set_name=str(base.get("set", "evaluation")), sample_ids=ids, images=images, masks=masks, region=str(base.get("region", "")),
                      labels=labels, outputs=outputs, seeds=seeds, missing=[label for label in wanted if label not in found])


def render_grid(inputs: GridInputs, title: str) -> bytes:
    """Rows = samples; columns = the original (region outlined) then every anonymizer."""
    import matplotlib.pyplot as plt

    outputs = inputs.outputs
    columns = ["original", *inputs.labels]
    n_rows, n_cols = len(inputs.images), len(columns)
    h, w = inputs.images[0].shape[:2]
    cell_w, gap, top = 1.0, 0.04, 0.55  # inches: image width, gap between images, title band
    cell_h = cell_w * h / w
    width = n_cols * cell_w + (n_cols - 1) * gap
    height = n_rows * cell_h + (n_rows - 1) * gap + top
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - top / height, wspace=gap / cell_w, hspace=gap / cell_h)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            image = inputs.images[r] if c == 0 else outputs[c - 1][r]
            ax.imshow(image, interpolation="nearest")
            if c == 0 and inputs.masks[r].any():
                ax.contour(inputs.masks[r].astype(float), levels=[0.5], colors=OUTLINE_COLOR, linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
    fig.suptitle(title, fontsize=8, y=1 - 0.08 / height)
    return to_png(fig)


def grid_key(group: Group) -> str | None:
    """The images a group's grid would show (dataset fingerprint, region, sample ids), to skip repeated grids."""
    for _, entry in group.run_entries():
        samples = entry.get("samples")
        if isinstance(samples, dict) and samples.get("ids"):
            return json.dumps([(entry.get("dataset") or {}).get("fingerprint_hash"), samples.get("region"), samples.get("ids")], sort_keys=True)
    return None


def image_grids(groups_and_orders: Sequence[tuple[Group, Sequence[str]]], num_samples: int = DEFAULT_SAMPLES) -> tuple[list[Plot], list[str]]:
    """One grid per group (skipping a group whose images and anonymizers an earlier grid shows),
    and a one-line note for every group that has no saved samples to show."""
    grids: list[Plot] = []
    notes: list[str] = []
    shown: list[tuple[str, set[str]]] = []
    for group, order in groups_and_orders:
        key = grid_key(group)
        if key is not None and any(key == k and set(order) <= labels for k, labels in shown):
            log.info("image grid for %s skipped: an earlier grid shows the same images and anonymizers", group.key.describe())
            continue
        grid = image_grid(group, order, num_samples)
        if isinstance(grid, str):
            notes.append(grid)
            continue
        if any(g.name == grid.name for g in grids):  # same protocol and dataset, another config
            grid.name += f"-{group.key.config_hash}"
        if key is not None:
            shown.append((key, set(order)))
        grids.append(grid)
    return grids, notes


def image_grid(group: Group, order: Sequence[str], num_samples: int = DEFAULT_SAMPLES) -> Plot | str:
    """The grid of one group, or a one-line note (also logged) saying why there is none."""
    inputs = load_inputs(group, order, num_samples)
    if isinstance(inputs, str):
        note = f"No image grid for {group.key.describe()}: {inputs}."
        log.warning("image grid for %s skipped: %s", group.key.describe(), inputs)
        return note
    key = group.key
    title = f"{key.protocol} on {key.dataset}: {inputs.region} region"
    seeds = ", ".join(str(s) for s in inputs.seeds)
    caption = (f"{len(inputs.images)} {inputs.set_name} images of distinct identities under every anonymizer, as the run produced them "
               f"(seed {seeds}); {inputs.region} region outlined in {OUTLINE_COLOR} on the original")
    if inputs.missing:
        caption += f"; no saved samples of {', '.join(inputs.missing)}"
    png = render_grid(inputs, title)
    return Plot(name=f"grid-{key.protocol}-{key.dataset}", title=title, caption=caption, png=png, kind="grid")
