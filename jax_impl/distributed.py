"""Data parallelism in JAX: one jitted program over a jax.sharding.Mesh of N devices, one process.

The global batch is placed with a NamedSharding over the mesh's "data" axis (device r holds rows
[r * b, (r + 1) * b)), the parameters and optimizer state replicated. `jax.jit` compiles the
step for the whole mesh and XLA inserts the all-reduce of the gradients. Per-replica batch norm
needs each device to see only its own shard: that part of the step is a `jax.shard_map`.
"""
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from parity.frameworks import build, export_state
# Package-internal: the float64 scope and train/eval switch of the adapter, its input conversion.
from jax_impl.api import _native_inputs, _precision, _set_mode, dtype_of, loss_function
from jax_impl.optimizers import build_optimizer


def setup(devices):
    """A one-axis mesh ("data") over the first N devices. On CPU, N devices exist only if
    XLA_FLAGS=--xla_force_host_platform_device_count=N was set before jax was imported."""
    if len(jax.devices()) < devices:
        raise RuntimeError(f"expected {devices} devices, jax sees {jax.devices()}: set XLA_FLAGS="
                           f"--xla_force_host_platform_device_count={devices} before importing jax")
    return jax.make_mesh((devices,), ("data",), axis_types=(AxisType.Auto,), devices=jax.devices()[:devices])


def is_first(mesh):
    return True  # one process holds every replica


def _per_replica_loss(model, x, y, mesh, loss_fn, output):
    """(global mean loss, its gradients) with each device's batch norm on its own shard: the
    forward pass runs under shard_map. The parameters enter replicated, so the gradient of the
    shard_map is summed over the devices by JAX's transpose of it (the all-reduce)."""
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)

    def replica(params, stats, rest, x, y):  # one device: its shard of the batch
        replica_model = nnx.merge(graphdef, params, stats, rest)
        loss = loss_fn(replica_model(x)[output], y)
        return loss[None], jax.tree.map(lambda s: s[None], nnx.state(replica_model, nnx.BatchStat))

    def global_loss(params):
        data, replicated = PartitionSpec("data"), PartitionSpec()
        losses, new_stats = jax.shard_map(replica, mesh=mesh, in_specs=(replicated, replicated, replicated, data, data),
                                          out_specs=(data, data))(params, stats, rest, x, y)
        return losses.mean(), new_stats

    (loss, new_stats), grads = jax.value_and_grad(global_loss, has_aux=True)(params)
    nnx.update(model, jax.tree.map(lambda s: s[0], new_stats))  # replica 0's running statistics
    return loss, grads


@nnx.jit(static_argnames=("mesh", "kind", "output", "sync_batch_norm"))
def _train_step(model, optimizer, x, y, mesh, kind, output, sync_batch_norm):
    loss_fn = loss_function(kind, x.dtype)
    if sync_batch_norm:
        # The single-device program on the global batch: XLA partitions it over the mesh,
        # all-reducing the batch statistics and the gradients.
        loss, grads = nnx.value_and_grad(lambda model: loss_fn(model(x)[output], y))(model)
    else:
        loss, grads = _per_replica_loss(model, x, y, mesh, loss_fn, output)
    optimizer.update(model, grads)
    return loss


def train(mesh, spec, state, opt_spec, batches, *, sync_batch_norm):
    """Yield (global mean loss, canonical-state thunk) after each step. Batch norm uses each
    device's own shard statistics unless `sync_batch_norm`; the running statistics kept are
    device 0's."""
    model = build("jax", spec, state)
    optimizer = build_optimizer(model, opt_spec)
    dtype = dtype_of(model)
    replicated, sharded = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    with _precision(dtype):
        for native in (model, optimizer):
            nnx.update(native, jax.device_put(nnx.state(native), replicated))
    _set_mode(model, True)
    for inputs, targets in batches:
        with _precision(dtype):
            x, _ = _native_inputs(spec, inputs)
            x, y = jax.device_put(x, sharded), jax.device_put(jnp.asarray(targets), sharded)
            loss = float(_train_step(model, optimizer, x, y, mesh, spec.loss, spec.loss_output, sync_batch_norm))
        yield loss, lambda: export_state("jax", model)


def teardown(mesh):
    pass  # nothing outlives the process
