"""PPAS (AnonymousNet Algorithm 1) on hand-made tables whose answers are computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from anonymizers.ppas_selection import PPAS, emd, ppas_select, privacy_report
from evalsuite.errors import UserError

# QIs A, B and sensitive S (11 records, 6 with S = 1: overall p1 = 6/11). Classes:
#   (0,0): S = 0,0,0,1  size 4, p1 = 1/4, l = exp(H(3/4, 1/4)) = 1.755, EMD |1/4 - 6/11| = 13/44 = 0.295
#   (0,1): S = 0,1      size 2, p1 = 1/2, l = 2,                        EMD 1/22 = 0.045
#   (1,0): S = 1,1      size 2, p1 = 1,   l = 1,                        EMD 5/11 = 0.455
#   (1,1): S = 0,1,1    size 3, p1 = 2/3, l = exp(H(1/3, 2/3)) = 1.890, EMD 4/33 = 0.121
ROWS = [(0, 0, 0)] * 3 + [(0, 0, 1)] + [(0, 1, 0), (0, 1, 1)] + [(1, 0, 1)] * 2 + [(1, 1, 0)] + [(1, 1, 1)] * 2
TABLE = pd.DataFrame(ROWS, columns=["A", "B", "S"])


def _h(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def select(target, **kw):
    params = {"k": 1, "l": 1.0, "t": 1.0, **kw}
    order = params.pop("order", ["A", "B"])
    return ppas_select(TABLE, order, ["S"], target, **params)


def test_class_statistics_match_the_hand_computation():
    stats = PPAS(TABLE, ["A", "B"], ["S"], k=1).stats
    assert stats.vectors.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert stats.size.tolist() == [4, 2, 2, 3]
    assert stats.l == pytest.approx([math.exp(_h(0.75, 0.25)), 2.0, 1.0, math.exp(_h(1 / 3, 2 / 3))])
    assert stats.t == pytest.approx([13 / 44, 1 / 22, 5 / 11, 4 / 33])


@pytest.mark.parametrize("target", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_without_constraints_the_target_is_released(target):
    assert select(list(target)) == list(target)


@pytest.mark.parametrize("params, target, expected", [
    ({"k": 3}, (1, 0), [1, 1]),  # valid {(0,0), (1,1)}: keep A=1, then B must flip
    ({"k": 3}, (0, 1), [0, 0]),  # keep A=0, flip B
    ({"k": 3}, (0, 0), [0, 0]),  # a valid target is released unchanged
    # vectors in the order of the QIs: (B, A). B first: person A=0, B=1 keeps B=1 and A flips,
    # where A first (above, target (0, 1)) kept A=0 and flipped B
    ({"k": 3, "order": ["B", "A"]}, (1, 0), [1, 1]),
    ({"k": 3, "order": ["B", "A"]}, (0, 1), [0, 0]),
    ({"k": 2, "l": 1.8}, (0, 0), [0, 1]),  # valid {(0,1) l=2, (1,1) l=1.89}
    ({"k": 2, "l": 1.8}, (1, 0), [1, 1]),
    ({"k": 2, "t": 0.2}, (0, 0), [0, 1]),  # valid {(0,1) EMD .045, (1,1) EMD .121}
    ({"k": 2, "t": 0.2}, (1, 0), [1, 1]),
    ({"k": 2, "t": 0.1}, (1, 1), [0, 1]),  # only (0,1): EMD .045 <= .1 < .121
    ({"k": 2, "l": 1.9}, (1, 1), [0, 1]),  # only (0,1) (l = 2): A flips although (1,1) was asked
])
def test_selected_vectors(params, target, expected):
    order = params.get("order", ["A", "B"])
    released = select(list(target), **params)
    assert released == expected
    # the guarantees hold for the class the released vector falls in
    p = PPAS(TABLE, order, ["S"], k=params["k"], l=params.get("l", 1.0), t=params.get("t", 1.0))
    got = p.guarantee(p.encode(released))
    assert got["k"] >= params["k"] and got["l"] >= params.get("l", 1.0) - 1e-12 and got["t"] <= params.get("t", 1.0) + 1e-12


def test_infeasible_constraints_are_one_line_user_errors():
    with pytest.raises(UserError, match="no attribute vector") as info:
        select([0, 0], k=2, t=0.04)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no attribute vector"):
        select([0, 0], k=5)


@pytest.mark.parametrize("params, match", [
    ({"k": 0}, "k=0"), ({"k": 2.5}, "k=2.5"), ({"k": True}, "k=True"), ({"l": 0.5}, "l=0.5"), ({"l": float("nan")}, "l=nan"),
    ({"t": 1.5}, "t=1.5"), ({"t": -0.1}, "t=-0.1"), ({"epsilon": 0}, "epsilon=0"), ({"epsilon": -1.0}, "epsilon=-1.0"),
    ({"ground": "euclid"}, "ground="),
])
def test_bad_parameters_are_one_line_user_errors(params, match):
    with pytest.raises(UserError, match=match) as info:
        select([0, 0], rng=np.random.default_rng(0), **params)
    assert "\n" not in str(info.value)


def test_bad_columns_and_values_are_user_errors():
    with pytest.raises(UserError, match="'C' is not a column"):
        ppas_select(TABLE, ["A", "C"], ["S"], [0, 0], k=1)
    with pytest.raises(UserError, match="value 2 of quasi-identifier 1"):
        select([0, 2])
    with pytest.raises(UserError, match="2 quasi-identifiers"):
        select([0])


def test_numpy_tables_and_categorical_quasi_identifiers():
    # QI "hair" with 3 values, one binary QI; sensitive column 2. Classes (hair, glasses):
    # (black,0) x3 S=0,1,1 | (blond,0) x1 | (brown,1) x3 S=0,0,1 | (brown,0) x1
    rows = [["black", 0, 0], ["black", 0, 1], ["black", 0, 1], ["blond", 0, 1], ["brown", 1, 0], ["brown", 1, 0], ["brown", 1, 1], ["brown", 0, 0]]
    table = np.array(rows, dtype=object)
    # k=3: valid (black,0), (brown,1). Target (blond,0): no valid vector has blond; of the others,
    # black covers 3 records and brown 3: tie -> the smaller value, black; then glasses 0 is kept.
    assert ppas_select(table, [0, 1], [2], ["blond", 0], k=3) == ["black", 0]
    # target (brown, 0): keep brown, glasses must become 1
    assert ppas_select(table, [0, 1], [2], ["brown", 0], k=3) == ["brown", 1]


def test_epsilon_perturbation_flips_at_the_randomized_response_rate_and_keeps_the_guarantees():
    rng = np.random.default_rng(0)
    epsilon = math.log(3)  # binary flip probability 1 / (1 + 3) = 0.25
    p = PPAS(TABLE, ["A", "B"], ["S"], k=1, epsilon=epsilon)
    draws = np.array([p.select([0, 0], rng) for _ in range(20000)])
    assert draws[:, 0].mean() == pytest.approx(0.25, abs=0.01)
    assert draws[:, 1].mean() == pytest.approx(0.25, abs=0.01)
    # with k=3 every release is one of the two valid vectors, whatever the flips
    strict = PPAS(TABLE, ["A", "B"], ["S"], k=3, epsilon=epsilon)
    released = {tuple(strict.select([1, 0], rng)) for _ in range(2000)}
    assert released == {(0, 0), (1, 1)}


def test_same_seed_same_perturbation():
    p = PPAS(TABLE, ["A", "B"], ["S"], k=1, epsilon=0.5)
    a = [p.select([0, 1], np.random.default_rng(7)) for _ in range(1)] + [p.select([1, 1], np.random.default_rng(8))]
    b = [p.select([0, 1], np.random.default_rng(7)) for _ in range(1)] + [p.select([1, 1], np.random.default_rng(8))]
    assert a == b
    with pytest.raises(UserError, match="seeded random generator"):
        p.select([0, 1])


def test_emd_ground_distances():
    uniform, point = np.full(3, 1 / 3), np.array([1.0, 0.0, 0.0])
    assert emd(point, uniform, "equal") == pytest.approx(2 / 3)  # half of 2/3 + 1/3 + 1/3
    assert emd(point, uniform, "ordered") == pytest.approx(0.5)  # (|2/3| + |1/3|) / 2
    assert emd(np.array([0.2, 0.8]), np.array([0.6, 0.4]), "ordered") == pytest.approx(0.4)


def test_privacy_report_of_a_released_table():
    released = [[0, 0], [0, 0], [0, 0], [1, 1], [1, 1]]
    sensitive = ["x", "y", "y", "x", "y"]
    report = privacy_report(released, sensitive)
    # classes: (0,0) size 3, p(y) = 2/3, l = exp(H(1/3,2/3)), EMD |2/3 - 3/5|; (1,1) size 2, l = 2, EMD |1/2 - 3/5|
    assert report["k"] == 2 and report["classes"] == 2
    assert report["l"] == pytest.approx(math.exp(_h(1 / 3, 2 / 3)))
    assert report["t"] == pytest.approx(0.1)
    assert privacy_report(released, sensitive, population=[0.5, 0.5])["t"] == pytest.approx(1 / 6)
    # the released table of PPAS with k=3 is k-anonymous against the reference table
    p = PPAS(TABLE, ["A", "B"], ["S"], k=3)
    out = [p.select(list(r[:2])) for r in ROWS]
    assert PPAS(pd.DataFrame([o + [s] for o, (_, _, s) in zip(out, ROWS)]), [0, 1], [2], k=1).stats.size.min() >= 3
