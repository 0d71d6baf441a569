"""Every protocol's dataset fingerprint (part of every cache key) holds a generated dataset's
generator hash, so a new generator version never reuses anonymized sets drawn by the old one."""
import json
from pathlib import Path

import pytest

from evalsuite.cache import Cache
from evalsuite.config import compose
from evalsuite.data.synthetic import generated_fingerprint
from evalsuite.registry import PROTOCOLS, load_all

load_all()
PEDESTRIANS = ["dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5", "dataset.num_distractors=2", "dataset.num_junk=1"]
SCENES = ["dataset=synthetic", "dataset.num_train_images=6", "dataset.num_val_images=3", "dataset.height=64", "dataset.width=96",
          "dataset.person_height=[28,60]"]


@pytest.mark.parametrize("protocol, dataset", [("market1501-reid", PEDESTRIANS), ("person-recognition", PEDESTRIANS),
                                               ("detection-validate", SCENES)])
def test_fingerprint_holds_the_generator_hash(protocol, dataset, tmp_path):
    cfg = compose([f"protocol={protocol}", *dataset, "anonymizers=[none]", f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    built = PROTOCOLS.build(protocol, cfg=cfg, cache=Cache.for_config(cfg))
    built.prepare()
    root = built.dataset.root
    markers = list(Path(root).glob("evalsuite_synthetic*.json"))
    assert len(markers) == 1
    assert built.dataset_fingerprint()["generated"] == json.loads(markers[0].read_text())["hash"]


def test_other_folders_add_nothing_and_several_markers_all_count(tmp_path):
    assert generated_fingerprint(tmp_path) == {} and generated_fingerprint(None) == {} and generated_fingerprint(tmp_path / "missing") == {}
    (tmp_path / "evalsuite_synthetic.json").write_text(json.dumps({"hash": "a"}))
    assert generated_fingerprint(tmp_path) == {"generated": "a"}
    (tmp_path / "evalsuite_synthetic_coco.json").write_text(json.dumps({"hash": "b"}))
    both = generated_fingerprint(tmp_path)["generated"]
    (tmp_path / "evalsuite_synthetic_coco.json").write_text(json.dumps({"hash": "c"}))
    assert generated_fingerprint(tmp_path)["generated"] != both
    (tmp_path / "evalsuite_synthetic.json").write_text("not json")
    assert generated_fingerprint(tmp_path) == {"generated": "c"}
