"""Side-by-side throughput: one harness, every framework's native eager and compiled modes.

    bench("lenet5", "jax", mode="compiled", task="train", batch=64) -> BenchResult

What is timed: one step on data already on the device (inference: a forward pass in eval mode;
train: forward, loss, backward and a native SGD update in training mode), ending with each
framework's synchronisation (a host read of the loss, `block_until_ready`, materialised TF
outputs, `cuda.synchronize`). The first call (tracing/compilation plus the first run) is
reported separately as `first_call_s`; then `warmup` untimed calls; then `rounds` timed calls,
summarised by median and inter-quartile range, with the process's minor page faults per timed
call (memory first touched: what an allocator that returns freed memory to the kernel costs on
every step, docs/benchmarks.md section 11). FLOPs come from `parity.flops`; on the CPU the
peak is each framework's measured float32 2048x2048 matmul rate, on a GPU the datasheet peak.
"""
from __future__ import annotations

import datetime as _datetime
import json
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from parity.compare import example_batch
from parity.errors import InputError
from parity.flops import forward_flops, train_step_flops
from parity.frameworks import build, impl_module, set_deterministic
from parity.specs import spec as make_spec
from parity.state import init_state

MODES = ("eager", "compiled")
TASKS = ("inference", "train")
# bf16: parameters, activations and gradients all bfloat16, the same in the three frameworks (no
# float32 master weights: autocast and Keras's mixed_bfloat16 policy have no Flax counterpart).
DTYPES = {"float32": "float32", "bf16": "bfloat16"}
LEARNING_RATE = 0.01
# Dense (no sparsity) datasheet peaks in TFLOP/s, by dtype: float32 on CUDA cores, bf16 on tensor cores.
GPU_PEAK_TFLOPS = {
    "H100 80GB HBM3": {"float32": 66.9, "bf16": 989.4},  # SXM5
    "H100 PCIe": {"float32": 51.2, "bf16": 756.0},
    "H200": {"float32": 66.9, "bf16": 989.4},
    "A100-SXM4-80GB": {"float32": 19.5, "bf16": 312.0},
    "A100-SXM4-40GB": {"float32": 19.5, "bf16": 312.0},
}
_CPU_PEAKS: dict[str, float] = {}


@dataclass
class BenchResult:
    architecture: str
    preset: str
    framework: str
    mode: str
    task: str
    batch: int
    dtype: str
    device: str
    rounds: int
    times_s: list[float]
    first_call_s: float
    flops_per_step: int
    peak_gflops: float | None
    peak_source: str
    peak_memory_bytes: int | None
    memory_source: str
    settings: dict = field(default_factory=dict)
    page_faults_per_step: float | None = None

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    @property
    def iqr_s(self) -> float:
        q1, q3 = np.percentile(self.times_s, [25, 75])
        return float(q3 - q1)

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def achieved_gflops(self) -> float:
        return self.flops_per_step / self.median_s / 1e9

    @property
    def utilisation(self) -> float | None:
        return None if not self.peak_gflops else self.achieved_gflops / self.peak_gflops

    def to_dict(self) -> dict:
        return {**asdict(self), "median_s": self.median_s, "iqr_s": self.iqr_s,
                "samples_per_s": self.samples_per_s, "achieved_gflops": self.achieved_gflops,
                "utilisation": self.utilisation}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(device: str, framework: str = "torch") -> str:
    """A filesystem-friendly device name: results go to benchmarks/results/<label>/."""
    name = _cpu_name() if device == "cpu" else impl_module(framework, "bench").device_name(device)
    label = f"cpu-{os.cpu_count()}core-{name}" if device == "cpu" else name
    return "".join(c if c.isalnum() or c in "-." else "-" for c in label).strip("-")


def _timed(step, args=(), rounds: int = 1) -> list[float]:
    """Seconds of each of `rounds` calls of `step(*args)` (each step ends with its own sync)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step(*args)
        times.append(time.perf_counter() - start)
    return times


def _matmul_gflops(module, n: int = 2048, rounds: int = 5) -> float:
    """A framework's measured float32 n x n matmul rate on the CPU: median of `rounds` after one."""
    step = module.matmul_step(n)
    step()
    return 2 * n**3 / float(np.median(_timed(step, rounds=rounds))) / 1e9


def _peak(framework: str, device: str, dtype: str, module) -> tuple[float | None, str]:
    if device == "cpu":
        if framework not in _CPU_PEAKS:
            _CPU_PEAKS[framework] = _matmul_gflops(module)
        return _CPU_PEAKS[framework], f"measured {framework} float32 2048x2048 matmul on this CPU"
    name = module.device_name(device)
    for known, peaks in GPU_PEAK_TFLOPS.items():
        if known in name and dtype in peaks:
            return peaks[dtype] * 1e3, f"datasheet {known} {dtype} dense peak"
    return None, f"no datasheet peak known for {name!r}"


