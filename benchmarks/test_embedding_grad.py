"""The gradient of an embedding lookup, alone, in each framework: gather vs one-hot matmul.

The gradient of a lookup is a scatter-add of the upstream gradient into the table's rows. When a
small table takes many updates per row, XLA:GPU's scatter-add contends on atomics, and for bf16
XLA emits a compare-and-swap loop, which collapses under contention
(openxla/xla#26371; #46225 for a float32 regression in jaxlib 0.10.2). torch's CUDA embedding
backward sorts the indices and reduces each row instead. The one-hot formulation (flaxformer's
relative position biases use it) makes the same gradient a GEMM. Three lookups of the
transformers, at the sizes of the H100 run (docs/benchmarks.md, "The transformers on the H100"):

    python -m pytest benchmarks/test_embedding_grad.py [--bench-device gpu] --benchmark-columns=median,iqr
"""
import numpy as np
import pytest

import parity

CASES = {  # name: (table rows, row width, index shape)
    "t5_relative_bias": (32, 8, (512, 512)),  # T5-small's encoder bucket table over (query, key): 8192 per row
    "bert_token_types": (2, 768, (32, 128)),  # BERT-base's token types at batch 32: 2048 per row
    "gpt2_positions": (1024, 768, (8, 1024)),  # the control, GPT-2's positions at batch 8: 8 per row
}
DTYPES = ("float32", "bf16")
METHODS = ("gather", "one_hot")
# float32: one-hot sums in the matmul's order, gather in the scatter's, up to 8192 terms of unit
# scale each: they differ from np.add.at's float32 sum by rounding only.
FLOAT32_RTOL = 1e-5


def lookup_inputs(case):
    rows, width, index_shape = CASES[case]
    rng = np.random.default_rng(0)
    table = rng.standard_normal((rows, width), dtype=np.float32)
    ids = rng.integers(0, rows, index_shape).astype(np.int32)
    upstream = rng.standard_normal((*index_shape, width), dtype=np.float32)
    expected = np.zeros_like(table)
    np.add.at(expected, ids.reshape(-1), upstream.reshape(-1, width))
    return table, ids, upstream, expected


def torch_gradient(table, ids, upstream, dtype, method, device):
    import torch
    import torch.nn.functional as F

    target = "cuda" if device == "gpu" else "cpu"
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    table = torch.tensor(table, dtype=torch_dtype, device=target, requires_grad=True)
    ids = torch.tensor(ids, dtype=torch.int64, device=target)
    upstream = torch.tensor(upstream, dtype=torch_dtype, device=target)

    def step():
        rows = (F.embedding(ids, table) if method == "gather"
                else F.one_hot(ids, table.shape[0]).to(torch_dtype) @ table)
        (gradient,) = torch.autograd.grad(rows, table, upstream)
        if target == "cuda":
            torch.cuda.synchronize()
        return gradient.float().cpu().numpy()

    return step


def keras_gradient(table, ids, upstream, dtype, method, device):
    import keras
    import tensorflow as tf

    tf_dtype = tf.bfloat16 if dtype == "bf16" else tf.float32
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        table, upstream = tf.constant(table, tf_dtype), tf.constant(upstream, tf_dtype)
        ids = tf.constant(ids)

    @tf.function(jit_compile=True)
    def gradient(table, ids, upstream):  # arguments, not captured constants XLA would fold
        with tf.GradientTape() as tape:
            tape.watch(table)
            rows = (keras.ops.take(table, ids, axis=0) if method == "gather"
                    else keras.ops.matmul(keras.ops.one_hot(ids, table.shape[0], dtype=tf_dtype), table))
        return tf.convert_to_tensor(tape.gradient(rows, table, output_gradients=upstream))  # IndexedSlices, summed

    return lambda: tf.cast(gradient(table, ids, upstream), tf.float32).numpy()


def jax_gradient(table, ids, upstream, dtype, method, device):
    import jax
    import jax.numpy as jnp

    target = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    jax_dtype = jnp.bfloat16 if dtype == "bf16" else jnp.float32
    table, upstream = (jax.device_put(jnp.asarray(a, jax_dtype), target) for a in (table, upstream))
    ids = jax.device_put(jnp.asarray(ids), target)

    def lookup(table, ids):
        if method == "gather":
            return jnp.take(table, ids, axis=0)
        return jax.nn.one_hot(ids, table.shape[0], dtype=jax_dtype) @ table

    # arguments, not captured constants XLA would fold
    gradient = jax.jit(lambda table, ids, upstream: jax.vjp(lambda t: lookup(t, ids), table)[1](upstream)[0])
    return lambda: np.asarray(gradient(table, ids, upstream).block_until_ready(), np.float32)


GRADIENTS = {"torch": torch_gradient, "keras": keras_gradient, "jax": jax_gradient}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
@pytest.mark.parametrize("case", CASES)
def test_embedding_gradient(benchmark, request, case, framework, dtype, method):
    device = request.config.getoption("--bench-device")
    table, ids, upstream, expected = lookup_inputs(case)
    step = GRADIENTS[framework](table, ids, upstream, dtype, method, device)
    gradient, scale = step(), np.abs(expected).max()
    if dtype == "float32":  # the same sum, whichever way it is computed
        np.testing.assert_allclose(gradient, expected, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * scale)
    # bf16 is recorded, not asserted: a scatter-add accumulates in bf16, a matmul in float32
    benchmark.extra_info.update(device=device, updates_per_row=int(ids.size / table.shape[0]),
                                max_error_relative_to_scale=float(np.abs(gradient - expected).max() / scale))
    benchmark.pedantic(step, rounds=20, warmup_rounds=2)
