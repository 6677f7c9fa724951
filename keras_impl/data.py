"""The canonical dataset as a tf.data pipeline, channels-last: the epoch's sample order as a
dataset of indices, batched, gathered from the arrays, prefetched.

tf.data's `shuffle` draws from TensorFlow's RNG through a buffer: no seed reproduces a numpy
permutation, so the order comes from `parity.data.epoch_order` and is applied explicitly. No
`cache()`: it pays off after an expensive per-sample map (decoding, augmentation); these samples
are tensors in memory already, and their layout conversion is done once, in numpy.
"""
import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import numpy as np
import tensorflow as tf

from parity import layouts
from parity.data import sample_order, steps_per_epoch
from keras_impl.api import FRAMEWORK


def _pipeline(x, y, orders, batch_size, drop_last):
    """Epochs back to back, one per row of `orders`; each epoch batched on its own, so a
    partial last batch never mixes two epochs."""
    x = tf.constant(layouts.activation_to_native(FRAMEWORK, x, "image"))  # datasets hold features or images
    y = tf.constant(y)
    return (tf.data.Dataset.from_tensor_slices(np.stack(orders))
            .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(
                batch_size, drop_remainder=drop_last))
            .map(lambda index: (tf.gather(x, index), tf.gather(y, index)), num_parallel_calls=tf.data.AUTOTUNE)
            # flat_map hides the length; Keras needs it to end a validation pass without a warning.
            .apply(tf.data.experimental.assert_cardinality(
                len(orders) * steps_per_epoch(len(orders[0]), batch_size, drop_last)))
            .prefetch(tf.data.AUTOTUNE))


def batches(x, y, *, batch_size, seed=0, epoch=0, shuffle=True, drop_last=False):
    """One epoch of (x, y) tensor batches, channels-last, in the order of `parity.data.sample_order`."""
    return _pipeline(x, y, [sample_order(len(x), seed, epoch, shuffle)], batch_size, drop_last)
