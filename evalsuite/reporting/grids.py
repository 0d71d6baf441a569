"""Qualitative image grids: the same few samples under every anonymizer, original first.

The grid is rebuilt from the run's saved ``config.yaml``: the dataset, the region and the
anonymizers are composed again as the run composed them, and anonymized through the shared
pipeline (:class:`evalsuite.pipeline.AnonymizedSets`), which fits each anonymizer as it
declares: k-Same on the whole split the samples come from (as the protocols anonymize it),
trained anonymizers on the training split; stochastic ones are seeded with the run's first
seed. Protocols whose data is not a dataset of person crops with a ``region`` setting are
skipped with a logged reason.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from evalsuite.errors import UserError
from evalsuite.reporting.plots import Plot, to_png
from evalsuite.reporting.results import Group

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 4
SAMPLE_SPLIT = "query"
OUTLINE_COLOR = "lime"


@dataclass
class GridInputs:
    """Everything a grid needs, composed from a run's config."""

    samples: list[Any]
    images: torch.Tensor  # uint8 (N, 3, H, W)
    masks: torch.Tensor  # bool (N, 1, H, W)
    region: str
    specs: list[Any]  # AnonymizerSpec, table order, identity excluded
    seed: int
    outputs: list[torch.Tensor]  # each spec's anonymized images, as ``images``


