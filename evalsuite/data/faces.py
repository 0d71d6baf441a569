"""Face datasets: the ``FaceSample`` / ``FaceDataset`` data model and three real-format readers.

Registered in :data:`evalsuite.registry.DATASETS`:

- ``face-folder``: one folder per identity, LFW / FaceScrub style: ``root/<identity>/<image>.jpg``;
- ``celeba``: the CelebA layout (also torchvision's ``root/celeba/...``)::

      img_align_celeba/000001.jpg ...
      identity_CelebA.txt              "000001.jpg 2880"                       (required)
      list_attr_celeba.txt             count, 40 names, "000001.jpg -1 1 ..."  (optional)
      list_landmarks_align_celeba.txt  count, 10 names, "000001.jpg x y ..."   (optional, 5 points)
      list_eval_partition.txt          "000001.jpg 0" (0 train, 1 val, 2 test) (optional)

- ``utkface``: UTKFace's ``[age]_[gender]_[race]_[date&time].jpg`` (also the aligned set's
  ``....jpg.chip.jpg``): attributes from the name, **no identity** (UTKFace has one image per
  unlabelled person). Identification protocols refuse it with a UserError; it serves attribute
  utility (age / gender / race) only.

Each reader also merges an optional sidecar ``evalsuite_faces.json`` (in the dataset folder, or
any file given as ``sidecar=``) holding what the lists lack::

    {"format": "evalsuite-faces/1",
     "images": {"img_align_celeba/000001.jpg": {         # path relative to the dataset root
         "landmarks68": [[x, y] x 68],                   # iBUG 300-W / dlib order
         "landmarks7": [[x, y] x 7], "landmarks5": [[x, y] x 5],
         "face_box": [x0, y0, x1, y1],                   # or null: no face in this photo
         "attributes": {"age": 31, "gender": "female", "skin_tone": "medium", ...}}}}

``"face_box": null`` marks a photo in which there is no face (a detector found none and the
user agreed): every reader drops such photos, with one log line counting them, so that one
faceless photo does not stop a face protocol. A missing ``face_box`` key means "not given"
(the box then comes from the landmarks, or from detection: ``dataset.detector``, cached as a
sidecar of this format, :mod:`evalsuite.data.face_boxes`).

Images: any file Pillow decodes with one of :data:`IMAGE_EXTENSIONS` (JPEG, PNG, BMP, WebP,
TIFF and the Netpbm formats, e.g. the AT&T faces' 8-bit ``.pgm``), turned into RGB.

Landmark orders (pixels of the stored image, x right, y down; "left"/"right" as seen in the image):
- 5 (CelebA): left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner;
- 7 (UP-GAN): left eye centre, right eye centre, nose tip, left mouth corner, upper lip centre,
  right mouth corner, lower lip centre;
- 68: iBUG 300-W (dlib's 68-point predictor): jaw 0-16, brows 17-26, nose 27-35, eyes 36-47
  (36-41 the image-left eye, starting at its outer corner), lips 48-67.

Binary attributes are stored as 0/1 (CelebA's -1/1 converted); numeric and text ones
(``age``, ``gender``, ``race``, ``skin_tone``) as they are.
"""
from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.splits import ON_DISK
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS

log = logging.getLogger(__name__)

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
CELEBA_LANDMARK_NAMES = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                         "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
CELEBA_IMAGES = "img_align_celeba"
CELEBA_IDENTITY = "identity_CelebA.txt"
CELEBA_ATTR = "list_attr_celeba.txt"
CELEBA_LANDMARKS = "list_landmarks_align_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_PARTITIONS = {code: split for split, code in ON_DISK["celeba"].items()}  # list_eval_partition.txt code -> split

FACE_SIDECAR = "evalsuite_faces.json"
FACE_SIDECAR_FORMAT = "evalsuite-faces/1"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm")
LANDMARK_COUNTS = (5, 7, 68)

UTK_PATTERN = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)
UTK_EXPECTED = "[age]_[gender]_[race]_[date&time].jpg (gender 0 male / 1 female, race 0-4; e.g. 25_0_2_20170116174525125.jpg.chip.jpg)"
UTK_RACES = ("white", "black", "asian", "indian", "others")

