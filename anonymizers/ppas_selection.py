"""PPAS: AnonymousNet's privacy-preserving attribute selection, as pure functions over attribute tables.

AnonymousNet (seed ``002``), Section 4 "Stage-II: Privacy-Aware Face Obfuscation" and its
Algorithm 1, with the privacy metrics of Section 3.2 (k-anonymity, entropy l-diversity,
Equations 3-4; t-closeness with the Earth Mover's Distance, Equation 5) and the
"Randomness" paragraph (a differential-privacy-style perturbation).

**What is what.** A *reference table* is the dataset's attribute table (one record per
image: in the ``ppas`` anonymizer the training split's attribute labels; the paper uses the
CelebA attribute distribution, its Figure 6). Its columns are split as in Section 3.2:

- *quasi-identifiers* (QIs): the attributes a released face shows and that, taken
  together, can single a person out (the paper's examples: eyeglasses, pointy nose, oval
  face, gender, hair colour). PPAS chooses the released value of each of them; the
  generator renders them. Binary or categorical (any values, compared for equality).
- *sensitive* attributes: what the release must not disclose through its equivalence class.
  Several columns form one categorical sensitive value (their tuple). They are not chosen
  by PPAS (the released face keeps its own).

The *equivalence class* of a QI vector ``q`` is the set of reference records whose QIs equal
``q``. A QI vector is *valid* for ``(k, l, t)`` when its class

- has at least ``k`` records (k-anonymity: the released vector is shared by >= k records);
- has sensitive-value entropy ``-sum p log p >= log l`` (entropy l-diversity, Eq. 3-4,
  natural logarithms; achieved ``l = exp(entropy)``);
- has ``EMD(S, S_E) <= t``, ``S`` the sensitive distribution of the whole table and ``S_E``
  the class's (t-closeness, Eq. 5). Ground distance (Li et al. 2007): ``equal`` (every two
  values at distance 1: EMD = total variation, half the L1 distance) or ``ordered`` (the sorted
  values on a line, neighbours 1/(m-1) apart: EMD = sum of |cumulative differences| / (m-1)).
  For one binary sensitive attribute both give ``|p_E - p|``.

**Algorithm 1, made to carry its guarantees.** The paper walks the attributes ``E_1..E_N``
and keeps ``E_i`` when ``d(S, S_{E_i}) <= t``, else releases ``not E_i``; then
``A'' = Perturbation(A', epsilon)``. It does not say which class ``S_{E_i}`` is, and a test on
a partial vector does not bound the class of the final one. Here the test of step ``i`` is on
the class the released vector will end in: keep the target's value ``E_i`` when some valid
QI vector agrees with the values chosen so far and with ``E_i``; otherwise take the other
value (binary: ``not E_i``; categorical: the value whose valid completions cover the most
reference records, ties to the smaller value). The attributes are walked in the order the
QIs are listed, so the earlier ones are kept in preference (the result is the valid vector
that agrees with the target on the longest possible prefix, lexicographically). The result
is always a valid vector, so the k / l / t guarantees hold exactly.

**Epsilon perturbation.** ``Perturbation(A', epsilon)`` is randomized response on each QI
(Warner 1965; the local form of epsilon-differential privacy the paper works toward): keep
the value with probability ``e^eps / (e^eps + m - 1)``, else draw one of the other ``m - 1``
values of that attribute (m = values seen in the table; binary: flip with probability
``1 / (1 + e^eps)``). The perturbed vector is then passed through the same selection again
(a valid vector selects itself), so the release keeps the k / l / t guarantees; selection is
post-processing, so it keeps the perturbation's privacy. ``epsilon=None`` skips it.

:func:`privacy_report` measures the achieved k / l / t of any released table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from evalsuite.errors import UserError

GROUNDS = ("equal", "ordered")
_TOL = 1e-12  # floating slack for the entropy and EMD comparisons


def check_params(k: Any, l: Any, t: Any, epsilon: Any, ground: Any = "equal", where: str = "ppas") -> None:
    """UserError (one line) unless k >= 1 (integer), l >= 1, 0 <= t <= 1, epsilon > 0 or None, ground known."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"{where}: k={k!r} must be an integer >= 1 (each released attribute vector is shared by at least k records); e.g. k=10")
    if isinstance(l, bool) or not isinstance(l, (int, float, np.number)) or not math.isfinite(l) or l < 1:
        raise UserError(f"{where}: l={l!r} must be a number >= 1 (entropy l-diversity: class entropy >= log l; 1 disables it); e.g. l=2")
    if isinstance(t, bool) or not isinstance(t, (int, float, np.number)) or not 0 <= t <= 1:
        raise UserError(f"{where}: t={t!r} must be a number in [0, 1] (t-closeness: EMD to the table's distribution <= t; 1 disables it); e.g. t=0.3")
    if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.number)) or not epsilon > 0 or not math.isfinite(epsilon)):
        raise UserError(f"{where}: epsilon={epsilon!r} must be a positive number (randomized response per attribute) or null for no perturbation; e.g. epsilon=3")
    if ground not in GROUNDS:
        raise UserError(f"{where}: ground={ground!r}: use one of {', '.join(GROUNDS)} (EMD ground distance of the sensitive values)")


