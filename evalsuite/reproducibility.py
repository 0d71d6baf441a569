"""Reproducible numerics: what can be pinned on a CPU, and a record of what a run used.

Trained attackers amplify the last bits of floating-point sums, so the same command and seed
can give different numbers on different CPUs. What decides those bits on CPU:

- the ATen code path torch dispatches to (``ATEN_CPU_CAPABILITY``: ``default``, ``avx2``,
  ``avx512``...; chosen from the CPU at the first kernel call, then fixed for the process);
- oneDNN (mkldnn) convolution kernels, picked per instruction set;
- MKL's BLAS kernels (``MKL_CBWR=COMPATIBLE`` asks MKL for the same results on every x86 CPU);
- the number of threads (``num_threads``), which reorders parallel reductions;
- torch's nondeterministic algorithms (``torch.use_deterministic_algorithms``).

``deterministic=true`` pins all of them: the ``default`` ATen code path, oneDNN off, MKL in
compatible mode, one thread, deterministic algorithms. It costs speed (see docs/ci-gate.md
for the measurements) and must be set before torch runs its first CPU kernel, which the
``evalsuite`` command does before anything else. Every result row records the settings it
ran with (:func:`numerics_record`), whether pinned or not.
"""
from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from evalsuite.errors import UserError

#: environment variables that deterministic mode sets before torch starts computing
PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # only used if oneDNN runs at all (it is disabled below)
}
#: environment variables recorded in every row (they can change numbers)
RECORDED_ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

TRUE_WORDS = ("true", "1", "yes", "on")


def requested_in(overrides: Sequence[str]) -> bool:
    """Whether ``deterministic=true`` is among command-line overrides (read before parsing)."""
    for text in overrides:
        key, sep, value = text.partition("=")
        if sep and key.strip() == "deterministic" and value.strip().lower() in TRUE_WORDS:
            return True
    return False


def pin_environment() -> None:
    """Set the pinned environment variables; call before torch runs any CPU kernel."""
    os.environ.update(PINNED_ENVIRONMENT)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numerics_record(deterministic: bool) -> dict[str, Any]:
    """What decided the floating-point bits of this process's results (stored in each row)."""
    import torch

    return {
        "deterministic": bool(deterministic),
        "num_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "environment": {name: os.environ[name] for name in RECORDED_ENVIRONMENT if name in os.environ},
        "cpu": cpu_model(),
        "machine": platform.machine(),
    }


def numerics_key(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a numerics record that enters cell and cache keys."""
    return {"num_threads": record["num_threads"], "deterministic": record["deterministic"]}


@contextmanager
def numerics_context(deterministic: bool, num_threads: int | None) -> Iterator[dict[str, Any]]:
    """With ``deterministic``, pin everything pinnable (one thread is required; the thread
    count itself is set by :func:`evalsuite.threads.limit_threads`).

    Yields the record of the settings in force; restores torch's global switches afterwards.
    """
    import torch

    if deterministic:
        if num_threads not in (None, 1):
            raise UserError(f"deterministic=true runs on one thread, but num_threads={num_threads}; drop num_threads or set num_threads=1")
        pin_environment()  # a no-op for the code path if torch has already chosen one; checked next
        capability = torch.backends.cpu.get_cpu_capability()
        if capability != "DEFAULT":
            raise UserError(
                f"deterministic=true needs torch's default CPU code path, but this process already uses {capability} "
                "(torch fixes it at its first CPU kernel); run `evalsuite run ... deterministic=true` in a fresh process "
                "or export ATEN_CPU_CAPABILITY=default before starting Python"
            )
    previous = (torch.backends.mkldnn.enabled, torch.are_deterministic_algorithms_enabled())
    if deterministic:
        torch.backends.mkldnn.enabled = False
        torch.use_deterministic_algorithms(True)
    try:
        yield numerics_record(deterministic)
    finally:
        torch.backends.mkldnn.enabled = previous[0]
        torch.use_deterministic_algorithms(previous[1])