#: iBUG-68 indices that give the shared 5-point annotation (see evalsuite.data.types):
#: person's right eye outer / inner (image left), left eye outer / inner, nose bottom
DLIB5_FROM_68 = (36, 39, 45, 42, 33)


# --------------------------------------------------------------------------- data model

@dataclass
class FaceSample:
    """One aligned face crop.

    ``identity`` is None where the dataset has no identity labels (UTKFace). ``split`` is the
    dataset's own partition ("train" / "val" / "test" in CelebA), None where it has none; the
    identification protocol makes its own enrolment / probe split. ``landmarks`` maps a point
    count (5, 7 or 68, orders in the module docstring) to ``[[x, y], ...]`` in image pixels.
    """

    path: str
    identity: str | None
    split: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    landmarks: dict[int, list[list[float]]] = field(default_factory=dict)
    face_box: list[float] | None = None
    root: str = ""

    @property
    def relpath(self) -> str:
        """Path relative to the dataset root (the key of sidecars and caches)."""
        try:
            return Path(self.path).relative_to(self.root).as_posix() if self.root else Path(self.path).name
        except ValueError:
            return Path(self.path).name

    @property
    def annotations(self) -> dict[str, Any]:
        """The keys region providers and anonymizers read (see :mod:`evalsuite.data.types`)."""
        out: dict[str, Any] = {"attributes": self.attributes, "view": "front"}
        if self.identity is not None:
            out["identity"] = self.identity  # fitted anonymizers train on it (uap's surrogate recognizer)
        box = self.face_box if self.face_box is not None else box_from_landmarks(self.landmarks)
        if box is not None:
            out["face_box"] = box
        if 68 in self.landmarks:
            out["landmarks"] = [self.landmarks[68][i] for i in DLIB5_FROM_68]
        if self.landmarks:
            out["face_landmarks"] = self.landmarks
        return out


@dataclass
class FaceDataset:
    """A list of face samples and what the dataset can offer."""

    name: str
    root: str
    samples: list[FaceSample]
    has_identities: bool = True
    attribute_names: tuple[str, ...] = ()
    #: how missing face boxes are detected (:mod:`evalsuite.data.face_boxes`); {}: they are not
    detector: dict[str, Any] = field(default_factory=dict)

    def identities(self) -> dict[str, list[FaceSample]]:
        """identity -> its samples (sorted by path); empty when the dataset has no identities."""
        groups: dict[str, list[FaceSample]] = defaultdict(list)
        for sample in self.samples:
            if sample.identity is not None:
                groups[sample.identity].append(sample)
        return {k: sorted(v, key=lambda s: s.path) for k, v in sorted(groups.items())}

    def summary(self) -> str:
        ids = f"{len(self.identities())} identities" if self.has_identities else "no identity labels"
        return f"{self.name}: {len(self.samples)} face images, {ids}, {len(self.attribute_names)} attributes"


def box_from_landmarks(landmarks: dict[int, list[list[float]]]) -> list[float] | None:
    """A face box [x0, y0, x1, y1] around the landmarks (68: their extent widened upwards to the
    forehead; 5 / 7: scaled from the eye and mouth distances), None without landmarks."""
    if 68 in landmarks:
        pts = np.asarray(landmarks[68], dtype=np.float64)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        brow_to_chin = y1 - pts[17:27, 1].min()
        return [float(x0), float(max(0.0, y0 - 0.25 * brow_to_chin)), float(x1), float(y1)]
    for count in (7, 5):
        if count in landmarks:
            pts = np.asarray(landmarks[count], dtype=np.float64)
            eyes = (pts[0] + pts[1]) / 2
            mouth = pts[3:].mean(axis=0) if count == 5 else (pts[3] + pts[5]) / 2
            d = float(np.linalg.norm(mouth - eyes))
            cx = float((eyes[0] + mouth[0]) / 2)
            return [cx - 1.1 * d, float(eyes[1] - 1.0 * d), cx + 1.1 * d, float(mouth[1] + 0.9 * d)]
    return None


