"""Fitted anonymizers add fields to result rows (``row_fields``): ppas's achieved k / l / t, uap's fooling rate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anonymizers.uap import UniversalPerturbation
from evalsuite.cli import main

PPAS = ("{name:ppas,label:ppas-k3,quasi_identifiers:[Black_Hair,Eyeglasses],sensitive:[Male],k:3,l:1.0,t:1.0,epsilon:null,"
        "size:16,channels:4,blocks:1,d_depth:2,steps:2,batch_size:4,classifier_epochs:1,classifier_width:2}")
TINY = ["protocol=face-identification", "dataset=synthetic", "dataset.num_identities=6", "dataset.images_per_identity=[4,4]", "dataset.size=32",
        "image_size=32", "recognizer.cnn.input_size=24", "recognizer.cnn.width=4", "recognizer.cnn.epochs=1", "recognizer.cnn.batch_size=8",
        f"anonymizers=[none,blur5,{PPAS}]", "attacks=[naive,adaptive]"]
FIELDS = {"achieved_k", "achieved_l", "achieved_t", "achieved_classes"}


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_ppas_rows_report_the_achieved_privacy_parameters_fresh_and_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert main(["run", *TINY, f"cache_dir={cache}", f"out={tmp_path / 'a'}"]) == 0
    first = rows(tmp_path / "a")
    ppas = [r for r in first if r["anonymizer"] == "ppas-k3"]
    assert len(ppas) == 2 and all(FIELDS <= set(r) for r in ppas)
    assert not any(FIELDS & set(r) for r in first if r["anonymizer"] != "ppas-k3")  # only the fitted anonymizer adds them
    values = {k: ppas[0][k] for k in FIELDS}
    assert values == {k: ppas[1][k] for k in FIELDS}  # one fitted state for both attacks
    # the guarantees PPAS gives on its training table: every released class has >= k records
    assert values["achieved_k"] >= 3 and values["achieved_classes"] >= 1 and 0 <= values["achieved_t"] <= 1
    # a second run reads the fitted state (and the anonymized sets) from the cache: the same fields
    assert main(["run", *TINY, f"cache_dir={cache}", f"out={tmp_path / 'b'}"]) == 0
    again = {r["attack"]: {k: r[k] for k in FIELDS} for r in rows(tmp_path / "b") if r["anonymizer"] == "ppas-k3"}
    assert again == {"naive": values, "adaptive": values}


def test_default_row_fields_are_empty_and_uap_reports_its_last_fooling_rate() -> None:
    uap = UniversalPerturbation()
    assert uap.row_fields() == {}
    uap.load_state({"perturbation": torch.zeros(3, 4, 4), "fooling_rates": [0.1, 0.35]})
    assert uap.row_fields() == {"surrogate_fooling_rate": 0.35}
