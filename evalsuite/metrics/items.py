"""Per-item scores stored with a result row, so that uncertainty can be measured later.

A metric such as rank-1, mAP or top-1 is a mean over evaluated items (queries, probes).
A row keeps those per-item values under ``item_scores``::

    {"items": 253, "items_sha1": "...", "values": {"rank1": [0, 1, ...], "mAP": [0.1325, ...]}}

``items_sha1`` identifies the item list (e.g. the query paths), so that two rows are paired
item by item only when they scored the same items. The CI gate bootstraps over these items
(:mod:`evalsuite.reporting.intervals`).
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np

#: decimals kept for fractional per-item values (a mean of 10^4 items moves < 1e-5)
DECIMALS = 5


def items_fingerprint(item_ids: Sequence[str]) -> str:
    """A short hash of the ordered item identifiers."""
    digest = hashlib.sha1()
    for item in item_ids:
        digest.update(str(item).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def item_scores_entry(values: Mapping[str, np.ndarray], item_ids: Sequence[str]) -> dict[str, Any]:
    """The ``item_scores`` field of a row: per-metric per-item values, compactly."""
    lengths = {name: len(v) for name, v in values.items()}
    if len(set(lengths.values()) | {len(item_ids)}) != 1:
        raise ValueError(f"per-item values and item ids differ in length: {lengths}, {len(item_ids)} ids")
    stored: dict[str, list[float | int]] = {}
    for name, array in values.items():
        array = np.asarray(array, dtype=np.float64)
        if np.all((array == 0) | (array == 1)):
            stored[name] = array.astype(np.int8).tolist()
        else:
            stored[name] = np.round(array, DECIMALS).tolist()
    return {"items": len(item_ids), "items_sha1": items_fingerprint(item_ids), "values": stored}


def read_item_scores(row: Mapping[str, Any], metric: str) -> tuple[str, np.ndarray] | None:
    """``(items_sha1, values)`` of one metric in a row, or None when the row has none."""
    entry = row.get("item_scores")
    if not isinstance(entry, Mapping):
        return None
    values = entry.get("values", {}).get(metric)
    if values is None:
        return None
    return str(entry.get("items_sha1", "")), np.asarray(values, dtype=np.float64)