@contextlib.contextmanager
def _cache_env(cache_dir: str | None) -> Iterator[None]:
    """Point generated datasets at the run's cache_dir while the grid is composed."""
    if not cache_dir:
        yield
        return
    old = os.environ.get("EVALSUITE_CACHE")
    os.environ["EVALSUITE_CACHE"] = str(cache_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EVALSUITE_CACHE", None)
        else:
            os.environ["EVALSUITE_CACHE"] = old


def pick_samples(samples: Sequence[Any], count: int) -> list[Any]:
    """``count`` samples of distinct identities, evenly spread over the split (deterministic)."""
    first_of_pid: dict[int, Any] = {}
    for sample in samples:
        first_of_pid.setdefault(int(sample.pid), sample)
    distinct = [first_of_pid[pid] for pid in sorted(first_of_pid) if pid > 0] or list(first_of_pid.values())
    if len(distinct) <= count:
        return distinct
    step = len(distinct) / count
    return [distinct[int(i * step)] for i in range(count)]


def compose_inputs(group: Group, order: Sequence[str], num_samples: int) -> GridInputs | str:
    """The grid's samples, masks and anonymizers; a reason string when it cannot be built."""
    from omegaconf import OmegaConf

    from evalsuite.components import resolve_anonymizer
    from evalsuite.pipeline import AnonymizedSets, ImageSet
    from evalsuite.registry import DATASETS, load_all

    configs = [OmegaConf.create(s.config_text) for s in group.sources if s.config_text]
    if not configs:
        return "no config.yaml beside the results, so the dataset and anonymizers cannot be composed again"
    cfg = configs[0]
    if str(cfg.get("protocol")) != group.key.protocol:
        return f"config.yaml is for protocol {cfg.get('protocol')!r}, not {group.key.protocol!r}"
    if "region" not in cfg or "dataset" not in cfg:
        return f"protocol {group.key.protocol} has no region / dataset settings this grid knows how to compose"
    load_all()
    entries: dict[str, Any] = {}
    for config in configs:
        for entry in OmegaConf.to_container(config.anonymizers, resolve=True) or []:  # type: ignore[union-attr]
            spec = resolve_anonymizer(entry)
            entries.setdefault(spec.label, spec)
    specs = [entries[label] for label in order if label in entries and not entries[label].is_identity]
    if not specs:
        return "the run's config names no anonymizer besides the original"
    params = {k: v for k, v in OmegaConf.to_container(cfg.dataset, resolve=True).items() if k != "name"}  # type: ignore[union-attr]
    with _cache_env(cfg.get("cache_dir")):
        try:
            dataset = DATASETS.build(str(cfg.dataset.name), **params)
        except UserError as exc:
            return f"dataset {cfg.dataset.name} cannot be loaded here ({exc})"
    if not hasattr(dataset, "split"):
        return f"dataset {cfg.dataset.name} is a {type(dataset).__name__}, not a re-identification dataset of image files"
    split = list(dataset.split(SAMPLE_SPLIT))
    if not split or not hasattr(split[0], "path"):
        return f"dataset {cfg.dataset.name} has no {SAMPLE_SPLIT} images"
    samples = pick_samples(split, num_samples)
    region = {"name": str(cfg.region.name), "dilation": cfg.region.get("dilation"), "fallback": str(cfg.region.get("fallback") or "image")}
    picked = ImageSet.from_samples(SAMPLE_SPLIT, samples, region)
    seeds = sorted(group.seeds)
    seed = seeds[0] if seeds else 0
    sets = AnonymizedSets(None, {"grid": group.key.describe()}, batch_size=64, protocol=group.key.protocol)
    whole = train = None
    outputs = []
    for spec in specs:
        if sets.fits_per_set(spec):  # k-Same: fitted on the whole split, as the protocol anonymized it
            whole = whole or ImageSet.from_samples(SAMPLE_SPLIT, split, region)
            index = torch.as_tensor([split.index(s) for s in samples])
            outputs.append(sets.get(whole, spec, seed).images[index])
            continue
        if sets.fit_on(spec) == "train":
            train = train or ImageSet.from_samples("train", list(dataset.split("train")), region)
        outputs.append(sets.get(picked, spec, seed, train=train).images)
    return GridInputs(samples=samples, images=picked.images, masks=picked.masks, region=region["name"], specs=specs, seed=seed, outputs=outputs)


def render_grid(inputs: GridInputs, title: str) -> bytes:
    """Rows = samples; columns = the original (region outlined) then every anonymizer."""
    import matplotlib.pyplot as plt

    outputs = inputs.outputs
    columns = ["original"] + [s.label for s in inputs.specs]
    n_rows, n_cols = inputs.images.shape[0], len(columns)
    h, w = inputs.images.shape[-2:]
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
            ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            if c == 0:
                ax.contour(inputs.masks[r, 0].numpy().astype(float), levels=[0.5], colors=OUTLINE_COLOR, linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
    fig.suptitle(title, fontsize=8, y=1 - 0.08 / height)
    return to_png(fig)


def grid_key(group: Group) -> str | None:
    """The data a group's grid would show (dataset and region settings), to skip repeated grids."""
    from omegaconf import OmegaConf

    from evalsuite.regions import default_dilation

    texts = [s.config_text for s in group.sources if s.config_text]
    if not texts:
        return None
    try:
        cfg = OmegaConf.to_container(OmegaConf.create(texts[0]), resolve=True)
        region = dict(cfg.get("region") or {})  # type: ignore[union-attr]
        if region.get("dilation") is None and region.get("name"):
            region["dilation"] = default_dilation(str(region["name"]))
    except Exception:  # an unreadable config: image_grid reports it
        return None
    return json.dumps([cfg.get("dataset"), region], sort_keys=True, default=str)  # type: ignore[union-attr]


def image_grids(groups_and_orders: Sequence[tuple[Group, Sequence[str]]], num_samples: int = DEFAULT_SAMPLES) -> list[Plot]:
    """One grid per group, skipping a group whose images and anonymizers an earlier grid already shows."""
    grids: list[Plot] = []
    shown: list[tuple[str, set[str]]] = []
    for group, order in groups_and_orders:
        key = grid_key(group)
        if key is not None and any(key == k and set(order) <= labels for k, labels in shown):
            log.info("image grid for %s skipped: an earlier grid shows the same images and anonymizers", group.key.describe())
            continue
        grid = image_grid(group, order, num_samples)
        if grid is not None:
            if any(g.name == grid.name for g in grids):  # same protocol and dataset, another config
                grid.name += f"-{group.key.config_hash}"
            if key is not None:
                shown.append((key, set(order)))
            grids.append(grid)
    return grids


def image_grid(group: Group, order: Sequence[str], num_samples: int = DEFAULT_SAMPLES) -> Plot | None:
    """The grid of one group, or None (with the reason logged) when it cannot be built."""
    try:
        inputs = compose_inputs(group, order, num_samples)
    except UserError as exc:
        inputs = str(exc)
    except Exception as exc:  # a grid is an illustration: a failure must not cost the report
        log.debug("image grid failure", exc_info=True)
        inputs = f"composing it failed ({type(exc).__name__}: {exc})"
    if isinstance(inputs, str):
        log.warning("image grid for %s skipped: %s", group.key.describe(), inputs)
        return None
    key = group.key
    title = f"{key.protocol} on {key.dataset}: {inputs.region} region"
    caption = (f"{len(inputs.samples)} {SAMPLE_SPLIT} images of distinct identities under every anonymizer; "
               f"{inputs.region} region outlined in {OUTLINE_COLOR} on the original; stochastic anonymizers seeded with {inputs.seed}")
    png = render_grid(inputs, title)
    return Plot(name=f"grid-{key.protocol}-{key.dataset}", title=title, caption=caption, png=png, kind="grid")
