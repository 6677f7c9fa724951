"""Inference throughput through `parity.forward`, per architecture (reference size) and framework.

What is timed: one `parity.forward` call on a float32 batch of 64, eval mode, eager in every
framework (torch eager, Keras `model(x)` on TensorFlow eager, Flax NNX eager, no `jax.jit`);
numpy in and numpy out, so host conversion and output materialisation are included, which is
also the synchronisation point. Compiled modes and native-only timings are the benchmark
issue's harness; this suite is the end-to-end baseline users see through parity.

    python -m pytest benchmarks --benchmark-columns=median,iqr,rounds
"""
import pytest

import parity

BATCH = 64


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
@pytest.mark.parametrize("name", parity.architectures())
def test_forward_throughput(benchmark, environment_info, name, framework):
    parity.set_deterministic([framework])
    spec = parity.spec(name)  # the reference size
    model = parity.build(framework, spec)
    inputs, _ = parity.example_batch(spec, BATCH)
    parity.forward(framework, model, inputs)  # warm-up (first-call tracing and allocation)
    benchmark.extra_info.update(environment_info, batch=BATCH, dtype="float32", preset=spec.architecture,
                                mode="eager", timed="parity.forward (numpy in/out)")
    benchmark.pedantic(parity.forward, args=(framework, model, inputs), rounds=30, warmup_rounds=3)
    benchmark.extra_info["samples_per_s_median"] = BATCH / benchmark.stats.stats.median
