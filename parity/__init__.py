"""parity: one spec, three frameworks (PyTorch, Keras 3, Flax NNX), proven equal.

Importing parity loads numpy only; each framework is imported the first time it is used.
"""
from parity.compare import Check, Report, compare, example_batch
from parity.data import Dataset, load_dataset, spec_for_dataset
from parity.export import ExportError, export
from parity.runtime import run_exported
from parity.errors import CheckpointError, FrameworkError, InputError, ParityError, SpecError, StateError
from parity.loops import TrainResult, plot_histories, train
from parity.frameworks import (FRAMEWORKS, build, export_state, forward, load_state as load_model_state,
                               loss_and_grads, set_deterministic)
from parity.optimizers import OptimizerSpec, learning_rate, optimizer, reference_step
from parity.params import Param
from parity.specs import Spec, architectures, presets, spec
from parity.state import check_state, init_state, layout, load_state, read_spec, save_state
from parity.training import load_checkpoint, reference_trajectory, save_checkpoint, train_steps, train_trajectory
from parity.transfer import Transfer, convert_checkpoint, transfer

__all__ = [
    "FRAMEWORKS", "Check", "CheckpointError", "ExportError", "export", "run_exported", "FrameworkError", "InputError", "Param", "ParityError",
    "Report", "Spec", "SpecError", "StateError", "architectures", "build", "check_state", "compare",
    "example_batch", "export_state", "forward", "init_state", "layout", "load_model_state", "load_state",
    "loss_and_grads", "presets", "read_spec", "save_state", "set_deterministic", "spec",
    "OptimizerSpec", "learning_rate", "optimizer", "reference_step", "reference_trajectory", "train_trajectory",
    "train_steps", "save_checkpoint", "load_checkpoint",
    "Dataset", "load_dataset", "spec_for_dataset", "TrainResult", "plot_histories", "train",
    "Transfer", "convert_checkpoint", "transfer",
]
