"""The default `evalsuite run protocol=person-recognition dataset=synthetic`, cold cache (target: < 5 minutes on 2 CPU cores).

Skipped by default (``--benchmark-skip`` in the pytest addopts). Run with::

    python -m pytest tests/benchmarks/test_bench_person_recognition.py -o addopts="" --benchmark-only -p no:cacheprovider

One round: it generates the default synthetic set, trains 22 recognizers (head and
body+head, clean and adapted to each of the 10 anonymizers) and fills the 11 x 2 grid.
"""
from __future__ import annotations

import json

from evalsuite.cli import main


def test_default_person_recognition_run(benchmark, tmp_path_factory):
    def run() -> int:
        base = tmp_path_factory.mktemp("bench")
        return main(["run", "protocol=person-recognition", "dataset=synthetic", f"cache_dir={base / 'cache'}", f"out={base / 'out'}"])

    code = benchmark.pedantic(run, rounds=1, iterations=1)
    assert code == 0
    outs = sorted(tmp_path_factory.getbasetemp().glob("bench*/out/results.jsonl"))
    rows = [json.loads(line) for line in outs[-1].read_text().splitlines()]
    assert len(rows) == 22
    assert benchmark.stats.stats.max < 300
