"""Training loops: train a spec on a dataset in one framework, with its native optimizer.

`train(framework, spec, dataset, optimizer, epochs=..., batch_size=...)` validates everything
before any framework sees it, holds out a validation split, runs the framework's loop
(`pytorch_impl/`, `keras_impl/`, `jax_impl/loops.py`, mirrored: torch's hand-written loop,
Keras' GradientTape step in a tf.function or `model.fit`, Flax NNX's `nnx.jit` step) and returns
a `TrainResult`: the per-epoch history, the final canonical state and the test accuracy.

What the custom loops share lives here, written once: the epoch driver (`run_epochs`: running
means, validation, patience on validation loss, best-weights restore through the canonical
state) and the progress bar. `plot_histories` overlays several results' curves in one PNG.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import numpy as np

from parity.data import Dataset, split, steps_per_epoch
from parity.errors import InputError
from parity.frameworks import adapter, build, export_state, impl_module, load_state
from parity.optimizers import OptimizerSpec, check_schedule_covers, require_optimizer_spec
from parity.specs import Spec
from parity.state import init_state
from parity.transfer import check_frozen

HISTORY_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


@dataclasses.dataclass(frozen=True)
class TrainData:
    """What a loop trains on: canonical arrays in the model's dtype, labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclasses.dataclass(frozen=True)
class Fit:
    """What a framework's loop reports. `best_epoch` (0-based) is the epoch whose weights the
    model holds after early stopping restored them; None without early stopping."""

    history: dict[str, list[float]]
    best_epoch: int | None
    stopped_early: bool


@dataclasses.dataclass(frozen=True)
class TrainResult:
    framework: str
    loop: str
    spec: Spec
    history: dict[str, list[float]]  # HISTORY_KEYS -> one value per epoch run
    state: dict[str, np.ndarray]  # canonical state at the end (the best epoch's with early stopping)
    test_loss: float
    test_accuracy: float
    best_epoch: int | None
    stopped_early: bool
    seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.history["train_loss"])


class EarlyStopping:
    """Patience on validation loss, with Keras' rule: an epoch improves when its loss is below
    the best so far; training stops after `patience` epochs in a row without an improvement."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record an epoch's validation loss; True when it is the best so far."""
        if self.best_epoch is None or loss < self.best:
            self.best, self.best_epoch, self.wait = loss, epoch, 0
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.wait >= self.patience


class Progress:
    """A rich progress bar over every training batch of a run, with the last epoch's metrics;
    drawn only on a terminal (stderr), so logs and tests stay clean."""

    def __init__(self, bar, task):
        self._bar, self._task = bar, task

    def advance(self) -> None:
        self._bar.advance(self._task)

    def epoch_end(self, epoch: int, history: dict[str, list[float]]) -> None:
        metrics = "  ".join(f"{key} {values[-1]:.4f}" for key, values in history.items())
        self._bar.update(self._task, description=f"epoch {epoch + 1}  {metrics}")


@contextlib.contextmanager
def progress_bar(total: int):
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    console = Console(stderr=True)
    with RichProgress(console=console, disable=not console.is_terminal) as bar:
        yield Progress(bar, bar.add_task("training", total=total))


def epoch_means(batches) -> tuple[float, float]:
    """(loss, accuracy) over an epoch from per-batch (mean loss, correct predictions, batch size):
    the loss weighted by batch size, as Keras' fit reports it."""
    loss_sum = correct = count = 0
    for loss, right, size in batches:
        loss_sum, correct, count = loss_sum + loss * size, correct + right, count + size
    return loss_sum / count, correct / count


def _advancing(batches, progress: Progress):
    for batch in batches:
        yield batch
        progress.advance()


def run_epochs(framework: str, model, *, epochs: int, train_epoch, evaluate, patience: int | None,
               progress: Progress) -> Fit:
    """The custom loops' epoch driver. `train_epoch(epoch)` trains one epoch, yielding per batch
    (mean loss, correct predictions, batch size); `evaluate()` gives validation (loss, accuracy).
    With `patience`, the best epoch's weights are kept as a canonical state and restored at the end."""
    history = {key: [] for key in HISTORY_KEYS}
    stopper = EarlyStopping(patience) if patience else None
    best_state = None
    for epoch in range(epochs):
        values = (*epoch_means(_advancing(train_epoch(epoch), progress)), *evaluate())
        for key, value in zip(HISTORY_KEYS, values):
            history[key].append(float(value))
        progress.epoch_end(epoch, history)
        if stopper is not None:
            if stopper.update(epoch, history["val_loss"][-1]):
                best_state = export_state(framework, model)
            if stopper.should_stop:
                break
    if stopper is None:
        return Fit(history, None, False)
    load_state(framework, model, best_state)
    return Fit(history, stopper.best_epoch, len(history["train_loss"]) < epochs)