def read_face_image(path: str | Path, hint: str = "replace the file or remove it from the dataset") -> np.ndarray:
    """A face image as uint8 H x W x 3 RGB; UserError naming the file and the fix when unreadable."""
    from evalsuite.data.market1501 import decode_rgb

    path = Path(path)
    if not path.is_file():
        raise UserError(f"face image {path} does not exist; {hint}")
    try:
        return decode_rgb(path)
    except ValueError as exc:
        raise UserError(f"corrupt or unreadable face image {path} ({exc}); {hint}") from None


# --------------------------------------------------------------------------- sidecar

def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(float(value))


def _points(value: Any, count: int, where: str) -> list[list[float]]:
    if not (isinstance(value, list) and len(value) == count
            and all(isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in value)):
        raise UserError(f"{where} must be a list of {count} [x, y] number pairs")
    return [[float(x), float(y)] for x, y in value]


def load_face_sidecar(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate an ``evalsuite-faces/1`` sidecar: relpath -> entry."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise UserError(f"face annotation sidecar {path} does not exist; set dataset.sidecar=/path/to/{FACE_SIDECAR} or dataset.sidecar=null")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"face annotation sidecar {path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(doc, dict) or doc.get("format") != FACE_SIDECAR_FORMAT or not isinstance(doc.get("images"), dict):
        raise UserError(f"face annotation sidecar {path} is not in the {FACE_SIDECAR_FORMAT!r} format (an object with \"format\" and \"images\"); see evalsuite/data/faces.py")
    entries: dict[str, dict[str, Any]] = {}
    for key, entry in doc["images"].items():
        where = f"face annotation sidecar {path}, entry {key!r}:"
        if not isinstance(entry, dict):
            raise UserError(f"{where} must be an object")
        clean: dict[str, Any] = {"landmarks": {}}
        for count in LANDMARK_COUNTS:
            if entry.get(f"landmarks{count}") is not None:
                clean["landmarks"][count] = _points(entry[f"landmarks{count}"], count, f"{where} landmarks{count}")
        box = entry.get("face_box")
        if "face_box" in entry and box is None:
            clean["no_face"] = True
        if box is not None:
            if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box) and box[2] > box[0] and box[3] > box[1]):
                raise UserError(f"{where} face_box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {box!r}")
            clean["face_box"] = [float(v) for v in box]
        attributes = entry.get("attributes", {})
        if not isinstance(attributes, dict):
            raise UserError(f"{where} attributes must be an object")
        clean["attributes"] = attributes
        entries[key] = clean
    return entries


def _merge_sidecar(samples: list[FaceSample], root: Path, sidecar: str | Path | None) -> list[FaceSample]:
    """Merge the sidecars into ``samples``; the samples left once those marked ``face_box: null`` are dropped."""
    sources = [root / FACE_SIDECAR] if (root / FACE_SIDECAR).is_file() else []
    if sidecar is not None:
        sources.append(Path(sidecar).expanduser().absolute())
    faceless: set[str] = set()
    for source in sources:
        faceless = apply_sidecar(samples, load_face_sidecar(source), source, root, faceless)
    return drop_faceless(samples, faceless, root)


def apply_sidecar(samples: list[FaceSample], entries: dict[str, dict[str, Any]], source: str | Path, root: str | Path,
                  faceless: set[str] | None = None) -> set[str]:
    """Merge one sidecar's ``entries`` (:func:`load_face_sidecar`) into ``samples``; the relpaths
    marked "no face" so far (``faceless``, updated: a later box overrides an earlier "no face")."""
    faceless = set(faceless or ())
    by_key = {s.relpath: s for s in samples}
    unmatched = 0
    for key, entry in entries.items():
        sample = by_key.get(key)
        if sample is None:
            unmatched += 1
            continue
        sample.landmarks.update(entry["landmarks"])
        if "face_box" in entry:
            sample.face_box = entry["face_box"]
            faceless.discard(key)
        if entry.get("no_face"):
            faceless.add(key)
        sample.attributes.update(entry["attributes"])
    if unmatched:
        log.warning("%d entries of %s match no image of %s", unmatched, source, root)
    return faceless


