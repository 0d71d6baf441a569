"""Command line: ``evalsuite run|train|list|synth [key=value ...]``, ``report``, ``baseline``, ``check`` and ``data check``."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from evalsuite.errors import UserError

log = logging.getLogger("evalsuite")

USAGE_EXAMPLES = """examples:
  evalsuite run protocol=market1501-reid dataset=synthetic
  evalsuite run protocol=market1501-reid dataset.root=/data/Market-1501-v15.09.15 attacks=[naive,adaptive,parrot]
  evalsuite run dataset=synthetic anonymizers=[blur,{name:pixelate,block_size:5}] seeds=[0,1,2] attacker.epochs=5
  evalsuite train anonymizer=dp-body dataset=synthetic out=runs/dp-body anonymizer.steps=600
  evalsuite study attack-strength out=runs/attack-strength
  evalsuite list anonymizers
  evalsuite synth out=/tmp/synthetic-market seed=1 num_train_ids=100
  evalsuite report results/market1501-reid-synthetic --format html --out reports/report.html
  evalsuite baseline results/my-run --out results/baselines/my-run.json
  evalsuite check results/my-run --baseline results/baselines/my-run.json --tolerance 0.02
  evalsuite data check dataset=face-folder dataset.root=/data/lfw
"""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


def cmd_run(overrides: Sequence[str]) -> int:
    from evalsuite.config import compose
    from evalsuite.registry import load_all
    from evalsuite.runner import run

    load_all()
    cfg = compose(overrides)
    outcome = run(cfg)
    print(outcome.table, end="")
    print(f"\n{outcome.computed} cells computed, {outcome.skipped} reused; results in {outcome.out_dir / 'results.jsonl'}, table in {outcome.out_dir / 'table.md'}")
    return 0


def cmd_train(overrides: Sequence[str]) -> int:
    from evalsuite.registry import load_all
    from evalsuite.train import CONFIG_NAME, WEIGHTS_NAME, parse, train

    load_all()
    values = parse(overrides)
    config = train(values)
    out = values["out"]
    final = config["final"]
    print(f"trained {values['anonymizer']} for {config['steps_done']} steps on {final['train_images']} images ({final['region_crops']} region crops); "
          f"held-out FID (random features, {final['holdout_images']} images) {final['fid_random_holdout']:.2f}")
    print(f"weights in {out}/{WEIGHTS_NAME} (use anonymizers=[{{name:{values['anonymizer']},checkpoint:{out}/{WEIGHTS_NAME}}}]), config in {out}/{CONFIG_NAME}")
    return 0


def cmd_study(name: str, overrides: Sequence[str]) -> int:
    from evalsuite.registry import load_all
    from evalsuite.studies import run_study

    load_all()
    report, text = run_study(name, overrides)
    print(text, end="")
    print(f"\nstudy {name}: every part's run is in {report.parent}/<part>; combined tables in {report}")
    return 0


def component_location(factory: object) -> str:
    """``module.Class (path/to/file.py)`` of a registered factory, the path relative to the working folder when inside it."""
    import inspect
    from pathlib import Path

    name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__name__)}"
    try:
        path = Path(inspect.getsourcefile(factory) or "")  # type: ignore[arg-type]
    except TypeError:
        return name
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = path
    return f"{name} ({shown})"


def cmd_list(kinds: Sequence[str], verbose: bool = False) -> int:
    from evalsuite.registry import load_all

    registries = load_all()
    wanted = list(kinds) or list(registries)
    for kind in wanted:
        if kind not in registries:
            from evalsuite.errors import did_you_mean

            raise UserError(f"unknown component kind {kind!r}: {did_you_mean(kind, registries)}")
    for kind in wanted:
        registry = registries[kind]
        print(f"{kind}:")
        width = max((len(e.name) for e in registry), default=0)
        for entry in registry:
            origin = "" if entry.source == "builtin" else f"  [{entry.source}]"
            print(f"  {entry.name:<{width}}  {entry.description}{origin}")
            if verbose:
                preset = f"; preset {entry.params}" if entry.params else ""
                print(f"  {'':<{width}}  -> {component_location(entry.factory)}{preset}")
        print()
    return 0


def cmd_synth(overrides: Sequence[str]) -> int:
    import dataclasses
    from pathlib import Path

    from evalsuite.config import parse_overrides
    from evalsuite.data.synthetic import SyntheticConfig, generate_synthetic_market
    from evalsuite.errors import did_you_mean

    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    values = dict(parse_overrides(overrides))
    out = values.pop("out", None)
    if not out:
        raise UserError("evalsuite synth needs out=DIR: the folder to write the Market-1501-layout dataset into")
    for key in values:
        if key not in fields:
            raise UserError(f"unknown synth key {key!r}: {did_you_mean(key, sorted(fields | {'out'}))}")
    root = generate_synthetic_market(Path(str(out)), SyntheticConfig(**values))
    print(f"wrote synthetic Market-1501-layout dataset to {root}")
    return 0


def _names(values: Sequence[str] | None) -> list[str]:
    """``--order a,b --order c`` -> [a, b, c]."""
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalsuite.registry import load_all
    from evalsuite.reporting import ReportOptions, generate_report

    load_all()
    metrics = _names(args.metrics)
    if args.grid_samples < 0:
        raise UserError(f"--grid-samples {args.grid_samples}: give a number of images >= 0 (0 = no image grid)")
    from evalsuite.reporting.strength import DEFAULT_MIN_SKILL

    min_skill = DEFAULT_MIN_SKILL if args.min_skill is None else _check_min_skill(args.min_skill)
    options = ReportOptions(
        format=args.format, out=Path(args.out) if args.out else None, order=_names(args.order),
        metrics="all" if metrics == ["all"] else (metrics or None), attacks=_names(args.attacks) or None,
        delta=args.delta, group_by=args.group_by, standalone=args.standalone,
        plots_dir=Path(args.plots) if args.plots else None, grid_samples=args.grid_samples,
        frontier_x=args.frontier_x, frontier_y=args.frontier_y, title=args.title, min_skill=min_skill,
    )
    text = generate_report(args.results, options)
    if options.out is None:
        print(text, end="")
    else:
        print(f"wrote {options.out}", file=sys.stderr)
    return 0


def _check_min_skill(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise UserError(f"--min-skill {value}: give the attacker's minimum skill on clean data, a number in [0, 1) (default 0.2; 0 flags only attackers below chance)")
    return value


def cmd_baseline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evalsuite.registry import load_all
    from evalsuite.reporting.baseline import write_baseline
    from evalsuite.reporting.results import load_results

    load_all()
    document = write_baseline(load_results(args.results), Path(args.out))
    cells = sum(len(g["cells"]) for g in document["groups"])
    described = "; ".join(f"{g['protocol']} v{g['protocol_version']} on {g['dataset']} (config {g['config_hash']}, seeds {g['seeds']})" for g in document["groups"])
    print(f"wrote baseline {args.out}: {cells} cells of {described}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from evalsuite.registry import load_all
    from evalsuite.reporting.baseline import load_baseline
    from evalsuite.reporting.check import EffectSizes, Tolerances, compare, format_result
    from evalsuite.reporting.results import load_results

    load_all()
    tolerances = Tolerances.parse(args.tolerance or [])
    effect = None
    if args.effect_size:
        effect = EffectSizes(Tolerances.parse(args.effect_size, option="--effect-size"), confidence=args.confidence, power=args.power)
    elif args.confidence != 0.95 or args.power != 0.8:
        raise UserError("--confidence and --power belong to the statistical gate; add --effect-size (e.g. --effect-size 0.1)")
    from evalsuite.reporting.strength import DEFAULT_MIN_SKILL, gate_strength

    min_skill = DEFAULT_MIN_SKILL if args.min_skill is None else _check_min_skill(args.min_skill)
    baseline = load_baseline(args.baseline)
    groups = load_results(args.results)
    result = compare(groups, baseline, tolerances, z=args.z, ignore_config=args.ignore_config_hash, effect=effect)
    print(f"evalsuite check against {baseline.path}")
    print(format_result(result, show_all=args.all), end="")
    weak_fails, lines = gate_strength(groups, min_skill, allow_weak=args.allow_weak_attacker)
    if lines:
        print("\n".join(lines))
    return 0 if result.passed and not weak_fails else 1


def cmd_data_check(args: argparse.Namespace) -> int:
    from evalsuite.data_check import check_dataset, dataset_from_overrides
    from evalsuite.registry import load_all

    load_all()
    if args.max_problems < 1:
        raise UserError(f"--max-problems {args.max_problems}: give a number of lines >= 1")
    name, settings = dataset_from_overrides(args.overrides)
    report = check_dataset(name, settings, decode=not args.no_decode, detect=args.detect)
    print(report.text(args.max_problems), end="")
    return 0 if report.ok else UserError.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalsuite", description="Privacy evaluation and attack benchmarking for image anonymizers.", epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a protocol's grid of anonymizers x attacks x seeds")
    p_run.add_argument("overrides", nargs="*", help="key=value overrides (Hydra grammar)")
    p_train = sub.add_parser("train", help="train a trainable anonymizer (dp-body, dp-face) on a dataset's training split, resumable")
    p_train.add_argument("overrides", nargs="*", help="anonymizer=NAME dataset=NAME out=DIR and anonymizer.<param>=, dataset.<setting>=, seed=, holdout_ids=, ...")
    p_study = sub.add_parser("study", help="run a registered study (several protocol runs) and write one combined report")
    p_study.add_argument("name", help="the study (`evalsuite list studies`)")
    p_study.add_argument("overrides", nargs="*", help="out=DIR, key=value for every part, PART:key=value for one part")
    p_list = sub.add_parser("list", help="list registered anonymizers, attacks, protocols, datasets and metrics")
    p_list.add_argument("kinds", nargs="*", help="only these kinds")
    p_list.add_argument("-v", "--verbose", dest="show_modules", action="store_true", help="also show each component's module and file (and preset parameters)")
    p_synth = sub.add_parser("synth", help="write a synthetic Market-1501-layout dataset")
    p_synth.add_argument("overrides", nargs="*", help="out=DIR and generator settings, e.g. seed=1 num_train_ids=100")

    p_report = sub.add_parser("report", help="paper-style tables (md, latex, csv, html with plots and image grids) from run results")
    p_report.add_argument("results", nargs="+", help="run folders or results.jsonl files (several runs merge)")
    p_report.add_argument("--format", choices=("md", "latex", "csv", "html"), help="output format (default: from --out's suffix, else md)")
    p_report.add_argument("--out", help="output file (default: standard output)")
    p_report.add_argument("--order", action="append", help="anonymizer row order, comma-separated (the original always comes first)")
    p_report.add_argument("--metrics", action="append", help="metrics to show, comma-separated, or 'all' (default: the run's table.metrics; csv: all)")
    p_report.add_argument("--attacks", action="append", help="attacks to show, comma-separated (default: all)")
    p_report.add_argument("--delta", action="store_true", help="show the difference to the original row in parentheses")
    p_report.add_argument("--group-by", choices=("attack", "metric"), default="attack", help="top-level column group (default: attack)")
    p_report.add_argument("--standalone", action="store_true", help="latex: a complete document instead of a table to \\input")
    p_report.add_argument("--plots", metavar="DIR", help="also write the plots and image grids as PNG files into DIR")
    p_report.add_argument("--grid-samples", type=int, default=4, help="images per image grid (0: no grid; default 4)")
    p_report.add_argument("--frontier-x", metavar="METRIC[@ATTACK]", help="privacy axis of the frontier (default: first privacy metric, adaptive attack preferred)")
    p_report.add_argument("--frontier-y", metavar="METRIC[@ATTACK]", help="quality/utility axis of the frontier (default: first quality or utility metric)")
    p_report.add_argument("--title", default="evalsuite report", help="html page title")
    p_report.add_argument("--min-skill", type=float,
                          help="flag attack columns whose attacker covers less than this share of the way from chance to perfect on clean data (default 0.2; see README 'Attacker strength')")

    p_data = sub.add_parser("data", help="dataset tools: `evalsuite data check dataset=NAME dataset.root=PATH`")
    data_sub = p_data.add_subparsers(dest="data_command", required=True)
    p_data_check = data_sub.add_parser("check", help="validate a dataset root: counts, annotations, runnable protocols and regions, first problems (exit 2 when broken)")
    p_data_check.add_argument("overrides", nargs="+", help="dataset=NAME dataset.root=PATH and other dataset.<key>=VALUE settings")
    p_data_check.add_argument("--max-problems", type=int, default=10, help="problem and warning lines to print (default 10)")
    p_data_check.add_argument("--no-decode", action="store_true", help="skip decoding every image (layout and names only)")
    p_data_check.add_argument("--detect", action="store_true",
                              help="face datasets: detect missing face boxes now into the cached sidecar a run reads, to inspect or correct before running")

    p_base = sub.add_parser("baseline", help="write a CI baseline (per-cell mean / sem / seeds and metric directions) from run results")
    p_base.add_argument("results", nargs="+", help="run folders or results.jsonl files")
    p_base.add_argument("--out", required=True, help="baseline JSON file to write")

    p_check = sub.add_parser("check", help="CI gate: exit 1 when privacy or quality worsens beyond tolerance against a baseline")
    p_check.add_argument("results", nargs="+", help="run folders or results.jsonl files")
    p_check.add_argument("--baseline", required=True, help="baseline JSON written by `evalsuite baseline`")
    p_check.add_argument("--tolerance", action="append", metavar="[METRIC=]VALUE",
                         help="absolute tolerance in stored units (rates as fractions: 0.02 = 2 points); a bare number is the default, repeatable")
    p_check.add_argument("--z", type=float, help="also require |z| > Z (z-test on mean ± standard error across seeds) before failing")
    p_check.add_argument("--effect-size", action="append", metavar="[METRIC=]VALUE",
                         help="statistical gate: the smallest regression to catch, in stored units (0.1 = 10 points of a rate); "
                              "fails a cell whose change interval (seeds + paired bootstrap over items) is worse than 0 and reaches it; "
                              "refuses a baseline too small to detect it; a bare number is the default, repeatable")
    p_check.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (statistical gate; default 0.95)")
    p_check.add_argument("--power", type=float, default=0.8, help="probability of catching a regression of the effect size that the baseline must offer (default 0.8)")
    p_check.add_argument("--ignore-config-hash", action="store_true", help="compare even when the run's config differs from the baseline's")
    p_check.add_argument("--all", action="store_true", help="print every compared cell, not only the changed ones")
    p_check.add_argument("--min-skill", type=float, help="the attacker-strength guard's threshold (default 0.2; README 'Attacker strength')")
    p_check.add_argument("--allow-weak-attacker", action="store_true",
                         help="report a clean attacker below --min-skill as a warning instead of failing (a regression-only gate that makes no privacy claim)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from evalsuite.reproducibility import pin_environment, requested_in

        if requested_in(args.overrides):  # before torch runs a kernel: the CPU code path is fixed then
            pin_environment()
    _setup_logging(args.verbose)
    try:
        if args.command == "run":
            return cmd_run(args.overrides)
        if args.command == "train":
            return cmd_train(args.overrides)
        if args.command == "study":
            return cmd_study(args.name, args.overrides)
        if args.command == "list":
            return cmd_list(args.kinds, args.show_modules)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "baseline":
            return cmd_baseline(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "data":
            return cmd_data_check(args)
        return cmd_synth(args.overrides)
    except UserError as exc:
        print(f"evalsuite: error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("evalsuite: interrupted; finished cells are saved, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
