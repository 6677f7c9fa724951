"""Data parallelism on tf.distribute: MirroredStrategy over N logical CPU devices, one process.

Variables made in `strategy.scope()` are MirroredVariables, one copy per replica. A step is
`strategy.run` of the single-device step on each replica's contiguous share of the global
batch; Keras' optimizer all-reduces the gradients (a *sum*) before its update, and a Keras loss
under a strategy divides itself by the number of replicas, so the sum is the global mean.
"""
import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import tensorflow as tf

from parity.distributed import shard
from parity.frameworks import build, export_state
# Package-internal: the adapter's layer walk and input conversion, the spec's loss.
from keras_impl.api import _named_layers, _native_inputs, dtype_of, loss_function
from keras_impl.layers import BatchNorm
from keras_impl.optimizers import build_optimizer


def setup(devices):
    """N logical CPU devices (before TensorFlow's runtime starts) and a MirroredStrategy over them."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])


def is_first(strategy):
    return True  # one process holds every replica


class _SyncBatchNorm(BatchNorm):
    """BatchNorm with Keras' `synchronized=True`: the moments of the global batch, all-reduced
    over the replicas. Keras' own synchronized moments are one-pass, E[x^2] - E[x]^2, which
    cancels in float32 where the single-device layer (two passes, as torch) does not; so
    `_moments` all-reduces the sum, then the sum of squared deviations from the global mean.
    The BatchNorm it replaces computes torch's unbiased running variance from its own replica's
    batch, so that update is made again from the global variance and count."""

    def _global_moments(self, x):
        """(mean, biased variance, count) of the global batch."""
        context = tf.distribute.get_replica_context()
        axes = tuple(range(len(x.shape) - 1))
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.size(x) // x.shape[-1], x.dtype))
        mean = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(x, axes)) / count
        variance = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(x - mean), axes)) / count
        return mean, variance, count

    def _moments(self, x, mask):  # what keras.layers.BatchNormalization.call normalises with
        return self._global_moments(x)[:2]

    def call(self, x, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(x, training=False)
        previous = keras.ops.copy(self.moving_variance)
        y = keras.layers.BatchNormalization.call(self, x, training=True)
        _, variance, count = self._global_moments(x)
        self.moving_variance.assign(previous * self.momentum + variance * (count / (count - 1)) * (1.0 - self.momentum))
        self.num_batches_tracked.assign_add(1)
        return y


def _synchronize_batch_norm(model):
    """Batch statistics over every replica's examples."""
    for _, layer in _named_layers(model):
        if type(layer) is BatchNorm:
            layer.__class__ = _SyncBatchNorm
            layer.synchronized = True
    return model


def _distribute(strategy, spec, inputs, targets):
    """Per-replica values: replica r gets rows [r * b, (r + 1) * b) of the global batch."""
    x, _ = _native_inputs(spec, inputs)

    def replica_values(context):
        rank, world = context.replica_id_in_sync_group, context.num_replicas_in_sync
        return tf.constant(shard(x, rank, world)), tf.constant(shard(targets, rank, world))

    return strategy.experimental_distribute_values_from_function(replica_values)


def train(strategy, spec, state, opt_spec, batches, *, sync_batch_norm):
    """Yield (global mean loss, canonical-state thunk) after each step. Batch norm uses each
    replica's own batch statistics unless `sync_batch_norm`; every replica updates its own copy
    of the running statistics (their MirroredVariables drift apart) and replica 0's are read."""
    with strategy.scope():  # MirroredVariables: the model's and the optimizer's
        model = build("keras", spec, state)
        if sync_batch_norm:
            _synchronize_batch_norm(model)
        optimizer = build_optimizer(model, opt_spec)
        optimizer.build(model.trainable_variables)
    loss_fn = loss_function(spec.loss, dtype_of(model))

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            # This replica's mean, already divided by the number of replicas (Keras does it
            # under a strategy): the all-reduced sum of the gradients is their global mean.
            loss = loss_fn(model(x, training=True)[spec.loss_output], y)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduce (sum), then update
        return loss

    @tf.function
    def step(x, y):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

    for inputs, targets in batches:
        loss = step(*_distribute(strategy, spec, inputs, targets))
        yield float(loss), lambda: export_state("keras", model)


def teardown(strategy):
    pass  # nothing outlives the process
