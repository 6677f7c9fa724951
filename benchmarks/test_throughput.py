"""Throughput of every architecture x framework x mode x task, timed by pytest-benchmark.

The step is `parity.bench.prepare_step`'s: data already on the device, each framework's own
synchronisation inside the step (see parity/bench.py). Compilation happens in the warm-up
rounds. For the side-by-side table, FLOP/s and the docs page use `parity bench ... --save` and
`parity report`; this suite is the pytest-benchmark view of the same steps:

    python -m pytest benchmarks --benchmark-columns=median,iqr,rounds
"""
import pytest

import parity
from parity.bench import MODES, TASKS, prepare_step


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
@pytest.mark.parametrize("name", parity.architectures())
def test_throughput(benchmark, request, name, framework, mode, task):
    batch = request.config.getoption("--bench-batch")
    step, args, flops, spec, module = prepare_step(name, framework, mode=mode, task=task, batch=batch,
                                                   preset=request.config.getoption("--bench-preset"))
    benchmark.extra_info.update(module.thread_settings(), batch=batch, flops_per_step=flops, dtype="float32")
    benchmark.pedantic(step, args=args, rounds=20, warmup_rounds=3)
