"""The hand-written backward pass equals all three autodiff engines and finite differences."""
import numpy as np
import pytest

import parity
from parity import backprop
from parity.specs.base import ACTIVATIONS


def _problem(activation, dtype="float64", hidden=(7, 5)):
    spec = parity.spec("mlp", "tiny", in_features=6, hidden_sizes=hidden, num_classes=4,
                       activation=activation, negative_slope=0.1, batch_norm=False, dropout=0.0)
    state = parity.init_state(spec, 1, dtype)
    x, y = parity.example_batch(spec, 5, 2, dtype)
    return spec, state, x, y


def _relative(a, b):
    scale = max(max(np.abs(v).max() for v in a.values()), 1e-30)
    return max(np.abs(a[k] - b[k]).max() for k in a) / scale


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_autodiff_in_float64(activation, framework):
    spec, state, x, y = _problem(activation)
    loss, grads = backprop.loss_and_grads(spec, state, x, y)
    auto_loss, auto = parity.loss_and_grads(framework, parity.build(framework, spec, state), x, y)
    assert abs(loss - auto_loss) <= 1e-12 * abs(loss)
    assert set(grads) == set(auto)
    assert _relative(auto, grads) <= 1e-12


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_central_finite_differences(activation):
    spec, state, x, y = _problem(activation, hidden=(3,))
    _, grads = backprop.loss_and_grads(spec, state, x, y)
    numeric = backprop.finite_difference_grads(spec, state, x, y)
    # Central differences err by O(h^2) truncation + O(eps/h) rounding: ~1e-10 at h = 1e-6
    # (relu/leaky_relu have kinks, but no pre-activation lands within h of 0 on this data).
    assert _relative(grads, numeric) <= 1e-8


def test_hand_backprop_refuses_what_it_does_not_cover():
    with pytest.raises(parity.SpecError, match="without batch norm and dropout"):
        backprop.forward(parity.spec("mlp", "tiny"), {}, np.zeros((1, 16)))
