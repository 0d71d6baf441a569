"""``evalsuite train``: train a registered trainable anonymizer on a registered dataset's training split.

    evalsuite train anonymizer=dp-body dataset=synthetic out=DIR [anonymizer.steps=600] [seed=0] ...

    evalsuite train anonymizer=upgan dataset=synthetic-faces out=DIR

The dataset's training split (a face dataset: every image with an identity, read as
``FACE_SIZE`` px crops) is divided by identity: the last ``holdout_ids`` identities
(sorted pids) are held out, the rest is trained on. On the held-out images the command
writes sample grids (``samples/step_NNNNNN.png``: originals above, anonymized below) every
``sample_every`` steps and measures FID (the offline random-feature FID of
:mod:`evalsuite.metrics.fidelity`, anonymized held-out images against the originals) every
``fid_every`` steps and at the end, into ``metrics.jsonl``.

Resumable: every ``checkpoint_every`` steps ``checkpoint.safetensors`` (generator and
discriminator weights, both optimizers' states, the step and the state of the one random
generator every draw comes from) is written atomically; the same command run again (after
kill -9 too) continues from it and takes exactly the steps an uninterrupted run takes.
The configuration must be the same except ``anonymizer.steps`` and the reporting
intervals (so a finished run can be extended). At the end ``weights.safetensors`` (the
generator, loadable by ``checkpoint=DIR/weights.safetensors``) and ``config.json`` (what
made them) are written. Bad input is one line and exit 2, before anything is written.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from evalsuite.progress import tqdm

from evalsuite.errors import UserError, did_you_mean
from evalsuite.schema import TRAIN_SCHEMA, _show

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
WEIGHTS_NAME = "weights.safetensors"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
FACE_SIZE = 112  # face datasets are read as square crops of this size (face-identification's image_size)
#: settings that may change between a run and its resumption
RESUMABLE_CHANGES = ("anonymizer.steps", "sample_every", "checkpoint_every", "fid_every")
DEFAULTS: dict[str, Any] = {
    "anonymizer": None, "dataset": None, "out": None, "seed": 0, "device": "cpu", "region": None, "region.dilation": None,
    "holdout_ids": 10, "sample_every": 100, "checkpoint_every": 50, "fid_every": 200, "grid_images": 8,
}


def parse(overrides: Sequence[str]) -> dict[str, Any]:
    """``key=value`` overrides -> the flat training config (UserError for unknown keys or bad values)."""
    from evalsuite.config import parse_overrides

    values = dict(DEFAULTS)
    for key, value in parse_overrides(overrides):
        if key not in DEFAULTS and not key.startswith(("anonymizer.", "dataset.")):
            raise UserError(f"unknown train key {key!r}: {did_you_mean(key, list(DEFAULTS) + ['anonymizer.<param>', 'dataset.<setting>'])}")
        values[key] = value
    for key in ("anonymizer", "dataset", "out"):
        if not values[key] or not isinstance(values[key], str):
            raise UserError(f"evalsuite train needs {key}=..., e.g. evalsuite train anonymizer=dp-body dataset=synthetic out=runs/dp-body")
    for key, check in TRAIN_SCHEMA.items():
        if key in values and not check.valid(values[key]):
            raise UserError(f"{key}={_show(values[key])}: expected {check.describe()} (default {_show(DEFAULTS.get(key))}); e.g. {key}={_show(check.example(DEFAULTS.get(key)))}")
    return values


def _section(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) + 1:]: v for k, v in values.items() if k.startswith(prefix + ".")}


def build_anonymizer(values: dict[str, Any]) -> Any:
    """The configured anonymizer; UserError unless it can be trained by this command."""
    from evalsuite.registry import ANONYMIZERS

    entry = ANONYMIZERS.get(values["anonymizer"])
    try:
        anonymizer = entry.build(**_section(values, "anonymizer"))
    except TypeError as exc:
        raise UserError(f"anonymizer {values['anonymizer']!r}: {exc}") from None
    if not callable(getattr(anonymizer, "make_trainer", None)):
        trainable = [e.name for e in ANONYMIZERS if callable(getattr(e.factory, "make_trainer", None))]
        raise UserError(f"anonymizer {values['anonymizer']!r} is not trainable by evalsuite train; trainable: {', '.join(trainable)}")
    if getattr(anonymizer, "checkpoint", None) is not None:
        raise UserError("anonymizer.checkpoint is for using trained weights; evalsuite train resumes from OUT/checkpoint.safetensors by itself")
    return anonymizer


def split_dataset(values: dict[str, Any], region: dict[str, Any]) -> tuple[Any, Any]:
    """(train, held-out) image sets of the dataset's training split, divided by identity."""
    from evalsuite.pipeline import ImageSet
    from evalsuite.registry import DATASETS

    from evalsuite.data.faces import FaceDataset

    dataset = DATASETS.build(values["dataset"], **_section(values, "dataset"))
    if isinstance(dataset, FaceDataset):  # every face with an identity, as FACE_SIZE px crops (face-identification's default)
        samples = [s for s in dataset.samples if s.identity is not None]
        identity = lambda s: s.identity  # noqa: E731
    else:
        samples = getattr(dataset, "train", None) or []
        identity = lambda s: s.pid  # noqa: E731
    if not samples or (not isinstance(dataset, FaceDataset) and not hasattr(samples[0], "pid")):
        raise UserError(f"dataset {values['dataset']!r}: evalsuite train reads a re-id dataset's training split (market1501, synthetic) "
                        "or a face dataset's images with identities (synthetic-faces, celeba, face-folder)")
    pids = sorted({identity(s) for s in samples})
    holdout = int(values["holdout_ids"])
    if holdout >= len(pids):
        raise UserError(f"holdout_ids={holdout}: the training split has only {len(pids)} identities; hold out fewer")
    held = set(pids[len(pids) - holdout:])
    train = [s for s in samples if identity(s) not in held]
    test = [s for s in samples if identity(s) in held]
    if isinstance(dataset, FaceDataset):
        return ImageSet.from_faces("train", train, region, FACE_SIZE, 1.0), ImageSet.from_faces("holdout", test, region, FACE_SIZE, 1.0)
    return ImageSet.from_samples("train", train, region), ImageSet.from_samples("holdout", test, region)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in config["settings"].items() if k not in RESUMABLE_CHANGES}
    return {"settings": flat, "anonymizer": {k: v for k, v in config["anonymizer"]["params"].items() if k != "steps"}}


