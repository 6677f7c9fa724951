"""The `parity` command line: list, check, diff.

    parity list                                  registered architectures and presets
    parity check [NAME...] [--dtype all] [--train]   the parity table; exit 1 on any failure
    parity diff NAME                             per-module trace, first divergence highlighted
    parity export NAME --format onnx --out DIR   ONNX or native deployment formats
    parity run-exported PATH --input X.npz       run any exported artifact
    parity export-matrix                         export + verify every architecture and format
    parity bench NAME... [--mode all] [--task all]  throughput, eager and compiled, side by side
    parity report                                render saved results into docs/benchmarks.md
    parity train NAME --dataset digits [--framework all] [--plot curves.png]  train, side by side
    parity convert MODEL.pth OUT.safetensors --arch NAME   a torchvision .pth as a safetensors checkpoint
    parity train NAME --from CHECKPOINT --freeze backbone  fine-tune a new head on a frozen backbone
    parity train NAME --devices 2 [--sync-bn]        data-parallel on each framework's engine vs one device
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from parity.compare import compare
from parity.errors import FrameworkError, InputError, ParityError
from parity.export import FORMATS
from parity.frameworks import FRAMEWORKS
from parity.specs import REGISTRY, architectures
from parity.transfer import BATCH_NORM


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

    exporting = commands.add_parser("export", help="export to ONNX or a native deployment format")
    exporting.add_argument("name", metavar="NAME")
    exporting.add_argument("--framework", choices=(*FRAMEWORKS, "all"), default="all")
    exporting.add_argument("--format", choices=tuple(FORMATS), default="onnx")
    exporting.add_argument("--out", required=True, help="output directory")
    exporting.add_argument("--preset", default=None, help="default: the reference size")
    exporting.add_argument("--state", help="a safetensors checkpoint (default: parity.init_state)")
    exporting.add_argument("--seed", type=int, default=0)
    exporting.add_argument("--force", action="store_true", help="replace existing artifacts")

    running = commands.add_parser("run-exported", help="run an exported artifact on inputs from an .npz")
    running.add_argument("path", metavar="PATH")
    running.add_argument("--input", required=True, help=".npz with one array (canonical layout)")
    running.add_argument("--output", help="write the outputs to this .npz")
    running.add_argument("--no-optimize", action="store_true", help="ONNX Runtime graph optimizations off")
    running.add_argument("--json", action="store_true")

    matrix = commands.add_parser("export-matrix", help="export and verify every architecture x format")
    matrix.add_argument("names", nargs="*", metavar="NAME")
    matrix.add_argument("--preset", default="tiny")
    matrix.add_argument("--update-docs", metavar="FILE", help="rewrite the matrix section of this page")

    benching = commands.add_parser("bench", help="throughput of each framework, eager and compiled")
    benching.add_argument("names", nargs="+", metavar="NAME")
    benching.add_argument("--framework", default="all", help="comma-separated or all")
    benching.add_argument("--mode", choices=("eager", "compiled", "all"), default="all")
    benching.add_argument("--task", choices=("inference", "train", "all"), default="all")
    benching.add_argument("--batch", type=int, nargs="+", default=[32])
    benching.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    benching.add_argument("--dtype", choices=("float32", "bf16"), default="float32",
                          help="bf16: parameters and activations in bfloat16 in every framework")
    benching.add_argument("--rounds", type=int, default=20)
    benching.add_argument("--preset", default=None, help="default: the reference size")
    benching.add_argument("--save", nargs="?", const="benchmarks/results", metavar="DIR",
                          help="write JSON results under DIR/<device>/ (default benchmarks/results)")
    benching.add_argument("--json", action="store_true")

    training = commands.add_parser("train", help="train on a dataset in one or all frameworks from one init")
    training.add_argument("name", metavar="NAME")
    training.add_argument("--framework", choices=(*FRAMEWORKS, "all"), default="all")
    training.add_argument("--dataset", default="digits", help="digits, synthetic or a path to an .npz file")
    training.add_argument("--preset", default=None, help="default: the reference size (inputs/classes fitted "
                                                          "to the dataset)")
    training.add_argument("--epochs", type=int, default=10)
    training.add_argument("--batch-size", type=int, default=32)
    training.add_argument("--optimizer", default="adam", help="sgd, adam, adamw, adagrad, rmsprop")
    training.add_argument("--lr", type=float, default=1e-3)
    training.add_argument("--momentum", type=float, default=None, help="sgd and rmsprop")
    training.add_argument("--weight-decay", type=float, default=None)
    training.add_argument("--loop", choices=("custom", "fit"), default="custom",
                          help="fit: Keras model.fit (keras only)")
    training.add_argument("--patience", type=int, default=None, help="early stopping on validation loss")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--plot", default=None, metavar="PNG", help="overlaid loss curves of every run")
    training.add_argument("--from", dest="checkpoint", default=None, metavar="CHECKPOINT",
                          help="fine-tune this safetensors checkpoint (spec from its metadata, see parity convert) "
                               "with a new head for the dataset's classes")
    training.add_argument("--freeze", default=None, help="with --from: backbone (default), none, or module "
                                                         "prefixes, comma-separated (layer1,layer2.0)")
    training.add_argument("--bn", choices=BATCH_NORM, default=None,
                          help="with --from: a frozen batch norm uses and keeps its running statistics (frozen, "
                               "default) or normalises with batch statistics and updates them (train)")
    training.add_argument("--devices", type=int, default=None, metavar="N",
                          help="data parallel: split every batch over N replicas on each framework's own engine "
                               "(torch DDP/gloo, tf.distribute MirroredStrategy, a JAX mesh) and compare the result "
                               "with the single-device run")
    training.add_argument("--sync-bn", action="store_true", help="with --devices: synchronized batch norm")
    training.add_argument("--steps", type=int, default=None, help="with --devices: at most this many steps")
    training.add_argument("--json", action="store_true")

    converting = commands.add_parser("convert", help="a PyTorch .pth state dict (torchvision's format) as a "
                                                     "safetensors checkpoint with its spec")
    converting.add_argument("source", metavar="MODEL.pth")
    converting.add_argument("out", metavar="OUT.safetensors")
    converting.add_argument("--arch", required=True, help="the architecture the state dict is for, e.g. resnet18")
    converting.add_argument("--preset", default=None, help="default: the reference size")
    converting.add_argument("--num-classes", type=int, default=None,
                            help="the checkpoint's class count (default: the preset's)")

    reporting = commands.add_parser("report", help="render saved benchmark results into docs/benchmarks.md")
    reporting.add_argument("--results", default="benchmarks/results")
    reporting.add_argument("--page", default="docs/benchmarks.md")
    reporting.add_argument("--figures", default="docs/figures")

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


def _export(args) -> int:
    from parity.export import FORMATS, default_path, export
    from parity.specs import spec as make_spec
    from parity.state import init_state, load_state

    spec = make_spec(args.name, args.preset)
    state = load_state(args.state, spec) if args.state else None
    frameworks = FORMATS[args.format] if args.framework == "all" else (args.framework,)
    for framework in frameworks:
        path = export(framework, spec, default_path(args.out, args.name, framework, args.format), args.format,
                      state if state is not None else init_state(spec, args.seed),
                      force=args.force)
        print(path)
    return 0


def _run_exported(args) -> int:
    import numpy as np

    from parity.runtime import run_exported

    try:
        with np.load(args.input) as data:
            inputs = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"--input {args.input!r}: expected an .npz file of arrays: {err}") from None
    outputs = run_exported(args.path, inputs, optimize=not args.no_optimize)
    if args.output:
        np.savez(args.output, **outputs)
    if args.json:
        print(json.dumps({k: v.tolist() for k, v in outputs.items()}))
    else:
        for name, value in outputs.items():
            print(f"{name}: shape {value.shape} {value.dtype}\n{value}")
    return 0


def _export_matrix(args) -> int:
    from parity.export_check import matrix_markdown, support_matrix

    results = support_matrix(args.names or None, args.preset)
    table = matrix_markdown(results)
    print(table)
    if args.update_docs:
        from pathlib import Path

        from parity.report import check_markers, splice

        page = Path(args.update_docs)
        text = page.read_text(encoding="utf-8")
        start, end = "<!-- export-matrix:start -->", "<!-- export-matrix:end -->"
        check_markers(text, start, end, page)
        page.write_text(splice(text, start, end, table), encoding="utf-8")
    return 0 if all(r.passed for r in results) else 1


def _bench_in_subprocesses(args, frameworks) -> list[dict]:
    """One process per framework: a framework's idle thread pools keep spinning after its steps
    and slow the next framework's (Keras' compiled ResNet-50 inference ran at 23 img/s after torch
    and JAX in one process, 41 img/s alone), so each framework is timed in a process of its own."""
    rows = []
    for framework in frameworks:
        command = [sys.executable, "-m", "parity.cli", "bench", *args.names, "--framework", framework,
                   "--mode", args.mode, "--task", args.task, "--batch", *map(str, args.batch),
                   "--device", args.device, "--dtype", args.dtype, "--rounds", str(args.rounds), "--json",
                   *(["--preset", args.preset] if args.preset else []), *(["--save", args.save] if args.save else [])]
        done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
        if done.returncode:
            raise FrameworkError(f"bench: the {framework} process failed (exit {done.returncode}): {' '.join(command)}")
        rows += json.loads(done.stdout)
    return rows


def _bench(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from parity.bench import MODES, TASKS, bench, save_results

    frameworks = FRAMEWORKS if args.framework == "all" else _frameworks(args.framework)
    if len(frameworks) > 1:
        rows = _bench_in_subprocesses(args, frameworks)
    else:
        modes = MODES if args.mode == "all" else (args.mode,)
        tasks = TASKS if args.task == "all" else (args.task,)
        runs = [(n, b, t, m) for n in args.names for b in args.batch for t in tasks for m in modes]
        results = []
        with Console(stderr=True).status("") as status:
            for i, (name, batch, task, mode) in enumerate(runs, 1):
                status.update(f"[{i}/{len(runs)}] {name} batch {batch} {task} {frameworks[0]} {mode}")
                results.append(bench(name, frameworks[0], mode=mode, task=task, batch=batch, dtype=args.dtype,
                                     device=args.device, rounds=args.rounds, preset=args.preset))
        if args.save:
            print(f"saved {save_results(results, args.save)}", file=sys.stderr)
        rows = [r.to_dict() for r in results]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title=f"parity bench on {rows[0]['device']}: median of {args.rounds} rounds")
    for column in ("architecture", "batch", "task", "mode", "framework", "samples/s", "IQR", "first call",
                   "GFLOP/s", "of peak"):
        table.add_column(column, justify="left" if column in ("architecture", "task", "mode", "framework") else "right")
    for r in rows:
        table.add_row(r["architecture"], str(r["batch"]), r["task"], r["mode"], r["framework"],
                      f"{r['samples_per_s']:,.0f}", f"{100 * r['iqr_s'] / r['median_s']:.0f}%",
                      f"{r['first_call_s']:.2f}s", f"{r['achieved_gflops']:.1f}",
                      "-" if r["utilisation"] is None else f"{100 * r['utilisation']:.1f}%")
    Console().print(table)
    return 0


def _convert(args) -> int:
    from parity.specs import spec as make_spec
    from parity.transfer import convert_checkpoint

    classes = {} if args.num_classes is None else {"num_classes": args.num_classes}
    spec = make_spec(args.arch, args.preset, **classes)
    print(convert_checkpoint(args.source, args.out, spec))
    return 0


def _fine_tuning(args, dataset):
    """The `parity.transfer` of `parity train --from`: the checkpoint's spec and state, a new head for
    the dataset's classes, the backbone frozen as --freeze and --bn say."""
    from parity.errors import CheckpointError
    from parity.state import load_state, read_spec
    from parity.transfer import transfer

    spec = read_spec(args.checkpoint)
    if spec is None:
        raise CheckpointError(f"--from {args.checkpoint!r}: expected a checkpoint with its spec in the metadata "
                              f"(parity convert writes one), got none")
    if spec.architecture != args.name:
        raise InputError(f"--from {args.checkpoint!r}: expected a {args.name} checkpoint, got {spec.architecture}")
    if args.preset is not None:
        raise InputError(f"--preset: the spec comes from the --from checkpoint; expected no --preset, "
                         f"got {args.preset!r}")
    freeze = args.freeze or "backbone"
    if freeze not in ("backbone", "none"):
        freeze = [prefix.strip() for prefix in freeze.split(",") if prefix.strip()]
    return transfer(spec, load_state(args.checkpoint, spec), dataset.num_classes, freeze,
                    batch_norm=args.bn or "frozen", seed=args.seed)


