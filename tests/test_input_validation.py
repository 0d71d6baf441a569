"""Bad input stops `evalsuite run` with one line and exit 2 before anything is loaded or written."""
import os

import pytest

from evalsuite.cli import main
from evalsuite.config import compose, defaults
from evalsuite.errors import UserError
from evalsuite.registry import PROTOCOLS, load_all
from evalsuite.schema import undeclared_schema_keys, unchecked_numeric_keys

load_all()

TINY = [
    "protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=4", "dataset.num_test_ids=3",
    "dataset.num_distractors=1", "dataset.num_junk=0", "attacker.epochs=1", "attacker.batch_size=8",
    "anonymizers=[none,mask]", "attacks=[naive]",
]


def run_cli(args, capsys):
    code = main(["run", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evalsuite: error:")]
    return code, lines, err


def tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("attacker.epochs=abc", ["attacker.epochs=abc", "expected an integer >= 1", "e.g. attacker.epochs=40"]),
        ("attacker.epochs=0", ["attacker.epochs=0", "an integer >= 1"]),
        ("attacker.epochs=-1", ["attacker.epochs=-1", "an integer >= 1"]),
        ("attacker.epochs=1.5", ["attacker.epochs=1.5", "an integer >= 1"]),
        ("attacker.epochs=true", ["attacker.epochs=true", "an integer"]),
        ("attacker.lr=-1", ["attacker.lr=-1", "a number > 0", "e.g. attacker.lr=0.01"]),
        ("attacker.lr=nan", ["attacker.lr=nan", "a number > 0"]),
        ("attacker.batch_size=0", ["attacker.batch_size=0", "an integer >= 1"]),
        ("attacker.batch_size=-1", ["attacker.batch_size=-1", "an integer >= 1"]),
        ("attacker.height=4", ["attacker.height=4", ">= 16"]),
        ("attacker.label_smooth=1", ["attacker.label_smooth=1", "true or false"]),
        ("seeds=x", ["seeds=x", "a list of integers >= 0", "e.g. seeds=[0]"]),
        ("seeds=5", ["seeds=5", "a list of integers", "e.g. seeds=[5]"]),
        ("seeds=[1.5]", ["seeds=[1.5]", "a list of integers"]),
        ("seeds=[-1]", ["seeds=[-1]", ">= 0"]),
        ("seeds=[]", ["seeds=[]", "at least 1"]),
        ("num_threads=0", ["num_threads=0", "an integer >= 1", "e.g. num_threads=1"]),
        ("batch_size=two", ["batch_size=two", "an integer >= 1"]),
        ("region.dilation=-2", ["region.dilation=-2", ">= 0"]),
    ],
)
def test_bad_numbers_are_one_line_exit_2_and_nothing_written(override, fragments, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, lines, err = run_cli([*TINY, override, f"out={out}", f"cache_dir={cache}"], capsys)
    assert code == 2
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists() and not cache.exists()


def test_a_failed_run_leaves_an_existing_run_folder_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("# evalsuite config_hash: c0\nprotocol: market1501-reid\n")
    (out / "results.jsonl").write_text('{"cell_key": "a", "metrics": {}}\n')
    before = tree(out)
    code, lines, err = run_cli([*TINY, "attacker.epochs=abc", f"out={out}", f"cache_dir={tmp_path / 'cache'}"], capsys)
    assert code == 2 and len(lines) == 1, err
    assert tree(out) == before


@pytest.mark.parametrize(
    "protocol, override, fragment",
    [
        ("face-identification", "split.enrol_fraction=1.5", "a number > 0 and < 1"),
        ("face-identification", "recognizer.dlib.landmarks=7", "one of 68, 5"),
        ("face-identification", "split.max_identities=abc", "an integer >= 2 or null"),
        ("image-quality", "realness.epochs=0", "an integer >= 1"),
        ("person-recognition", "attacker.lr=0", "a number > 0"),
        ("detection-train", "detector.epochs=2.5", "an integer >= 1"),
    ],
)
def test_other_protocols_keys_are_checked_too(protocol, override, fragment):
    with pytest.raises(UserError) as info:
        compose([f"protocol={protocol}", "dataset=synthetic", override])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_optional_keys_take_null_and_numbers():
    cfg = compose(["protocol=face-identification", "dataset=synthetic", "split.max_identities=10", "seeds=[0,1,2]"])
    assert cfg.split.max_identities == 10 and list(cfg.seeds) == [0, 1, 2]
    assert compose(["protocol=face-identification", "split.max_identities=null"]).split.max_identities is None


@pytest.mark.parametrize("protocol", sorted(e.name for e in PROTOCOLS))
def test_every_numeric_key_of_every_protocol_has_a_declared_range(protocol):
    """A new numeric key needs an entry in evalsuite/schema.py (types alone let 0 or -1 through)."""
    from evalsuite.config import to_plain

    base = to_plain(defaults(protocol))
    cls = PROTOCOLS.get(protocol).factory
    assert unchecked_numeric_keys(base, protocol, cls) == []
    assert undeclared_schema_keys(base, protocol) == []
    compose([f"protocol={protocol}"])  # the defaults pass their own schema


def test_a_cache_dir_that_is_a_file_stops_before_any_data_is_loaded(tmp_path, capsys):
    (tmp_path / "cache").write_text("a file")
    code, lines, err = run_cli([*TINY, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"], capsys)
    assert code == 2 and len(lines) == 1, err
    assert f"cache_dir={tmp_path / 'cache'} is an existing file, not a folder" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["file", "under-a-file", "unwritable"])
def test_unusable_out_stops_before_any_data_is_loaded(kind, tmp_path, capsys):
    if kind == "unwritable" and os.geteuid() == 0:
        pytest.skip("root writes into any folder; the unwritable case is covered with a patched os.access in test_store_concurrency.py")
    cache = tmp_path / "cache"
    if kind == "file":
        out = tmp_path / "out"
        out.write_text("a file")
    elif kind == "under-a-file":
        (tmp_path / "file").write_text("a file")
        out = tmp_path / "file" / "out"
    else:
        (tmp_path / "locked").mkdir(mode=0o555)
        out = tmp_path / "locked" / "out"
    before = tree(tmp_path)
    code, lines, err = run_cli([*TINY, f"out={out}", f"cache_dir={cache}"], capsys)
    assert code == 2 and len(lines) == 1, err
    assert f"out={out}" in lines[0]
    assert not cache.exists()  # the synthetic dataset was not even generated
    assert tree(tmp_path) == before


@pytest.fixture(scope="module")
def market_copy(tmp_path_factory):
    """A tiny synthetic set in the Market-1501 layout, read as a real dataset."""
    root = tmp_path_factory.mktemp("market") / "Market-1501-v15.09.15"
    assert main(["synth", f"out={root}", "num_train_ids=3", "num_test_ids=3", "num_distractors=1", "num_junk=0"]) == 0
    return root


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_images_stop_the_run_naming_the_file(damage, market_copy, tmp_path, capsys):
    import shutil

    root = tmp_path / "Market-1501-v15.09.15"
    shutil.copytree(market_copy, root)
    victim = sorted((root / "query").glob("*.jpg"))[0]
    data = victim.read_bytes()
    victim.write_bytes({"truncated": data[:700], "garbage": b"\x00not a jpeg" * 40, "empty": b""}[damage])
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("# an existing run's config\nprotocol: market1501-reid\n")
    before = tree(out)
    code, lines, err = run_cli(["dataset=market1501", f"dataset.root={root}", "anonymizers=[none]", "attacks=[naive]",
                                f"out={out}", f"cache_dir={tmp_path / 'cache'}"], capsys)
    assert code == 2 and len(lines) == 1, err
    assert str(victim) in lines[0] and "corrupt or unreadable image" in lines[0]
    assert tree(out) == before  # the existing run's config.yaml is untouched


def test_truncated_jpeg_is_refused_by_the_reader_not_decoded_as_gray(market_copy, tmp_path):
    import cv2

    from evalsuite.data.market1501 import read_image

    source = sorted((market_copy / "query").glob("*.jpg"))[0]
    whole = read_image(source)
    assert (whole == cv2.imread(str(source))[:, :, ::-1]).all()  # the same pixels as OpenCV's decoder
    truncated = tmp_path / source.name
    truncated.write_bytes(source.read_bytes()[:700])
    assert cv2.imread(str(truncated)) is not None  # OpenCV alone would fill the rest with gray
    with pytest.raises(UserError, match=f"{truncated}.*truncated"):
        read_image(truncated)
