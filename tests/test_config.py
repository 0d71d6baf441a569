import pytest

from evalsuite.config import compose, parse_overrides, stable_hash
from evalsuite.errors import UserError
from evalsuite.registry import load_all

load_all()


def test_defaults_of_market_protocol():
    cfg = compose(["protocol=market1501-reid"])
    assert cfg.dataset.name == "market1501"
    assert list(cfg.anonymizers) == ["none", "blur", "pixelate8", "pixelate16", "mask"]
    assert list(cfg.attacks) == ["naive", "adaptive"]
    assert cfg.attacker.model == "osnet_x0_25"


def test_hydra_style_overrides():
    cfg = compose([
        "anonymizers=[blur,{name:pixelate,block_size:5}]",
        "attacks=[naive,adaptive,parrot]",
        "seeds=[0,1,2]",
        "attacker.epochs=5",
        "out=/tmp/somewhere",
        "dataset=synthetic",
    ])
    assert cfg.anonymizers[1] == {"name": "pixelate", "block_size": 5}
    assert list(cfg.seeds) == [0, 1, 2]
    assert cfg.attacker.epochs == 5
    assert cfg.dataset.name == "synthetic"
    assert cfg.out == "/tmp/somewhere"


def test_dataset_root_keeps_the_real_dataset():
    cfg = compose(["dataset.root=/data/Market-1501-v15.09.15"])
    assert cfg.dataset.name == "market1501"
    assert cfg.dataset.root == "/data/Market-1501-v15.09.15"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("atacks=[naive]", "'attacks'"),
        ("attacker.epoch=3", "'attacker.epochs'"),
        ("dataset.rot=/x", "'dataset.root'"),
        ("protocol=market-reid", "'market1501-reid'"),
        ("dataset=synthtic", "'synthetic'"),
    ],
)
def test_unknown_keys_and_components_name_the_closest(override, fragment):
    with pytest.raises(UserError) as info:
        compose([override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unparsable_override_is_a_user_error():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["anonymizers"])


def test_stable_hash_ignores_key_order_but_not_values():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