def drop_faceless(samples: list[FaceSample], faceless: set[str], root: str | Path) -> list[FaceSample]:
    """``samples`` without those in ``faceless``, with one log line counting them."""
    if faceless:
        log.warning("skipped %d of %d photos of %s that a sidecar marks as having no face (face_box: null)", len(faceless), len(samples), root)
    return [s for s in samples if s.relpath not in faceless]


# --------------------------------------------------------------------------- folder per identity

def load_face_folder(root: str | Path, sidecar: str | Path | None = None, name: str = "face-folder") -> FaceDataset:
    """``root/<identity>/<image>`` (LFW, FaceScrub, VGGFace2 style): the folder name is the identity."""
    root = Path(root).expanduser().absolute()
    hint = "expected one folder per identity, root/<identity>/<image>.jpg (LFW / FaceScrub layout); set dataset.root"
    if not root.is_dir():
        raise UserError(f"face folder dataset not found: {root} is not a folder; {hint}")
    loose = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if loose:
        raise UserError(f"face folder dataset {root} has images directly in its root (e.g. {loose[0].name}); {hint}: move each image into its identity's folder")
    samples: list[FaceSample] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            nested = next((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), None)
            if nested is not None:
                raise UserError(f"face folder dataset {root}: image {nested} is nested below its identity folder {folder.name}; {hint}")
            log.debug("skipping %s: no images", folder)
            continue
        samples += [FaceSample(path=str(p), identity=folder.name, root=str(root)) for p in images]
    if not samples:
        raise UserError(f"face folder dataset {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}); {hint}")
    samples = _kept(_merge_sidecar(samples, root, sidecar), root)
    return FaceDataset(name=name, root=str(root), samples=samples, has_identities=True, attribute_names=_attribute_names(samples))


def _kept(samples: list[FaceSample], root: Path) -> list[FaceSample]:
    if not samples:
        raise UserError(f"every photo of {root} is marked as having no face (face_box: null) in its sidecar; nothing is left to evaluate")
    return samples


