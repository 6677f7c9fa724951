"""optax transformations configured to match torch.optim, from a `parity.optimizers.OptimizerSpec`,
driven by `nnx.Optimizer(model, tx, wrt=nnx.Param)`.

optax's aliases match torch except in four places, each measured in tests/test_optimizers.py:
torch's coupled weight_decay is `optax.add_decayed_weights` chained *before* the rule; RMSprop
is chained from optax's own parts so momentum accumulates before lr (as torch) with
`eps_in_sqrt=False`; Adagrad, whose optax form puts eps inside the root, is one small
transformation (`_scale_by_root_sum_of_squares`); and clipping by global norm, whose optax form
has no eps, is optax.clip_by_global_norm with torch's eps (`_clip_by_global_norm`), chained first.
Schedules get float step counts (`_schedule`).
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from parity import layouts
from parity.optimizers import CLIP_EPS, state_layout
from parity.state import layout
# Package-internal helpers of the adapter: canonical names of nnx paths, float64 scope.
from jax_impl.api import FRAMEWORK, _precision, dtype_of


def _schedule(opt_spec):
    """The optax schedule equal to `parity.optimizers.learning_rate` (a float: constant). Step
    counts are given as floats: optax divides its int32 step counter by them, and int32 / int is
    float32 even under jax.enable_x64 (a float64 model would get a float32-rounded lr)."""
    lr = opt_spec.lr
    if opt_spec.schedule == "step":
        return optax.exponential_decay(lr, transition_steps=float(opt_spec.step_size), decay_rate=opt_spec.gamma,
                                       staircase=True)
    if opt_spec.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=float(opt_spec.total_steps), alpha=0.0)
    if opt_spec.schedule == "linear_warmup":
        # From lr / w up to lr: lr / w at step 0, lr at step w - 1, then constant.
        warmup = opt_spec.warmup_steps
        return optax.linear_schedule(lr / warmup, lr, transition_steps=float(max(warmup - 1, 1)))
    if opt_spec.schedule == "warmup_cosine":
        # decay_steps counts the warmup too: cosine over total_steps - warmup_steps after it.
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=float(opt_spec.warmup_steps),
                                                  decay_steps=float(opt_spec.total_steps), end_value=0.0)
    return lr


def _scale_by_root_sum_of_squares(initial_accumulator_value, eps):
    """optax.scale_by_rss (Adagrad) multiplies by rsqrt(sum + eps); torch divides by sqrt(sum) + eps.
    The same transformation and state with eps outside the root."""

    def init(params):
        return optax.ScaleByRssState(sum_of_squares=optax.tree.full_like(params, initial_accumulator_value))

    def update(updates, state, params=None):
        sums = jax.tree.map(lambda g, total: total + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, total: g / (jnp.sqrt(total) + eps), updates, sums)
        return updates, optax.ScaleByRssState(sum_of_squares=sums)

    return optax.GradientTransformation(init, update)


def _clip_by_global_norm(max_norm, eps):
    """optax.clip_by_global_norm scales by max_norm / norm (when norm >= max_norm);
    torch.nn.utils.clip_grad_norm_ by min(max_norm / (norm + 1e-6), 1). The 1e-6 is a relative
    1e-6 / norm in every clipped gradient, which float64 trajectories show (measured in
    tests/test_optimizers.py, test_native_clipping_has_no_eps). optax's transformation, torch's scale."""

    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(max_norm / (optax.tree.norm(updates) + eps), 1.0)
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def _transformation(opt_spec):
    """The optax GradientTransformation of torch.optim's rule."""
    s, lr = opt_spec, _schedule(opt_spec)
    if s.name == "adamw":  # optax.adamw's weight decay is decoupled and scaled by lr, as torch's
        return optax.adamw(lr, b1=s.betas[0], b2=s.betas[1], eps=s.eps, weight_decay=s.weight_decay)
    if s.name == "sgd":
        rule = optax.sgd(lr, momentum=s.momentum or None, nesterov=s.nesterov)
    elif s.name == "adam":
        rule = optax.adam(lr, b1=s.betas[0], b2=s.betas[1], eps=s.eps)
    elif s.name == "adagrad":
        rule = optax.chain(_scale_by_root_sum_of_squares(s.initial_accumulator_value, s.eps),
                           optax.scale_by_learning_rate(lr))
    else:
        # optax.rmsprop scales by lr *before* its momentum trace (the buffer holds lr * g / rms);
        # torch's buffer holds g / rms. Equal only for a constant lr, so chain the parts in torch's order.
        scale = optax.scale_by_stddev if s.centered else optax.scale_by_rms
        rule = optax.chain(scale(decay=s.alpha, eps=s.eps, eps_in_sqrt=False),
                           optax.trace(decay=s.momentum) if s.momentum else optax.identity(),
                           optax.scale_by_learning_rate(lr))
    # torch's weight_decay on these is L2 on the gradient: g + wd * p, before the rule.
    return optax.chain(optax.add_decayed_weights(s.weight_decay), rule) if s.weight_decay else rule


