"""User-facing errors: the CLI prints them as one line and exits with code 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """Bad input from the user (paths, keys, component names, data). One line, exit 2."""

    exit_code = 2


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The valid names closest to ``name`` (for 'did you mean' hints)."""
    candidates = list(candidates)
    hits = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if not hits:
        hits = [c for c in candidates if name.lower() in c.lower() or c.lower() in name.lower()][:n]
    return hits


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A short 'did you mean ...' clause, or the list of valid names when nothing is close."""
    candidates = sorted(candidates)
    hits = closest(name, candidates)
    if hits:
        return "did you mean " + " or ".join(repr(h) for h in hits) + "?"
    return "valid names: " + ", ".join(candidates)