# --------------------------------------------------------------------------- tables

def _columns(table: Any, columns: Sequence[Any], what: str) -> np.ndarray:
    """(N, len(columns)) object array of ``table``'s columns (names for a DataFrame, indices for an array)."""
    if isinstance(columns, (str, int, np.integer)):
        columns = [columns]
    if len(columns) == 0:
        raise UserError(f"ppas: no {what} attributes given; name at least one column")
    if hasattr(table, "columns") and hasattr(table, "to_numpy"):  # a pandas DataFrame
        missing = [c for c in columns if c not in table.columns]
        if missing:
            from evalsuite.errors import did_you_mean

            raise UserError(f"ppas: {what} attribute {missing[0]!r} is not a column of the attribute table: {did_you_mean(str(missing[0]), map(str, table.columns))}")
        return table[list(columns)].to_numpy(dtype=object)
    array = np.asarray(table, dtype=object)
    if array.ndim != 2:
        raise UserError(f"ppas: the attribute table must be 2-D (records x attributes), got shape {array.shape}")
    bad = [c for c in columns if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -array.shape[1] <= c < array.shape[1]]
    if bad:
        raise UserError(f"ppas: {what} column {bad[0]!r} is not a column index of a table with {array.shape[1]} columns")
    return array[:, list(columns)]