def _attribute_names(samples: list[FaceSample]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for s in samples:
        names.update(dict.fromkeys(s.attributes))
    return tuple(names)


# --------------------------------------------------------------------------- CelebA

def resolve_celeba_root(root: str | Path) -> Path:
    """The folder holding ``img_align_celeba`` and ``identity_CelebA.txt``: root or root/celeba."""
    given = Path(root).expanduser().absolute()
    for candidate in (given, given / "celeba", given / "CelebA"):
        if (candidate / CELEBA_IMAGES).is_dir() and (candidate / CELEBA_IDENTITY).is_file():
            return candidate
    if not given.is_dir():
        raise UserError(f"CelebA not found: {given} does not exist; set dataset.root=/path/to/celeba (holding {CELEBA_IMAGES}/ and {CELEBA_IDENTITY}) or use dataset=synthetic")
    for candidate in (given, given / "celeba", given / "CelebA"):
        if (candidate / CELEBA_IMAGES).is_dir():
            raise UserError(f"CelebA folder {candidate} lacks {CELEBA_IDENTITY} (lines '000001.jpg 2880'); download it from the CelebA site into {candidate}")
    raise UserError(f"CelebA folder {given} lacks {CELEBA_IMAGES}/ (and {CELEBA_IDENTITY}); set dataset.root to the folder holding them")


def _read_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file; replace it with CelebA's original list") from None
    return [line.split() for line in text.splitlines() if line.strip()]


def _read_celeba_table(path: Path, names: tuple[str, ...] | None, kind: str, parse: Any) -> tuple[tuple[str, ...], dict[str, list[Any]]]:
    """A CelebA list with a count line and a header line: (header, file -> parsed values)."""
    rows = _read_lines(path)
    fix = f"replace {path.name} with CelebA's original file"
    if len(rows) < 2 or len(rows[0]) != 1 or not rows[0][0].isdigit():
        raise UserError(f"{path}: the first line must be the number of images ({kind} list); {fix}")
    header = tuple(rows[1])
    if names is not None and header != names:
        raise UserError(f"{path}: line 2 must list the {len(names)} {kind} names ({' '.join(names[:3])} ...), found {' '.join(header[:3])} ...; {fix}")
    table: dict[str, list[Any]] = {}
    for lineno, row in enumerate(rows[2:], start=3):
        if len(row) != len(header) + 1:
            raise UserError(f"{path}:{lineno}: expected a file name and {len(header)} values, found {len(row)} fields; {fix}")
        try:
            table[row[0]] = [parse(v) for v in row[1:]]
        except ValueError as exc:
            raise UserError(f"{path}:{lineno}: {exc}; {fix}") from None
    if int(rows[0][0]) != len(table):
        raise UserError(f"{path}: declares {rows[0][0]} images but lists {len(table)}; {fix}")
    return header, table


def _binary(value: str) -> int:
    if value not in ("1", "-1"):
        raise ValueError(f"attribute value {value!r} is neither 1 nor -1")
    return 1 if value == "1" else 0


def load_celeba(root: str | Path, sidecar: str | Path | None = None, name: str = "celeba") -> FaceDataset:
    """Read the CelebA layout (module docstring). Every listed image must exist."""
    root = resolve_celeba_root(root)
    images = root / CELEBA_IMAGES
    samples: list[FaceSample] = []
    for lineno, row in enumerate(_read_lines(root / CELEBA_IDENTITY), start=1):
        if len(row) != 2:
            raise UserError(f"{root / CELEBA_IDENTITY}:{lineno}: expected '<file> <identity>', found {' '.join(row)!r}; replace it with CelebA's original file")
        samples.append(FaceSample(path=str(images / row[0]), identity=row[1], root=str(root)))
    if not samples:
        raise UserError(f"{root / CELEBA_IDENTITY} lists no images")
    missing = next((s for s in samples if not Path(s.path).is_file()), None)
    if missing is not None:
        raise UserError(f"CelebA image {missing.path} listed in {CELEBA_IDENTITY} does not exist; restore {CELEBA_IMAGES}/ or remove its line from {root / CELEBA_IDENTITY}")
    by_name = {Path(s.path).name: s for s in samples}
    attribute_names: tuple[str, ...] = ()
    if (root / CELEBA_ATTR).is_file():
        attribute_names, table = _read_celeba_table(root / CELEBA_ATTR, None, "attribute", _binary)
        _attach(table, by_name, root / CELEBA_ATTR, lambda s, v: s.attributes.update(zip(attribute_names, v)))
    if (root / CELEBA_LANDMARKS).is_file():
        _, table = _read_celeba_table(root / CELEBA_LANDMARKS, CELEBA_LANDMARK_NAMES, "landmark coordinate", float)
        _attach(table, by_name, root / CELEBA_LANDMARKS, lambda s, v: s.landmarks.__setitem__(5, [[v[i], v[i + 1]] for i in range(0, 10, 2)]))
    if (root / CELEBA_PARTITION).is_file():
        for lineno, row in enumerate(_read_lines(root / CELEBA_PARTITION), start=1):
            if len(row) != 2 or row[1] not in CELEBA_PARTITIONS:
                raise UserError(f"{root / CELEBA_PARTITION}:{lineno}: expected '<file> 0|1|2', found {' '.join(row)!r}; replace it with CelebA's original file")
            if row[0] in by_name:
                by_name[row[0]].split = CELEBA_PARTITIONS[row[1]]
    samples = _kept(_merge_sidecar(samples, root, sidecar), root)
    names = attribute_names + tuple(n for n in _attribute_names(samples) if n not in attribute_names)
    return FaceDataset(name=name, root=str(root), samples=samples, has_identities=True, attribute_names=names)


def _attach(table: dict[str, list[Any]], by_name: dict[str, FaceSample], source: Path, setter: Any) -> None:
    missing = [n for n in by_name if n not in table]
    if missing:
        raise UserError(f"{source} has no line for {missing[0]} (and {len(missing) - 1} more images of {CELEBA_IDENTITY}); replace it with CelebA's original file")
    for file, values in table.items():
        if file in by_name:
            setter(by_name[file], values)


# --------------------------------------------------------------------------- UTKFace

def parse_utk_name(path: str | Path) -> dict[str, Any]:
    """Attributes from a UTKFace file name; UserError naming the file when it does not parse."""
    match = UTK_PATTERN.match(Path(path).name)
    if match is None:
        raise UserError(f"unexpected UTKFace file name {path}: expected {UTK_EXPECTED}; rename or remove it, or set dataset.skip_malformed=true")
    age, gender, race = int(match.group(1)), int(match.group(2)), int(match.group(3))
    return {"age": age, "gender": "female" if gender else "male", "Male": 1 - gender, "race": UTK_RACES[race]}


def load_utkface(root: str | Path, skip_malformed: bool = False, sidecar: str | Path | None = None, name: str = "utkface") -> FaceDataset:
    """UTKFace (attributes in file names, no identities). ``skip_malformed`` drops (and counts)
    files whose names do not parse instead of stopping; the real set has a few."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise UserError(f"UTKFace not found: {root} is not a folder; set dataset.root=/path/to/UTKFace (the folder of {UTK_EXPECTED.split(' ')[0]} files)")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    samples: list[FaceSample] = []
    skipped = 0
    for p in paths:
        if skip_malformed and UTK_PATTERN.match(p.name) is None:
            skipped += 1
            continue
        samples.append(FaceSample(path=str(p), identity=None, attributes=parse_utk_name(p), root=str(root)))
    if skipped:
        log.warning("skipped %d UTKFace files whose names do not follow %s", skipped, UTK_EXPECTED)
    if not samples:
        raise UserError(f"UTKFace folder {root} holds no images named {UTK_EXPECTED}")
    samples = _kept(_merge_sidecar(samples, root, sidecar), root)
    return FaceDataset(name=name, root=str(root), samples=samples, has_identities=False, attribute_names=_attribute_names(samples))


# --------------------------------------------------------------------------- registration

def _detecting(dataset: FaceDataset, detector: str | None, upsample: int, models_dir: str | None) -> FaceDataset:
    from evalsuite.data.face_boxes import detector_settings

    dataset.detector = detector_settings(detector, upsample, models_dir)
    return dataset


# detector / detector_upsample / detector_models_dir: face boxes by detection where a photo has
# none and the region needs one (evalsuite/data/face_boxes.py)

@DATASETS.register("face-folder", description="faces in one folder per identity (LFW / FaceScrub style); dataset.root=/path/to/faces")
def face_folder(root: str = "data/faces", sidecar: str | None = None, detector: str | None = "dlib-hog", detector_upsample: int = 1,
                detector_models_dir: str | None = None) -> FaceDataset:
    """Faces in ``root/<identity>/<image>`` folders."""
    return _detecting(load_face_folder(root, sidecar=sidecar), detector, detector_upsample, detector_models_dir)


@DATASETS.register("celeba", description="CelebA aligned faces with identity, attribute, landmark and partition lists; dataset.root=/path/to/celeba")
def celeba(root: str = "data/celeba", sidecar: str | None = None, detector: str | None = "dlib-hog", detector_upsample: int = 1,
           detector_models_dir: str | None = None) -> FaceDataset:
    """CelebA (``img_align_celeba`` and its lists)."""
    return _detecting(load_celeba(root, sidecar=sidecar), detector, detector_upsample, detector_models_dir)


@DATASETS.register("utkface", description="UTKFace (age / gender / race in file names, no identities: attribute utility only); dataset.root=/path/to/UTKFace")
def utkface(root: str = "data/UTKFace", skip_malformed: bool = False, sidecar: str | None = None, detector: str | None = "dlib-hog",
            detector_upsample: int = 1, detector_models_dir: str | None = None) -> FaceDataset:
    """UTKFace crops; no identity labels."""
    return _detecting(load_utkface(root, skip_malformed=skip_malformed, sidecar=sidecar), detector, detector_upsample, detector_models_dir)
