"""Executors: run a :class:`~evalsuite.plan.Plan`, building each artifact once, and hand back cell results.

- ``executor=serial`` (default): this process, cell after cell; each cell's artifacts are
  built just before it (the first cell that needs one builds it).
- ``executor=ray``: ``executor.workers`` Ray actors (default: one per ``num_threads`` CPU
  cores of the local machine or the cluster at ``executor.address``). Each actor builds the
  protocol once from the config (its data loaded once per worker), runs with ``num_threads``
  threads, and takes one task at a time: an artifact whose dependencies are built
  (artifacts first, in plan order: the attackers train in parallel), or a cell whose
  artifacts are built. Workers return results; only the driver's store writes rows.

Artifacts live in the shared cache (``cache_dir``, a folder every worker must see); a
per-entry file lock (:meth:`evalsuite.cache.Cache.lock`) keeps two processes from building
one twice. Every key holds the thread count and deterministic mode, never the executor or
the worker count, so the rows do not depend on them.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf

from evalsuite.errors import UserError, did_you_mean
from evalsuite.plan import ArtifactNode, Cell, Plan
from evalsuite.protocol import CellResult

if TYPE_CHECKING:
    from evalsuite.runner import Grid

log = logging.getLogger(__name__)

EXECUTORS = ("serial", "ray")


@dataclass
class Outcome:
    """A finished (or skipped) cell: its result, the numerics record of the process that
    computed it, the time spent building artifacts first needed by it, and its own time."""

    cell: Cell
    result: CellResult | None  # None: skipped (stored meanwhile by another writer)
    numerics: dict[str, Any]
    artifacts_s: float = 0.0
    seconds: float = 0.0


class SerialExecutor:
    """Every artifact and cell in this process, in plan order."""

    name = "serial"

    def __init__(self, numerics: dict[str, Any]) -> None:
        self.numerics = numerics

    def run(self, plan: Plan, grid: "Grid", skip: Callable[[Cell], bool]) -> Iterator[Outcome]:
        built: set[str] = set()
        for cell in plan.cells:
            if skip(cell):
                yield Outcome(cell, None, self.numerics)
                continue
            started = time.perf_counter()
            for key in plan.closure(plan.needs[cell.key]):
                if key not in built:
                    grid.protocol.build_artifact(plan.artifacts[key], grid.anonymizers_by_label)
                    built.add(key)
            artifacts_s = time.perf_counter() - started
            started = time.perf_counter()
            result = grid.protocol.evaluate(cell.spec, cell.attack, cell.seed)
            yield Outcome(cell, result, self.numerics, artifacts_s, time.perf_counter() - started)


# --------------------------------------------------------------------------- Ray

def worker_environment(cfg: DictConfig) -> dict[str, str]:
    """Environment variables of every Ray worker process: thread pools, no progress bars,
    the pinned numerics of ``deterministic=true`` (read by torch at its start)."""
    from evalsuite.reproducibility import PINNED_ENVIRONMENT

    threads = str(int(cfg.num_threads))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "TQDM_DISABLE": "1"}
    if bool(cfg.get("deterministic", False)):
        env.update(PINNED_ENVIRONMENT)
    return env


class RayWorker:
    """One Ray actor: the grid built once from the config, then artifacts and cells on request."""

    def __init__(self, cfg_yaml: str, cwd: str, log_level: int) -> None:
        from contextlib import ExitStack

        from evalsuite.registry import load_all
        from evalsuite.reproducibility import numerics_context
        from evalsuite.runner import load_grid
        from evalsuite.threads import limit_threads

        logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        if Path(cwd).is_dir():  # relative paths of the config (dataset.root) as the driver reads them
            os.chdir(cwd)
        load_all()
        cfg = OmegaConf.create(cfg_yaml)
        OmegaConf.set_struct(cfg, True)
        threads = int(cfg.num_threads)
        self._context = ExitStack()  # kept for the actor's life
        self._context.enter_context(limit_threads(threads))
        self.numerics = self._context.enter_context(numerics_context(bool(cfg.get("deterministic", False)), threads))
        self._grid: Grid | None = None
        self._error: UserError | None = None
        try:
            self._grid = load_grid(cfg)
        except UserError as exc:  # raised again by the first task, so that the driver reports its one line
            import socket

            self._error = UserError(f"{str(exc).splitlines()[0]} (in a Ray worker on {socket.gethostname()}: every worker must see the paths the run's config names)")

    @property
    def grid(self) -> "Grid":
        if self._error is not None:
            raise self._error
        assert self._grid is not None
        return self._grid

    def build(self, node: ArtifactNode) -> float:
        """Build (or read) one artifact; its seconds."""
        grid = self.grid
        started = time.perf_counter()
        grid.protocol.build_artifact(node, grid.anonymizers_by_label)
        return time.perf_counter() - started

    def evaluate(self, label: str, attack: str, seed: int) -> tuple[CellResult, dict[str, Any], float]:
        """One cell's result, this worker's numerics record and the cell's seconds."""
        spec, threat = self.grid.find(label, attack)
        started = time.perf_counter()
        result = self.grid.protocol.evaluate(spec, threat, seed)
        return result, self.numerics, time.perf_counter() - started


