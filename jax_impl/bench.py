"""Benchmark steps for Flax NNX: inference and one SGD training step, eager (op by op) or
compiled with `nnx.jit` (XLA).

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

    run = nnx.jit(forward) if compiled else forward

    def step(x, extra):
        return jax.block_until_ready(run(model, x, extra))

    return step


def train_step(model, compiled: bool, learning_rate: float):
    """forward, loss, nnx.value_and_grad backward and an optax.sgd update, training mode."""
    model.train()
    optimizer = nnx.Optimizer(model, optax.sgd(learning_rate), wrt=nnx.Param)
    loss_fn = loss_function(model.spec.loss, dtype_of(model))

    def update(model, optimizer, x, extra, y):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(x, **extra)[m.spec.loss_output], y))(model)
        optimizer.update(model, grads)
        return loss

    run = nnx.jit(update) if compiled else update

    def step(x, extra, y):
        return float(jax.block_until_ready(run(model, optimizer, x, extra, y)))

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
