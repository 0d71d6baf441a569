"""The ``external`` and ``precomputed`` adapters: error paths, and end-to-end equality with the built-in blur.

"Same numbers" here means bit-identical metrics: the external program loads the suite's own
blur (``--engine evalsuite``), and the precomputed folder is written by the built-in blur, so
all three feed the attacker exactly the same pixels. A program blurring with Pillow
(``--engine pillow``, box-filter approximation) gives other pixels and so other numbers; for
it we check that the external run and a precomputed folder written by the same program agree.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from anonymizers.external import External
from anonymizers.folders import write_images
from anonymizers.precomputed import Precomputed
from evalsuite.cli import main
from evalsuite.errors import UserError

PROGRAM = Path(__file__).parent / "programs" / "blur_folder.py"

MARKET = [
    "protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5",
    "dataset.num_distractors=3", "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8",
    "attacker.height=64", "attacker.width=32", "attacks=[naive,adaptive]",
]
FACES = [
    "protocol=face-identification", "dataset=synthetic", "dataset.num_identities=6", "dataset.images_per_identity=[5,5]",
    "dataset.size=32", "image_size=32", "recognizer.cnn.input_size=24", "recognizer.cnn.width=4", "recognizer.cnn.epochs=2",
    "recognizer.cnn.batch_size=8", "attacks=[naive,adaptive]",
]


def external_entry(label: str, *extra: str) -> str:
    args = ",".join(f"'{a}'" for a in (sys.executable, str(PROGRAM), "{input}", "{output}", *extra))
    return f"{{name:external,label:{label},command:[{args}]}}"


def rows(out: Path) -> dict[tuple[str, str], dict[str, float]]:
    table = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        table[(row["anonymizer"], row["attack"])] = row["metrics"]
    return table


def write_precomputed(overrides: list[str], cache: Path, folder: Path, anonymizer: str = "blur") -> int:
    """Anonymize every set the protocol uses with a built-in anonymizer and save it as PNGs keyed by sample id."""
    from evalsuite.arrays import as_tensor
    from evalsuite.cache import Cache
    from evalsuite.components import resolve_anonymizer
    from evalsuite.config import compose
    from evalsuite.registry import PROTOCOLS, load_all

    load_all()
    cfg = compose([*overrides, f"cache_dir={cache}"])
    protocol = PROTOCOLS.build(str(cfg.protocol), cfg=cfg, cache=Cache(cache))
    protocol.prepare()
    spec = resolve_anonymizer(anonymizer)
    count = 0
    for image_set in protocol.sets.values():
        result = protocol.anonymized_sets.get(image_set, spec, 0)
        write_images(folder, as_tensor(result.images), image_set.sample_ids)  # market1501-reid's sets are on disk
        count += len(image_set)
    return count


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("overrides", [MARKET, FACES], ids=["market1501-reid", "face-identification"])
def test_external_and_precomputed_give_the_builtin_blur_numbers(overrides, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    folder = tmp_path / "blurred"
    assert write_precomputed(overrides, cache, folder) > 0
    anonymizers = f"anonymizers=[none,blur,{external_entry('ext', '--engine', 'evalsuite')},{{name:precomputed,label:pre,root:'{folder}'}}]"
    out = tmp_path / "out"
    assert main(["run", *overrides, anonymizers, f"cache_dir={cache}", f"out={out}"]) == 0
    table = rows(out)
    for attack in ("naive", "adaptive"):
        assert table[("ext", attack)] == table[("blur", attack)]
        assert table[("pre", attack)] == table[("blur", attack)]
    assert table[("blur", "naive")] != table[("none", "naive")]


def test_pillow_program_runs_end_to_end_and_matches_its_precomputed_folder(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    out = tmp_path / "out"
    assert main(["run", *MARKET, "attacks=[naive]", f"anonymizers=[none,{external_entry('pillow')}]", f"cache_dir={cache}", f"out={out}"]) == 0
    # the same program's output, saved as a precomputed folder, gives the same numbers
    from evalsuite.arrays import as_tensor
    from evalsuite.cache import Cache
    from evalsuite.components import resolve_anonymizer
    from evalsuite.config import compose
    from evalsuite.registry import PROTOCOLS

    cfg = compose([*MARKET, f"cache_dir={cache}"])
    protocol = PROTOCOLS.build(str(cfg.protocol), cfg=cfg, cache=Cache(cache))
    protocol.prepare()
    spec = resolve_anonymizer({"name": "external", "command": [sys.executable, str(PROGRAM), "{input}", "{output}"]})
    folder = tmp_path / "pillow"
    for image_set in protocol.sets.values():
        write_images(folder, as_tensor(protocol.anonymized_sets.get(image_set, spec, 0).images), image_set.sample_ids)  # sets on disk
    out2 = tmp_path / "out2"
    assert main(["run", *MARKET, "attacks=[naive]", f"anonymizers=[{{name:precomputed,label:pillow,root:'{folder}'}}]", f"cache_dir={cache}", f"out={out2}"]) == 0
    first, second = rows(out), rows(out2)
    assert first[("pillow", "naive")] == second[("pillow", "naive")]
    # Pillow's blur is close to ours but not the same pixels: "same numbers" needs the same algorithm
    query = protocol.sets["query"]
    pillow = as_tensor(protocol.anonymized_sets.get(query, spec, 0).images)
    ours = as_tensor(protocol.anonymized_sets.get(query, resolve_anonymizer("blur"), 0).images)
    region = as_tensor(query.masks).expand_as(ours)
    difference = (pillow.float() - ours.float()).abs()[region]
    assert 0 < difference.mean() < 8


# ----------------------------------------------------------------------------- error paths (fast)

def batch(n: int = 3, h: int = 12, w: int = 8) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    masks[..., 2:8, 1:6] = True
    return images, masks, [f"query/{i:04d}_c1s1_000001_00.jpg" for i in range(n)]


def program(*flags: str) -> External:
    return External(command=[sys.executable, str(PROGRAM), "{input}", "{output}", *flags])


def test_external_clips_to_the_given_region_and_keeps_ids():
    images, masks, ids = batch()
    out = program("--engine", "evalsuite").anonymize_set(images, masks, None, ids, None).images
    assert torch.equal(out[~masks.expand_as(out)], images[~masks.expand_as(images)])
    assert not torch.equal(out, images)


@pytest.mark.parametrize("flags, words", [
    (("--fail",), ["exited with status 3", "CUDA out of memory (simulated)"]),
    (("--skip", "1"), ["1 of 3 images missing", "query/0000_c1s1_000001_00.png", "blurred 2 images"]),
    (("--extra",), ["belong to no sample", "stray.png"]),
    (("--resize",), ["is 9x12", "is 8x12"]),
])
def test_external_failures_are_one_line_with_the_stderr_tail(flags, words):
    images, masks, ids = batch()
    with pytest.raises(UserError) as info:
        program(*flags).anonymize_set(images, masks, None, ids, None)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_external_timeout_and_bad_commands():
    images, masks, ids = batch()
    slow = External(command=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    with pytest.raises(UserError, match="did not finish within timeout=0.5"):
        slow.anonymize_set(images, masks, None, ids, None)
    with pytest.raises(UserError, match="list of arguments"):
        External(command="python blur.py {input} {output}")
    with pytest.raises(UserError, match="not found on PATH"):
        External(command=["no-such-program-xyz", "{input}"])


def test_external_seed_comes_from_the_generator_and_program_edits_change_its_version(tmp_path):
    script = tmp_path / "p.py"
    script.write_text("import sys, shutil; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True); print(sys.argv[3], file=open(sys.argv[4], 'w'))\n")
    seen = tmp_path / "seed.txt"
    anonymizer = External(command=[sys.executable, str(script), "{input}", "{output}", "{seed}", str(seen)])
    images, masks, ids = batch()
    anonymizer.anonymize_set(images, masks, None, ids, torch.Generator().manual_seed(5))
    first = seen.read_text()
    anonymizer.anonymize_set(images, masks, None, ids, torch.Generator().manual_seed(5))
    assert seen.read_text() == first
    before = anonymizer.code_hash()
    script.write_text(script.read_text() + "# edited\n")
    assert anonymizer.code_hash() != before


def test_precomputed_missing_extra_and_mismatched_are_one_clear_error(tmp_path):
    images, masks, ids = batch()
    write_images(tmp_path, images, ids)
    anonymizer = Precomputed(root=str(tmp_path))
    anonymizer.bind_dataset(ids)
    assert torch.equal(anonymizer.anonymize_set(images, masks, None, ids, None).images, images)
    with pytest.raises(UserError, match="1 of 4 samples have no image"):
        anonymizer.bind_dataset([*ids, "query/9999_c1s1_000001_00.jpg"])
    with pytest.raises(UserError, match="belong to no sample"):
        anonymizer.bind_dataset(ids[:2])
    Precomputed(root=str(tmp_path), allow_extra=True).bind_dataset(ids[:2])
    with pytest.raises(UserError, match="is 8x12 but sample"):
        Precomputed(root=str(tmp_path)).anonymize_set(images[:, :, :10], masks[:, :, :10], None, ids, None)
    with pytest.raises(UserError, match="not a folder"):
        Precomputed(root=str(tmp_path / "nope"))


def test_precomputed_folder_errors_stop_the_run_before_anything_is_written(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVALSUITE_CACHE", str(cache))
    folder = tmp_path / "partial"
    images, _, _ = batch(1, 128, 64)
    write_images(folder, images, ["query/0001_c1s1_000001_00.jpg"])
    out = tmp_path / "out"
    code = main(["run", *MARKET, f"anonymizers=[{{name:precomputed,root:'{folder}'}}]", f"cache_dir={cache}", f"out={out}"])
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("evalsuite: error")]
    assert len(errors) == 1 and "samples have no image" in errors[0]
    assert not out.exists()