def _loops(framework: str):
    """`pytorch_impl.loops`, `keras_impl.loops` or `jax_impl.loops`."""
    return impl_module(framework, "loops")


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name}: expected a positive int, got {value!r}")


def _check(spec, dataset, optimizer, loop, native_loops, epochs, batch_size, patience, validation_fraction):
    if not isinstance(spec, Spec):
        raise InputError(f"spec: expected a parity spec (see parity.spec), got {type(spec).__name__}")
    if not isinstance(dataset, Dataset):
        raise InputError(f"dataset: expected a parity.data.Dataset (see parity.data.load_dataset), "
                         f"got {type(dataset).__name__}")
    require_optimizer_spec(optimizer)
    if loop not in native_loops:
        raise InputError(f"loop: expected one of {list(native_loops)} for this framework, got {loop!r}")
    _positive_int("epochs", epochs)
    _positive_int("batch_size", batch_size)
    if patience is not None:
        _positive_int("early_stopping_patience", patience)
    if not 0 < validation_fraction < 1:
        raise InputError(f"validation_fraction: expected a float in (0, 1), got {validation_fraction!r}")


def _check_schedule(spec: Spec, optimizer: OptimizerSpec, n_train: int, epochs: int, batch_size: int) -> None:
    if getattr(spec, "batch_norm", False) and n_train % batch_size == 1:
        raise InputError(f"batch_size: {n_train} training samples in batches of {batch_size} leave a last batch "
                         f"of 1, which training-mode batch norm cannot normalise; expected another batch size")
    check_schedule_covers(optimizer, epochs * steps_per_epoch(n_train, batch_size, drop_last=False))


def train(framework: str, spec: Spec, dataset: Dataset, optimizer: OptimizerSpec, *, epochs: int, batch_size: int,
          seed: int = 0, loop: str = "custom", early_stopping_patience: int | None = None, state: dict | None = None,
          validation_fraction: float = 0.1, frozen=(), batch_norm: str = "frozen") -> TrainResult:
    """Train `spec` on `dataset` in `framework` with the native `optimizer`.

    A seeded `validation_fraction` of the training split is held out for the per-epoch
    validation loss and accuracy (and early stopping); batches follow `parity.data.epoch_order`.
    The model starts from `state` (default `parity.init_state(spec, seed)`) and computes in its
    dtype. `loop` is "custom" (every framework) or "fit" (Keras' `model.fit`). `frozen` parameters
    (e.g. `parity.transfer(...).frozen`, with its `state`) are frozen natively and `batch_norm` says
    what a frozen batch norm does (see parity.transfer).
    """
    loops = _loops(framework)
    _check(spec, dataset, optimizer, loop, loops.LOOPS, epochs, batch_size, early_stopping_patience,
           validation_fraction)
    frozen, norms = check_frozen(spec, frozen, batch_norm)
    data = dataset.for_spec(spec)
    (x_train, y_train), (x_val, y_val) = split(data.x_train, data.y_train, validation_fraction, seed)
    _check_schedule(spec, optimizer, len(x_train), epochs, batch_size)
    model = impl_module(framework, "transfer").freeze(
        build(framework, spec, init_state(spec, seed) if state is None else state), frozen, norms)
    dtype = adapter(framework).dtype_of(model)
    arrays = TrainData(x_train.astype(dtype), y_train, x_val.astype(dtype), y_val)

    start = time.perf_counter()
    with progress_bar(epochs * steps_per_epoch(len(x_train), batch_size, drop_last=False)) as progress:
        fit = loops.train(model, optimizer, arrays, loop=loop, epochs=epochs, batch_size=batch_size, seed=seed,
                          patience=early_stopping_patience, progress=progress)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = loops.evaluate(model, data.x_test.astype(dtype), data.y_test, batch_size=batch_size)
    return TrainResult(framework, loop, spec, fit.history, export_state(framework, model), test_loss, test_accuracy,
                       fit.best_epoch, fit.stopped_early, seconds)


def plot_histories(results: dict[str, TrainResult], path) -> None:
    """One PNG: training (solid) and validation (dashed) loss and accuracy per epoch, one colour
    per result (e.g. {"torch": ..., "keras": ..., "jax": ...})."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (label, result) in enumerate(results.items()):
        colour = plt.get_cmap("tab10")(index % 10)
        epochs = np.arange(1, result.epochs_run + 1)
        for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
            axes.plot(epochs, result.history[f"train_{metric}"], color=colour, label=f"{label} train")
            axes.plot(epochs, result.history[f"val_{metric}"], color=colour, linestyle="--", label=f"{label} val")
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
    loss_axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
