"""The `parity` command line: list, check, diff.

    parity list                                  registered architectures and presets
    parity check [NAME...] [--dtype all] [--train]   the parity table; exit 1 on any failure
    parity diff NAME                             per-module trace, first divergence highlighted
"""
from __future__ import annotations

import argparse
import json
import sys

from parity.compare import compare
from parity.errors import ParityError
from parity.frameworks import FRAMEWORKS
from parity.specs import REGISTRY, architectures


def _frameworks(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown framework(s) {unknown}; expected names from {list(FRAMEWORKS)}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="registered architectures and their presets")
    listing.add_argument("--json", action="store_true")

    def common(sub):
        sub.add_argument("--frameworks", type=_frameworks, default=FRAMEWORKS,
                         help="comma-separated, default torch,keras,jax")
        sub.add_argument("--preset", default="tiny", help="preset of every architecture (default tiny)")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--batch-size", type=int, default=8)
        sub.add_argument("--json", action="store_true", help="machine-readable reports on stdout")

    check = commands.add_parser("check", help="forward, gradient (and training-mode) parity table")
    check.add_argument("names", nargs="*", metavar="NAME", help="architectures (default: all registered)")
    check.add_argument("--dtype", choices=("float32", "float64", "all"), default="all")
    check.add_argument("--train", action="store_true", help="also check training mode (batch stats, buffers)")
    common(check)

    diff = commands.add_parser("diff", help="per-module trace and the first module where frameworks diverge")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    diff.add_argument("--train", action="store_true")
    common(diff)
    return parser


def _list(args) -> int:
    rows = [{"architecture": n, "presets": list(REGISTRY[n].presets), "reference": REGISTRY[n].reference_preset}
            for n in architectures()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title="parity architectures")
    for column in ("architecture", "presets", "reference size"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["architecture"], ", ".join(row["presets"]), row["reference"])
    Console().print(table)
    return 0


def _summary_table(reports):
    from rich.table import Table
    from parity import tolerances
    limits = ", ".join(f"{d}: forward {tolerances.FORWARD[d].rtol:.0e}, gradients {tolerances.GRADIENT[d].rtol:.0e}"
                       for d in ("float32", "float64"))
    table = Table(title="parity check: max error relative to scale", caption=f"tolerances: {limits}")
    for column in ("architecture", "dtype", "mode", "pair", "outputs", "loss", "grads", "buffers", ""):
        table.add_column(column, justify="right" if column in ("outputs", "loss", "grads", "buffers") else "left")
    for report in reports:
        for pair in report.pairs():
            cells = []
            for kind in ("output", "loss", "gradient", "buffer"):
                worst = report.worst(kind, pair)
                cells.append("-" if worst is None else
                             f"{'' if worst.passed else '[bold red]'}{worst.max_rel:.1e}")
            ok = all(c.passed for c in report.checks if c.pair == pair and c.kind != "trace")
            table.add_row(f"{report.architecture} ({report.preset or 'custom'})", report.dtype,
                          "train" if report.train else "eval", "-".join(pair), *cells,
                          "[green]pass[/]" if ok else "[bold red]FAIL[/]")
    return table


def _check(args) -> int:
    from rich.console import Console
    names = args.names or architectures()
    dtypes = ("float32", "float64") if args.dtype == "all" else (args.dtype,)
    modes = (False, True) if args.train else (False,)
    runs = [(n, d, m) for n in names for d in dtypes for m in modes]
    console = Console(stderr=True)
    reports = []
    with console.status("") as status:
        for i, (name, dtype, train) in enumerate(runs, 1):
            status.update(f"[{i}/{len(runs)}] {name} {dtype} {'train' if train else 'eval'} "
                          f"in {', '.join(args.frameworks)}")
            reports.append(compare(name, args.frameworks, preset=args.preset, dtype=dtype,
                                                  seed=args.seed, train=train, batch_size=args.batch_size))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        out = Console()
        out.print(_summary_table(reports))
        for report in reports:
            for note in report.notes:
                out.print(f"note ({report.architecture} {report.dtype}): {note}")
        failed = [r for r in reports if not r.passed]
        out.print(f"{len(reports) - len(failed)}/{len(reports)} checks passed")
    return 0 if all(r.passed for r in reports) else 1


def _diff(args) -> int:
    report = compare(args.name, args.frameworks, preset=args.preset, dtype=args.dtype,
                                    seed=args.seed, train=args.train, trace=True, batch_size=args.batch_size)
    if args.json:
        print(report.to_json(indent=2))
        return 0 if report.first_divergence is None else 1
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{args.name} ({args.preset}) {args.dtype}: per-module max error relative to scale")
    table.add_column("module (forward order)")
    for pair in report.pairs():
        table.add_column(" vs ".join(pair), justify="right")
    by_key = {(c.name, c.pair): c for c in report.checks if c.kind == "trace"}
    for path in report.trace_order:
        marker = " <- first divergence" if path == report.first_divergence else ""
        cells = []
        for pair in report.pairs():
            check = by_key[(path, pair)]
            cells.append(f"{check.max_rel:.1e}" if check.passed else f"[bold red]{check.max_rel:.1e}[/]")
        table.add_row(f"{path}{marker}", *cells)
    out = Console()
    out.print(table)
    out.print(report.table())
    out.print(f"first divergence: {report.first_divergence or 'none (every module within tolerance)'}")
    return 0 if report.first_divergence is None and report.passed else 1


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"list": _list, "check": _check, "diff": _diff}[args.command](args)
    except ParityError as err:
        print(f"parity: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
