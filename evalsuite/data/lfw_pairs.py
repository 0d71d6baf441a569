"""LFW verification pairs: read and write the official ``pairs.txt``, draw pairs for other face sets.

Formats read (whitespace separated; image numbers are 1-based):

- LFW's 10-fold ``pairs.txt``: a header ``"<folds> <n>"`` (``10 300``), then per fold ``n``
  matched lines ``name i j`` followed by ``n`` mismatched lines ``name1 i name2 j``;
- the single-set ``pairsDevTrain.txt`` / ``pairsDevTest.txt``: a header ``"<n>"``, then ``n``
  matched and ``n`` mismatched lines (read as one fold).

A pair names images by ``(identity, number)``: in the LFW layout the file
``<root>/<name>/<name>_<number:04d>.jpg``; in other face sets (CelebA layout, the synthetic
faces) the number is the image's rank within its identity, its files sorted by path
(:func:`image_numbers`). :func:`draw_pairs` makes pairs in the official format for any face
set with identities, so the protocol runs offline on the synthetic faces.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evalsuite.errors import UserError

LFW_NAME = re.compile(r"^(?P<name>.+)_(?P<number>\d{4})$")


@dataclass(frozen=True)
class Pair:
    """Two images ``(name1, number1)`` and ``(name2, number2)``; ``same``: one person."""

    name1: str
    number1: int
    name2: str
    number2: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2


def _pair(fields: list[str], where: str) -> Pair:
    try:
        if len(fields) == 3:
            return Pair(fields[0], int(fields[1]), fields[0], int(fields[2]))
        if len(fields) == 4:
            return Pair(fields[0], int(fields[1]), fields[2], int(fields[3]))
    except ValueError:
        pass
    raise UserError(f"{where}: expected 'name i j' (matched) or 'name1 i name2 j' (mismatched) with integer image numbers, "
                    f"got {' '.join(fields)!r}; use LFW's pairs.txt format")


def read_pairs(path: str | Path, key: str = "pairs.file") -> list[list[Pair]]:
    """The folds of a pairs file (each fold: its matched pairs, then its mismatched ones)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"pairs file {path} not found; set {key}=/path/to/pairs.txt (LFW's official 10-fold pairs.txt)")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines or not all(f.isdigit() for f in lines[0]) or len(lines[0]) not in (1, 2):
        raise UserError(f"{path}: the first line must be '<folds> <pairs per fold>' (LFW pairs.txt, e.g. '10 300') "
                        f"or '<pairs>' (pairsDevTest.txt); got {' '.join(lines[0]) if lines else 'an empty file'!r}")
    folds, n = (1, int(lines[0][0])) if len(lines[0]) == 1 else (int(lines[0][0]), int(lines[0][1]))
    body = lines[1:]
    if folds < 1 or n < 1 or len(body) != 2 * folds * n:
        raise UserError(f"{path}: the header promises {folds} fold(s) of {n} matched + {n} mismatched pairs "
                        f"({2 * folds * n} lines) but {len(body)} pair lines follow")
    out = []
    for f in range(folds):
        fold = [_pair(fields, f"{path} line {2 + 2 * f * n + k}") for k, fields in enumerate(body[2 * f * n:2 * (f + 1) * n])]
        wrong = next((k for k, p in enumerate(fold) if p.same != (k < n)), None)
        if wrong is not None:
            kind = "matched (name i j)" if wrong < n else "mismatched (name1 i name2 j, two people)"
            raise UserError(f"{path} line {2 + 2 * f * n + wrong}: fold {f + 1} expects a {kind} pair there; "
                            "each fold lists its matched pairs, then its mismatched ones")
        out.append(fold)
    return out


def write_pairs(path: str | Path, folds: Sequence[Sequence[Pair]]) -> Path:
    """Write ``folds`` (equal sizes, matched pairs first) in the official 10-fold format."""
    n = sum(p.same for p in folds[0])
    lines = [f"{len(folds)} {n}"]
    for fold in folds:
        if sum(p.same for p in fold) != n or len(fold) != 2 * n:
            raise ValueError("every fold must hold the same number of matched and mismatched pairs")
        lines += [f"{p.name1}\t{p.number1}\t{p.number2}" if p.same else f"{p.name1}\t{p.number1}\t{p.name2}\t{p.number2}"
                  for p in sorted(fold, key=lambda p: not p.same)]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def image_numbers(samples: Sequence[Any]) -> dict[tuple[str, int], int]:
    """``(identity, number) -> index`` into ``samples``: LFW file names ``<name>_<number:04d>``
    give the number; otherwise it is the 1-based rank among the identity's files sorted by path."""
    ranks: dict[str, list[int]] = {}
    for index in sorted(range(len(samples)), key=lambda k: samples[k].path):
        ranks.setdefault(samples[index].identity, []).append(index)
    out = {}
    for identity, indices in ranks.items():
        for rank, index in enumerate(indices, start=1):
            match = LFW_NAME.match(Path(samples[index].path).stem)
            number = int(match["number"]) if match and match["name"] == identity else rank
            out[(identity, number)] = index
    return out


def draw_pairs(counts: dict[str, int], folds: int, per_fold: int, seed: int) -> list[list[Pair]]:
    """Folds of ``per_fold`` matched and ``per_fold`` mismatched pairs over identities with
    ``counts[name]`` images, people disjoint across folds (as in LFW); seeded, without repeats
    (a mismatched pair and its reverse count as one)."""
    names = sorted(counts)
    rng = np.random.default_rng(seed)
    order = [names[k] for k in rng.permutation(len(names))]
    groups = [sorted(order[f::folds]) for f in range(folds)]
    out = []
    for f, people in enumerate(groups):
        repeated = [p for p in people if counts[p] >= 2]
        matched_room = sum(counts[p] * (counts[p] - 1) // 2 for p in repeated)
        mismatched_room = (sum(counts[p] for p in people) ** 2 - sum(counts[p] ** 2 for p in people)) // 2
        if min(matched_room, mismatched_room) < per_fold:
            raise UserError(f"cannot draw {per_fold} matched and {per_fold} mismatched pairs for fold {f + 1} of {folds} from "
                            f"{len(people)} people ({matched_room} matched, {mismatched_room} mismatched possible); "
                            "lower pairs.per_fold or pairs.folds, or use a dataset with more identities")
        chosen: dict[tuple, Pair] = {}
        while len(chosen) < per_fold:
            name = repeated[int(rng.integers(len(repeated)))]
            i, j = sorted(int(v) + 1 for v in rng.choice(counts[name], size=2, replace=False))
            chosen.setdefault((name, i, j), Pair(name, i, name, j))
        mismatched: dict[tuple, Pair] = {}
        while len(mismatched) < per_fold:  # in a random order: with pairs.anonymize=one the second image is the anonymized one
            a, b = (people[int(k)] for k in rng.choice(len(people), size=2, replace=False))
            i, j = int(rng.integers(counts[a])) + 1, int(rng.integers(counts[b])) + 1
            mismatched.setdefault(tuple(sorted([(a, i), (b, j)])), Pair(a, i, b, j))
        out.append(list(chosen.values()) + list(mismatched.values()))
    return out
