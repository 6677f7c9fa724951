"""The Flax NNX training loop: one `nnx.jit`-compiled step (forward, `nnx.value_and_grad`,
`nnx.Optimizer.update` with the optax transformation of `jax_impl/optimizers.py`) per batch.
Epochs, validation and early stopping: `parity.loops.run_epochs`.
"""
import jax.numpy as jnp
from flax import nnx

from parity.loops import epoch_means, run_epochs
# Package-internal: the float64 scope of the adapter, its train/eval switch.
from jax_impl.api import FRAMEWORK, _precision, _set_mode, dtype_of, loss_function
from jax_impl.data import batches
from jax_impl.optimizers import build_optimizer

LOOPS = ("custom",)  # Flax has no fit()


def _loss_and_correct(model, inputs, targets):
    logits = model(inputs)["logits"]
    loss = loss_function(model.spec.loss, dtype_of(model))(logits, targets)
    return loss, (jnp.argmax(logits, -1) == targets).sum()


# Module-level, so the compiled steps are cached across calls (keyed by the model's structure,
# its train/eval mode included, and the batch shape).
@nnx.jit
def _eval_step(model, inputs, targets):
    return _loss_and_correct(model, inputs, targets)


@nnx.jit
def _train_step(model, optimizer, inputs, targets):
    (loss, correct), grads = nnx.value_and_grad(_loss_and_correct, has_aux=True)(model, inputs, targets)
    optimizer.update(model, grads)
    return loss, correct


def _eval_batches(model, x, y, batch_size):
    model.eval()
    for inputs, targets in batches(x, y, batch_size=batch_size, shuffle=False):
        loss, correct = _eval_step(model, inputs, targets)
        yield float(loss), int(correct), len(targets)


def evaluate(model, x, y, *, batch_size):
    """(mean loss, accuracy) on canonical arrays, in inference mode."""
    with _precision(dtype_of(model)):
        return epoch_means(_eval_batches(model, x, y, batch_size))


def train(model, opt_spec, data, *, loop, epochs, batch_size, seed, patience, progress):
    """The custom loop over `data` (a `parity.loops.TrainData`); returns a `parity.loops.Fit`."""
    nnx.reseed(model, dropout=seed)  # the dropout masks
    optimizer = build_optimizer(model, opt_spec)

    def train_epoch(epoch):
        _set_mode(model, True)
        for inputs, targets in batches(data.x_train, data.y_train, batch_size=batch_size, seed=seed, epoch=epoch):
            loss, correct = _train_step(model, optimizer, inputs, targets)
            yield float(loss), int(correct), len(targets)

    with _precision(dtype_of(model)):
        return run_epochs(FRAMEWORK, model, epochs=epochs, train_epoch=train_epoch,
                          evaluate=lambda: evaluate(model, data.x_val, data.y_val, batch_size=batch_size),
                          patience=patience, progress=progress)
