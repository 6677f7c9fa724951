"""Data-parallel training on each framework's own engine, framework-neutral part.

`train_trajectory(framework, spec, state, optimizer, batches, devices=N)` trains the same
global batches as `parity.training.train_trajectory`, each one split into N contiguous
replica batches, with the gradients all-reduced by the framework's engine:

- torch: DistributedDataParallel, one process per replica, gloo on CPU (NCCL on CUDA);
- keras: tf.distribute.MirroredStrategy over N logical CPU devices, one process;
- jax:   jax.jit over a jax.sharding.Mesh of N devices (XLA's host platform split into N), one process.

Each engine needs settings made before its framework is imported (logical devices, XLA_FLAGS,
a process group), so every run happens in fresh subprocesses: `launch` starts them with a time
limit, watches them all, and turns a failed or silent worker into a `DistributedError` naming
the rank, its exit status and the end of its output. Everything is validated here first
(`check_run`), so a batch that cannot be split evenly is an `InputError` before anything starts.
The mirrored engines are `pytorch_impl/`, `keras_impl/`, `jax_impl/distributed.py`.

Batch norm under data parallelism normalises each replica's batch with its own statistics by
default (torch's and TensorFlow's default; in JAX a shard_map), which is *not* the single-device
computation; `sync_batch_norm=True` all-reduces the statistics and is. The running statistics a
run returns are replica 0's (DDP broadcasts rank 0's buffers; the others are read from replica 0).
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parity.errors import FrameworkError, InputError, ParityError
from parity.frameworks import FRAMEWORKS, _check_inputs, _check_targets, impl_module, set_deterministic
from parity.optimizers import OptimizerSpec
from parity.specs import Spec, spec_from_dict
from parity.state import check_state

TIMEOUT_S = 600.0  # per launch: every worker of it, imports and compilation included
MAX_DEVICES = 64
_ROOT = Path(__file__).resolve().parents[1]


class DistributedError(ParityError, RuntimeError):
    """A worker of a data-parallel run failed, or the run passed its time limit."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One data-parallel training run: what `train_trajectory` takes, validated."""

    spec: Spec
    state: dict
    optimizer: OptimizerSpec
    batches: list
    sync_batch_norm: bool = False
    keep: str = "all"  # "all": the canonical state after every step; "last": after the last one


@dataclasses.dataclass(frozen=True)
class Result:
    """What a run gives back: the states kept (after every step, or the last), the global mean
    loss of every step (at the weights before its update) and the seconds of every step."""

    states: list[dict[str, np.ndarray]]
    losses: list[float]
    step_seconds: list[float]


# --- checks, made before anything is launched ----------------------------------------------

def check_devices(devices) -> int:
    if not isinstance(devices, int) or isinstance(devices, bool) or not 1 <= devices <= MAX_DEVICES:
        raise InputError(f"devices: expected an int in [1, {MAX_DEVICES}] (the number of replicas), got {devices!r}")
    return devices


def check_batches(spec: Spec, batches: list, devices: int, sync_batch_norm: bool) -> None:
    """Every global batch splits into `devices` equal replica batches (an uneven last batch does
    not), and a replica batch is large enough for per-replica batch statistics."""
    sizes = [len(_array(spec, inputs)) for inputs, _ in batches]
    for step, size in enumerate(sizes):
        if size % devices:
            last = " (an uneven last batch: drop it, as drop_last=True does, or pad it)" if (
                step == len(sizes) - 1 and len(sizes) > 1 and size < sizes[0]) else ""
            raise InputError(f"batch {step}: expected a batch size divisible by devices={devices} (each replica "
                             f"takes an equal share), got {size}{last}")
    if spec.has_batch_norm and not sync_batch_norm and min(sizes) // devices < 2:
        raise InputError(f"{spec.architecture}: per-replica batch norm needs at least 2 examples per replica "
                         f"(the unbiased variance divides by n - 1), got batch {min(sizes)} over {devices} replicas; "
                         f"use a larger batch or sync_batch_norm=True")


def _array(spec: Spec, inputs) -> np.ndarray:
    if not isinstance(inputs, np.ndarray):
        raise InputError(f"{spec.architecture} inputs: data-parallel runs take one input array per batch, "
                         f"got {type(inputs).__name__}")
    return inputs


def check_run(framework: str, run: Run, devices: int) -> Run:
    """The run with every batch validated as `parity.loss_and_grads` would (shapes, dtype, labels),
    in the state's dtype; raises InputError/SpecError before any process starts."""
    from parity.training import _check  # the single-device checks: optimizer, deterministic spec, schedule

    if framework not in FRAMEWORKS:
        raise FrameworkError(f"unknown framework {framework!r}; expected one of {list(FRAMEWORKS)}")
    check_devices(devices)
    batches = list(run.batches)
    _check(run.spec, run.optimizer, batches)
    state = check_state(run.spec, run.state)
    dtype = next(str(v.dtype) for v in state.values() if np.issubdtype(v.dtype, np.floating))
    checked = []
    for inputs, targets in batches:
        inputs = _check_inputs(run.spec, dtype, _array(run.spec, inputs))
        checked.append((inputs, _check_targets(run.spec, dtype, targets, inputs)))
    check_batches(run.spec, checked, devices, run.sync_batch_norm)
    _check_engine(framework, run.optimizer, devices)
    if run.keep not in ("all", "last"):
        raise InputError(f"keep: expected 'all' or 'last', got {run.keep!r}")
    return dataclasses.replace(run, state=state, batches=checked)