def _codes(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Integer codes (N,) of the rows of (N, c) ``values`` (a tuple when c > 1) and the sorted distinct values."""
    keys = [tuple(row) if values.shape[1] > 1 else row[0] for row in values]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for key in keys for v in (key if isinstance(key, tuple) else (key,))):
        raise UserError("ppas: the attribute table has missing values (None / NaN); give every record every attribute")
    distinct = sorted(set(keys), key=_order)
    index = {v: i for i, v in enumerate(distinct)}
    return np.array([index[key] for key in keys], dtype=np.int64), distinct


def _order(value: Any) -> tuple:
    """Sort key: numbers by value, then everything else by repr (mixed types never raise)."""
    if isinstance(value, tuple):
        return tuple(_order(v) for v in value)
    if isinstance(value, (bool, int, float, np.number)):
        return (0, float(value), "")
    return (1, 0.0, repr(value))


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a vector of counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def emd(p: np.ndarray, q: np.ndarray, ground: str = "equal") -> float:
    """Earth Mover's Distance between two distributions over the same sorted values (see the module docstring)."""
    if ground == "equal":
        return float(0.5 * np.abs(p - q).sum())
    if len(p) < 2:
        return 0.0
    return float(np.abs(np.cumsum(p - q)[:-1]).sum() / (len(p) - 1))


@dataclass(frozen=True)
class ClassStats:
    """Size, achieved l (exp of the entropy) and EMD to the table of each distinct QI vector."""

    vectors: np.ndarray  # (C, q) codes of the distinct QI vectors
    size: np.ndarray  # (C,)
    l: np.ndarray  # (C,)
    t: np.ndarray  # (C,)


def class_stats(qi_codes: np.ndarray, sensitive: np.ndarray, n_sensitive: int, ground: str = "equal",
                population: np.ndarray | None = None) -> ClassStats:
    """Per-equivalence-class statistics of coded QIs (N, q) and sensitive codes (N,).

    ``population``: the sensitive distribution EMD is measured to (default: the table's own)."""
    vectors, inverse = np.unique(qi_codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.zeros((len(vectors), n_sensitive), dtype=np.int64)
    np.add.at(counts, (inverse, sensitive), 1)
    overall = counts.sum(0) / counts.sum() if population is None else population
    size = counts.sum(1)
    ls = np.array([math.exp(entropy(c)) for c in counts])
    ts = np.array([emd(c / c.sum(), overall, ground) for c in counts])
    return ClassStats(vectors, size, ls, ts)


# --------------------------------------------------------------------------- selection

class PPAS:
    """The valid QI vectors of a reference table for ``(k, l, t)``; :meth:`select` runs Algorithm 1.

    ``table``: a pandas DataFrame (columns by name) or a 2-D array (columns by index);
    ``quasi_identifiers`` / ``sensitive``: its columns, in priority order for the QIs."""

    def __init__(self, table: Any, quasi_identifiers: Sequence[Any], sensitive: Sequence[Any], *, k: int, l: float = 1.0, t: float = 1.0,
                 epsilon: float | None = None, ground: str = "equal") -> None:
        check_params(k, l, t, epsilon, ground)
        self.k, self.l, self.t, self.epsilon, self.ground = int(k), float(l), float(t), None if epsilon is None else float(epsilon), ground
        qi = _columns(table, quasi_identifiers, "quasi-identifier")
        sens = _columns(table, sensitive, "sensitive")
        self.n_records = qi.shape[0]
        if self.n_records == 0:
            raise UserError("ppas: the attribute table has no records")
        #: the values each QI takes in the table (sorted); released values are always among them
        self.domains: list[list[Any]] = []
        codes = np.empty(qi.shape, dtype=np.int64)
        for j in range(qi.shape[1]):
            codes[:, j], domain = _codes(qi[:, j:j + 1])
            self.domains.append(domain)
        self.sensitive_codes, self.sensitive_values = _codes(sens)
        counts = np.bincount(self.sensitive_codes, minlength=len(self.sensitive_values))
        self.population = counts / counts.sum()
        self.stats = class_stats(codes, self.sensitive_codes, len(self.sensitive_values), ground)
        ok = (self.stats.size >= self.k) & (self.stats.l >= self.l - _TOL) & (self.stats.t <= self.t + _TOL)
        if not ok.any():
            raise UserError(
                f"ppas: no attribute vector of the table ({self.n_records} records, {len(self.stats.size)} distinct vectors) satisfies "
                f"k={self.k}, l={self.l:g}, t={self.t:g} (largest class {int(self.stats.size.max())}, best l {self.stats.l.max():.3g}, "
                f"smallest EMD {self.stats.t.min():.3g}); lower k or l, raise t, or use fewer quasi-identifiers")
        #: (V, q) codes of the valid vectors and the records each stands for
        self.valid = self.stats.vectors[ok]
        self.valid_size = self.stats.size[ok]

    def encode(self, vector: Sequence[Any]) -> np.ndarray:
        """Codes of a QI vector given in the table's values (UserError for a value the table lacks)."""
        values = list(vector)
        if len(values) != len(self.domains):
            raise UserError(f"ppas: the target vector has {len(values)} values, the table has {len(self.domains)} quasi-identifiers")
        out = np.empty(len(values), dtype=np.int64)
        for j, value in enumerate(values):
            hits = [i for i, v in enumerate(self.domains[j]) if v == value]
            if not hits:
                raise UserError(f"ppas: value {value!r} of quasi-identifier {j} does not occur in the table (its values: {self.domains[j]})")
            out[j] = hits[0]
        return out

    def decode(self, codes: np.ndarray) -> list[Any]:
        return [self.domains[j][int(c)] for j, c in enumerate(codes)]

    def project(self, codes: np.ndarray) -> np.ndarray:
        """The valid vector Algorithm 1 releases for coded target ``codes`` (no perturbation)."""
        alive = np.ones(len(self.valid), dtype=bool)
        for j, want in enumerate(codes):
            column = self.valid[:, j]
            if (alive & (column == want)).any():
                alive &= column == want
                continue
            options = np.unique(column[alive])
            cover = [int(self.valid_size[alive & (column == v)].sum()) for v in options]
            alive &= column == options[int(np.argmax(cover))]  # argmax: first (smallest) value among ties
        return self.valid[np.flatnonzero(alive)[0]].copy()

    def perturb(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Randomized response on each QI (see the module docstring); 2 draws per attribute, always."""
        if self.epsilon is None:
            return codes.copy()
        keep_draws = rng.random(len(codes))
        other_draws = rng.random(len(codes))
        out = codes.copy()
        for j, code in enumerate(codes):
            m = len(self.domains[j])
            if m < 2:
                continue
            keep = math.exp(self.epsilon) / (math.exp(self.epsilon) + m - 1)
            if keep_draws[j] >= keep:
                others = [v for v in range(m) if v != code]
                out[j] = others[min(int(other_draws[j] * (m - 1)), m - 2)]
        return out

    def select_codes(self, codes: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``A'' = Select(Perturbation(Select(A), epsilon))`` on coded vectors."""
        selected = self.project(np.asarray(codes, dtype=np.int64))
        if self.epsilon is None:
            return selected
        if rng is None:
            raise UserError("ppas: epsilon perturbation needs a seeded random generator")
        return self.project(self.perturb(selected, rng))

    def select(self, target: Sequence[Any], rng: np.random.Generator | None = None) -> list[Any]:
        """The released QI vector (in the table's values) for ``target``'s QIs."""
        return self.decode(self.select_codes(self.encode(target), rng))

    def guarantee(self, codes: np.ndarray) -> dict[str, float]:
        """The class size, achieved l and EMD in the reference table of a coded QI vector."""
        hit = np.flatnonzero((self.stats.vectors == np.asarray(codes)[None]).all(1))
        if len(hit) == 0:
            return {"k": 0, "l": 1.0, "t": 1.0}
        i = hit[0]
        return {"k": int(self.stats.size[i]), "l": float(self.stats.l[i]), "t": float(self.stats.t[i])}


def ppas_select(table: Any, quasi_identifiers: Sequence[Any], sensitive: Sequence[Any], target: Sequence[Any], *, k: int, l: float = 1.0,
                t: float = 1.0, epsilon: float | None = None, rng: np.random.Generator | None = None, ground: str = "equal") -> list[Any]:
    """The released QI vector for ``target`` (AnonymousNet Algorithm 1 under k / l / t, then epsilon perturbation)."""
    return PPAS(table, quasi_identifiers, sensitive, k=k, l=l, t=t, epsilon=epsilon, ground=ground).select(target, rng)


def privacy_report(released: Any, sensitive: Any, *, ground: str = "equal", population: Sequence[float] | None = None) -> dict[str, float]:
    """Achieved privacy of a released table: ``k`` (smallest class), ``l`` (exp of the smallest
    class entropy), ``t`` (largest EMD to ``population``, default the released table's own
    sensitive distribution over its sorted values) and ``classes`` (distinct QI vectors).

    ``released``: (N, q) released QI values; ``sensitive``: (N,) or (N, c) sensitive values."""
    if ground not in GROUNDS:
        raise UserError(f"ppas: ground={ground!r}: use one of {', '.join(GROUNDS)}")
    qi = np.asarray(released, dtype=object)
    sens = np.asarray(sensitive, dtype=object)
    if qi.ndim == 1:
        qi = qi[:, None]
    if sens.ndim == 1:
        sens = sens[:, None]
    if qi.shape[0] != sens.shape[0] or qi.shape[0] == 0:
        raise UserError(f"ppas: privacy_report needs one sensitive value per released record (got {qi.shape[0]} records, {sens.shape[0]} sensitive values)")
    codes = np.stack([_codes(qi[:, j:j + 1])[0] for j in range(qi.shape[1])], axis=1)
    sensitive_codes, values = _codes(sens)
    pop = None if population is None else np.asarray(population, dtype=np.float64)
    if pop is not None and pop.shape != (len(values),):
        raise UserError(f"ppas: population has {pop.shape[0] if pop.ndim else 0} probabilities for {len(values)} sensitive values")
    stats = class_stats(codes, sensitive_codes, len(values), ground, pop)
    return {"k": int(stats.size.min()), "l": float(stats.l.min()), "t": float(stats.t.max()), "classes": int(len(stats.size))}
