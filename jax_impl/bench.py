"""Benchmark steps for Flax NNX: inference and one SGD training step, eager (op by op) or
compiled with `jax.jit` (XLA) over the module's split state.

Every step returns only after `jax.block_until_ready` on its outputs.
"""
import os

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from parity import layouts
from jax_impl.api import dtype_of, loss_function


def device_name(device: str) -> str:
    return jax.devices("gpu")[0].device_kind if device == "gpu" else "cpu"


def to_device(model, arrays, device: str):
    """Channels-last inputs (floats in the model's dtype), on the device, once, before timing."""
    target = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    return [jax.device_put(jnp.asarray(layouts.activation_to_native("jax", a, model.spec.input_kind),
                                       dtype=dtype_of(model) if a.dtype.kind == "f" else None), target)
            for a in arrays]


def inference_step(model, compiled: bool):
    model.eval()

    def forward(model, x, extra):  # the main input, the other named inputs
        return model(x, **extra)[model.spec.output_names[0]]

    if not compiled:
        return lambda x, extra: jax.block_until_ready(forward(model, x, extra))
    # Flax's functional API: split the module once and jit a pure function of its state. nnx.jit
    # splits and merges the module on every call, a cost that grows with the state: 53 ms a call
    # for AlexNet's 234 MB classifier on the CPU, six times the classifier's own compute.
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda state, x, extra: forward(nnx.merge(graphdef, state), x, extra))
    return lambda x, extra: jax.block_until_ready(run(state, x, extra))


def train_step(model, compiled: bool, learning_rate: float):
    """forward, loss, nnx.value_and_grad backward and an optax.sgd update, training mode. Compiled,
    the updated state (parameters, batch-norm statistics, dropout RNG counts) lives in the step, as
    in a jax.jit training loop; `model` keeps its state from before the first step."""
    model.train()
    optimizer = nnx.Optimizer(model, optax.sgd(learning_rate), wrt=nnx.Param)
    loss_fn = loss_function(model.spec.loss, dtype_of(model))

    def update(model, optimizer, x, extra, y):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(x, **extra)[m.spec.loss_output], y))(model)
        optimizer.update(model, grads)
        return loss

    if not compiled:
        return lambda x, extra, y: float(jax.block_until_ready(update(model, optimizer, x, extra, y)))
    graphdef, state = nnx.split((model, optimizer))  # split once: see inference_step

    @jax.jit
    def pure_update(state, x, extra, y):
        model, optimizer = nnx.merge(graphdef, state)
        loss = update(model, optimizer, x, extra, y)
        return loss, nnx.state((model, optimizer))

    def step(x, extra, y):
        nonlocal state
        loss, state = pure_update(state, x, extra, y)
        return float(jax.block_until_ready(loss))

    return step


def peak_memory_bytes(device: str):
    return jax.devices("gpu")[0].memory_stats().get("peak_bytes_in_use") if device == "gpu" else None


def matmul_step(n: int):
    """A float32 n x n matmul on the CPU, finished when the call returns (parity.bench times it)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    matmul = jax.jit(jnp.matmul)
    return lambda: matmul(a, b).block_until_ready()


def thread_settings() -> dict:
    return {"xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
            "jax_version": jax.__version__, "jax_backend": jax.default_backend()}
