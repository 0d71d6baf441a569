"""``external``: evaluate any program that anonymizes a folder of images (DeepPrivacy2's CLI, a script).

The adapter writes the images the protocol anonymizes (exactly the decoded crops every other
anonymizer sees) into a fresh working folder and runs the program with an argument list,
never through a shell::

    WORK/input/<id>.png         the images, one per sample id (ids are dataset-relative paths)
    WORK/masks/<id>.png         the given region, 255 = anonymize (8-bit gray)
    WORK/annotations.json       {sample id: {"file": "<id>.png", head_box, face_box, keypoints, ...}}
    WORK/output/                the program writes <id>.png (or .jpg, ...) for every input image
    WORK/detections/            own-region programs may write their masks here (nonzero = anonymized)

Placeholders in ``command`` are replaced in every argument: ``{input}``, ``{masks}``,
``{annotations}``, ``{output}``, ``{detections}``, ``{seed}`` (drawn from the run's seeded
generator, so the same run seed gives the same program seed), ``{work}``.

Declarations come from the parameters: ``regions: given`` (default) clips the program's
output to the given region; ``regions: own`` (a program that detects people or faces itself,
like DeepPrivacy2) keeps its output as it is and reads ``{detections}`` when it wrote any.
``stochastic: true`` puts the seed in the cache keys. ``version`` is yours to bump; the
contents of every argument that names an existing file (the script, a config) enter the
cache keys too, so editing the program invalidates its cached sets.

A non-zero exit, a timeout (``timeout`` seconds), and a missing, extra or wrongly sized
output image stop the run with one line that ends with the tail of the program's stderr
(exit code 2); the working folder is then kept for inspection.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from anonymizers.base import Anonymized, Anonymizer, check_batch, component_version
from anonymizers.folders import read_images, read_masks, write_annotations, write_images, write_masks
from evalsuite.errors import UserError
from evalsuite.registry import ANONYMIZERS

log = logging.getLogger(__name__)

PLACEHOLDERS = ("input", "masks", "annotations", "output", "detections", "seed", "work")
STDERR_TAIL = 400
MAX_HASHED_FILE = 64 * 1024**2


def stderr_tail(text: str, limit: int = STDERR_TAIL) -> str:
    """The last ``limit`` characters of a program's stderr, on one line."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    joined = " | ".join(lines)
    return ("..." + joined[-limit:]) if len(joined) > limit else (joined or "(empty)")


