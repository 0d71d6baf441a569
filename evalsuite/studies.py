"""Studies: several protocol runs behind one command, reported as one set of tables.

A study is declarations only (lm-evaluation-harness's task groups): named parts, each a
protocol with its overrides. ``evalsuite study NAME out=DIR [key=value ...]`` composes and
validates every part's config before anything runs, runs each part into ``DIR/<part>`` (the
usual run folder: resumable, cached, gated like any run) and writes the combined report
``DIR/report.md``. ``key=value`` applies to every part; ``PART:key=value`` to one part only;
``parts=[A,B]`` runs only those parts (the report still covers every part folder present).

The built-in studies reproduce the seeds' comparison tables on the embedded default:

- ``deepprivacy``: realistic inpainting against blur / pixelation / mask-out (DeepPrivacy2's
  re-id and detection tables, Sun et al.'s Table 1, image quality);
- ``attack-strength``: every attacker side by side for the classic anonymizers and k-Same
  (SEBA, Fantômas), on person re-identification and face identification;
- ``upgan``: UP-GAN's Table 1 (naive / adaptive top-1 of blur, pixelation, k-Same and UP-GAN)
  with AnonymousNet's ppas and uap, naive top-1 of dlib's pretrained recognizer (uap's
  transfer), plus FID, attribute accuracy and PSNR / SSIM / MS-SSIM of the same anonymizers on
  the same faces' dataset.
- ``ppas-tradeoff``: AnonymousNet's PPAS with selection off, at its default, and stricter in k,
  t or epsilon: identification against attribute accuracy and image quality.

Add one with :func:`register_study`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evalsuite.errors import UserError, did_you_mean
from evalsuite.registry import STUDIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyPart:
    """One run of a study: a name (its folder) and the overrides of its protocol run."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    parts: tuple[StudyPart, ...]

    def part_overrides(self, overrides: Sequence[str]) -> dict[str, list[str]]:
        """Each part's overrides: its own, then the user's shared ones, then the user's ``PART:key=value``."""
        names = [p.name for p in self.parts]
        shared: list[str] = []
        own: dict[str, list[str]] = {name: [] for name in names}
        for override in overrides:
            head, sep, rest = override.partition(":")
            if sep and "=" not in head:
                if head not in own:
                    raise UserError(f"{override!r}: study {self.name} has no part {head!r}: {did_you_mean(head, names)}")
                own[head].append(rest)
            elif override.split("=", 1)[0] in ("protocol", "out"):
                raise UserError(f"{override!r}: a study sets each part's protocol and folder; give out=DIR once and PART:key=value for one part")
            else:
                shared.append(override)
        return {p.name: [*p.overrides, *shared, *own[p.name]] for p in self.parts}


def register_study(name: str, description: str, parts: Sequence[tuple[str, Sequence[str]]]) -> Study:
    """Register a study of ``(part name, overrides)`` pairs; each part's overrides name its protocol."""
    study = Study(name, description, tuple(StudyPart(part, tuple(overrides)) for part, overrides in parts))
    STUDIES.add(name, lambda: study, description=description)
    return study


def run_study(name: str, overrides: Sequence[str]) -> tuple[Path, str]:
    """Run every part of study ``name`` and write ``OUT/report.md``; the report path and its text."""
    from evalsuite.config import compose
    from evalsuite.reporting import ReportOptions, generate_report
    from evalsuite.runner import resolve_components, run
    from evalsuite.store import check_writable_folder

    study: Study = STUDIES.build(name)
    outs = [o for o in overrides if o.startswith("out=")]
    if len(outs) != 1:
        raise UserError(f"evalsuite study {name}: give the study's folder once, as out=DIR")
    out = Path(outs[0].split("=", 1)[1]).expanduser()
    chosen = [o for o in overrides if o.startswith("parts=")]
    per_part = study.part_overrides([o for o in overrides if not o.startswith(("out=", "parts="))])
    if chosen:
        from evalsuite.config import parse_overrides

        names = parse_overrides(chosen[-1:])[0][1]
        names = [names] if isinstance(names, str) else list(names or [])
        for part in names:
            if part not in per_part:
                raise UserError(f"parts={chosen[-1].split('=', 1)[1]}: study {name} has no part {part!r}: {did_you_mean(str(part), list(per_part))}")
        per_part = {part: values for part, values in per_part.items() if part in names}
    configs = {}
    for part, part_overrides in per_part.items():  # every part checked before anything runs or is written
        try:
            configs[part] = compose([*part_overrides, f"out={out / part}"])
            resolve_components(configs[part])
        except UserError as exc:
            raise UserError(f"study {name}, part {part}: {exc}") from None
    check_writable_folder(out, "out")
    for part, cfg in configs.items():
        log.info("study %s: part %s (%s)", name, part, " ".join(per_part[part]))
        run(cfg)
    report = out / "report.md"
    folders = [out / p.name for p in study.parts if (out / p.name / "results.jsonl").exists()]  # parts run earlier count too
    text = generate_report(folders, ReportOptions(format="md", out=report, title=f"study {name}"))
    return report, text