def _check_engine(framework: str, optimizer: OptimizerSpec, devices: int) -> None:
    """What an engine computes differently from the single-device run is refused, not run."""
    coupled_decay = optimizer.weight_decay and optimizer.name != "adamw"
    if framework == "keras" and devices > 1 and (optimizer.clip_norm is not None or coupled_decay):
        # Keras' optimizer clips (global_clipnorm) and keras_impl's coupled weight decay adds
        # wd * p to each replica's gradient *before* tf.distribute's all-reduce sums them: the
        # norm clipped is a replica's partial gradient and the decay is counted N times (measured:
        # 3e-2 off the single-device run after 3 steps; tests/test_distributed.py).
        raise InputError(f"optimizer: Keras over {devices} replicas applies clip_norm and {optimizer.name}'s "
                         f"weight_decay to each replica's gradient before the all-reduce (a different update); "
                         f"expected neither (AdamW's decoupled weight_decay is fine), got clip_norm="
                         f"{optimizer.clip_norm}, weight_decay={optimizer.weight_decay}")


def shard(array: np.ndarray, rank: int, devices: int) -> np.ndarray:
    """Replica `rank`'s contiguous share of a global batch: rows [rank * b, (rank + 1) * b), as
    tf.data and a NamedSharding split a batch (torch's DistributedSampler deals examples round-robin
    instead: with per-replica batch norm that is a different computation)."""
    rows = len(array) // devices
    return array[rank * rows:(rank + 1) * rows]


def epoch_batches(x: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int, seed: int) -> list:
    """The global batches of `epochs` passes over (x, y) in `parity.data.epoch_order`, each epoch's
    last partial batch dropped (torch's drop_last): data parallelism needs equal shares."""
    from parity.data import epoch_order

    if not isinstance(batch_size, int) or batch_size < 1 or batch_size > len(x):
        raise InputError(f"batch_size: expected an int in [1, {len(x)}] (the training samples), got {batch_size!r}")
    batches = []
    for epoch in range(epochs):
        order = epoch_order(len(x), seed, epoch)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            rows = order[start:start + batch_size]
            batches.append((x[rows], y[rows]))
    return batches


# --- the user-facing entry points ----------------------------------------------------------

def train_trajectory(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches, dtype=None, *,
                     devices: int, sync_batch_norm: bool = False, timeout: float = TIMEOUT_S):
    """`parity.train_trajectory` over `devices` replicas: the canonical state after each step."""
    from parity.training import _as_dtype

    state, batches = _as_dtype(state, list(batches), dtype)
    run = Run(spec, state, optimizer, batches, sync_batch_norm=sync_batch_norm)
    return run_all(framework, [run], devices=devices, timeout=timeout)[0].states


def run_all(framework: str, runs: list[Run], *, devices: int, timeout: float = TIMEOUT_S) -> list[Result]:
    """Several runs in one launch (one set of processes: the imports and the engine's setup are
    paid once). Results in the order of `runs`."""
    runs = [check_run(framework, run, devices) for run in runs]
    with tempfile.TemporaryDirectory(prefix="parity-dp-") as job:
        _write_job(Path(job), framework, runs, devices)
        launch(worker_commands(framework, job, devices), timeout=timeout, what=f"{framework} over {devices} replicas")
        return [_read_result(Path(job), i) for i in range(len(runs))]


# --- the job directory: JSON and safetensors (no pickle) ------------------------------------

def _write_job(job: Path, framework: str, runs: list[Run], devices: int) -> None:
    from safetensors.numpy import save_file

    described = []
    for i, run in enumerate(runs):
        save_file({name: _contiguous(value) for name, value in run.state.items()}, job / f"state.{i}.safetensors")
        save_file({f"{kind}.{step}": _contiguous(array) for step, pair in enumerate(run.batches)
                   for kind, array in zip(("inputs", "targets"), pair)}, job / f"batches.{i}.safetensors")
        described.append({"spec": run.spec.to_dict(), "optimizer": dataclasses.asdict(run.optimizer),
                          "steps": len(run.batches), "sync_batch_norm": run.sync_batch_norm, "keep": run.keep})
    (job / "job.json").write_text(json.dumps({"framework": framework, "devices": devices, "runs": described}))


def _read_result(job: Path, i: int) -> Result:
    from safetensors.numpy import load_file

    tensors = load_file(job / f"result.{i}.safetensors")
    meta = json.loads((job / f"result.{i}.json").read_text())
    states = [{name: tensors[f"{step}.{name}"] for name in meta["names"]} for step in meta["kept"]]
    return Result(states, meta["losses"], meta["step_seconds"])