def _user_error_in(exc: BaseException) -> UserError | None:
    """The UserError a Ray error wraps (a worker's bad input), if any."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, UserError):
            return UserError(str(current).splitlines()[0])
        current = getattr(current, "cause", None) or current.__cause__
        seen += 1
    return None


class RayExecutor:
    """Artifacts and cells on Ray actors, local or on a cluster."""

    name = "ray"

    def __init__(self, cfg: DictConfig) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("executor=ray needs Ray, which is not installed; pip install 'evalsuite[ray]' (or 'ray'), or use executor=serial") from None
        self.cfg = cfg
        self.workers = int(cfg.executor.workers)
        self.address = str(cfg.executor.address) if cfg.executor.get("address") else None
        self.threads = int(cfg.num_threads)

    def _worker_config(self) -> str:
        """The run's config as workers read it: ``cache_dir`` made absolute (every worker uses the driver's)."""
        from evalsuite.config import cache_dir

        cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        cfg.cache_dir = str(cache_dir(self.cfg).resolve())
        return OmegaConf.to_yaml(cfg)

    def _init(self, ray: Any) -> bool:
        """Start (or join) Ray; True when this call started it."""
        if ray.is_initialized():
            return False
        env = worker_environment(self.cfg)
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "configure_logging": False}
        if self.address:
            try:
                ray.init(address=self.address, runtime_env={"env_vars": env}, **kwargs)
            except (ConnectionError, TimeoutError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"executor.address={self.address}: cannot reach a Ray cluster there ({first}); "
                                "check the address (`ray status` on its head node) or drop executor.address to start Ray on this machine") from None
        else:
            import evalsuite

            source = str(Path(evalsuite.__file__).resolve().parents[1])  # the suite importable in local workers
            env["PYTHONPATH"] = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
            cores = os.cpu_count() or 1
            ray.init(num_cpus=max(cores, self.workers * self.threads), runtime_env={"env_vars": env}, **kwargs)
        return True

    def _worker_count(self, ray: Any, tasks: int) -> int:
        workers = self.workers
        if workers == 0:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            workers = max(1, cpus // self.threads)
        return max(1, min(workers, tasks))

    def run(self, plan: Plan, grid: "Grid", skip: Callable[[Cell], bool]) -> Iterator[Outcome]:
        todo = [c for c in plan.cells if not skip(c)]
        keys = {c.key for c in todo}
        for cell in plan.cells:
            if cell.key not in keys:
                yield Outcome(cell, None, {})
        if not todo:
            return
        import ray

        started_here = self._init(ray)
        try:
            yield from self._schedule(ray, plan, todo)
        finally:
            if started_here:
                ray.shutdown()

    def _schedule(self, ray: Any, plan: Plan, todo: list[Cell]) -> Iterator[Outcome]:
        needed = plan.closure(k for c in todo for k in plan.needs[c.key])
        count = self._worker_count(ray, len(needed) + len(todo))
        actor_class = ray.remote(num_cpus=self.threads)(RayWorker)
        config, cwd = self._worker_config(), os.getcwd()
        actors = [actor_class.remote(config, cwd, logging.getLogger("evalsuite").getEffectiveLevel()) for _ in range(count)]
        log.info("ray: %d workers x %d thread(s) for %d artifacts and %d cells", count, self.threads, len(needed), len(todo))

        waiting_artifacts = {k: set(plan.artifacts[k].deps) for k in needed}
        waiting_cells = {c.key: set(plan.needs[c.key]) for c in todo}
        ready_artifacts: deque[str] = deque()
        ready_cells: deque[Cell] = deque()
        built_s: dict[str, float] = {}
        credited: set[str] = set()

        def release() -> None:
            for key in [k for k, deps in waiting_artifacts.items() if not deps]:
                del waiting_artifacts[key]
                ready_artifacts.append(key)
            for cell in todo:
                if cell.key in waiting_cells and not waiting_cells[cell.key]:
                    del waiting_cells[cell.key]
                    ready_cells.append(cell)

        release()
        idle = deque(actors)
        running: dict[Any, tuple[Any, str, Any]] = {}
        while ready_artifacts or ready_cells or running:
            while idle and (ready_artifacts or ready_cells):
                actor = idle.popleft()
                if ready_artifacts:  # artifacts first: the long builds start early, in parallel
                    key = ready_artifacts.popleft()
                    running[actor.build.remote(plan.artifacts[key])] = (actor, "artifact", key)
                else:
                    cell = ready_cells.popleft()
                    running[actor.evaluate.remote(*cell.task())] = (actor, "cell", cell)
            ref = ray.wait(list(running), num_returns=1)[0][0]
            actor, kind, item = running.pop(ref)
            idle.append(actor)
            try:
                value = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a worker's error, wrapped by Ray
                user_error = _user_error_in(exc)
                if user_error is not None:
                    raise user_error from None
                what = plan.artifacts[item].description if kind == "artifact" else item.name
                raise RuntimeError(f"a Ray worker failed on {what}: {exc}") from exc
            if kind == "artifact":
                built_s[item] = float(value)
                log.info("built %s in %.1f s", plan.artifacts[item].description or item, value)
                for deps in (*waiting_artifacts.values(), *waiting_cells.values()):
                    deps.discard(item)
                release()
                continue
            result, numerics, seconds = value
            mine = [k for k in plan.closure(plan.needs[item.key]) if k not in credited]
            credited.update(mine)
            yield Outcome(item, result, numerics, sum(built_s.get(k, 0.0) for k in mine), seconds)
        if waiting_artifacts or waiting_cells:  # cannot happen: the plan adds dependencies first
            raise RuntimeError(f"plan left {len(waiting_artifacts)} artifacts and {len(waiting_cells)} cells waiting")


def make_executor(cfg: DictConfig, numerics: dict[str, Any]) -> SerialExecutor | RayExecutor:
    """The executor ``executor.name`` names; UserError (before anything is loaded) for an unknown one."""
    name = str(cfg.executor.name)
    if name == "serial":
        return SerialExecutor(numerics)
    if name == "ray":
        return RayExecutor(cfg)
    raise UserError(f"executor={name} is not an executor: {did_you_mean(name, EXECUTORS)}; e.g. executor=ray executor.workers=2")
