"""Command line: ``evalsuite run|list|synth [key=value ...]``."""
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
  evalsuite list anonymizers
  evalsuite synth out=/tmp/synthetic-market seed=1 num_train_ids=100
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


def cmd_list(kinds: Sequence[str]) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalsuite", description="Privacy evaluation and attack benchmarking for image anonymizers.", epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a protocol's grid of anonymizers x attacks x seeds")
    p_run.add_argument("overrides", nargs="*", help="key=value overrides (Hydra grammar)")
    p_list = sub.add_parser("list", help="list registered anonymizers, attacks, protocols, datasets and metrics")
    p_list.add_argument("kinds", nargs="*", help="only these kinds")
    p_synth = sub.add_parser("synth", help="write a synthetic Market-1501-layout dataset")
    p_synth.add_argument("overrides", nargs="*", help="out=DIR and generator settings, e.g. seed=1 num_train_ids=100")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if args.command == "run":
            return cmd_run(args.overrides)
        if args.command == "list":
            return cmd_list(args.kinds)
        return cmd_synth(args.overrides)
    except UserError as exc:
        print(f"evalsuite: error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("evalsuite: interrupted; finished cells are saved, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
