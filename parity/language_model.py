"""Character-level language models: truncated-BPTT training trajectories and sampling, the same
in every framework.

`language_model_trajectory` trains a native model (`char_lm`) with its native optimizer over
consecutive windows (`parity.text.bptt_windows`): each window starts from the previous window's
final (h_n, c_n), handed over as numpy arrays, so the state carries across windows but the
gradient stops at the window boundary (truncated BPTT, as char-rnn's `hidden.detach()`); the
first window starts from zeros. The final states come from a forward pass at the weights the
window's gradient is taken at, i.e. before the update.

`sample` feeds a prompt, then one character at a time, carrying the states. The draws are numpy's
(`default_rng(seed)`, inverse CDF of a float64 softmax of the logits), not the frameworks', so
the three sample the same text from the same weights.
"""
from __future__ import annotations

import numpy as np

from parity.errors import InputError
from parity.frameworks import adapter, export_state, forward, loss_and_grads
from parity.optimizers import OptimizerSpec
from parity.specs import Spec
from parity.text import Vocabulary
from parity.training import _setup


def _check_language_model(spec, what: str) -> None:
    """`spec` is a token model whose LSTM states are inputs (h_0, c_0) and outputs (h_n, c_n)."""
    if not isinstance(spec, Spec):
        raise InputError(f"{what}: expected a parity spec (see parity.spec), got {type(spec).__name__}")
    if spec.input_kind != "tokens" or not {"h_0", "c_0"} <= set(spec.optional_inputs):
        raise InputError(f"{what}: expected a language model spec (token inputs with h_0/c_0 states, e.g. "
                         f"'char_lm'), got {spec.architecture!r}")


def _check_windows(windows) -> list:
    """A non-empty list of (tokens, targets) pairs of integer (B, T) arrays, B the same in all."""
    if not isinstance(windows, (list, tuple)) or not windows:
        raise InputError(f"windows: expected a non-empty list of (tokens, targets) (see parity.text.bptt_windows), "
                         f"got {windows!r:.80}")
    batch = None
    for k, window in enumerate(windows):
        if not (isinstance(window, (list, tuple)) and len(window) == 2
                and all(isinstance(a, np.ndarray) and a.ndim == 2 and np.issubdtype(a.dtype, np.integer)
                        for a in window) and window[0].shape == window[1].shape):
            raise InputError(f"windows[{k}]: expected a pair (tokens, targets) of integer arrays of one shape "
                             f"(B, T), got {_describe(window)}")
        if batch is None:
            batch = window[0].shape[0]
        elif window[0].shape[0] != batch:
            raise InputError(f"windows[{k}]: expected batch size {batch} (the states carried from window 0), "
                             f"got {window[0].shape[0]}")
    return list(windows)


def _describe(window) -> str:
    if isinstance(window, (list, tuple)):
        return "(" + ", ".join(f"{getattr(a, 'dtype', type(a).__name__)} {np.shape(a)}" for a in window) + ")"
    return type(window).__name__


def language_model_trajectory(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, windows,
                              dtype: str | None = None) -> list[tuple[float, dict[str, np.ndarray]]]:
    """Train a native language model from `state` with the native optimizer, one step per window,
    truncated BPTT (see the module docstring); (the window's loss, the canonical state after its
    update) per step. `dtype` casts the state (None: the state's own)."""
    _check_language_model(spec, "language_model_trajectory")
    windows = _check_windows(windows)
    model, native, impl, windows = _setup(framework, spec, state, optimizer, windows, dtype)
    layers, hidden = spec.state_shape
    h = c = np.zeros((layers, windows[0][0].shape[0], hidden), adapter(framework).dtype_of(model))
    steps = []
    for tokens, targets in windows:
        inputs = {"tokens": tokens, "h_0": h, "c_0": c}
        outputs = forward(framework, model, inputs)  # the final states, at the weights of this step
        loss, grads = loss_and_grads(framework, model, inputs, targets, train=True)
        impl.apply_gradients(model, native, grads)
        h, c = outputs["h_n"], outputs["c_n"]  # numpy: the next window's gradient stops here
        steps.append((float(loss), export_state(framework, model)))
    return steps


def _check_sampling(model, vocabulary, prompt, length, temperature, top_k, seed) -> None:
    spec = getattr(model, "spec", None)
    _check_language_model(spec, "sample: model.spec")
    if not isinstance(vocabulary, Vocabulary):
        raise InputError(f"sample: expected vocabulary a parity.text.Vocabulary, got {type(vocabulary).__name__}")
    if vocabulary.size != spec.vocab_size:
        raise InputError(f"sample: expected a vocabulary of {spec.vocab_size} characters (the model's vocab_size), "
                         f"got {vocabulary.size}")
    if not isinstance(prompt, str) or not prompt:
        raise InputError(f"sample: expected prompt a non-empty str (the model needs a first character), got {prompt!r}")
    for name, value, low in (("length", length, 0), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise InputError(f"sample: expected {name} an int >= {low}, got {value!r}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature < np.inf:
        raise InputError(f"sample: expected temperature a finite float >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool)
                              or not 1 <= top_k <= spec.vocab_size):
        raise InputError(f"sample: expected top_k None or an int in [1, {spec.vocab_size}], got {top_k!r}")


def next_id(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """The id drawn after `logits` (V,): argmax when temperature is 0; otherwise from the float64
    softmax of logits / temperature, restricted to the top_k largest (ties at the k-th kept),
    by inverse CDF of one rng.random() draw."""
    logits = np.asarray(logits, np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    if top_k is not None and top_k < z.size:
        z = np.where(z >= np.partition(z, -top_k)[-top_k], z, -np.inf)
    p = np.exp(z - z.max())
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), z.size - 1))


def sample(framework: str, model, vocabulary: Vocabulary, prompt: str, length: int, *, temperature: float = 1.0,
           top_k: int | None = None, seed: int = 0) -> str:
    """`length` characters generated after `prompt` (the prompt not included) by a native language
    model: the prompt is fed in one pass from zero states, then each drawn character is fed back
    with the states carried. Draws: `next_id` with numpy's default_rng(seed), so every framework
    samples the same text from the same weights (up to a draw landing within rounding of a CDF
    step); greedy when temperature == 0."""
    _check_sampling(model, vocabulary, prompt, length, temperature, top_k, seed)
    ids = vocabulary.encode(prompt)
    layers, hidden = model.spec.state_shape
    h = c = np.zeros((layers, 1, hidden), adapter(framework).dtype_of(model))
    rng = np.random.default_rng(seed)
    drawn = []
    tokens = ids[None, :]
    for _ in range(length):
        outputs = forward(framework, model, {"tokens": tokens, "h_0": h, "c_0": c})
        h, c = outputs["h_n"], outputs["c_n"]
        drawn.append(next_id(outputs["logits"][0, -1], temperature, top_k, rng))
        tokens = np.array([[drawn[-1]]], np.int64)
    return vocabulary.decode(np.array(drawn, np.int64))