def _train(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from parity.data import load_dataset, spec_for_dataset
    from parity.loops import plot_histories, train
    from parity.optimizers import optimizer
    from parity.specs import spec as make_spec

    dataset = load_dataset(args.dataset, seed=args.seed)
    if args.checkpoint is not None:
        fine_tuning = _fine_tuning(args, dataset)
        spec, start = fine_tuning.spec, {"state": fine_tuning.state, "frozen": fine_tuning.frozen,
                                         "batch_norm": fine_tuning.batch_norm}
    elif args.freeze is not None or args.bn is not None:
        raise InputError("--freeze and --bn freeze a loaded backbone: expected --from CHECKPOINT with them")
    else:
        spec, start = spec_for_dataset(make_spec(args.name, args.preset), dataset), {}
    hyper = {k: v for k, v in (("lr", args.lr), ("momentum", args.momentum), ("weight_decay", args.weight_decay))
             if v is not None}
    opt = optimizer(args.optimizer, **hyper)
    frameworks = FRAMEWORKS if args.framework == "all" else (args.framework,)
    if args.devices is not None:
        return _train_data_parallel(args, spec, dataset, opt, frameworks, start)
    if args.sync_bn or args.steps is not None:
        raise InputError("--sync-bn and --steps are data-parallel options: expected --devices N with them")
    if args.loop == "fit" and frameworks != ("keras",):
        raise InputError(f"--loop fit is Keras' model.fit: expected --framework keras, got {args.framework}")
    results = {fw: train(fw, spec, dataset, opt, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         loop=args.loop, early_stopping_patience=args.patience, **start) for fw in frameworks}
    if args.plot:
        plot_histories(results, args.plot)
    if args.json:
        print(json.dumps({fw: {"test_accuracy": r.test_accuracy, "test_loss": r.test_loss, "history": r.history,
                               "epochs_run": r.epochs_run, "best_epoch": r.best_epoch, "seconds": r.seconds}
                          for fw, r in results.items()}, indent=1))
        return 0
    origin = "" if args.checkpoint is None else (f", from {args.checkpoint} with {len(start['frozen'])} parameter "
                                                 f"tensors frozen (batch norm {start['batch_norm']})")
    table = Table(title=f"{args.name} on {args.dataset}: {args.optimizer} lr={args.lr}, "
                        f"batch {args.batch_size}{origin}")
    for column in ("framework", "loop", "epochs", "best epoch", "final train loss", "final val loss",
                   "test accuracy", "seconds"):
        table.add_column(column, justify="left" if column in ("framework", "loop") else "right")
    for fw, r in results.items():
        table.add_row(fw, r.loop, str(r.epochs_run), "-" if r.best_epoch is None else str(r.best_epoch + 1),
                      f"{r.history['train_loss'][-1]:.4f}",
                      f"{r.history['val_loss'][-1]:.4f}", f"{100 * r.test_accuracy:.1f}%", f"{r.seconds:.1f}")
    Console().print(table)
    if args.plot:
        print(f"loss curves: {args.plot}")
    return 0


def _train_data_parallel(args, spec, dataset, opt, frameworks, start) -> int:
    """`parity train --devices N`: the dataset's batches (each epoch's partial last batch dropped)
    trained over N replicas in each framework, beside the single-device run from the same state."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from parity import distributed
    from parity.frameworks import build, impl_module
    from parity.state import init_state
    from parity.tolerances import errors
    from parity.training import train_steps

    if start or args.loop != "custom" or args.patience is not None:
        raise InputError("--devices: expected no --from, --loop fit or --patience (data-parallel runs train a "
                         "fresh model with each framework's custom loop)")
    batches = distributed.epoch_batches(dataset.x_train, dataset.y_train, batch_size=args.batch_size,
                                        epochs=args.epochs, seed=args.seed)[:args.steps]
    state = init_state(spec, args.seed)
    run = distributed.Run(spec, state, opt, batches, sync_batch_norm=args.sync_bn, keep="last")
    rows = {}
    for fw in frameworks:
        result = distributed.run_all(fw, [run], devices=args.devices)[0]
        final = result.states[-1]
        single, _ = train_steps(fw, spec, state, opt, batches)
        _, accuracy = impl_module(fw, "loops").evaluate(build(fw, spec, final), dataset.x_test, dataset.y_test,
                                                        batch_size=args.batch_size)
        rows[fw] = {"replicas": args.devices, "steps": len(batches), "first_loss": result.losses[0],
                    "last_loss": result.losses[-1], "test_accuracy": accuracy,
                    "max_error_vs_single_device": max(errors(final[k], single[k])[1] for k in final),
                    "median_step_ms": 1e3 * float(np.median(result.step_seconds[1:] or result.step_seconds)),
                    "seconds": sum(result.step_seconds)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title=f"{args.name} on {args.dataset}: {args.optimizer} lr={args.lr}, global batch "
                        f"{args.batch_size} over {args.devices} replicas"
                        f"{' (synchronized batch norm)' if args.sync_bn else ''}")
    for column in ("framework", "replicas", "steps", "first loss", "last loss", "test accuracy",
                   "max rel. error vs 1 device", "median step ms"):
        table.add_column(column, justify="left" if column == "framework" else "right")
    for fw, r in rows.items():
        table.add_row(fw, str(r["replicas"]), str(r["steps"]), f"{r['first_loss']:.4f}", f"{r['last_loss']:.4f}",
                      f"{100 * r['test_accuracy']:.1f}%", f"{r['max_error_vs_single_device']:.1e}",
                      f"{r['median_step_ms']:.1f}")
    Console().print(table)
    return 0


def _report(args) -> int:
    from pathlib import Path

    from parity.bench import load_results
    from parity.report import render

    render(load_results(args.results), Path(args.page), Path(args.figures))
    print(f"wrote {args.page}")
    return 0


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs, on import
    args = _parser().parse_args(argv)
    commands = {"list": _list, "check": _check, "diff": _diff, "export": _export,
                "run-exported": _run_exported, "export-matrix": _export_matrix, "bench": _bench,
                "report": _report, "train": _train, "convert": _convert}
    try:
        return commands[args.command](args)
    except ParityError as err:
        print(f"parity: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
