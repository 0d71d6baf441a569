"""``precomputed``: already-anonymized images read from a folder keyed by the dataset's relative paths.

For anonymizers that ran elsewhere (another machine, a GPU cluster, a closed tool): sample
``query/0001_c1s1_000151_01.jpg`` is read from ``root/query/0001_c1s1_000151_01.jpg`` or
``root/query/0001_c1s1_000151_01.<png|jpg|...>`` (PNG recommended: JPEG re-compression
changes pixels outside the region too). The images must be the ones the protocol anonymizes
(the same crop and size; face protocols resize to ``image_size``).

Before anything is written, the whole folder is checked against every sample id the protocol
will anonymize (:meth:`Precomputed.bind_dataset`): a missing image, an image of another size,
or (unless ``allow_extra: true``) an image that belongs to no sample stops the run with one
line. ``regions: given`` (default) clips the images to the given region, as for built-in
anonymizers; ``regions: own`` keeps them as they are (the tool found its own regions).
The folder's file list, sizes and modification times enter the cache keys.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch

from anonymizers.base import Anonymized, Anonymizer, check_batch, component_version
from anonymizers.folders import image_files, read_images
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

FIX = "write one image per sample, named by the dataset's relative path (see anonymizers/precomputed.py), or set allow_extra: true for a folder covering more samples"


@ANONYMIZERS.register("precomputed", description="already-anonymized images read from a folder keyed by the dataset's relative paths (root=FOLDER)")
class Precomputed(Anonymizer):
    """Read anonymized images from ``root``; see the module docstring."""

    param_names = ("root", "regions", "allow_extra")

    def __init__(self, *, root: str | None = None, regions: str = "given", allow_extra: bool = False) -> None:
        if not root or not isinstance(root, str):
            raise UserError("anonymizer 'precomputed': parameter root must name the folder of anonymized images, e.g. {name: precomputed, root: /data/anonymized}")
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise UserError(f"anonymizer 'precomputed': root={root} is not a folder; point root at the folder of anonymized images")
        if regions not in ("given", "own"):
            raise UserError(f"anonymizer 'precomputed': parameter regions must be 'given' or 'own', got {regions!r}")
        self.root = root
        self.regions = regions  # type: ignore[misc]  (a per-instance declaration)
        self.allow_extra = bool(allow_extra)
        self._known: list[str] | None = None

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """Parameters for the conformance check: a folder of the inverted example images."""
        from anonymizers.folders import write_images

        write_images(workdir / "precomputed", 255 - images, sample_ids)
        return {"root": str(workdir / "precomputed")}

    @property
    def folder(self) -> Path:
        return Path(self.root).expanduser()

    def code_hash(self) -> str:
        """Adapter version and the folder's listing (names, sizes, modification times)."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(component_version(type(self)).encode())
        for path in sorted(image_files(self.folder)):
            stat = path.stat()
            digest.update(f"{path.relative_to(self.folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def bind_dataset(self, sample_ids: Sequence[str]) -> None:
        """Check that the folder holds exactly one image per sample id (extras only with allow_extra)."""
        self._known = list(sample_ids)
        found = image_files(self.folder)
        if not found:
            raise UserError(f"anonymizer 'precomputed': {self.folder} holds no image files; {FIX}")
        from anonymizers.folders import find_image

        missing = [s for s in self._known if find_image(self.folder, s) is None]
        if missing:
            raise UserError(f"anonymizer 'precomputed': {len(missing)} of {len(self._known)} samples have no image in {self.folder} (e.g. {missing[0]!r}); {FIX}")
        if not self.allow_extra:
            extra = sorted(found - {find_image(self.folder, s) for s in self._known})
            if extra:
                raise UserError(f"anonymizer 'precomputed': {len(extra)} image(s) in {self.folder} belong to no sample of this protocol (e.g. {extra[0].relative_to(self.folder)}); {FIX}")

    def anonymize(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None,
                  generator: torch.Generator | None = None, sample_ids: Sequence[str] | None = None) -> Any:
        check_batch(images, masks)
        result = self.anonymize_set(images.cpu(), masks.cpu(), annotations, sample_ids, generator)
        if self.regions == "own":
            return Anonymized(result.images.to(images.device), None)
        return result.images.to(images.device)

    def anonymize_set(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, sample_ids: Sequence[str] | None,
                      generator: torch.Generator | None, *, batch_size: int = 64, device: str | torch.device = "cpu") -> Anonymized:
        """The images of ``sample_ids`` from the folder, checked and (given regions) clipped to ``masks``."""
        if sample_ids is None:
            raise UserError("anonymizer 'precomputed' needs the sample ids of the images (the protocol passed none)")
        out = read_images(self.folder, list(sample_ids), tuple(images.shape[2:]), f"anonymizer 'precomputed' ({self.folder})", FIX, allow_extra=True)
        if self.regions == "given":
            out = torch.where(masks.cpu().expand_as(out), out, images.cpu())
        return Anonymized(out, None)
