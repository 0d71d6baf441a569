"""Bounded memory (issue 11, part 3): sets on disk read in chunks give the numbers the
in-memory path gives, and memory does not grow with the size of the set."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from anonymizers.base import Anonymizer
from evalsuite import arrays
from evalsuite.arrays import DiskArray, NpyWriter
from evalsuite.cache import Cache
from evalsuite.components import AnonymizerSpec, resolve_anonymizer
from evalsuite.pipeline import AnonymizedSets, ImageSet

REPO = Path(__file__).resolve().parents[1]


@dataclass
class FileSample:
    path: str
    annotations: dict = field(default_factory=dict)

    @property
    def relpath(self) -> str:
        return Path(self.path).name


def write_samples(folder: Path, count: int, height: int = 32, width: int = 16, seed: int = 0) -> list[FileSample]:
    """``count`` PNG files of noise with a face box each (PNG: decoding is exact)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        path = folder / f"{i:05d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        samples.append(FileSample(str(path), {"face_box": [x0, y0, x0 + width // 3, y0 + height // 3]}))
    return samples


class Noisy(Anonymizer):
    """Stochastic: fills the region with noise drawn from the run's generator, batch by batch."""

    stochastic = True

    def _anonymize_region(self, images, masks, annotations, generator):
        return torch.randint(0, 256, images.shape, generator=generator, dtype=torch.uint8)


class OwnBoxes(Anonymizer):
    """Finds its own regions (the upper half of each image) and blacks them out."""

    regions = "own"

    def detect(self, images, annotations=None):
        masks = torch.zeros(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool)
        masks[:, :, : images.shape[-2] // 2] = True
        return masks

    def _anonymize_region(self, images, masks, annotations, generator):
        return torch.zeros_like(images)


def test_npy_writer_writes_what_np_save_writes_and_disk_arrays_read_rows(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (37, 3, 5, 4), dtype=np.uint8)
    expected = io.BytesIO()
    np.save(expected, data)
    written = io.BytesIO()
    writer = NpyWriter(written, data.shape, np.uint8)
    for start in range(0, 37, 10):
        writer.write(data[start:start + 10])
    writer.finish()
    assert written.getvalue() == expected.getvalue()
    path = tmp_path / "a.npy"
    path.write_bytes(written.getvalue())
    disk = DiskArray(path)
    assert disk.shape == torch.Size(data.shape) and len(disk) == 37
    assert torch.equal(disk[3:20], torch.from_numpy(data[3:20]))
    assert torch.equal(disk[[5, 6, 7, 1, 36, -1]], torch.from_numpy(data[[5, 6, 7, 1, 36, -1]]))
    assert torch.equal(disk[torch.tensor([2, 3])], torch.from_numpy(data[[2, 3]]))
    assert torch.equal(disk[4], torch.from_numpy(data[4]))
    with pytest.raises(IndexError):
        disk[[37]]
    short = NpyWriter(io.BytesIO(), data.shape, np.uint8)
    short.write(data[:10])
    with pytest.raises(ValueError, match="wrote 10 rows of an array of 37"):
        short.finish()
    path.write_bytes(written.getvalue()[:-5])  # truncated: refused, so that the cache rebuilds it
    with pytest.raises(ValueError, match="bytes, expected"):
        DiskArray(path)


@pytest.mark.parametrize("name", ["blur", "pixelate8", "mask", "noisy", "own"])
def test_streamed_sets_equal_in_memory_sets(tmp_path, monkeypatch, name):
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 40 * 32 * 16 * 3)  # chunks of 40 images -> 36 with batches of 12
    samples = write_samples(tmp_path / "images", 100)
    region = {"name": "face", "dilation": 1, "fallback": "image"}
    cache = Cache(tmp_path / "cache")
    streamed = ImageSet.from_samples("query", samples, region, cache=cache)
    memory = ImageSet.from_samples("query", samples, region)
    assert streamed.on_disk and isinstance(streamed.masks, DiskArray) and not memory.on_disk
    assert torch.equal(streamed.images[:], memory.images) and torch.equal(streamed.masks[:], memory.masks)
    custom = {"noisy": Noisy, "own": OwnBoxes}
    spec = AnonymizerSpec(name, name, {}, custom[name]()) if name in custom else resolve_anonymizer(name)
    on_disk = AnonymizedSets(cache, {"dataset": "x"}, batch_size=12).get(streamed, spec, seed=3)
    in_memory = AnonymizedSets(None, {"dataset": "x"}, batch_size=12).get(memory, spec, seed=3)
    assert isinstance(on_disk.images, DiskArray)
    assert torch.equal(on_disk.images[:], in_memory.images)
    assert not torch.equal(in_memory.images, memory.images)  # the anonymizer changed something
    if name == "own":
        assert torch.equal(on_disk.detections[:], in_memory.detections)
    # read back from the cache by a new process-like instance, lazily again
    again = AnonymizedSets(cache, {"dataset": "x"}, batch_size=12).get(streamed, spec, seed=3)
    assert isinstance(again.images, DiskArray) and torch.equal(again.images[:], in_memory.images)


