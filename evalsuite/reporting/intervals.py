"""Uncertainty of result cells: seeds and a bootstrap over the evaluated items.

A cell's value (e.g. rank-1 of blur under the adaptive attacker) is a mean over items
(queries, probes) of per-item scores, averaged over seeds. Two things make it uncertain:

- **seeds**: another attacker initialisation, another training order, another CPU code path
  or thread count trains another attacker. ``se_seed = sd_seed / sqrt(S)``, where ``sd_seed``
  is the larger of the cell's own standard deviation over its S seeds and the metric's pooled
  standard deviation over every cell of the group (a cell whose seeds happen to agree, or a
  cell stuck at 0, does not get a spuriously tiny interval). One seed: ``se_seed = 0`` and
  only the items speak.
- **items**: which queries were evaluated. ``se_items`` is the standard deviation of the mean
  of the seed-averaged per-item scores over ``B`` bootstrap resamples of the items.

The cell's interval is ``mean ± z * sqrt(se_seed² + se_items²)``. A change between two runs
that scored the same items is judged on the *paired* bootstrap of the per-item differences
plus both seed terms (:func:`compare_cells`). Bootstraps use a fixed generator, so the same
inputs always give the same interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from evalsuite.metrics.items import read_item_scores
from evalsuite.reporting.results import Group

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20261130
#: bootstrap replicates are drawn in blocks of this many to bound memory (block x items)
BLOCK = 250


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def bootstrap_se(values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> float:
    """Standard deviation of the mean of ``values`` over bootstrap resamples of its entries."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, BLOCK):
        count = min(BLOCK, samples - start)
        means[start:start + count] = values[rng.integers(0, n, size=(count, n))].mean(axis=1)
    return float(means.std(ddof=1))


@dataclass
class CellSample:
    """One cell's per-seed values and, when the rows kept them, its per-item scores."""

    values: dict[int, float]
    item_scores: dict[int, np.ndarray] = field(default_factory=dict)  # seed -> per-item values
    items_sha1: str | None = None

    @property
    def mean(self) -> float:
        return float(np.mean([self.values[s] for s in sorted(self.values)]))

    @property
    def seeds(self) -> int:
        return len(self.values)

    def seed_sd(self) -> float | None:
        if len(self.values) < 2:
            return None
        return float(np.std([self.values[s] for s in sorted(self.values)], ddof=1))

    def item_means(self) -> np.ndarray | None:
        """Per-item scores averaged over seeds (None without per-item scores for every seed)."""
        if not self.item_scores or set(self.item_scores) != set(self.values):
            return None
        arrays = [self.item_scores[s] for s in sorted(self.item_scores)]
        if len({a.size for a in arrays}) != 1:
            return None
        return np.mean(arrays, axis=0)


def cell_sample_from_rows(rows: Sequence[dict[str, Any]], metric: str) -> CellSample:
    """The CellSample of one (anonymizer, attack, metric) from its rows (one per seed)."""
    sample = CellSample(values={})
    hashes = set()
    for row in rows:
        value = row["metrics"].get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        seed = int(row["seed"])
        sample.values[seed] = float(value)
        scores = read_item_scores(row, metric)
        if scores is not None:
            hashes.add(scores[0])
            sample.item_scores[seed] = scores[1]
    if len(hashes) == 1 and set(sample.item_scores) == set(sample.values):
        sample.items_sha1 = hashes.pop()
    else:
        sample.item_scores = {}  # mixed or partial item lists cannot be bootstrapped together
    return sample


def pooled_seed_sd(samples: Sequence[CellSample]) -> float | None:
    """Pooled standard deviation over seeds of several cells (None with no cell of >= 2 seeds)."""
    num = den = 0.0
    for sample in samples:
        if sample.seeds >= 2:
            values = np.array([sample.values[s] for s in sorted(sample.values)])
            num += float(((values - values.mean()) ** 2).sum())
            den += sample.seeds - 1
    return math.sqrt(num / den) if den else None


