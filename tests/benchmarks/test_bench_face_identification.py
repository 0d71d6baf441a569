"""The default `evalsuite run protocol=face-identification dataset=synthetic`, cold cache (target: < 5 minutes on 2 CPU cores).

Skipped by default (``--benchmark-skip`` in the pytest addopts). Run with::

    python -m pytest tests/benchmarks/test_bench_face_identification.py -o addopts="" --benchmark-only -p no:cacheprovider

One round: it generates the default synthetic face set (100 identities x 20 images, 112x112),
trains 9 `cnn` recognizers (clean, and adapted to each of the 8 anonymizers) and fills the
9 x 2 grid (naive, adaptive).
"""
from __future__ import annotations

import json

from evalsuite.cli import main


def test_default_face_identification_run(benchmark, tmp_path_factory):
    def run() -> int:
        base = tmp_path_factory.mktemp("bench")
        return main(["run", "protocol=face-identification", "dataset=synthetic", f"cache_dir={base / 'cache'}", f"out={base / 'out'}"])

    code = benchmark.pedantic(run, rounds=1, iterations=1)
    assert code == 0
    outs = sorted(tmp_path_factory.getbasetemp().glob("bench*/out/results.jsonl"))
    rows = [json.loads(line) for line in outs[-1].read_text().splitlines()]
    assert len(rows) == 18 and all(set(r["metrics"]) == {"top1", "roc_auc", "tpr_at_fpr1", "tpr_at_fpr01"} for r in rows)
    assert benchmark.stats.stats.max < 300