register_study(
    "deepprivacy",
    "realistic inpainting (dp-body, dp-face, head-inpaint) against blur / pixelation / mask-out: re-id, person recognition, detection AP, image quality (DeepPrivacy2; Sun et al. Table 1)",
    [
        ("market1501-reid", ["protocol=market1501-reid", "dataset=synthetic", "anonymizers=[none,blur,pixelate8,mask,dp-body]", "attacks=[naive,adaptive]"]),
        ("person-recognition", ["protocol=person-recognition", "dataset=synthetic", "anonymizers=[none,blackhead,blurhead,head-inpaint-black,head-inpaint-blur]",
                                "attacks=[naive,adaptive]"]),
        ("detection-validate", ["protocol=detection-validate", "dataset=synthetic", "region.name=face", "anonymizers=[none,blur,pixelate8,mask,dp-face]"]),
        ("image-quality", ["protocol=image-quality", "dataset=synthetic", "anonymizers=[none,blur,pixelate8,mask,dp-face]"]),
    ],
)

register_study(
    "attack-strength",
    "naive / adaptive / parrot / reconstruction attackers side by side for none, blur, pixelation, mask-out and k-Same, on re-id and face identification (SEBA; Fantomas)",
    [
        ("market1501-reid", ["protocol=market1501-reid", "dataset=synthetic", "anonymizers=[none,blur,pixelate8,mask,ksame-pixel]",
                             "attacks=[naive,adaptive,parrot,reconstruction]"]),
        ("face-identification", ["protocol=face-identification", "dataset=synthetic", "anonymizers=[none,blur25,pixelate15,mask,ksame-pixel]",
                                 "attacks=[naive,adaptive,parrot,reconstruction]"]),
    ],
)

UPGAN_TABLE1 = ("anonymizers=[none,blur5,blur15,blur25,pixelate5,pixelate15,pixelate25,ksame-pixel,{name:upgan,blend:none,label:upgan},ppas,uap]",
                "dataset=synthetic-faces", "region.name=image")
register_study(
    "upgan",
    "UP-GAN Table 1: naive / adaptive face identification of blur, pixelation, k-Same, upgan, ppas and uap, with FID, attribute accuracy and PSNR / SSIM / MS-SSIM",
    [
        ("face-identification", ["protocol=face-identification", *UPGAN_TABLE1, "attacks=[naive,adaptive]"]),
        # a recognizer uap's surrogate is not: transfer (dlib's shipped ResNet, never trained here)
        ("face-identification-dlib", ["protocol=face-identification", *UPGAN_TABLE1, "recognizer.name=dlib", "attacks=[naive]"]),
        ("image-quality", ["protocol=image-quality", *UPGAN_TABLE1]),
    ],
)

PPAS_SWEEP = ("anonymizers=[none,{name:ppas,k:1,l:1,t:1,epsilon:null,label:ppas-off},ppas,{name:ppas,k:100,label:ppas-k100},"
              "{name:ppas,t:0.05,label:ppas-t0.05},{name:ppas,epsilon:1,label:ppas-eps1}]", "dataset=synthetic-faces", "region.name=image")
register_study(
    "ppas-tradeoff",
    "AnonymousNet's PPAS at several k / l / t / epsilon: identification (naive / adaptive) against attribute accuracy and image quality; the networks train once per part",
    [
        ("face-identification", ["protocol=face-identification", *PPAS_SWEEP, "attacks=[naive,adaptive]"]),
        ("image-quality", ["protocol=image-quality", *PPAS_SWEEP]),
    ],
)
