"""Re-identification ranking metrics (CMC, mAP, official Market-1501 AP, mINP) and distances.

Semantics follow torchreid's ``eval_market1501`` exactly: for each query the gallery is
ranked with ``np.argsort(distmat, axis=1)``, gallery items with the query's pid AND camera
are removed ("junk"), queries with no remaining match are skipped, CMC is cumulative and
clipped at 1 and AP is the non-interpolated mean of the precision at each hit. On top of that:

- ``mAP_official``: the trapezoidal AP of the official Market-1501 evaluation code
  (Zheng et al., ``compute_AP.m``; ``old_precision`` starts at 1): each hit adds
  ``(1 / n_good) * (precision_before_hit + precision_at_hit) / 2``. Always <= ``mAP``.
  Averaged over the valid queries (the same ones as ``mAP``), on torchreid's ranking.
- ``mINP``: mean inverse negative penalty (Ye et al., 2021): for each valid query, the
  number of matches divided by the (1-based) rank of its hardest match.

How it is computed (``method="count"``, the default): every metric depends only on the
kept (junk-removed) rank of each good match, and the kept rank of a match at distance ``v``
is the number of kept non-matches with a distance ``< v`` plus the number of matches ranked
before it. So instead of argsorting each row (what torchreid does) the rows are sorted by
value (``np.sort``, about 4x cheaper than ``np.argsort``) and each match is located with two
binary searches (``np.searchsorted`` on its sorted row). All single-threaded numpy. A query's matches are found
from the gallery grouped by pid, not by comparing every gallery pid.

Ties, precisely. torchreid breaks ties by whatever order ``np.argsort``'s default
(``kind="quicksort"``: introsort, or x86-simd-sort on AVX-512/AVX2 CPUs; not stable) gives.
Of all tied pairs, only a good match tied with a kept non-match can change a metric: the
order among tied matches, or between a match and junk (removed anyway), leaves the set of
kept ranks of the matches unchanged. Rows with such a match/non-match tie (found exactly:
the number of values equal to a match's distance in the sorted row exceeds the number of
that query's matches and junk at that distance), and rows holding a NaN, are ranked with the
very ``np.argsort`` call torchreid makes (``method="argsort"`` does that for every row).
Either way the result is torchreid's ranking, and both methods return the same numbers bit
for bit. Distance dtypes other than float32/64, int8-64 and uint8 always take the argsort path.

The evaluation runs over chunks of query rows, so memory stays bounded (about
``chunk_size * num_gallery * itemsize`` bytes on top of the distance matrix for the sorted
rows; the argsort path holds about ``chunk_size * num_gallery * 10`` bytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evalsuite.metrics.spec import MetricSpec, register_metric

__all__ = ["REID_METRICS", "ReidScores", "evaluate_reid", "pairwise_distance"]

REID_METRICS: tuple[str, ...] = ("rank1", "rank5", "rank10", "mAP", "mAP_official", "mINP")

DEFAULT_EVAL_CHUNK = 256
DEFAULT_DISTANCE_CHUNK = 1024


@dataclass(frozen=True)
class ReidScores:
    """Ranking metrics of one query/gallery evaluation; every value is a fraction in [0, 1]."""

    cmc: np.ndarray = field(compare=False, repr=False)  # (max_rank,), cmc[k] = rank-(k+1) accuracy
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mAP_official: float
    mINP: float
    num_valid_queries: int
    num_queries: int
    #: per valid query: 0-based rank of the first match, AP, official AP, INP (for bootstraps)
    per_query: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    #: indices (into the query list) of the valid queries, the rows of ``per_query``
    valid_queries: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), compare=False, repr=False)

    def as_dict(self) -> dict[str, float]:
        """``{rank1, rank5, rank10, mAP, mAP_official, mINP}`` as python floats."""
        return {name: float(getattr(self, name)) for name in REID_METRICS}

    def item_scores(self) -> dict[str, np.ndarray]:
        """Per valid query, the value whose mean over queries is each metric (rank-k: 0/1)."""
        first = self.per_query["first_rank"]
        return {
            "rank1": (first < 1).astype(np.float64),
            "rank5": (first < 5).astype(np.float64),
            "rank10": (first < 10).astype(np.float64),
            "mAP": self.per_query["ap"],
            "mAP_official": self.per_query["ap_official"],
            "mINP": self.per_query["inp"],
        }


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array, got dtype=object")
    return arr


def _to_1d(x: Any, name: str, length: int) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D array of length {length}, got shape {arr.shape}")
    return arr


def _segment_starts(rows: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row counts and start offsets of a row-sorted list of row indices."""
    counts = np.bincount(rows, minlength=num_rows)
    starts = np.zeros(num_rows, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return counts, starts


def _ranks_by_argsort(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Row and 0-based kept rank of every good match, ranking each row with torchreid's own argsort.

    The reference path: used for rows where a match ties a kept non-match, or NaN rows,
    or dtypes the counting path does not take. Sorted by row, then rank.
    """
    n = dist.shape[0]
    order = np.argsort(dist, axis=1)  # the exact call torchreid makes: same tie-breaking
    same_pid = np.take_along_axis(q_pids[:, None] == g_pids[None, :], order, axis=1)
    rows, ranks = np.nonzero(same_pid)  # row-major: grouped by query, ascending rank
    del same_pid
    junk = g_camids[order[rows, ranks]] == q_camids[rows]  # same pid and same camera
    del order

    # Rank among the kept gallery items = raw rank - junk items ranked before it in its row.
    junk_before = np.cumsum(junk) - junk
    _, starts = _segment_starts(rows, n)
    junk_before -= junk_before[starts[rows]]
    good = ~junk
    return rows[good], ranks[good] - junk_before[good]


#: distance dtypes the counting path sorts and searches as they are
_COUNTING_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int64, np.int32, np.int16, np.int8, np.uint8))


class _GalleryIndex:
    """The gallery grouped by pid, to list each query's same-pid gallery items without a full row compare."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray) -> None:
        self.order = np.argsort(g_pids, kind="stable")
        self.sorted_pids = g_pids[self.order]
        self.g_pids = g_pids
        self.g_camids = g_camids

    def same_pid(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, gallery column) of every gallery item with the pid of query row ``row``."""
        lo = np.searchsorted(self.sorted_pids, q_pids, side="left")
        counts = np.searchsorted(self.sorted_pids, q_pids, side="right") - lo
        rows = np.repeat(np.arange(q_pids.shape[0]), counts)
        within = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.order[np.repeat(lo, counts) + within]


def _ranks_by_counting(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    gallery: _GalleryIndex,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept ranks of the good matches from counts of smaller distances, without an argsort.

    The kept rank of a good match at distance ``v`` (0-based, junk removed) is the number of
    kept non-matches with a distance ``< v``, plus the matches ranked before it. That needs
    the rows sorted by value only (``np.sort``, much cheaper than ``np.argsort``) and two
    binary searches per match (``np.searchsorted`` on the sorted row). It is exact whenever
    no kept non-match has exactly the distance of a match: the order among tied matches, or
    between matches and junk, changes no metric. Rows where a kept non-match ties a match (or holding NaN) are returned in
    ``tied_rows`` and must be ranked by :func:`_ranks_by_argsort`.

    Returns (rows, kept ranks) of the untied rows' good matches, sorted by row then rank,
    and the tied rows.
    """
    n = dist.shape[0]
    rows, cols = gallery.same_pid(q_pids)
    values = dist[rows, cols]
    junk = gallery.g_camids[cols] == q_camids[rows]
    # by row, then distance; at equal distance matches before junk (junk_before counts only smaller junk)
    order = np.lexsort((junk, values, rows))
    rows, values, junk = rows[order], values[order], junk[order]
    run_start = np.ones(rows.size, dtype=bool)
    run_start[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
    run_id = np.cumsum(run_start) - 1
    run_length = np.bincount(run_id)[run_id]  # matches and junk sharing this row and distance
    junk_before = np.cumsum(junk) - junk
    _, starts = _segment_starts(rows, n)
    junk_before -= junk_before[starts[rows]]

    good = ~junk
    rows, values, junk_less, run_length = rows[good], values[good], junk_before[good], run_length[good]
    num_good, starts = _segment_starts(rows, n)
    index = np.arange(rows.size)
    within = index - starts[rows]  # 0-based index of the match among its row's matches
    group_start = np.ones(rows.size, dtype=bool)
    group_start[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
    matches_less = np.maximum.accumulate(np.where(group_start, index, 0)) - starts[rows]

    sorted_values = np.array(dist, order="C")  # a C-contiguous copy, sorted in place
    sorted_values.sort(axis=1)
    less = np.empty(rows.size, dtype=np.int64)  # distances < the match's, in its row
    less_equal = np.empty(rows.size, dtype=np.int64)  # distances <= the match's
    for row in np.flatnonzero(num_good):  # numpy per row: no thread pool to wait on under load
        segment = slice(starts[row], starts[row] + num_good[row])
        less[segment] = sorted_values[row].searchsorted(values[segment], side="left")
        less_equal[segment] = sorted_values[row].searchsorted(values[segment], side="right")

    tied = np.zeros(n, dtype=bool)
    tied[rows[less_equal - less != run_length]] = True  # a kept non-match has a match's distance
    if dist.dtype.kind == "f":
        tied |= np.isnan(sorted_values[:, -1])  # NaN sorts last
    kept_rank = less - junk_less - matches_less + within
    keep = ~tied[rows]
    return rows[keep], kept_rank[keep], np.flatnonzero(tied)


def _scores_from_ranks(
    rows: np.ndarray, kept_rank: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First-hit rank, AP, official AP, INP and row index of the valid queries, from the good
    matches' (row, 0-based kept rank) sorted by row then rank."""
    kept_rank = kept_rank.astype(np.float64)
    num_good, starts = _segment_starts(rows, n)
    hit = np.arange(rows.size) - starts[rows]  # 0-based index of the hit within its query
    precision = (hit + 1) / (kept_rank + 1)
    precision_before = np.divide(hit, kept_rank, out=np.ones_like(kept_rank), where=kept_rank > 0)

    valid = num_good > 0
    denom = np.maximum(num_good, 1)
    ap = np.bincount(rows, weights=precision, minlength=n) / denom
    ap_official = np.bincount(rows, weights=(precision_before + precision) / 2, minlength=n) / denom
    first_rank = kept_rank[starts[valid]]
    last_rank = kept_rank[starts[valid] + num_good[valid] - 1]
    inp = num_good[valid] / (last_rank + 1)
    return first_rank.astype(np.int64), ap[valid], ap_official[valid], inp, np.flatnonzero(valid)


def _evaluate_chunk(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    gallery: _GalleryIndex,
    method: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First-hit rank, AP, official AP, INP and row index of the valid queries of one chunk of rows."""
    n = dist.shape[0]
    if method == "argsort" or dist.dtype not in _COUNTING_DTYPES:
        rows, kept_rank = _ranks_by_argsort(dist, q_pids, q_camids, gallery.g_pids, gallery.g_camids)
        return _scores_from_ranks(rows, kept_rank, n)
    rows, kept_rank, tied = _ranks_by_counting(dist, q_pids, q_camids, gallery)
    if tied.size:
        tied_rows, tied_rank = _ranks_by_argsort(dist[tied], q_pids[tied], q_camids[tied], gallery.g_pids, gallery.g_camids)
        rows = np.concatenate([rows, tied[tied_rows]])
        kept_rank = np.concatenate([kept_rank, tied_rank])
        order = np.argsort(rows, kind="stable")  # each row's ranks stay ascending
        rows, kept_rank = rows[order], kept_rank[order]
    return _scores_from_ranks(rows, kept_rank, n)


def evaluate_reid(
    distmat: np.ndarray | torch.Tensor,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    chunk_size: int = DEFAULT_EVAL_CHUNK,
    method: str = "count",
) -> ReidScores:
    """Market-1501 style evaluation of a (num_query, num_gallery) distance matrix.

    Gives the same CMC and mAP as ``torchreid.metrics.evaluate_rank(...,
    use_metric_cuhk03=False)``, plus the official trapezoidal mAP and mINP. As in torchreid,
    ``max_rank`` is reduced to the gallery size when the gallery is smaller. ``chunk_size``
    query rows are ranked at a time; it changes memory use, never the result.
    ``method="count"`` (default) ranks matches by counting smaller distances and falls back
    to torchreid's argsort only on rows with a match/non-match tie; ``method="argsort"``
    argsorts every row as torchreid does. Both give the same result, bit for bit (see the
    module docstring). Raises ValueError when no query has a match left in the gallery.
    """
    dist = _to_numpy(distmat, "distmat")
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {dist.shape}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat is empty (shape {dist.shape})")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if method not in ("count", "argsort"):
        raise ValueError(f"method must be 'count' or 'argsort', got {method!r}")
    qp = _to_1d(q_pids, "q_pids", num_q)
    gp = _to_1d(g_pids, "g_pids", num_g)
    qc = _to_1d(q_camids, "q_camids", num_q)
    gc = _to_1d(g_camids, "g_camids", num_g)
    max_rank = min(max_rank, num_g)

    gallery = _GalleryIndex(gp, gc)
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        *scores, rows = _evaluate_chunk(dist[start:stop], qp[start:stop], qc[start:stop], gallery, method)
        parts.append((*scores, rows + start))
    first_rank, ap, ap_official, inp, valid_rows = (np.concatenate(p) for p in zip(*parts))

    num_valid = int(first_rank.size)
    if num_valid == 0:
        raise ValueError(
            "no valid query: for every query, all gallery items with its pid share its camera "
            "(or its pid is absent from the gallery), so there is nothing to retrieve"
        )
    hist = np.bincount(np.minimum(first_rank, max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / num_valid
    cmc.setflags(write=False)

    def rank_k(k: int) -> float:
        return float(np.count_nonzero(first_rank < k) / num_valid)

    return ReidScores(
        cmc=cmc,
        rank1=rank_k(1),
        rank5=rank_k(5),
        rank10=rank_k(10),
        mAP=float(ap.mean()),
        mAP_official=float(ap_official.mean()),
        mINP=float(inp.mean()),
        num_valid_queries=num_valid,
        num_queries=num_q,
        per_query={"first_rank": first_rank, "ap": ap, "ap_official": ap_official, "inp": inp},
        valid_queries=valid_rows,
    )


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (num_items, feature_dim), got shape {tuple(t.shape)}")
    return t if t.is_floating_point() else t.float()


@torch.no_grad()
def pairwise_distance(
    query_features: np.ndarray | torch.Tensor,
    gallery_features: np.ndarray | torch.Tensor,
    metric: str = "euclidean",
    chunk_size: int = DEFAULT_DISTANCE_CHUNK,
) -> np.ndarray:
    """(num_query, num_gallery) distances as torchreid's ``compute_distance_matrix`` defines them.

    ``"euclidean"`` is the squared euclidean distance ``|q|^2 + |g|^2 - 2 q.g`` (computed as
    torchreid does), ``"cosine"`` is ``1 - cosine similarity``. Runs on the features' device,
    ``chunk_size`` query rows at a time, and returns a numpy array (float64 for float64
    features, float32 otherwise).
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"unknown distance metric {metric!r}: choose 'euclidean' or 'cosine'")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    q = _as_float_tensor(query_features, "query_features")
    g = _as_float_tensor(gallery_features, "gallery_features")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: query {q.shape[1]} vs gallery {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    if dtype not in (torch.float32, torch.float64):  # half types: compute in float32
        dtype = torch.float32
    q, g = q.to(dtype), g.to(device=q.device, dtype=dtype)

    if metric == "cosine":
        g = F.normalize(g, p=2, dim=1)
    else:
        g_sq = torch.pow(g, 2).sum(dim=1, keepdim=True).t()  # (1, num_gallery)
    gt = g.t()
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float64 if dtype == torch.float64 else np.float32)
    out_t = torch.from_numpy(out)
    on_cpu = q.device.type == "cpu"
    for start in range(0, q.shape[0], chunk_size):
        qc = q[start : start + chunk_size]
        # on CPU write straight into the (contiguous) output rows; elsewhere copy each chunk back
        d = out_t[start : start + qc.shape[0]] if on_cpu else None
        if metric == "cosine":
            d = torch.mm(F.normalize(qc, p=2, dim=1), gt, out=d).neg_().add_(1)
        else:
            d = torch.add(torch.pow(qc, 2).sum(dim=1, keepdim=True), g_sq, out=d)
            d.addmm_(qc, gt, beta=1, alpha=-2)
        if not on_cpu:
            out_t[start : start + qc.shape[0]] = d.cpu()
    return out


_DESCRIPTIONS = {
    "rank1": ("R1", "Re-id rank-1 (CMC@1): share of queries whose closest valid gallery image has their identity"),
    "rank5": ("R5", "Re-id rank-5 (CMC@5): share of queries with a correct match among the 5 closest gallery images"),
    "rank10": ("R10", "Re-id rank-10 (CMC@10): share of queries with a correct match among the 10 closest gallery images"),
    "mAP": ("mAP", "Re-id mean average precision, non-interpolated (torchreid convention)"),
    "mAP_official": ("mAP (official)", "Re-id mean average precision, trapezoidal (official Market-1501 evaluation code)"),
    "mINP": ("mINP", "Re-id mean inverse negative penalty (Ye et al.): matches / rank of the hardest match"),
}

for _name in REID_METRICS:
    _label, _description = _DESCRIPTIONS[_name]
    register_metric(MetricSpec(_name, _description, higher_is_better=False, category="privacy", unit="rate", label=_label))
