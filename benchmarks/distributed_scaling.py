"""Data-parallel scaling per framework: the same training steps over 1, 2 and 4 replicas on each
framework's own engine (torch DDP, tf.distribute.MirroredStrategy, a JAX mesh), via
`parity.distributed` (one launch per framework and replica count, its start-up not timed).

Strong scaling (default): the global batch is fixed and split N ways; speedup = t_1 / t_N,
efficiency = speedup / N. Weak scaling (--weak): each replica keeps --batch examples, the global
batch grows N-fold; efficiency = t_1 / t_N. A step's time is the median over the timed steps,
after --warmup untimed ones (JAX and tf.function compile there); it ends with the step's loss
read back, so the step has finished.

On CPU the N replicas share the machine's cores: torch's N processes get cores / N threads each,
TensorFlow's N logical devices and XLA's N host devices share one process's thread pools. A CPU
scaling curve is therefore the engines' overhead at a fixed compute budget, not a speedup.

    python benchmarks/distributed_scaling.py                           # lenet5, 1/2/4 replicas, CPU
    python benchmarks/distributed_scaling.py --arch mlp --steps 3 --replicas 1,2   # a smoke run
    python benchmarks/distributed_scaling.py --device gpu --frameworks torch,jax    # one GPU per replica

Results: benchmarks/results/<device>/distributed-scaling-<UTC time>.json (--out to change), and a
markdown table on stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import parity  # noqa: E402
from parity import distributed  # noqa: E402
from parity.bench import device_label  # noqa: E402


def _run(framework, spec, opt, replicas, batch, steps, warmup, dtype, seed, sync_batch_norm):
    state = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in parity.init_state(spec, seed).items()}
    batches = [parity.example_batch(spec, batch, seed + step, dtype=dtype) for step in range(warmup + steps)]
    start = time.perf_counter()
    result = distributed.run_all(framework, [distributed.Run(spec, state, opt, batches, sync_batch_norm=sync_batch_norm,
                                                                  keep="last")],
                                 devices=replicas)[0]
    timed = result.step_seconds[warmup:]
    return {"framework": framework, "replicas": replicas, "global_batch": batch, "steps": steps,
            "median_step_s": statistics.median(timed), "min_step_s": min(timed),
            "warmup_s": sum(result.step_seconds[:warmup]), "launch_s": time.perf_counter() - start,
            "last_loss": result.losses[-1]}


def _efficiency(rows, weak):
    """Speedup and efficiency of every row against its framework's 1-replica row."""
    base = {r["framework"]: r for r in rows if r["replicas"] == 1}
    for r in rows:
        one = base.get(r["framework"])
        r["examples_per_s"] = r["global_batch"] / r["median_step_s"]
        if one is None:
            continue
        ratio = one["median_step_s"] / r["median_step_s"]
        r["speedup"] = ratio * (r["global_batch"] / one["global_batch"]) if weak else ratio
        r["efficiency"] = ratio if weak else ratio / r["replicas"]
    return rows


def table(rows) -> str:
    lines = ["| framework | replicas | global batch | median step (ms) | examples/s | speedup | efficiency |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        speedup = f"{r['speedup']:.2f}" if "speedup" in r else "-"
        efficiency = f"{100 * r['efficiency']:.0f}%" if "efficiency" in r else "-"
        lines.append(f"| {r['framework']} | {r['replicas']} | {r['global_batch']} | {1e3 * r['median_step_s']:.1f} | "
                     f"{r['examples_per_s']:.0f} | {speedup} | {efficiency} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--frameworks", default=",".join(parity.FRAMEWORKS))
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--batch", type=int, default=64, help="global batch (per replica with --weak)")
    parser.add_argument("--weak", action="store_true", help="weak scaling: --batch examples per replica")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    if args.device == "gpu":  # torch places every rank on its own GPU; JAX's mesh takes the GPUs
        os.environ["PARITY_TORCH_DEVICE"] = "cuda"
    else:  # the CPU run stays on the CPU where a GPU is present too
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    spec = parity.spec(args.arch, args.preset).deterministic()
    if args.sync_bn and not spec.has_batch_norm:
        parser.error(f"--sync-bn: {args.arch} has no batch norm")
    opt = parity.optimizer("sgd", lr=0.01, momentum=0.9)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = []
    for framework in args.frameworks.split(","):
        for replicas in (int(n) for n in args.replicas.split(",")):
            batch = args.batch * replicas if args.weak else args.batch
            print(f"{framework} x{replicas}, global batch {batch} ...", file=sys.stderr, flush=True)
            rows.append(_run(framework, spec, opt, replicas, batch, args.steps, args.warmup, args.dtype, 0,
                             args.sync_bn))
    _efficiency(rows, args.weak)
    label = device_label(args.device, args.frameworks.split(",")[0])
    record = {"benchmark": "distributed-scaling", "arch": args.arch, "preset": args.preset, "dtype": args.dtype,
              "scaling": "weak" if args.weak else "strong", "sync_batch_norm": args.sync_bn, "device": label,
              "cpu_count": os.cpu_count(), "load_average_at_start": load, "python": platform.python_version(),
              "optimizer": "sgd lr=0.01 momentum=0.9", "threads": "torch: cpu_count // replicas per process; "
              "TensorFlow and XLA: one process, default thread pools", "rows": rows}
    out = Path(args.out) / label
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"distributed-scaling-{stamp}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"{args.arch} {args.preset} {args.dtype}, {record['scaling']} scaling on {label} "
          f"(load average at start {load}):\n{table(rows)}\n\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
