"""Fitting ``upgan``, ``ppas`` and ``uap`` at their defaults on the default synthetic faces'
enrolment images (issue 13's target: each trains on 2 CPU cores within 10 minutes).

Skipped by default (``--benchmark-skip`` in the pytest addopts). Run with::

    python -m pytest tests/benchmarks/test_bench_generative_fits.py -o addopts="" --benchmark-only -p no:cacheprovider

One round each, one torch thread, no cache: what a first ``evalsuite run`` pays per protocol.
"""
from __future__ import annotations

import pytest

from evalsuite.cache import Cache
from evalsuite.config import compose
from evalsuite.registry import ANONYMIZERS, PROTOCOLS, load_all


@pytest.fixture(scope="module")
def enrolment(tmp_path_factory):
    load_all()
    base = tmp_path_factory.mktemp("fits")
    cfg = compose(["protocol=face-identification", "dataset=synthetic-faces", "region.name=image", "anonymizers=[none]", "attacks=[naive]",
                   f"out={base / 'out'}", f"cache_dir={base / 'cache'}"])
    protocol = PROTOCOLS.build("face-identification", cfg=cfg, cache=Cache.for_config(cfg))
    protocol.prepare()
    return protocol.sets[protocol.fit_set].in_memory()


@pytest.mark.parametrize("name", ["upgan", "ppas", "uap"])
def test_default_fit_within_ten_minutes(benchmark, enrolment, name):
    def fit():
        return ANONYMIZERS.build(name).fit(enrolment.images, enrolment.masks, enrolment.annotations, enrolment.sample_ids, seed=0, device="cpu")

    fitted = benchmark.pedantic(fit, rounds=1, iterations=1)
    assert fitted.state_dict()
    assert benchmark.stats.stats.max < 600