def _check_choices(mode, task, device, dtype):
    for value, allowed, what in ((mode, MODES, "mode"), (task, TASKS, "task"), (device, ("cpu", "gpu"), "device"),
                                 (dtype, tuple(DTYPES), "dtype")):
        if value not in allowed:
            raise InputError(f"bench {what}: expected one of {list(allowed)}, got {value!r}")


def prepare_step(name: str, framework: str, *, mode: str = "eager", task: str = "inference", batch: int = 32,
                 dtype: str = "float32", device: str = "cpu", preset: str | None = None, seed: int = 0):
    """(step, args, flops per step, spec, framework bench module): the callable `step(*args)` is
    exactly what `bench` times; the pytest-benchmark suite times it too."""
    _check_choices(mode, task, device, dtype)
    if batch < 1:
        raise InputError(f"bench: batch must be positive, got {batch}")
    spec = make_spec(name, preset)
    if task == "train" and spec.has_batch_norm and batch < 2:
        raise InputError(f"bench: training with batch norm needs batch >= 2, got {batch}")
    set_deterministic([framework])
    module = impl_module(framework, "bench")
    if dtype == "float32":
        model = build(framework, spec, dtype=dtype, seed=seed)
    else:  # the float32 canonical state, rounded to bf16 as it loads
        api = impl_module(framework, "api")
        model = api.load_state(api.build(spec, DTYPES[dtype]), init_state(spec, seed, "float32"))
    inputs, targets = example_batch(spec, batch, seed, "float32")
    extra = {}
    if isinstance(inputs, dict):  # the main input, and the named ones the step passes by keyword
        extra = {name: value for name, value in inputs.items() if name not in (spec.input_kind, "lengths")}
        inputs = inputs[spec.input_kind]  # no `lengths`: full-length sequences, every framework's dense path
        if task == "inference" and spec.declared_inputs() is None:
            extra.pop("decoder_tokens", None)  # the recurrent encoder-decoders decode greedily from BOS
    x, y, *values = module.to_device(model, [inputs, targets, *extra.values()], device)
    extra = dict(zip(extra, values))
    if task == "inference":
        return module.inference_step(model, mode == "compiled"), (x, extra), forward_flops(spec, batch), spec, module
    step = module.train_step(model, mode == "compiled", LEARNING_RATE)
    return step, (x, extra, y), train_step_flops(spec, batch), spec, module


def bench(name: str, framework: str, *, mode: str = "eager", task: str = "inference", batch: int = 32,
          dtype: str = "float32", device: str = "cpu", rounds: int = 20, warmup: int = 2,
          preset: str | None = None, seed: int = 0) -> BenchResult:
    """Time one step of `name` in `framework`; see the module docstring for what is timed."""
    if rounds < 1:
        raise InputError(f"bench: rounds must be positive, got {rounds}")
    step, args, flops, spec, module = prepare_step(name, framework, mode=mode, task=task, batch=batch,
                                                   dtype=dtype, device=device, preset=preset, seed=seed)
    (first_call,) = _timed(step, args)
    _timed(step, args, warmup)
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = _timed(step, args, rounds)
    page_faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / rounds
    peak, peak_source = _peak(framework, device, dtype, module)
    device_memory = module.peak_memory_bytes(device)
    memory = device_memory if device_memory is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return BenchResult(
        spec.architecture, preset or type(spec).reference_preset, framework, mode, task, batch, dtype,
        device_label(device, framework), rounds, times, first_call, flops, peak, peak_source, memory,
        "device allocator peak" if device_memory is not None else "process peak RSS (whole process, not per step)",
        settings={**module.thread_settings(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                  "numpy": np.__version__, "warmup_calls": warmup, "learning_rate": LEARNING_RATE,
                  "when": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds")},
        page_faults_per_step=page_faults)


def save_results(results: list[BenchResult], root="benchmarks/results") -> Path:
    """Write one JSON file per run under <root>/<device>/; returns its path."""
    if not results:
        raise InputError("save_results: no results to save")
    folder = Path(root) / results[0].device
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    frameworks = "-".join(dict.fromkeys(r.framework for r in results))  # parallel runs never collide
    path = folder / f"bench-{stamp}-{frameworks}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    os.replace(tmp, path)
    return path


def load_results(root="benchmarks/results") -> list[dict]:
    """Every saved result; for repeated (device, architecture, preset, framework, mode, task,
    batch, dtype) keys, the newest wins."""
    latest = {}
    for path in sorted(Path(root).glob("*/bench-*.json")):
        for row in json.loads(path.read_text()):
            key = tuple(row[k] for k in ("device", "architecture", "preset", "framework", "mode", "task",
                                         "batch", "dtype"))
            latest[key] = row
    return list(latest.values())