class Reporter:
    """Sample grids and FID on the held-out images."""

    def __init__(self, anonymizer: Any, holdout: Any, out: Path, values: dict[str, Any], device: str) -> None:
        from evalsuite.metrics.fidelity import FeatureBank, build_extractor

        self.anonymizer, self.holdout, self.out, self.device = anonymizer, holdout, out, device
        self.grid = int(values["grid_images"])
        extractor = build_extractor("random", {"seed": 0, "size": 96}, download=False)
        self.bank = FeatureBank({"random": extractor}, cache=None, batch_size=64)

    def anonymized(self, generator: torch.nn.Module, count: int | None = None) -> torch.Tensor:
        clone = self.anonymizer.clone().use_generator(copy.deepcopy(generator))
        images, masks = self.holdout.images[:count], self.holdout.masks[:count]
        annotations = self.holdout.annotations[:count] if count else self.holdout.annotations
        out = clone.anonymize(images, masks, annotations, generator=torch.Generator().manual_seed(0))
        return torch.where(masks.expand_as(images), out, images)

    def grid_png(self, generator: torch.nn.Module, step: int) -> Path:
        from torchvision.utils import save_image

        from evalsuite.store import atomic_path

        count = min(self.grid, len(self.holdout))
        rows = torch.cat([self.holdout.images[:count], self.anonymized(generator, count)]).float() / 255
        path = self.out / "samples" / f"step_{step:06d}.png"
        with atomic_path(path) as tmp:
            save_image(rows, tmp, nrow=count, padding=2, format="png")
        return path

    def fid(self, generator: torch.nn.Module) -> float:
        from evalsuite.metrics.fidelity import fid_kid

        scores = fid_kid(self.bank, "random", ("holdout", self.holdout.images), (f"anonymized-{id(generator)}-{time.time()}", self.anonymized(generator)), kid_subsets=10, kid_subset_size=50)
        return scores["fid_random"]


def _append_metrics(path: Path, rows: list[dict[str, Any]], keep_until: int | None = None) -> None:
    """Rewrite ``metrics.jsonl`` atomically: its rows up to ``keep_until`` (resumed step) plus ``rows``."""
    from evalsuite.store import atomic_write_text

    old = []
    if path.exists():
        old = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if keep_until is not None:
            old = [r for r in old if r.get("step", 0) <= keep_until]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in old + rows))


