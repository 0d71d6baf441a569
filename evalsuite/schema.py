"""Type and range of every numeric run-config key, declared in one table and checked in one place.

Types come from the defaults: a key whose default is an integer takes integers only (not
``1.5``, ``"abc"`` or ``true``), a float key takes any finite number, a boolean key takes
``true`` / ``false``. Ranges are declared here: :data:`SUITE_SCHEMA` for the keys every
protocol has, :data:`PROTOCOL_SCHEMAS` for each built-in protocol's keys. A third-party
protocol adds its own with a ``config_schema`` class attribute (same shape). Keys whose
default is ``None`` are checked only when declared (``optional=True`` allows ``null``).
``dataset.*`` keys are left to the dataset, which validates its settings when it is built;
anonymizer parameters are validated by the anonymizers.

A bad value is a :class:`UserError` of one line: the key, the value, what is expected and
an example, raised before anything is loaded or written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping, Sequence

from evalsuite.errors import UserError

SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Number:
    """A scalar: an ``int`` (``integer=True``) or any finite number, within optional bounds."""

    integer: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False  # null allowed

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = "an integer" if self.integer else "a number"
        bounds = [f"{op} {_fmt(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)) if v is not None]
        text = f"{kind} {' and '.join(bounds)}".strip()
        return text + (" or null" if self.optional else "")

    def valid(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, Real):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(float(value)):
            return False
        if self.choices:
            return value in self.choices
        return not ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))

    def example(self, default: Any) -> Any:
        if self.valid(default) and default is not None:
            return default
        if self.choices:
            return self.choices[0]
        for bound in (self.ge, self.le):
            if bound is not None:
                return int(bound) if self.integer else bound
        return 1


@dataclass(frozen=True)
class NumberList:
    """A list of :class:`Number` items, at least ``min_len`` long (``[lo, hi]`` pairs: ``length=2``)."""

    item: Number
    min_len: int = 1
    length: int | None = None

    def describe(self) -> str:
        size = f"{self.length} " if self.length else ""
        items = self.item.describe().replace("an integer", "integers").replace("a number", "numbers")
        return f"a list of {size}{items}" + ("" if self.length or self.min_len < 1 else f", at least {self.min_len} value(s)")

    def valid(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return False
        if len(value) < self.min_len or (self.length is not None and len(value) != self.length):
            return False
        return all(self.item.valid(v) for v in value)

    def example(self, default: Any) -> Any:
        return default if self.valid(default) else [self.item.example(None)]


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false``."""

    def describe(self) -> str:
        return "true or false"

    def valid(self, value: Any) -> bool:
        return isinstance(value, bool)

    def example(self, default: Any) -> Any:
        return "true" if default is None else str(bool(default)).lower()


Check = Number | NumberList | Boolean


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def Int(**bounds: Any) -> Number:  # noqa: N802 - reads like a type in the tables below
    return Number(integer=True, **bounds)


def Float(**bounds: Any) -> Number:  # noqa: N802
    return Number(integer=False, **bounds)


#: keys every protocol has
SUITE_SCHEMA: dict[str, Check] = {
    "seeds": NumberList(Int(ge=0, le=SEED_MAX), min_len=1),
    "batch_size": Int(ge=1),
    "num_threads": Int(ge=1),
    "executor.workers": Int(ge=0),  # 0: one worker per num_threads cores
    "guard.min_skill": Float(ge=0, lt=1),  # the attacker-strength guard (evalsuite.reporting.strength)
}

_REGION = {"region.dilation": Int(ge=0, optional=True)}
_DETECTOR = {
    "detector.fpn_channels": Int(ge=1), "detector.head_convs": Int(ge=1), "detector.min_size": Int(ge=0), "detector.max_size": Int(ge=0),
    "detector.epochs": Int(ge=1), "detector.batch_size": Int(ge=1), "detector.lr": Float(gt=0), "detector.weight_decay": Float(ge=0),
    "detector.warmup_iters": Int(ge=0), "detector.score_threshold": Float(ge=0, le=1), "detector.detections_per_img": Int(ge=1),
    "detector.workers": Int(ge=0),
}
_RECONSTRUCTION = {"epochs": Int(ge=1), "batch_size": Int(ge=1), "lr": Float(gt=0), "width": Int(ge=1), "depth": Int(ge=1, le=6),
                   "perceptual_weight": Float(ge=0)}
_TRAINED_CNN = {"epochs": Int(ge=1), "batch_size": Int(ge=1), "lr": Float(gt=0), "width": Int(ge=1)}

