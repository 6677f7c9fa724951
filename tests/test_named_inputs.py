"""The protocol the transformers build on: masked cross-entropy (Hugging Face's -100 labels) in
every framework's loss, and tied-weight aliases of reference state dicts."""
import dataclasses

import numpy as np
import pytest

import parity
from parity.frameworks import adapter
from parity.specs.mlp import MLPSpec


def _framework_loss(framework, kind, logits, targets):
    dtype = logits.dtype.name
    if framework == "torch":
        import torch

        return adapter("torch").loss_function(kind, dtype)(torch.from_numpy(logits), torch.from_numpy(targets)).item()
    if framework == "keras":
        import tensorflow as tf

        return float(adapter("keras").loss_function(kind, dtype)(tf.constant(logits), tf.constant(targets)))
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(dtype == "float64"):
        return float(adapter("jax").loss_function(kind, dtype)(jnp.asarray(logits), jnp.asarray(targets)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_masked_cross_entropy_is_the_mean_over_counted_targets(framework, dtype):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 5, 7)).astype(dtype)
    targets = rng.integers(0, 7, (3, 5))
    targets[0, :3] = targets[2, 4] = -100  # HF's labels for "no loss here" (BERT's unmasked positions)
    log_softmax = logits - np.log(np.exp(logits.astype("float64")).sum(-1, keepdims=True))
    counted = targets != -100
    picked = np.take_along_axis(log_softmax, np.where(counted, targets, 0)[..., None], -1)[..., 0]
    expected = -(picked * counted).sum() / counted.sum()
    rtol = {"float32": 1e-6, "float64": 1e-14}[dtype]
    assert _framework_loss(framework, "masked_cross_entropy", logits, targets) == pytest.approx(expected, rel=rtol)


@dataclasses.dataclass(frozen=True)
class _TiedMLP(MLPSpec):
    """An MLP whose reference state dict would also hold its first weight as `alias.weight`."""

    def tied_weights(self):
        return {"alias.weight": "blocks.0.fc.weight"}


def test_tied_alias_is_dropped_when_equal_and_refused_when_it_differs():
    spec = _TiedMLP(**MLPSpec.presets["tiny"])
    state = parity.init_state(spec)
    first = next(iter(state))
    assert first == "blocks.0.fc.weight"
    untied = parity.state.check_state(spec, {**state, "alias.weight": state[first].copy()})
    assert list(untied) == list(state)
    with pytest.raises(parity.StateError, match=r"alias.weight: expected the tied weight blocks.0.fc.weight "
                                                r"\(the same tensor\), got a different tensor"):
        parity.state.check_state(spec, {**state, "alias.weight": state[first] + 1})
    without_target = {n: v for n, v in state.items() if n != first}
    with pytest.raises(parity.StateError, match=r"got no blocks.0.fc.weight"):
        parity.state.check_state(spec, {**without_target, "alias.weight": state[first]})
