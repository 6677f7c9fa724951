"""keras.optimizers configured to match torch.optim, from a `parity.optimizers.OptimizerSpec`.

Keras' defaults and five of its rules differ from torch's; each difference is measured in
tests/test_optimizers.py and handled by the smallest subclass that restores torch's rule:

- weight_decay: Keras' is always decoupled (AdamW's rule); torch's SGD/Adam/Adagrad/RMSprop
  decay is L2 on the gradient -> `_CoupledWeightDecay` adds wd * p to the (clipped) gradient;
- Adam's epsilon is added before bias correction -> `_BiasCorrectedEpsilon` rescales it per step;
- SGD's velocity has lr folded in -> `_SGD` rescales it when a schedule changes lr;
- Adagrad and RMSprop put epsilon inside the square root (and RMSprop folds lr into its
  momentum) -> `_Adagrad` and `_RMSprop` state torch's update on Keras' own slot variables;
- global_clipnorm divides by the norm, torch's clip_grad_norm_ by norm + 1e-6 -> `_TorchClipNorm`.

Keras also rounds Python-float hyper-parameters and a float learning rate to float32, which a
float64 model must not see (`_hyper`, `_floatx`).
"""
import contextlib
import functools

import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import numpy as np
from keras import ops

from parity import layouts
from parity.optimizers import CLIP_EPS, learning_rate, split_state_name, state_layout
from parity.state import layout, match_native_names
# The adapter's package-internal map of canonical names to Keras variables.
from keras_impl.api import FRAMEWORK, _named_variables, dtype_of


