"""The canonical dataset for JAX: a plain generator of numpy batches, channels-last.

JAX has no input pipeline of its own; a jitted step takes numpy arrays and copies them to the
device. The order is `parity.data.epoch_order`, as for the torch Sampler and tf.data pipeline.
"""
from parity import layouts
from parity.data import sample_order
from jax_impl.api import FRAMEWORK


def batches(x, y, *, batch_size, seed=0, epoch=0, shuffle=True, drop_last=False):
    """One epoch of (x, y) numpy batches, channels-last, in the order of `parity.data.sample_order`."""
    x = layouts.activation_to_native(FRAMEWORK, x, "image")  # datasets hold features or images
    order = sample_order(len(x), seed, epoch, shuffle)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]