def train(values: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) one training; returns the final config document."""
    from anonymizers.base import load_state_file, save_state
    from evalsuite.registry import load_all
    from evalsuite.store import atomic_path, atomic_write_text, check_writable_folder, remove_stale_temps

    load_all()
    out = Path(values["out"]).expanduser()
    check_writable_folder(out, "out")
    anonymizer = build_anonymizer(values)
    region = {"name": values["region"] or anonymizer.region_name,
              "dilation": values["region.dilation"], "fallback": "image"}
    settings = {k: v for k, v in values.items() if not k.startswith("anonymizer.") and k != "out"}
    settings["anonymizer.steps"] = anonymizer.config.steps
    config = {"command": "evalsuite train", "anonymizer": {"name": values["anonymizer"], "params": anonymizer.get_params(),
              "code_version": anonymizer.code_hash()}, "region": region, "settings": settings}
    checkpoint_path = out / CHECKPOINT_NAME
    resumed: dict[str, Any] | None = None
    if checkpoint_path.exists():
        try:
            resumed = load_state_file(checkpoint_path)
        except Exception as exc:  # noqa: BLE001 - a foreign or damaged file
            raise UserError(f"checkpoint {checkpoint_path}: unreadable ({type(exc).__name__}); delete it to start over") from None
        before = resumed.get("train_config") or {}
        if not before or _comparable(before) != _comparable(config):
            raise UserError(f"checkpoint {checkpoint_path}: key train_config differs from this command's settings (only {', '.join(RESUMABLE_CHANGES)} may change); "
                            "use another out=DIR or the same settings")
    train_set, holdout = split_dataset(values, region)
    device = str(values["device"])
    trainer = anonymizer.make_trainer(train_set.images, train_set.masks, train_set.annotations, seed=int(values["seed"]), device=device)
    remove_stale_temps(out)
    if resumed is not None:
        trainer.resume(resumed, str(checkpoint_path))
        log.info("resuming %s from step %d (%s)", values["anonymizer"], trainer.step, checkpoint_path)
    reporter = Reporter(anonymizer, holdout, out, values, device)
    steps = anonymizer.config.steps
    metrics_path = out / METRICS_NAME
    _append_metrics(metrics_path, [], keep_until=trainer.step)

    def save_checkpoint() -> None:
        state = trainer.checkpoint()
        state["train_config"] = config
        with atomic_path(checkpoint_path) as tmp:
            save_state(state, tmp)

    started = time.perf_counter()
    log.info("training %s on %d images (%d region crops), %d held out; %d steps", values["anonymizer"], len(train_set), len(trainer.data), len(holdout), steps)
    pending: list[dict[str, Any]] = []  # metrics rows not yet written (written just before each checkpoint)
    with tqdm(total=steps, initial=trainer.step, desc=f"train {values['anonymizer']}", unit="step") as progress:
        while trainer.step < steps:
            losses = trainer.train_step()
            progress.update(1)
            step = trainer.step
            if step % 10 == 0 or step == steps:
                pending.append({"step": step, **{k: round(v, 5) for k, v in losses.items()}})
            if step % int(values["sample_every"]) == 0:
                reporter.grid_png(trainer.model, step)
            if step % int(values["fid_every"]) == 0 and step < steps:
                pending.append({"step": step, "fid_random": reporter.fid(trainer.model)})
            if step % int(values["checkpoint_every"]) == 0 or step == steps:
                _append_metrics(metrics_path, pending)
                pending = []
                save_checkpoint()
            progress.set_postfix({k: f"{v:.3f}" for k, v in list(losses.items())[:4]})
    if trainer.step == 0 or not checkpoint_path.exists():
        save_checkpoint()
    fid = reporter.fid(trainer.model)
    grid = reporter.grid_png(trainer.model, trainer.step)
    anonymizer.use_generator(copy.deepcopy(trainer.model))
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_state(anonymizer.state_dict(), tmp)
    config.update(steps_done=trainer.step, final={"fid_random_holdout": fid, "holdout_images": len(holdout), "train_images": len(train_set),
                  "region_crops": len(trainer.data), "grid": str(grid.relative_to(out)), "seconds_this_run": round(time.perf_counter() - started, 1)},
                  weights=WEIGHTS_NAME)
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config