class _CoupledWeightDecay:
    """torch's weight_decay (SGD, Adam, Adagrad, RMSprop) is L2 folded into the gradient,
    g + wd * p, inside optimizer.step(), so after any clipping; Keras' `weight_decay` is always
    decoupled (p -= lr * wd * p, AdamW's rule), so Keras' stays None and the gradient gets the term
    here: in the update step, which Keras calls with the gradients already clipped
    (BaseOptimizer._backend_apply_gradients: _clip_gradients, then _backend_update_step)."""

    def __init__(self, *, coupled_weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.coupled_weight_decay = coupled_weight_decay

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if self.coupled_weight_decay:
            grads = [g + ops.cast(self.coupled_weight_decay, v.dtype) * v for g, v in zip(grads, trainable_variables)]
        return super()._backend_update_step(grads, trainable_variables, learning_rate)


class _TorchClipNorm:
    """Keras' `global_clipnorm` scales the gradients by max_norm * min(1 / norm, 1 / max_norm);
    torch.nn.utils.clip_grad_norm_ by min(max_norm / (norm + 1e-6), 1). The 1e-6 is a relative
    1e-6 / norm in every clipped gradient, which float64 trajectories show (measured in
    tests/test_optimizers.py, test_native_clipping_has_no_eps). So Keras' own option and hook
    (_clip_gradients, called before weight decay and the update step) with torch's scale."""

    def __init__(self, *, clip_eps=0.0, **kwargs):
        super().__init__(**kwargs)
        self.clip_eps = clip_eps

    def _clip_gradients(self, grads):
        if not self.global_clipnorm:
            return super()._clip_gradients(grads)
        norm = ops.sqrt(ops.sum(ops.stack([ops.sum(ops.square(g)) for g in grads])))  # Keras' global_norm
        max_norm, eps = (ops.convert_to_tensor(x, norm.dtype) for x in (self.global_clipnorm, self.clip_eps))
        scale = ops.minimum(max_norm / (norm + eps), ops.ones((), norm.dtype))
        return [g * ops.cast(scale, g.dtype) for g in grads]


class _BiasCorrectedEpsilon:
    """torch adds eps to the bias-corrected sqrt(v / (1 - beta_2^t)); Keras adds its epsilon to
    the raw sqrt(v) (Kingma & Ba's "epsilon hat"). They agree when Keras' epsilon is
    eps * sqrt(1 - beta_2^t), which changes every step, so it is set before each update."""

    def __init__(self, *, epsilon, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        self.torch_epsilon = epsilon

    def update_step(self, gradient, variable, learning_rate):
        t = ops.cast(self.iterations + 1, variable.dtype)
        self.epsilon = self.torch_epsilon * ops.sqrt(1 - ops.power(ops.cast(self.beta_2, variable.dtype), t))
        super().update_step(gradient, variable, learning_rate)


class _SGD(_TorchClipNorm, _CoupledWeightDecay, keras.optimizers.SGD):
    """Keras keeps v = momentum * v - lr * g and adds it (p += v); torch keeps b = momentum * b + g
    and subtracts lr * b. So v = -lr * b, which survives a change of lr only if v is rescaled by
    lr_t / lr_(t-1) first (the native step alone mixes old and new learning rates)."""

    def update_step(self, gradient, variable, learning_rate):
        # Keras keeps the schedule private; its value one step back is the previous lr.
        schedule = self._learning_rate
        if self.momentum and isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            previous = schedule(ops.maximum(self.iterations - 1, 0))
            velocity = self.momentums[self._get_variable_index(variable)]
            self.assign(velocity, velocity * ops.cast(learning_rate / previous, variable.dtype))
        super().update_step(gradient, variable, learning_rate)


class _Adam(_TorchClipNorm, _CoupledWeightDecay, _BiasCorrectedEpsilon, keras.optimizers.Adam):
    pass


class _AdamW(_TorchClipNorm, _BiasCorrectedEpsilon, keras.optimizers.AdamW):
    pass


class _Adagrad(_TorchClipNorm, _CoupledWeightDecay, keras.optimizers.Adagrad):
    """Keras divides by sqrt(sum + epsilon), torch by sqrt(sum) + eps: torch's line below."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        total = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(total, ops.square(gradient))
        self.assign_sub(variable, lr * gradient / (ops.sqrt(total) + self.epsilon))


class _RMSprop(_TorchClipNorm, _CoupledWeightDecay, keras.optimizers.RMSprop):
    """Keras divides by sqrt(v + epsilon), torch by sqrt(v) + eps; and Keras' momentum buffer
    accumulates lr * g / rms where torch's accumulates g / rms and multiplies by lr afterwards
    (equal only while lr is constant). torch's update, on Keras' own slot variables."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        square_avg = self._velocities[index]
        self.assign(square_avg, self.rho * square_avg + (1 - self.rho) * ops.square(gradient))
        variance = square_avg
        if self.centered:
            grad_avg = self._average_gradients[index]
            self.assign(grad_avg, self.rho * grad_avg + (1 - self.rho) * gradient)
            variance = square_avg - ops.square(grad_avg)
        step = gradient / (ops.sqrt(variance) + self.epsilon)
        if self.momentum > 0:
            buffer = self._momentums[index]
            self.assign(buffer, self.momentum * buffer + step)
            step = buffer
        self.assign_sub(variable, lr * step)


def _hyper(value, dtype):
    """A hyper-parameter for Keras. Keras casts a Python float through a float32 tensor
    (ops.cast(0.9, "float64") is 0.8999999761581421), so a float64 model gets numpy float64
    scalars, which keep their bits; a float32 model keeps Python floats (a numpy float64 would
    promote its arithmetic to float64)."""
    return np.float64(value) if dtype == "float64" else float(value)


def _learning_rate(opt_spec, dtype):
    """The Keras schedule equal to `parity.optimizers.learning_rate`. Schedules compute in the
    dtype of their initial value, so it is given in the model's dtype (a float is float32)."""
    lr = np.dtype(dtype).type(opt_spec.lr)
    schedules = keras.optimizers.schedules
    if opt_spec.schedule == "step":
        return schedules.ExponentialDecay(lr, decay_steps=opt_spec.step_size, decay_rate=opt_spec.gamma,
                                          staircase=True)
    if opt_spec.schedule == "cosine":
        return schedules.CosineDecay(lr, decay_steps=opt_spec.total_steps, alpha=0.0)
    if opt_spec.schedule == "linear_warmup":
        # A power-1 "decay" from lr / w up to lr is the linear warmup: lr / w at step 0, lr at w - 1.
        warmup = opt_spec.warmup_steps
        return schedules.PolynomialDecay(lr / warmup, decay_steps=max(warmup - 1, 1), end_learning_rate=lr,
                                         power=1.0)
    if opt_spec.schedule == "warmup_cosine":
        # CosineDecay's own warmup: linear from 0 to warmup_target, then decay_steps of cosine.
        warmup = opt_spec.warmup_steps
        return schedules.CosineDecay(np.dtype(dtype).type(0.0), decay_steps=opt_spec.total_steps - warmup,
                                     alpha=0.0, warmup_target=lr, warmup_steps=warmup)
    return float(lr)


@contextlib.contextmanager
def _floatx(dtype):
    """A constant learning rate becomes a Variable of dtype `floatx()`: float32 unless set."""
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def build_optimizer(model, opt_spec):
    """The keras.optimizers optimizer (subclassed where Keras' rule differs) matching torch.optim."""
    s, dtype = opt_spec, dtype_of(model)
    h = functools.partial(_hyper, dtype=dtype)
    # Keras' own weight_decay is decoupled: AdamW's; torch's other optimizers couple theirs.
    decay = "weight_decay" if s.name == "adamw" else "coupled_weight_decay"
    # name: Keras names an optimizer after its class, and "_sgd" is not a valid TensorFlow name
    # scope, which graphs (tf.function steps, model.fit) require.
    common = {"learning_rate": _learning_rate(s, dtype), decay: h(s.weight_decay), "name": s.name,
              # Keras' own global-norm clipping, before the rule, with torch's eps (_TorchClipNorm).
              "global_clipnorm": None if s.clip_norm is None else h(s.clip_norm), "clip_eps": h(CLIP_EPS)}
    with _floatx(dtype):
        if s.name == "sgd":
            return _SGD(momentum=h(s.momentum), nesterov=s.nesterov, **common)
        if s.name in ("adam", "adamw"):
            adam = _Adam if s.name == "adam" else _AdamW
            return adam(beta_1=h(s.betas[0]), beta_2=h(s.betas[1]), epsilon=h(s.eps), **common)
        if s.name == "adagrad":
            return _Adagrad(initial_accumulator_value=h(s.initial_accumulator_value), epsilon=h(s.eps), **common)
        return _RMSprop(rho=h(s.alpha), momentum=h(s.momentum), epsilon=h(s.eps), centered=s.centered, **common)


def apply_gradients(model, optimizer, grads):
    """One optimizer step from canonical gradients (numpy, named like the state); frozen variables
    (trainable False) are not passed: Keras' optimizer would update them all the same."""
    entries = layout(model.spec)
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    optimizer.apply_gradients([
        (ops.convert_to_tensor(layouts.to_native(FRAMEWORK, p.kind, grads[name], p.meta)), native[name])
        for name, p in entries.items() if p.trainable and native[name].trainable])


def learning_rates(opt_spec, steps):
    """The native schedule's learning rate for updates 0 .. steps - 1."""
    schedule = _learning_rate(opt_spec, "float64")
    return [float(schedule(step)) if callable(schedule) else schedule for step in range(steps)]


# torch.optim's slot name -> the Keras optimizer attribute holding it, per optimizer. (The
# RMSprop and Adagrad subclasses above keep torch's quantities in these variables.)
_KERAS_SLOTS = {
    "sgd": {"momentum_buffer": "momentums"},  # holds -lr * b, converted below
    "adam": {"exp_avg": "_momentums", "exp_avg_sq": "_velocities"},
    "adamw": {"exp_avg": "_momentums", "exp_avg_sq": "_velocities"},
    "adagrad": {"sum": "_accumulators"},
    "rmsprop": {"square_avg": "_velocities", "momentum_buffer": "_momentums", "grad_avg": "_average_gradients"},
}


def _slot_variable(optimizer, opt_spec, slot, variable):
    return getattr(optimizer, _KERAS_SLOTS[opt_spec.name][slot])[optimizer._get_variable_index(variable)]


def _last_learning_rate(opt_spec, step):
    """The learning rate Keras' SGD folded into its velocity at the last update (v = -lr * b)."""
    return learning_rate(opt_spec, max(step - 1, 0))


def export_optimizer_state(model, optimizer, opt_spec):
    """Keras' slot variables as canonical numpy. SGD's velocity is v = -lr * b (torch's b):
    dividing by -lr costs at most an ulp, so SGD-momentum state round-trips to rounding, not bits."""
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    state = {}
    for full_name, entry in state_layout(opt_spec, model.spec).items():
        if full_name == "optimizer.step":
            state[full_name] = np.array(int(optimizer.iterations.numpy()), np.int64)
            continue
        name, slot = split_state_name(full_name)
        value = np.asarray(_slot_variable(optimizer, opt_spec, slot, native[name]).numpy())
        if opt_spec.name == "sgd":
            value = value / -np.asarray(_last_learning_rate(opt_spec, int(optimizer.iterations.numpy())), value.dtype)
        state[full_name] = layouts.from_native(FRAMEWORK, entry.kind, value, entry.meta)
    return state


def load_optimizer_state(model, optimizer, opt_spec, state):
    """Set Keras' slot variables and iteration count from canonical numpy (validated by the caller)."""
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    for full_name, entry in state_layout(opt_spec, model.spec).items():
        if full_name == "optimizer.step":
            optimizer.iterations.assign(int(state[full_name]))
            continue
        name, slot = split_state_name(full_name)
        value = layouts.to_native(FRAMEWORK, entry.kind, state[full_name], entry.meta)
        if opt_spec.name == "sgd":
            value = value * -np.asarray(_last_learning_rate(opt_spec, int(state.get("optimizer.step", 0))),
                                        value.dtype)
        _slot_variable(optimizer, opt_spec, slot, native[name]).assign(value)
