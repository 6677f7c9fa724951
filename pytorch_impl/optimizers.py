"""torch.optim optimizers from a `parity.optimizers.OptimizerSpec`.

torch.optim *is* the canonical semantics, so every hyper-parameter passes through unchanged.
The learning-rate schedule is a torch.optim.lr_scheduler object stepped by a post-step hook,
so the optimizer carries its schedule the way Keras and optax optimizers do; likewise a clip norm
is torch.nn.utils.clip_grad_norm_ run by a pre-step hook.
"""
import math

import numpy as np
import torch

from parity.optimizers import split_state_name, state_layout
from parity.state import layout

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}


def _scheduler(optimizer, opt_spec):
    """The torch.optim.lr_scheduler equal to `parity.optimizers.learning_rate` (None: constant)."""
    if opt_spec.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=opt_spec.step_size, gamma=opt_spec.gamma)
    if opt_spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=opt_spec.total_steps, eta_min=0.0)
    if opt_spec.schedule == "linear_warmup":
        # LinearLR interpolates start_factor -> 1 over total_iters steps: lr/w at step 0, lr at w - 1.
        warmup = opt_spec.warmup_steps
        return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                                 total_iters=max(warmup - 1, 1))
    if opt_spec.schedule == "warmup_cosine":
        # What transformers.get_cosine_schedule_with_warmup builds: a LambdaLR of this factor.
        warmup, total = opt_spec.warmup_steps, opt_spec.total_steps
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step / warmup if step < warmup else (
            1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2)
    return None


def _with_schedule(optimizer, opt_spec):
    scheduler = _scheduler(optimizer, opt_spec)
    if scheduler is not None:
        optimizer.register_step_post_hook(lambda *_: scheduler.step())
    optimizer.parity_scheduler = scheduler  # its position is part of a checkpoint
    return optimizer


def build_optimizer(model, opt_spec):
    """A torch.optim optimizer over the model's parameters, its schedule attached."""
    params = [param for param in model.parameters() if param.requires_grad]
    return _with_clipping(_with_schedule(_OPTIMIZERS[opt_spec.name](params, **opt_spec.hyper_parameters()), opt_spec),
                          opt_spec)


def _with_clipping(optimizer, opt_spec):
    """With a clip norm, torch.nn.utils.clip_grad_norm_ scales the .grad of the optimizer's
    parameters (the trained ones) just before each step, from a pre-step hook: so every caller of
    optimizer.step() clips (apply_gradients, the training loops), before the optimizer's own weight
    decay, as Keras' global_clipnorm and an optax chain do. Its rule: min(max_norm / (norm + 1e-6), 1)."""
    if opt_spec.clip_norm is not None:
        params = [param for group in optimizer.param_groups for param in group["params"]]

        def clip(*_):  # a pre-step hook returns None (or new step arguments)
            torch.nn.utils.clip_grad_norm_(params, opt_spec.clip_norm)

        optimizer.register_step_pre_hook(clip)
    return optimizer


def apply_gradients(model, optimizer, grads):
    """One optimizer step from canonical gradients (numpy, named like the state); frozen parameters
    (requires_grad False) get none. (A clip norm clips them in the step: `_with_clipping`.)"""
    params = dict(model.named_parameters())
    for name, param in layout(model.spec).items():
        if param.trainable and params[name].requires_grad:
            params[name].grad = torch.from_numpy(np.array(grads[name])).to(params[name].device)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def learning_rates(opt_spec, steps):
    """The native schedule's learning rate for updates 0 .. steps - 1."""
    optimizer = _with_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=opt_spec.lr), opt_spec)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: only the schedule moves
    return rates


def export_optimizer_state(model, optimizer, opt_spec):
    """torch.optim's per-parameter state as canonical numpy (zeros before the first step)."""
    params = dict(model.named_parameters())
    entries = state_layout(opt_spec, model.spec)
    state = {}
    for full_name, entry in entries.items():
        if full_name == "optimizer.step":  # SGD keeps no count: its schedule's position is it
            first = optimizer.state.get(next(iter(params.values())), {})
            step = first["step"] if "step" in first else optimizer.parity_scheduler.last_epoch
            state[full_name] = np.array(int(step), np.int64)
            continue
        name, slot = split_state_name(full_name)
        value = optimizer.state.get(params[name], {}).get(slot)
        state[full_name] = (np.zeros(entry.shape, str(params[name].dtype).removeprefix("torch."))
                            if value is None else value.detach().cpu().numpy().copy())
    return state


def load_optimizer_state(model, optimizer, opt_spec, state):
    """Set torch.optim's per-parameter state from canonical numpy (validated by the caller)."""
    params = dict(model.named_parameters())
    step = int(state.get("optimizer.step", 0))
    for full_name in state_layout(opt_spec, model.spec):
        if full_name == "optimizer.step":
            continue
        name, slot = split_state_name(full_name)
        slots = optimizer.state[params[name]]
        slots[slot] = torch.from_numpy(np.array(state[full_name])).to(params[name].device)
        if opt_spec.name != "sgd":
            slots["step"] = torch.tensor(float(step))  # torch keeps the count per parameter
    # The schedule's position: step the optimizer with no gradients (parameters and their state
    # are skipped), so its post-step hook advances the scheduler exactly as training did.
    optimizer.zero_grad(set_to_none=True)
    for _ in range(step if optimizer.parity_scheduler is not None else 0):
        optimizer.step()
