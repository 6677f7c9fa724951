"""Keras training, both ways Keras users train:

- "custom": a `tf.GradientTape` step compiled with `tf.function`, driven by
  `parity.loops.run_epochs` like the torch and JAX loops;
- "fit": `model.compile(...)` and `model.fit(...)` with validation data, Keras' EarlyStopping
  (restore_best_weights) and a callback advancing the progress bar.

Both use the keras.optimizers optimizer of `keras_impl/optimizers.py`, which carries the
OptimizerSpec's learning-rate schedule per step (no per-epoch LearningRateScheduler callback).
"""
import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import numpy as np
import tensorflow as tf

from parity.data import epoch_order, steps_per_epoch
from parity.loops import Fit, HISTORY_KEYS, epoch_means, run_epochs
from keras_impl.api import FRAMEWORK, dtype_of, loss_function
# Package-internal: several epochs in one tf.data pipeline, for fit().
from keras_impl.data import _pipeline, batches
from keras_impl.optimizers import build_optimizer

LOOPS = ("custom", "fit")


def _correct(logits, y):
    return tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == y, tf.int64))


def _eval_batches(model, x, y, batch_size):
    # Eager: a tf.function made per call would be traced again at every evaluation.
    loss_fn = loss_function(model.spec.loss, dtype_of(model))
    for inputs, targets in batches(x, y, batch_size=batch_size, shuffle=False):
        logits = model(inputs, training=False)["logits"]
        yield float(loss_fn(logits, targets)), int(_correct(logits, targets)), len(targets)


def evaluate(model, x, y, *, batch_size):
    """(mean loss, accuracy) on canonical arrays, in inference mode."""
    return epoch_means(_eval_batches(model, x, y, batch_size))


def _custom(model, optimizer, data, *, epochs, batch_size, seed, patience, progress):
    loss_fn = loss_function(model.spec.loss, dtype_of(model))
    optimizer.build(model.trainable_variables)  # slot variables are created outside the tf.function

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)["logits"]
            loss = loss_fn(logits, targets)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, _correct(logits, targets)

    def train_epoch(epoch):
        for inputs, targets in batches(data.x_train, data.y_train, batch_size=batch_size, seed=seed, epoch=epoch):
            loss, correct = step(inputs, targets)
            yield float(loss), int(correct), len(targets)

    return run_epochs(FRAMEWORK, model, epochs=epochs, train_epoch=train_epoch,
                      evaluate=lambda: evaluate(model, data.x_val, data.y_val, batch_size=batch_size),
                      patience=patience, progress=progress)


class _ProgressCallback(keras.callbacks.Callback):
    def __init__(self, progress):
        super().__init__()
        self.progress = progress
        self.history = {key: [] for key in HISTORY_KEYS}

    def on_train_batch_end(self, batch, logs=None):
        self.progress.advance()

    def on_epoch_end(self, epoch, logs=None):
        for key in HISTORY_KEYS:
            self.history[key].append(float(logs[key.removeprefix("train_")]))
        self.progress.epoch_end(epoch, self.history)


def _fit(model, optimizer, data, *, epochs, batch_size, seed, patience, progress):
    loss_fn = loss_function(model.spec.loss, dtype_of(model))
    model.compile(optimizer=optimizer, loss=lambda targets, logits: loss_fn(logits, targets),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    # fit() iterates one pipeline for all epochs when steps_per_epoch is given: the epochs'
    # orders are laid end to end, each epoch batched separately.
    n = len(data.x_train)
    train_set = _pipeline(data.x_train, data.y_train, [epoch_order(n, seed, e) for e in range(epochs)],
                          batch_size, drop_last=False)
    recorder = _ProgressCallback(progress)
    callbacks = [recorder]
    if patience:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        callbacks.append(stopper)
    model.fit(train_set, epochs=epochs, steps_per_epoch=steps_per_epoch(n, batch_size, drop_last=False),
              validation_data=batches(data.x_val, data.y_val, batch_size=batch_size, shuffle=False),
              shuffle=False, callbacks=callbacks, verbose=0)  # the pipeline is in epoch_order already
    if not patience:
        return Fit(recorder.history, None, False)
    return Fit(recorder.history, stopper.best_epoch, stopper.stopped_epoch > 0)


def _reseed_dropout(model, seed):
    """Keras seeds each Dropout layer's generator when the layer is built, from Python's global
    random state (unseeded: different every process), so `keras.utils.set_random_seed` after
    construction does not reach it. Every generator is reset to a stream of its own from `seed`."""
    for index, layer in enumerate(model._flatten_layers()):
        for generator in layer._seed_generators:
            stream = np.random.default_rng([seed, index]).integers(2**31)
            generator.state.assign(np.array([stream, 0], dtype=generator.state.dtype))


def train(model, opt_spec, data, *, loop, epochs, batch_size, seed, patience, progress):
    """`loop` "custom" or "fit" over `data` (a `parity.loops.TrainData`); returns a `parity.loops.Fit`."""
    _reseed_dropout(model, seed)
    optimizer = build_optimizer(model, opt_spec)
    run = _fit if loop == "fit" else _custom
    return run(model, optimizer, data, epochs=epochs, batch_size=batch_size, seed=seed,
               patience=patience, progress=progress)