def _contiguous(array) -> np.ndarray:
    """C-contiguous, keeping a 0-d array 0-d (np.ascontiguousarray makes it 1-d)."""
    return np.array(array, order="C", copy=None)


# --- launching --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_environment(framework: str, devices: int) -> dict[str, str]:
    """The settings a worker needs before its framework is imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "KERAS_BACKEND": "tensorflow",
           "PYTHONUNBUFFERED": "1"}
    if framework == "jax":  # N host devices: only read when jax initialises its CPU backend
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    return env


def worker_commands(framework: str, job, devices: int) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of every process of a run: N ranks for torch (torchrun's variables:
    the same worker runs under `torchrun --nproc-per-node N -m parity.distributed JOB`), one
    process holding every replica for Keras and JAX."""
    argv = [sys.executable, "-m", "parity.distributed", str(job)]
    env = worker_environment(framework, devices)
    if framework != "torch":
        return [(argv, env)]
    port = str(_free_port())
    return [(argv, {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
                    "LOCAL_RANK": str(rank), "WORLD_SIZE": str(devices), "LOCAL_WORLD_SIZE": str(devices)})
            for rank in range(devices)]


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return "\n".join(text[-lines:]) or "(no output)"


def launch(commands, *, timeout: float = TIMEOUT_S, what: str = "data-parallel run") -> float:
    """Start every (argv, env) process, each in its own process group, and wait for all of them.
    The first one to fail, or the time limit, stops the rest (a rank blocked in a collective
    would otherwise wait for its dead peer forever) and raises DistributedError with that rank's
    output. Returns the wall seconds."""
    if not timeout or timeout <= 0:
        raise InputError(f"timeout: expected seconds > 0, got {timeout!r}")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parity-logs-") as logs:
        processes = []
        try:
            for rank, (argv, env) in enumerate(commands):
                with open(Path(logs) / f"{rank}.log", "wb") as log:
                    processes.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                      stdin=subprocess.DEVNULL, start_new_session=True, cwd=_ROOT))
            while True:
                codes = [p.poll() for p in processes]
                failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
                if failed:
                    rank = failed[0]
                    raise DistributedError(f"{what}: worker {rank} of {len(processes)} exited with status "
                                           f"{codes[rank]}; the others were stopped. Its output ends:\n"
                                           f"{_tail(Path(logs) / f'{rank}.log')}")
                if all(code == 0 for code in codes):
                    return time.monotonic() - start
                if time.monotonic() - start > timeout:
                    waiting = [rank for rank, code in enumerate(codes) if code is None]
                    raise DistributedError(f"{what}: timed out after {timeout:.0f} s with worker(s) {waiting} "
                                           f"still running; they were stopped. Worker {waiting[0]}'s output ends:\n"
                                           f"{_tail(Path(logs) / f'{waiting[0]}.log')}")
                time.sleep(0.05)
        finally:
            for p in processes:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, 9)  # the process group: whatever the worker started goes too
                    except ProcessLookupError:
                        pass
                    p.wait()


# --- the worker (python -m parity.distributed JOB) -----------------------------------------

def _load_runs(job: Path):
    from safetensors.numpy import load_file

    description = json.loads((job / "job.json").read_text())
    for i, run in enumerate(description["runs"]):
        arrays = load_file(job / f"batches.{i}.safetensors")
        batches = [(arrays[f"inputs.{step}"], arrays[f"targets.{step}"]) for step in range(run["steps"])]
        yield i, Run(spec_from_dict(run["spec"]), load_file(job / f"state.{i}.safetensors"),
                     OptimizerSpec(**run["optimizer"]), batches, run["sync_batch_norm"], run["keep"])


def worker(job) -> None:
    """Run every training run of a job on this framework's engine; rank 0 writes the results."""
    from safetensors.numpy import save_file

    job = Path(job)
    framework = json.loads((job / "job.json").read_text())["framework"]
    devices = json.loads((job / "job.json").read_text())["devices"]
    engine = impl_module(framework, "distributed")
    context = engine.setup(devices)  # before anything else touches the framework's runtime
    set_deterministic([framework])
    for i, run in _load_runs(job):
        kept, tensors, losses, seconds = [], {}, [], []
        start = time.perf_counter()
        for step, (loss, export) in enumerate(engine.train(context, run.spec, run.state, run.optimizer, run.batches,
                                                           sync_batch_norm=run.sync_batch_norm)):
            seconds.append(time.perf_counter() - start)  # the step, its loss read back (so finished)
            losses.append(loss)
            if engine.is_first(context) and (run.keep == "all" or step == len(run.batches) - 1):
                kept.append(step)
                tensors.update({f"{step}.{name}": _contiguous(value) for name, value in export().items()})
            start = time.perf_counter()
        if engine.is_first(context):
            save_file(tensors, job / f"result.{i}.safetensors")
            (job / f"result.{i}.json").write_text(json.dumps({"names": list(run.state), "kept": kept, "losses": losses,
                                                               "step_seconds": seconds}))
    engine.teardown(context)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m parity.distributed JOB_DIRECTORY  (started by parity.distributed.launch)")
    worker(sys.argv[1])