@dataclass
class Uncertainty:
    """A cell's mean and the two parts of its standard error."""

    mean: float
    seeds: int
    items: int | None
    sd_seed: float | None
    se_seed: float
    se_items: float | None
    #: expected standard error of the item part of a paired difference against a rerun
    se_items_paired: float | None

    @property
    def se(self) -> float:
        return math.sqrt(self.se_seed**2 + (self.se_items or 0.0) ** 2)

    def interval(self, confidence: float) -> tuple[float, float]:
        half = z_value(confidence) * self.se
        return self.mean - half, self.mean + half

    def expected_se_of_change(self) -> float:
        """Standard error of the change between this cell and a rerun of it (same size)."""
        items = self.se_items_paired if self.se_items_paired is not None else math.sqrt(2) * (self.se_items or 0.0)
        return math.sqrt(2 * self.se_seed**2 + items**2)


def uncertainty(sample: CellSample, pooled_sd: float | None, samples: int = BOOTSTRAP_SAMPLES, rerun_noise: bool = True) -> Uncertainty:
    """Seed and item uncertainty of one cell (see the module docstring).

    ``rerun_noise`` also bootstraps every pair of seeds for ``se_items_paired`` (what a baseline
    stores for sizing); a run being checked does not need it, and it costs S(S-1)/2 bootstraps.
    """
    own = sample.seed_sd()
    sd = max(v for v in (own, pooled_sd, 0.0) if v is not None) if sample.seeds >= 2 else None
    se_seed = sd / math.sqrt(sample.seeds) if sd is not None else 0.0
    means = sample.item_means()
    se_items = paired = None
    if means is not None:
        se_items = bootstrap_se(means, samples)
        seeds = sorted(sample.item_scores)
        if rerun_noise and len(seeds) >= 2:  # differences between two attackers on the same items: rerun noise
            pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
            variances = [bootstrap_se(sample.item_scores[a] - sample.item_scores[b], samples) ** 2 for a, b in pairs]
            paired = math.sqrt(float(np.mean(variances)) / len(seeds))
    return Uncertainty(mean=sample.mean, seeds=sample.seeds, items=None if means is None else int(means.size),
                       sd_seed=sd, se_seed=se_seed, se_items=se_items, se_items_paired=paired)


@dataclass
class Change:
    """The change of one cell between a baseline and a new run, with its standard error."""

    delta: float
    se: float
    paired: bool

    def interval(self, confidence: float) -> tuple[float, float]:
        half = z_value(confidence) * self.se
        return self.delta - half, self.delta + half


def compare_cells(baseline_mean: float, baseline_se_seed: float, baseline_items: np.ndarray | None, baseline_items_sha1: str | None,
                  baseline_se_items: float | None, current: CellSample, current_unc: Uncertainty,
                  samples: int = BOOTSTRAP_SAMPLES) -> Change:
    """Change current - baseline; paired over items when both scored the same items."""
    delta = current.mean - baseline_mean
    seed_var = baseline_se_seed**2 + current_unc.se_seed**2
    current_items = current.item_means()
    if (baseline_items is not None and current_items is not None and baseline_items_sha1 == current.items_sha1
            and baseline_items.size == current_items.size):
        return Change(delta, math.sqrt(seed_var + bootstrap_se(current_items - baseline_items, samples) ** 2), paired=True)
    item_var = (baseline_se_items or 0.0) ** 2 + (current_unc.se_items or 0.0) ** 2
    return Change(delta, math.sqrt(seed_var + item_var), paired=False)


def group_uncertainties(group: Group, rerun_noise: bool = True) -> dict[tuple[str, str, str], tuple[Uncertainty, CellSample]]:
    """Every complete cell's uncertainty and sample, the seed spread pooled per metric."""
    samples: dict[tuple[str, str, str], CellSample] = {}
    for (anonymizer, attack, metric), stats in group.cells.items():
        if stats.values and stats.complete:
            rows = [r for r in group.rows if r["anonymizer"] == anonymizer and r["attack"] == attack]
            samples[(anonymizer, attack, metric)] = cell_sample_from_rows(rows, metric)
    pooled = {m: pooled_seed_sd([s for k, s in samples.items() if k[2] == m]) for m in group.metrics}
    return {key: (uncertainty(sample, pooled[key[2]], rerun_noise=rerun_noise), sample) for key, sample in samples.items() if sample.values}
