"""Threat models: what the re-identification attacker trained on and what it matches.

- ``naive`` (UP-GAN "threat model I"): recognizer trained on the clean training split;
  anonymized queries are matched against the clean gallery.
- ``adaptive`` (UP-GAN "threat model II"): recognizer trained on the training split
  anonymized the same way; anonymized queries against the clean gallery.
- ``parrot`` (Newton et al., k-same): the attacker imitates the anonymizer everywhere:
  trained on the anonymized training split, and the gallery is anonymized too.
- ``reconstruction`` (Fantômas; SEBA): a de-anonymizer (``attacks/reconstruction.py``) is
  trained on (anonymized, original) pairs of the training split and undoes the anonymizer
  on the queries (and the gallery, where it is anonymized) before the recognizer trained
  on clean data matches them.
- ``reconstruction-adaptive``: the same, with a recognizer trained on the de-anonymizer's
  reconstructions of the anonymized training split.
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
    #: anonymized images pass through the de-anonymizer first (and an ``anonymized`` training
    #: split is its reconstructions)
    reconstruct: bool = False


def _register(name: str, description: str, train: Source, gallery: Source, reconstruct: bool = False) -> None:
    ATTACKS.add(name, functools.partial(ThreatModel, name=name, train=train, query="anonymized", gallery=gallery, reconstruct=reconstruct),
                description=description)


_register("naive", "threat model I: attacker trained on clean data; anonymized queries vs clean gallery", train="clean", gallery="clean")
_register("adaptive", "threat model II: attacker trained on anonymized data; anonymized queries vs clean gallery", train="anonymized", gallery="clean")
@dataclass(frozen=True)
class NoAttacker:
    """No attacker: the protocol measures the anonymized images themselves."""

    name: str = "none"


ATTACKS.add("none", NoAttacker, description="no attacker: quality, realism and utility protocols measure the anonymized images themselves")
_register("parrot", "parrot attack: attacker trained on anonymized data; anonymized queries vs anonymized gallery", train="anonymized", gallery="anonymized")
_register("reconstruction", "a de-anonymizer trained on (anonymized, original) training pairs undoes the anonymizer; clean-trained attacker",
          train="clean", gallery="clean", reconstruct=True)
_register("reconstruction-adaptive", "the de-anonymizer's reconstructions, matched by an attacker trained on reconstructed training data",
          train="anonymized", gallery="clean", reconstruct=True)
