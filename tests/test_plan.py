"""The plan graph (evalsuite.plan), the per-entry cache lock, and executor config errors."""
import threading
import time

import pytest

from evalsuite.cache import Cache
from evalsuite.cli import main
from evalsuite.components import resolve_anonymizer, resolve_attack
from evalsuite.config import compose
from evalsuite.pipeline import Artifacts
from evalsuite.plan import ArtifactNode, Cell, Plan
from evalsuite.protocol import Protocol
from evalsuite.registry import load_all

TINY = [
    "protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5",
    "dataset.num_distractors=3", "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8",
]


def cell(label, attack, seed=0):
    return Cell(resolve_anonymizer(label), resolve_attack(attack), seed, key=f"{label}-{attack}-{seed}")


def test_plan_keeps_each_artifact_once_and_orders_dependencies_first():
    load_all()
    plan = Plan()
    train_set = ArtifactNode("set-blur", "anonymized-set")
    attacker = ArtifactNode("att-blur", "attacker", deps=("set-blur",))
    clean = ArtifactNode("att-clean", "attacker")
    for c, nodes in ((cell("blur", "adaptive"), [train_set, attacker]), (cell("blur", "naive"), [clean]), (cell("mask", "naive"), [clean])):
        plan.add_cell(c, [plan.add_artifact(n) for n in nodes])
    assert list(plan.artifacts) == ["set-blur", "att-blur", "att-clean"]
    assert plan.needs["blur-naive-0"] == plan.needs["mask-naive-0"] == ("att-clean",)
    assert plan.closure(["att-blur"]) == ["set-blur", "att-blur"]
    assert plan.summary() == "3 cells, 1 anonymized-set, 2 attacker"
    with pytest.raises(ValueError, match="one artifact"):
        plan.add_artifact(ArtifactNode("att-clean", "features"))  # one key, two artifacts: refused
    with pytest.raises(ValueError, match="unplanned"):
        plan.add_artifact(ArtifactNode("att-x", "attacker", deps=("nowhere",)))  # dependencies first: no cycle possible


def test_default_protocol_plan_is_one_node_per_cell():
    load_all()
    cells = [cell("blur", "naive"), cell("mask", "naive"), cell("blur", "naive")]  # a repeated cell key counts once
    plan = Protocol.plan(Protocol.__new__(Protocol), cells)
    assert plan.artifacts == {} and [c.key for c in plan.cells] == ["blur-naive-0", "mask-naive-0"]
    assert all(plan.needs[c.key] == () for c in plan.cells)


def test_market_plan_shares_the_clean_attacker_and_trains_one_adaptive_per_anonymizer_and_seed(tmp_path):
    from evalsuite.runner import load_grid

    load_all()
    cfg = compose([*TINY, "anonymizers=[none,mask,blur]", "attacks=[naive,adaptive,parrot]", "seeds=[0,1]", f"cache_dir={tmp_path}"])
    grid = load_grid(cfg)
    cells = [Cell(a, t, s, f"{a.label}-{t.name}-{s}") for s in grid.seeds for t in grid.attacks for a in grid.anonymizers]
    plan = grid.protocol.plan(cells)
    assert len(plan.cells) == 18
    # per seed: the clean attacker (every naive cell, and `none` under every attack) + one for mask + one for blur
    assert len(plan.artifacts) == 6 and {n.kind for n in plan.artifacts.values()} == {"attacker"}
    for seed in (0, 1):
        clean = {plan.needs[f"{a}-naive-{seed}"] for a in ("none", "mask", "blur")} | {plan.needs[f"none-{t}-{seed}"] for t in ("adaptive", "parrot")}
        assert len(clean) == 1
        for a in ("mask", "blur"):  # parrot trains on anonymized data too: the adaptive attacker serves it
            assert plan.needs[f"{a}-adaptive-{seed}"] == plan.needs[f"{a}-parrot-{seed}"]
        adaptive = {plan.needs[f"{a}-adaptive-{seed}"] for a in ("mask", "blur")}
        assert len(adaptive) == 2 and not adaptive & clean
    assert plan.needs["mask-naive-0"] != plan.needs["mask-naive-1"]  # the seed is in the key
    node = plan.artifacts[plan.needs["blur-adaptive-0"][0]]
    assert node.task == {"anonymizer": "blur", "seed": 0, "kind": "anonymized"}
    # building a planned node yields the artifact under exactly the planned key, once
    grid.protocol.build_artifact(node, grid.anonymizers_by_label)
    assert len(list((tmp_path / "attackers").glob("*.pt"))) == 1


def test_concurrent_builders_of_one_cache_entry_build_it_once(tmp_path):
    artifacts = Artifacts(Cache(tmp_path, context={"num_threads": 1}))
    builds, results = [], []

    def build():
        builds.append(threading.get_ident())
        time.sleep(0.3)  # long enough for every other thread to find no file and wait on the lock
        return "value"

    def save(value, path):
        path.write_text(value)

    def worker():
        results.append(artifacts.get_or_build("things", "k1", ".txt", lambda p: p.read_text(), build, save))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(builds) == 1
    assert sorted(results) == [("value", False)] + [("value", True)] * 3
    assert list((tmp_path / "things").iterdir()) == [Cache(tmp_path, {"num_threads": 1}).path("things", "k1", ".txt")]


@pytest.mark.parametrize("args, fragments", [
    (["executor=rai"], ["executor=rai", "'ray'"]),
    (["executor.workers=-1"], ["executor.workers=-1", ">= 0"]),
    (["executor.workerz=2"], ["'executor.workers'"]),
])
def test_bad_executor_settings_are_one_line_exit_2_and_nothing_written(args, fragments, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *TINY, *args, f"cache_dir={tmp_path / 'cache'}", f"out={out}"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evalsuite: error:")]
    assert len(lines) == 1
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()


def test_executor_is_selected_like_a_config_group_and_stays_out_of_the_config_hash():
    from evalsuite.runner import result_config

    load_all()
    serial = compose(TINY)
    ray = compose([*TINY, "executor=ray", "executor.workers=2"])
    assert (ray.executor.name, ray.executor.workers) == ("ray", 2) and serial.executor.name == "serial"
    assert result_config(serial) == result_config(ray)


def test_a_workers_user_error_reaches_the_driver_as_its_one_line():
    exceptions = pytest.importorskip("ray.exceptions", reason="Ray is in the test extra")
    from evalsuite.errors import UserError
    from evalsuite.executors import _user_error_in

    wrapped = exceptions.RayTaskError("evaluate", "Traceback (most recent call last): ...", UserError("image q/1.jpg is truncated; replace it\ndetails"))
    error = _user_error_in(wrapped)
    assert isinstance(error, UserError) and str(error) == "image q/1.jpg is truncated; replace it"
    assert _user_error_in(exceptions.RayTaskError("evaluate", "tb", ValueError("a bug"))) is None  # bugs keep their traceback
