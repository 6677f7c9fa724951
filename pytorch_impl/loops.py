"""The PyTorch training loop, written out as every torch user writes it: zero_grad, forward,
loss, backward, step, with the torch.optim optimizer of `pytorch_impl/optimizers.py` (its
schedule steps itself after each update). Epochs, validation and early stopping:
`parity.loops.run_epochs`.
"""
import torch

from parity.loops import epoch_means, run_epochs
# Package-internal: the device the adapter puts models on, its train/eval switch.
from pytorch_impl.api import FRAMEWORK, _device, _set_mode, dtype_of, loss_function
from pytorch_impl.data import batches
from pytorch_impl.optimizers import build_optimizer

LOOPS = ("custom",)  # torch has no fit()


def _correct(logits, y) -> int:
    return int((logits.argmax(-1) == y).sum())


def _eval_batches(model, x, y, batch_size):
    loss_fn = loss_function(model.spec.loss, dtype_of(model))
    model.eval()
    with torch.no_grad():
        for inputs, targets in batches(x, y, batch_size=batch_size, shuffle=False):
            inputs, targets = inputs.to(_device()), targets.to(_device())
            logits = model(inputs)["logits"]
            yield loss_fn(logits, targets).item(), _correct(logits, targets), len(targets)


def evaluate(model, x, y, *, batch_size):
    """(mean loss, accuracy) on canonical arrays, in inference mode."""
    return epoch_means(_eval_batches(model, x, y, batch_size))


def train(model, opt_spec, data, *, loop, epochs, batch_size, seed, patience, progress):
    """The custom loop over `data` (a `parity.loops.TrainData`); returns a `parity.loops.Fit`."""
    torch.manual_seed(seed)  # the dropout masks
    optimizer = build_optimizer(model, opt_spec)
    loss_fn = loss_function(model.spec.loss, dtype_of(model))

    def train_epoch(epoch):
        _set_mode(model, True)
        for inputs, targets in batches(data.x_train, data.y_train, batch_size=batch_size, seed=seed, epoch=epoch):
            inputs, targets = inputs.to(_device()), targets.to(_device())
            optimizer.zero_grad(set_to_none=True)
            logits = model(inputs)["logits"]
            loss = loss_fn(logits, targets)
            loss.backward()
            optimizer.step()
            yield loss.item(), _correct(logits.detach(), targets), len(targets)

    return run_epochs(FRAMEWORK, model, epochs=epochs, train_epoch=train_epoch,
                      evaluate=lambda: evaluate(model, data.x_val, data.y_val, batch_size=batch_size),
                      patience=patience, progress=progress)