def test_attacker_trained_from_disk_equals_attacker_trained_in_memory(tmp_path):
    from attacks.reid_attacker import AttackerConfig, ReidAttacker

    torch.set_num_threads(1)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (24, 3, 64, 32), dtype=np.uint8))
    pids = torch.arange(24) % 4
    path = tmp_path / "train.npy"
    np.save(path, images.numpy())
    config = AttackerConfig(epochs=1, batch_size=8, height=32, width=16)
    from_memory = ReidAttacker(config, num_classes=4, seed=0).fit(images, pids)
    from_disk = ReidAttacker(config, num_classes=4, seed=0).fit(DiskArray(path), pids)
    assert DiskArray(tmp_path / "train.32x16.npy").shape == (24, 3, 32, 16)  # resized once, beside the set
    for name, value in from_memory.model.state_dict().items():
        assert torch.equal(value, from_disk.model.state_dict()[name]), name
    assert torch.equal(from_memory.extract(images), from_disk.extract(DiskArray(path)))


PEAK_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1] + "/tests")
    from test_bounded_memory import write_samples
    from evalsuite import arrays
    from evalsuite.cache import Cache
    from evalsuite.components import resolve_anonymizer
    from evalsuite.pipeline import AnonymizedSets, ImageSet
    from attacks.reconstruction import reconstruction_quality
    folder, chunk = Path(sys.argv[2]), int(sys.argv[3])
    arrays.CHUNK_BYTES = chunk
    spec = resolve_anonymizer("blur")
    results = {}
    for count in (int(sys.argv[4]), int(sys.argv[5])):
        samples = write_samples(folder / str(count), count, height=128, width=64)
        for mode in ("disk", "memory"):
            read, write = os.pipe()
            if os.fork() == 0:  # each measurement in its own process: the peak is per process
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                cache = Cache(folder / f"cache-{count}-{mode}")
                image_set = ImageSet.from_samples("query", samples, {"name": "face"}, cache=cache if mode == "disk" else None)
                out = AnonymizedSets(cache, {"dataset": "x"}, batch_size=64).get(image_set, spec, seed=0)
                reconstruction_quality(out.images, image_set.images)
                os.write(write, str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before).encode())
                os._exit(0)
            os.close(write)
            os.wait()
            results[f"{mode}-{count}"] = int(os.read(read, 64)) * 1024
    print(json.dumps(results))
""")
CHUNK = 2 << 20  # small chunks, so that both sizes stream in several


@pytest.mark.slow  # one fresh interpreter (imports) and 3,000 images decoded and blurred: about 20 s of CPU
def test_peak_memory_of_a_set_on_disk_does_not_grow_with_its_size(tmp_path):
    """Loading, anonymizing (blur) and scoring a set 4x larger: a set on disk grows the peak by
    a small part of the extra images (their ids and annotations), the in-memory path by more
    than all of them."""
    small, large = 300, 1200
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(REPO), str(tmp_path), str(CHUNK), str(small), str(large)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    peaks = json.loads(result.stdout.strip().splitlines()[-1])
    extra = (large - small) * 128 * 64 * 3  # bytes of the extra images
    disk, memory = peaks[f"disk-{large}"] - peaks[f"disk-{small}"], peaks[f"memory-{large}"] - peaks[f"memory-{small}"]
    assert memory > extra, f"the in-memory path grew by only {memory / 2**20:.1f} MiB for {extra / 2**20:.1f} MiB of extra images"
    assert disk < extra / 4, f"a set on disk 4x larger grew the peak by {disk / 2**20:.1f} MiB ({extra / 2**20:.1f} MiB of extra images)"