def _labels(frozen, params):
    """The label of each Param path, "frozen" or "trained" (`params`: the state of Params or its arrays)."""
    return nnx.from_flat_state([(path, "frozen" if path in frozen else "trained")
                                for path, _ in nnx.to_flat_state(params)])


def build_optimizer(model, opt_spec):
    """An nnx.Optimizer over the model's Params with the optax transformation matching torch.optim.
    Params marked by `jax_impl.transfer.freeze` are masked: optax.multi_transform gives them
    optax.set_to_zero(), the rest the rule (optax's way to freeze part of a model). Clipping sits
    inside the trained branch: the global norm is of the trained gradients only, as in torch and
    Keras, which never see a frozen parameter's gradient."""
    tx = _transformation(opt_spec)
    if opt_spec.clip_norm is not None:
        # First in the chain, before torch's coupled weight decay, as optax.clip_by_global_norm
        # would be; its state is empty, so the optimizer-state names are unchanged.
        tx = optax.chain(_clip_by_global_norm(opt_spec.clip_norm, CLIP_EPS), tx)
    frozen = {path for path, param in nnx.to_flat_state(nnx.state(model, nnx.Param))
              if param.get_metadata().get("frozen")}
    if frozen:
        tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, partial(_labels, frozen))
    with _precision(dtype_of(model)):
        return nnx.Optimizer(model, tx, wrt=nnx.Param)


def apply_gradients(model, optimizer, grads):
    """One optimizer step from canonical gradients (numpy, named like the state)."""
    entries = layout(model.spec)
    with _precision(dtype_of(model)):
        native = []
        for path, param in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            name = layouts.canonical_name(FRAMEWORK, path)
            grad = layouts.to_native(FRAMEWORK, entries[name].kind, grads[name], entries[name].meta)
            native.append((path, param.replace(jnp.asarray(grad))))
        optimizer.update(model, nnx.from_flat_state(native))


def learning_rates(opt_spec, steps):
    """The native schedule's learning rate for updates 0 .. steps - 1."""
    schedule = _schedule(opt_spec)
    with jax.enable_x64(True):  # the step counter optax passes is int32
        return [float(schedule(jnp.int32(step))) if callable(schedule) else schedule for step in range(steps)]


# optax state fields -> torch.optim's slot names, per optimizer (optax.trace holds torch's
# momentum buffer; scale_by_adam's mu/nu are exp_avg/exp_avg_sq; scale_by_rms's nu and
# scale_by_stddev's mu/nu are RMSprop's square_avg/grad_avg; the Adagrad transformation above
# keeps torch's sum). The update count is nnx.Optimizer's `step` (and scale_by_adam's `count`).
_OPTAX_SLOTS = {
    "sgd": {"trace": "momentum_buffer"},
    "adam": {"mu": "exp_avg", "nu": "exp_avg_sq"},
    "adamw": {"mu": "exp_avg", "nu": "exp_avg_sq"},
    "adagrad": {"sum_of_squares": "sum"},
    "rmsprop": {"nu": "square_avg", "mu": "grad_avg", "trace": "momentum_buffer"},
}


def _named_optimizer_state(model, optimizer, opt_spec):
    """Canonical name -> the nnx variable holding it; "optimizer.count" for optax's own counters."""
    params = {tuple(path): layouts.canonical_name(FRAMEWORK, path) for path, node in nnx.iter_graph(model)
              if isinstance(node, nnx.Param)}
    fields = _OPTAX_SLOTS[opt_spec.name]
    named = {"optimizer.step": optimizer.step}
    for path, node in nnx.iter_graph(optimizer.opt_state):
        if not isinstance(node, nnx.Variable):
            continue
        if path[-1] == "count":
            named[f"optimizer.count.{len(named)}"] = node
        for i, key in enumerate(path):
            if key in fields and tuple(path[i + 1:]) in params:
                named[f"optimizer.{params[tuple(path[i + 1:])]}.{fields[key]}"] = node
    return named


def export_optimizer_state(model, optimizer, opt_spec):
    """optax's state (through nnx.Optimizer) as canonical numpy."""
    named = _named_optimizer_state(model, optimizer, opt_spec)
    state = {}
    for full_name, entry in state_layout(opt_spec, model.spec).items():
        value = np.asarray(named[full_name][...])
        state[full_name] = (np.array(int(value), np.int64) if entry.kind == "counter"
                            else layouts.from_native(FRAMEWORK, entry.kind, value, entry.meta))
    return state


def load_optimizer_state(model, optimizer, opt_spec, state):
    """Set optax's state (through nnx.Optimizer) from canonical numpy (validated by the caller)."""
    named = _named_optimizer_state(model, optimizer, opt_spec)
    step = int(state.get("optimizer.step", 0))
    with _precision(dtype_of(model)):
        for full_name, entry in state_layout(opt_spec, model.spec).items():
            value = step if entry.kind == "counter" else layouts.to_native(
                FRAMEWORK, entry.kind, state[full_name], entry.meta)
            named[full_name][...] = jnp.asarray(value, dtype=named[full_name][...].dtype)
        for name, counter in named.items():
            if name.startswith("optimizer.count."):  # scale_by_adam's bias-correction count
                counter[...] = jnp.asarray(step, dtype=counter[...].dtype)