@ANONYMIZERS.register("external", description="run your own program (argument list, no shell) on a folder of images + masks + annotations.json and read its output folder")
class External(Anonymizer):
    """Anonymize through an external program; see the module docstring for the folder contract."""

    param_names = ("command", "timeout", "regions", "stochastic", "version", "cwd")

    def __init__(self, *, command: Sequence[str] | None = None, timeout: float = 3600.0, regions: str = "given",
                 stochastic: bool = False, version: str = "", cwd: str | None = None) -> None:
        if command is None or isinstance(command, str) or not isinstance(command, (list, tuple)) or not command or not all(isinstance(a, (str, int, float)) for a in command):
            raise UserError(f"anonymizer 'external': parameter command must be a non-empty list of arguments (no shell), e.g. "
                            f"{{name: external, command: [python, my_anonymizer.py, '{{input}}', '{{output}}']}}; got {command!r}")
        if regions not in ("given", "own"):
            raise UserError(f"anonymizer 'external': parameter regions must be 'given' (clip to the given region) or 'own' (the program finds its regions), got {regions!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise UserError(f"anonymizer 'external': parameter timeout must be a positive number of seconds, got {timeout!r}")
        if cwd is not None and not Path(str(cwd)).expanduser().is_dir():
            raise UserError(f"anonymizer 'external': cwd={cwd} is not a folder; point cwd at the program's working folder")
        program = str(command[0])
        if shutil.which(program, path=None if cwd is None else f"{Path(str(cwd)).expanduser()}{os.pathsep}{os.environ.get('PATH', '')}") is None and not Path(program).expanduser().is_file():
            raise UserError(f"anonymizer 'external': program {program!r} not found on PATH (or as a file); give its full path as the first element of command")
        self.command = [str(a) for a in command]
        self.timeout = timeout
        self.regions = regions  # type: ignore[misc]  (a per-instance declaration)
        self.stochastic = bool(stochastic)
        self.version_ = str(version)
        self.cwd = cwd

    @classmethod
    def example_params(cls, workdir: Path, images: torch.Tensor, masks: torch.Tensor, sample_ids: Sequence[str]) -> dict[str, Any]:
        """Parameters for the conformance check: a tiny program that inverts every image of the folder."""
        import sys

        script = workdir / "invert_folder.py"
        script.write_text(
            "import sys\nfrom pathlib import Path\nimport numpy as np\nfrom PIL import Image\n"
            "src, dst = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "for p in src.rglob('*.png'):\n"
            "    out = dst / p.relative_to(src)\n    out.parent.mkdir(parents=True, exist_ok=True)\n"
            "    Image.fromarray(255 - np.asarray(Image.open(p).convert('RGB'))).save(out)\n",
            encoding="utf-8",
        )
        return {"command": [sys.executable, str(script), "{input}", "{output}"], "timeout": 120}

    def get_params(self) -> dict[str, Any]:
        return {"command": list(self.command), "timeout": self.timeout, "regions": self.regions, "stochastic": self.stochastic, "version": self.version_, "cwd": self.cwd}

    def code_hash(self) -> str:
        """Adapter version, the user's ``version`` and the contents of every argument that is a file."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(component_version(type(self)).encode())
        digest.update(self.version_.encode())
        base = Path(str(self.cwd)).expanduser() if self.cwd else Path.cwd()
        for arg in self.command:
            path = Path(arg).expanduser()
            path = path if path.is_absolute() else base / path
            try:
                if path.is_file() and path.stat().st_size <= MAX_HASHED_FILE:
                    digest.update(path.read_bytes())
            except OSError:
                continue
        return digest.hexdigest()

    def anonymize(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None = None,
                  generator: torch.Generator | None = None, sample_ids: Sequence[str] | None = None) -> Any:
        check_batch(images, masks)
        result = self.anonymize_set(images.cpu(), masks.cpu(), annotations, sample_ids, generator)
        if self.regions == "own":
            return Anonymized(result.images.to(images.device), None if result.detections is None else result.detections.to(images.device))
        return result.images.to(images.device)

    def anonymize_set(self, images: torch.Tensor, masks: torch.Tensor, annotations: Sequence[dict] | None, sample_ids: Sequence[str] | None,
                      generator: torch.Generator | None, *, batch_size: int = 64, device: str | torch.device = "cpu") -> Anonymized:
        """Write the set, run the program once, read its output (see the module docstring)."""
        n, _, h, w = images.shape
        ids = list(sample_ids) if sample_ids is not None else [f"{i:06d}" for i in range(n)]
        if len(ids) != n or len(set(ids)) != n:
            raise ValueError(f"external: need {n} distinct sample ids, got {len(ids)} ({len(set(ids))} distinct)")
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()) if generator is not None else 0
        work = Path(tempfile.mkdtemp(prefix="evalsuite-external-"))
        folders = {name: work / name for name in ("input", "masks", "output", "detections")}
        for folder in folders.values():
            folder.mkdir()
        write_images(folders["input"], images, ids)
        write_masks(folders["masks"], masks, ids)
        write_annotations(work / "annotations.json", annotations, ids)
        values = {**{k: str(v) for k, v in folders.items()}, "annotations": str(work / "annotations.json"), "seed": str(seed), "work": str(work)}
        args = [self._fill(arg, values) for arg in self.command]
        program = Path(args[0]).name
        started = time.perf_counter()
        try:
            done = subprocess.run(args, cwd=None if self.cwd is None else str(Path(str(self.cwd)).expanduser()), capture_output=True, text=True,
                                  timeout=float(self.timeout), check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise UserError(f"anonymizer 'external': {program} did not finish within timeout={self.timeout} s on {n} images (folder kept: {work}); "
                            f"raise timeout or check the program; stderr: {stderr_tail(err)}") from None
        except OSError as exc:
            raise UserError(f"anonymizer 'external': cannot start {args[0]!r} ({exc}); check command") from None
        if done.returncode != 0:
            raise UserError(f"anonymizer 'external': {program} exited with status {done.returncode} on {n} images (folder kept: {work}); "
                            f"stderr: {stderr_tail(done.stderr)}")
        what = f"anonymizer 'external' ({program})"
        fix = f"the program must write one image of the input's size per input image, named like it, into {{output}} (folder kept: {work}); stderr: {stderr_tail(done.stderr)}"
        out = read_images(folders["output"], ids, (h, w), what, fix)
        detections = read_masks(folders["detections"], ids, (h, w), what) if self.regions == "own" else None
        if self.regions == "given":
            out = torch.where(masks.cpu().expand_as(out), out, images.cpu())
        log.info("external %s: %d images in %.1f s", program, n, time.perf_counter() - started)
        shutil.rmtree(work, ignore_errors=True)
        return Anonymized(out, detections)

    @staticmethod
    def _fill(arg: str, values: dict[str, str]) -> str:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        return arg