_FACE_CROPS = {"image_size": Int(ge=16), "center_crop": Float(gt=0, le=1)}
#: the face recognizers' settings (evalsuite.face_recognizers), shared by the face protocols
_FACE_RECOGNIZERS = {
    "recognizer.arcface.input_mean": Float(), "recognizer.arcface.input_std": Float(gt=0), "recognizer.arcface.batch_size": Int(ge=1),
    "recognizer.cnn.input_size": Int(ge=16), "recognizer.cnn.width": Int(ge=1), "recognizer.cnn.embedding_dim": Int(ge=1),
    "recognizer.cnn.epochs": Int(ge=1), "recognizer.cnn.batch_size": Int(ge=1), "recognizer.cnn.lr": Float(gt=0),
    "recognizer.cnn.momentum": Float(ge=0, lt=1), "recognizer.cnn.weight_decay": Float(ge=0), "recognizer.cnn.label_smoothing": Float(ge=0, lt=1),
    "recognizer.cnn.margin": Float(ge=0), "recognizer.cnn.scale": Float(gt=0), "recognizer.cnn.dropout": Float(ge=0, lt=1),
    "recognizer.cnn.shift": Int(ge=0), "recognizer.cnn.jitter": Float(ge=0),
    "recognizer.iresnet.depth": Int(choices=(18, 34, 50, 100)), "recognizer.iresnet.base_width": Int(ge=1),
    "recognizer.iresnet.embedding_dim": Int(ge=1), "recognizer.iresnet.dropout": Float(ge=0, lt=1), "recognizer.iresnet.epochs": Int(ge=0),
    "recognizer.iresnet.batch_size": Int(ge=1), "recognizer.iresnet.lr": Float(gt=0), "recognizer.iresnet.momentum": Float(ge=0, lt=1),
    "recognizer.iresnet.weight_decay": Float(ge=0), "recognizer.iresnet.margin": Float(ge=0), "recognizer.iresnet.scale": Float(gt=0),
    "recognizer.iresnet.shift": Int(ge=0), "recognizer.iresnet.jitter": Float(ge=0),
    "recognizer.dlib.landmarks": Int(choices=(68, 5)), "recognizer.dlib.crop_margin": Float(ge=0, lt=0.5), "recognizer.dlib.min_size": Int(ge=1),
    "recognizer.arcface.det_size": Int(ge=32), "recognizer.arcface.det_thresh": Float(ge=0, le=1),
    "recognizer.arcface.crop_margin": Float(ge=0, lt=0.5),
}

#: each built-in protocol's own numeric keys
PROTOCOL_SCHEMAS: dict[str, dict[str, Check]] = {
    "market1501-reid": {
        **_REGION,
        "attacker.epochs": Int(ge=1), "attacker.batch_size": Int(ge=1), "attacker.lr": Float(gt=0), "attacker.weight_decay": Float(ge=0),
        "attacker.triplet_margin": Float(ge=0), "attacker.triplet_weight": Float(ge=0), "attacker.instances_per_id": Int(ge=1),
        "attacker.height": Int(ge=16), "attacker.width": Int(ge=16), "attacker.random_crop_padding": Int(ge=0),
        "attacker.random_erasing": Float(ge=0, le=1),
        **{f"reconstruction.{k}": v for k, v in _RECONSTRUCTION.items()},
    },
    "person-recognition": {
        **_REGION,
        "attacker.channels": Int(ge=1), "attacker.embedding_dim": Int(ge=1), "attacker.epochs": Int(ge=1), "attacker.batch_size": Int(ge=1),
        "attacker.lr": Float(gt=0), "attacker.weight_decay": Float(ge=0), "attacker.label_smooth": Float(ge=0, lt=1),
        "attacker.random_shift": Int(ge=0), "attacker.head_size": Int(ge=8), "attacker.body_height": Int(ge=8), "attacker.body_width": Int(ge=8),
        "attacker.svm_c": Float(gt=0), "attention.sigma": Float(ge=0),
        **{f"reconstruction.{k}": v for k, v in _RECONSTRUCTION.items()},
    },
    "face-identification": {
        **{f"reconstruction.{k}": v for k, v in _RECONSTRUCTION.items()},
        **_REGION, **_FACE_CROPS, **_FACE_RECOGNIZERS,
        "split.enrol_fraction": Float(gt=0, lt=1), "split.seed": Int(ge=0, le=SEED_MAX), "split.min_images": Int(ge=2),
        "split.max_identities": Int(ge=2, optional=True), "split.max_images_per_identity": Int(ge=2, optional=True),
        "classifier.C": Float(gt=0), "classifier.max_iter": Int(ge=1),
    },
    "lfw-verification": {
        **_REGION, **_FACE_CROPS, **_FACE_RECOGNIZERS,
        "pairs.folds": Int(ge=2), "pairs.per_fold": Int(ge=1), "pairs.seed": Int(ge=0, le=SEED_MAX),
    },
    "image-quality": {
        **_REGION,
        **_FACE_CROPS,  # face datasets
        "fid.seed": Int(ge=0, le=SEED_MAX), "fid.size": Int(ge=16), "fid.kid_subsets": Int(ge=1), "fid.kid_subset_size": Int(ge=2),
        "realness.accept_originals": Float(gt=0, le=1), **{f"realness.{k}": v for k, v in _TRAINED_CNN.items()},
        **{f"attributes.{k}": v for k, v in _TRAINED_CNN.items()},
        "ldsr.upsample": Int(ge=0), "ldsr.iou_threshold": Float(ge=0, le=1), "leak.min_coverage": Float(ge=0, le=1),
    },
    "detection-validate": {**_REGION, **_DETECTOR, "detector.upsample": Int(ge=0), "detector.threshold": Float()},
    "detection-train": {**_REGION, **_DETECTOR},
}


