"""Threat models: what the re-identification attacker trained on and what it matches.

- ``naive`` (UP-GAN "threat model I"): recognizer trained on the clean training split;
  anonymized queries are matched against the clean gallery.
- ``adaptive`` (UP-GAN "threat model II"): recognizer trained on the training split
  anonymized the same way; anonymized queries against the clean gallery.
- ``parrot`` (Newton et al., k-same): the attacker imitates the anonymizer everywhere:
  trained on the anonymized training split, and the gallery is anonymized too.
- ``none``: no attacker; protocols that measure the anonymized images themselves (quality,
  realism, downstream utility) run their grid with this single column.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from evalsuite.registry import ATTACKS

Source = Literal["clean", "anonymized"]


@dataclass(frozen=True)
class ThreatModel:
    """Which splits the attacker sees clean and which anonymized."""

    name: str
    train: Source
    query: Source
    gallery: Source


def _register(name: str, description: str, train: Source, gallery: Source) -> None:
    ATTACKS.add(name, functools.partial(ThreatModel, name=name, train=train, query="anonymized", gallery=gallery), description=description)


_register("naive", "threat model I: attacker trained on clean data; anonymized queries vs clean gallery", train="clean", gallery="clean")
_register("adaptive", "threat model II: attacker trained on anonymized data; anonymized queries vs clean gallery", train="anonymized", gallery="clean")
@dataclass(frozen=True)
class NoAttacker:
    """No attacker: the protocol measures the anonymized images themselves."""

    name: str = "none"


ATTACKS.add("none", NoAttacker, description="no attacker: quality, realism and utility protocols measure the anonymized images themselves")
_register("parrot", "parrot attack: attacker trained on anonymized data; anonymized queries vs anonymized gallery", train="anonymized", gallery="anonymized")
