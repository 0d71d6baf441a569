"""The threading policy: one thread per process by default; the count (which changes the last
bits) is part of every cell and cache key but not of the config hash that groups runs, so a
baseline made on one thread count gates a run on another."""
import cv2
import torch
from threadpoolctl import threadpool_info

from evalsuite.cache import Cache
from evalsuite.config import compose, stable_hash
from evalsuite.registry import load_all
from evalsuite.runner import result_config
from evalsuite.threads import limit_threads

load_all()


def test_default_is_one_thread_and_the_count_keys_cache_entries_not_the_experiment():
    one, two = compose(["dataset=synthetic"]), compose(["dataset=synthetic", "num_threads=2"])
    assert one.num_threads == 1
    assert stable_hash(result_config(one)) == stable_hash(result_config(two))
    assert Cache.for_config(one).context != Cache.for_config(two).context
    deterministic = compose(["dataset=synthetic", "deterministic=true"])
    assert Cache.for_config(deterministic).context == {"num_threads": 1, "deterministic": True}
    # keys that do not change numbers still stay out of the hash
    assert stable_hash(result_config(one)) == stable_hash(result_config(compose(["dataset=synthetic", "out=/elsewhere", "seeds=[3]"])))


def test_cache_entries_are_keyed_by_the_thread_count(tmp_path):
    plain, one, two = Cache(tmp_path), Cache(tmp_path, context={"num_threads": 1}), Cache(tmp_path, context={"num_threads": 2})
    assert plain.path("attackers", "k", ".pt") == tmp_path / "attackers" / "k.pt"
    assert len({plain.path("attackers", "k", ".pt"), one.path("attackers", "k", ".pt"), two.path("attackers", "k", ".pt")}) == 3
    assert one.path("attackers", "k", ".pt") == Cache(tmp_path, context={"num_threads": 1}).path("attackers", "k", ".pt")


def test_limit_threads_sets_torch_blas_and_opencv_and_restores_them():
    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    target = 1 if torch_before != 1 else 2
    with limit_threads(target):
        assert torch.get_num_threads() == target
        assert cv2.getNumThreads() == target
        assert all(pool["num_threads"] == target for pool in threadpool_info() if pool["user_api"] == "blas")
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (torch_before, cv2_before)