#: numeric parameters of the DeepPrivacy-style anonymizers (dp-body, dp-face; checked by anonymizers.deepprivacy)
DEEPPRIVACY_SCHEMA: dict[str, Check] = {
    "height": Int(ge=8), "width": Int(ge=8), "channels": Int(ge=1), "depth": Int(ge=1, le=8), "z_dim": Int(ge=1),
    "expand": Float(ge=1, le=4), "dilation": Int(ge=0), "steps": Int(ge=0), "batch_size": Int(ge=1), "lr": Float(gt=0),
    "r1_gamma": Float(ge=0), "epsilon": Float(ge=0), "l1_weight": Float(ge=0),
}

#: numeric keys of ``evalsuite train`` (anonymizer.* keys are the anonymizer's, dataset.* the dataset's)
TRAIN_SCHEMA: dict[str, Check] = {
    "seed": Int(ge=0, le=SEED_MAX), "region.dilation": Int(ge=0, optional=True), "holdout_ids": Int(ge=1), "sample_every": Int(ge=1),
    "checkpoint_every": Int(ge=1), "fid_every": Int(ge=1), "grid_images": Int(ge=1),
}


def schema_for(protocol_name: str, protocol_cls: type | None = None) -> dict[str, Check]:
    """The declared checks of one protocol's config (suite keys included)."""
    schema = {**SUITE_SCHEMA, **PROTOCOL_SCHEMAS.get(protocol_name, {})}
    schema.update(getattr(protocol_cls, "config_schema", None) or {})
    return schema


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def inferred(default: Any) -> Check | None:
    """The check a default value implies: bool -> Boolean, int -> Int, float -> Float."""
    if isinstance(default, bool):
        return Boolean()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Float()
    return None


def numeric_keys(defaults: Mapping[str, Any]) -> list[str]:
    """Keys whose default is a number (bool excluded) or a list of numbers, outside ``dataset``."""
    out = []
    for key, value in _flatten(defaults).items():
        if key.startswith("dataset."):
            continue
        scalar = isinstance(value, Real) and not isinstance(value, bool)
        listed = isinstance(value, (list, tuple)) and value and all(isinstance(v, Real) and not isinstance(v, bool) for v in value)
        if scalar or listed:
            out.append(key)
    return out


def validate(values: Mapping[str, Any], defaults: Mapping[str, Any], protocol_name: str, protocol_cls: type | None = None) -> None:
    """Check ``values`` (the composed config as plain containers) against the schema.

    ``defaults`` is the config before the user's overrides: it gives each key's type.
    """
    schema = schema_for(protocol_name, protocol_cls)
    flat_values, flat_defaults = _flatten(values), _flatten(defaults)
    for key, value in flat_values.items():
        if key.startswith("dataset."):
            continue
        default = flat_defaults.get(key)
        check = schema.get(key) or inferred(default)
        if check is None:
            continue
        if not check.valid(value):
            example = [value] if isinstance(check, NumberList) and check.item.valid(value) else check.example(default)  # seeds=5 -> seeds=[5]
            raise UserError(f"{key}={_show(value)}: expected {check.describe()} (default {_show(default)}); e.g. {key}={_show(example)}")
    for key, check in schema.items():  # a declared key given a mapping flattens to key.sub: refuse it too
        if key not in flat_values and any(k.startswith(key + ".") for k in flat_values):
            raise UserError(f"{key}: expected {check.describe()}, not a mapping; e.g. {key}={_show(check.example(flat_defaults.get(key)))}")


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def unchecked_numeric_keys(defaults: Mapping[str, Any], protocol_name: str, protocol_cls: type | None = None) -> list[str]:
    """Numeric keys of ``defaults`` that have no declared range (for the completeness test)."""
    schema = schema_for(protocol_name, protocol_cls)
    return [k for k in numeric_keys(defaults) if k not in schema]


def undeclared_schema_keys(defaults: Mapping[str, Any], protocol_name: str, keys: Sequence[str] | None = None) -> list[str]:
    """Declared keys this protocol's config does not have (stale schema entries)."""
    flat = _flatten(defaults)
    declared = keys if keys is not None else list(schema_for(protocol_name))
    return [k for k in declared if k not in flat]
