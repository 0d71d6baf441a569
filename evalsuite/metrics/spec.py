"""What every metric declares: its direction, its category, its unit and how it aggregates.

Reports (bold best value, arrows), the CI gate (what counts as a regression) and the run
table all read these specs, so a metric's meaning is written down once::

    register_metric(MetricSpec("ssim", "SSIM between original and anonymized image",
                               higher_is_better=True, category="quality", unit="score"))

``higher_is_better`` is from the anonymizer's point of view: re-identification rates are
``False`` (lower is more private), SSIM is ``True``, FID is ``False``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from evalsuite.registry import METRICS

Category = Literal["privacy", "quality", "utility"]
Unit = Literal["rate", "score"]
Aggregation = Literal["mean"]


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric.

    - ``category``: ``privacy`` (re-identification, recognizer attention, leak rates),
      ``quality`` (fidelity and realism, landmark detection success included) or ``utility``
      (downstream tasks).
    - ``unit``: ``rate`` values lie in [0, 1] and are shown as percentages with one decimal;
      ``score`` values are shown as they are with ``decimals`` digits.
    - ``aggregation``: how seeds combine; ``mean`` reports mean ± standard error.
    """

    name: str
    description: str
    higher_is_better: bool
    category: Category
    unit: Unit = "rate"
    decimals: int = 1
    aggregation: Aggregation = "mean"
    label: str | None = None

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def arrow(self) -> str:
        """↑ when higher is better for the anonymizer, ↓ otherwise."""
        return "↑" if self.higher_is_better else "↓"

    def __call__(self) -> "MetricSpec":  # the registry builds entries by calling them
        return self


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to the METRICS registry (idempotent for an identical spec)."""
    if spec.name in METRICS:
        existing = METRICS.get(spec.name).build()
        if existing == spec:
            return spec
        raise ValueError(f"metric {spec.name!r} is registered twice with different specs: {existing} and {spec}")
    METRICS.add(spec.name, spec, description=spec.description)
    return spec


def metric_spec(name: str) -> MetricSpec | None:
    """The registered spec for ``name``, or None for a metric nobody declared."""
    if name not in METRICS:
        return None
    spec = METRICS.get(name).build()
    return spec if isinstance(spec, MetricSpec) else None
