"""Recurrent layers against torch.nn itself: a torch.nn.RNN / LSTM / GRU state dict loads unchanged
in every framework, and every framework reproduces torch.nn's outputs, final states and
gradients, with per-example lengths (pack_padded_sequence) and initial states."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import parity
from parity import tolerances
from parity.errors import InputError

FRAMEWORKS = parity.FRAMEWORKS
TORCH_NN = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
# (num_layers, bidirectional, bias, nonlinearity): every switch of torch.nn's constructor.
CONFIGS = [(2, True, True, "tanh"), (1, False, False, "relu")]


def torch_nn_module(name, spec, dtype):
    """The reference: torch.nn's own module, randomly initialised by torch (not by parity)."""
    torch.manual_seed(0)
    options = {"nonlinearity": spec.nonlinearity} if name == "rnn" else {}
    return TORCH_NN[name](spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias, batch_first=True,
                          bidirectional=spec.bidirectional, dtype=getattr(torch, dtype), **options)


def torch_nn_run(module, inputs):
    """torch.nn's documented recipe for variable lengths: pack, run, pad back to the full length."""
    x = torch.from_numpy(inputs["sequence"]).requires_grad_(False)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(inputs["lengths"]), batch_first=True,
                                                     enforce_sorted=False)
    h_0 = torch.from_numpy(inputs["h_0"])
    output, states = module(packed, (h_0, torch.from_numpy(inputs["c_0"])) if "c_0" in inputs else h_0)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    states = dict(zip(("h_n", "c_n"), states)) if "c_0" in inputs else {"h_n": states}
    return {"output": output, **states}


def spec_for(name, config, **overrides):
    num_layers, bidirectional, bias, nonlinearity = config
    fields = dict(input_size=3, hidden_size=4, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                  seq_len=6, **overrides)
    if name == "rnn":
        fields["nonlinearity"] = nonlinearity
    return parity.spec(name, "tiny", **fields)


def state_dict_of(module):
    return {name: value.detach().numpy().copy() for name, value in module.state_dict().items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS, ids=["2-layer-bidirectional", "1-layer-nobias-relu"])
@pytest.mark.parametrize("name", list(TORCH_NN))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_reproduces_torch_nn_outputs_states_and_gradients(framework, name, config, dtype):
    spec = spec_for(name, config)
    module = torch_nn_module(name, spec, dtype)
    state = state_dict_of(module)
    assert list(state) == list(parity.layout(spec))  # torch.nn's names and order are the canonical ones
    inputs, targets = parity.example_batch(spec, 5, 1, dtype)
    assert inputs["lengths"].min() < spec.seq_len  # padding is exercised
    expected = torch_nn_run(module, inputs)
    model = parity.build(framework, spec, state)
    outputs = parity.forward(framework, model, inputs)
    assert list(outputs) == list(spec.output_names)
    for key, value in expected.items():
        _, rel = tolerances.errors(outputs[key], value.detach().numpy())
        assert rel <= tolerances.FORWARD[dtype].rtol, (key, rel)

    loss = torch.nn.functional.mse_loss(torch_nn_run(module, inputs)["output"], torch.from_numpy(targets))
    loss.backward()
    expected_grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    value, grads = parity.loss_and_grads(framework, model, inputs, targets)
    scale = max(float(np.abs(g).max()) for g in expected_grads.values())
    assert abs(value - loss.item()) <= tolerances.FORWARD[dtype].rtol * abs(loss.item())
    for key, grad in expected_grads.items():
        _, rel = tolerances.errors(grads[key], grad, scale)
        assert rel <= tolerances.GRADIENT[dtype].rtol, (key, rel)


@pytest.mark.parametrize("name", list(TORCH_NN))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_padded_steps_change_nothing(framework, name):
    """Whatever sits past an example's length, the results are those of the example cut to its
    length: zeros in `output` there, and final states from the last valid step (both directions)."""
    spec = spec_for(name, CONFIGS[0])
    model = parity.build(framework, spec, parity.init_state(spec, 3, "float64"))
    inputs, _ = parity.example_batch(spec, 4, 2, "float64")
    noisy = {**inputs, "sequence": inputs["sequence"].copy()}
    for row, length in enumerate(inputs["lengths"]):
        noisy["sequence"][row, length:] = 1e3  # would saturate every gate if it were read
    clean, dirty = parity.forward(framework, model, inputs), parity.forward(framework, model, noisy)
    for key in clean:
        np.testing.assert_array_equal(clean[key], dirty[key], err_msg=key)
    for row, length in enumerate(inputs["lengths"]):
        assert not np.any(clean["output"][row, length:]), row
        alone = parity.forward(framework, model, {name: value[:, row:row + 1] if name.endswith("_0") else
                                                  value[row:row + 1, :length] if name == "sequence" else
                                                  value[row:row + 1] for name, value in inputs.items()})
        np.testing.assert_allclose(alone["output"][0], clean["output"][row, :length], rtol=0, atol=1e-13)
        np.testing.assert_allclose(alone["h_n"][:, 0], clean["h_n"][:, row], rtol=0, atol=1e-13)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_optional_inputs_default_like_torch_nn(framework):
    """No lengths means every step counts; no initial state means zeros (LSTM: h_0 and c_0)."""
    spec = spec_for("lstm", CONFIGS[0])
    module = torch_nn_module("lstm", spec, "float64")
    model = parity.build(framework, spec, state_dict_of(module))
    x = parity.example_batch(spec, 3, 0, "float64")[0]["sequence"]
    output, (h_n, c_n) = module(torch.from_numpy(x))
    outputs = parity.forward(framework, model, x)  # a bare array is the sequence
    for key, value in {"output": output, "h_n": h_n, "c_n": c_n}.items():
        np.testing.assert_allclose(outputs[key], value.detach().numpy(), rtol=0, atol=1e-13, err_msg=key)


@settings(max_examples=6, deadline=None)
@given(steps=st.integers(1, 5), batch=st.integers(1, 3), hidden=st.integers(1, 4), data=st.data())
def test_any_length_and_batch_reproduces_torch_nn(steps, batch, hidden, data):
    """Shapes vary (one-step sequences, batch 1, one hidden unit): the JAX GRU, the cell with the
    most gate plumbing, still equals torch.nn."""
    spec = parity.spec("gru", "tiny", hidden_size=hidden, seq_len=steps)
    module = torch_nn_module("gru", spec, "float64")
    inputs, _ = parity.example_batch(spec, batch, data.draw(st.integers(0, 100)), "float64")
    expected = torch_nn_run(module, inputs)
    outputs = parity.forward("jax", parity.build("jax", spec, state_dict_of(module)), inputs)
    for key, value in expected.items():
        np.testing.assert_allclose(outputs[key], value.detach().numpy(), rtol=0, atol=1e-12, err_msg=key)


def test_bad_inputs_are_clear_errors():
    spec = parity.spec("lstm", "tiny")
    model = parity.build("torch", spec)
    inputs, _ = parity.example_batch(spec, 2)
    cases = {
        r"inputs\['sequence'\]: expected shape \('B', 'T', 3\)": {**inputs, "sequence": inputs["sequence"][0]},
        r"inputs\['lengths'\]: expected every length in \[1, 5\].*got values in \[0, 5\]":
            {**inputs, "lengths": np.array([5, 0])},
        r"inputs\['lengths'\]: expected every length in \[1, 5\].*got values in \[5, 6\]":
            {**inputs, "lengths": np.array([5, 6])},
        r"inputs\['lengths'\]: expected integers of shape \(2,\)": {**inputs, "lengths": np.array([5.0, 4.0])},
        r"inputs\['h_0'\]: expected shape \(4, 2, 4\)": {**inputs, "h_0": inputs["h_0"][:, :1]},
        r"inputs\['c_0'\]: expected finite values": {**inputs, "c_0": np.full_like(inputs["c_0"], np.nan)},
        r"expected a dict with the key 'sequence' and optionally \['lengths', 'h_0', 'c_0'\].*\['x'\]":
            {"x": inputs["sequence"]},
    }
    for message, bad in cases.items():
        with pytest.raises(InputError, match=message):
            parity.forward("torch", model, bad)


def one_layer(kind, dtype="float64"):
    """torch.nn's one-layer, one-direction module, its state, inputs (B=3, T=5) and outputs."""
    torch.manual_seed(0)
    module = TORCH_NN[kind](3, 4, batch_first=True, dtype=getattr(torch, dtype))
    x = np.random.default_rng(0).standard_normal((3, 5, 3)).astype(dtype)
    tensors = [module.state_dict()[f"{name}_l0"].numpy() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return module, tensors, x


@pytest.mark.parametrize("kind", list(TORCH_NN))
def test_keras_native_layers_hold_torch_nn_math_with_a_fused_bias_and_gru_reordering(kind):
    """keras.layers.SimpleRNN / LSTM / GRU(reset_after=True) reproduce torch.nn with
    `layouts.keras_native_recurrent`: the GRU's gates reordered (z, r, h vs r, z, n), SimpleRNN's
    and LSTM's two biases summed into their one (so the state cannot be exported back)."""
    import keras

    module, tensors, x = one_layer(kind)
    layer = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind](
        4, return_sequences=True, dtype="float64")
    layer.build(x.shape)
    layer.set_weights(parity.layouts.keras_native_recurrent(kind, *tensors))
    assert len(layer.get_weights()) == 3 and layer.get_weights()[2].shape == ((2, 12) if kind == "gru" else
                                                                              (module.weight_hh_l0.shape[0],))
    np.testing.assert_allclose(np.asarray(layer(x)), module(torch.from_numpy(x))[0].detach().numpy(),
                               rtol=0, atol=1e-13)


def test_keras_masking_repeats_the_last_output_unless_told_to_zero():
    """keras.layers.RNN's default `zero_output_for_mask=False` copies the last valid output into
    the padded steps; torch.nn (pad_packed_sequence) has zeros there. The Keras models set it."""
    import keras

    _, tensors, x = one_layer("gru")
    mask = np.arange(5)[None, :] < np.array([5, 2, 3])[:, None]
    outputs = {}
    for zero in (False, True):
        layer = keras.layers.GRU(4, return_sequences=True, zero_output_for_mask=zero, dtype="float64")
        layer.build(x.shape)
        layer.set_weights(parity.layouts.keras_native_recurrent("gru", *tensors))
        outputs[zero] = np.asarray(layer(x, mask=mask))
    np.testing.assert_array_equal(outputs[False][1, 2:], np.repeat(outputs[False][1, 1:2], 3, axis=0))
    assert not np.any(outputs[True][1, 2:]) and np.array_equal(outputs[True][0], outputs[False][0])


@pytest.mark.parametrize("kind", list(TORCH_NN))
def test_flax_native_cells_hold_torch_nn_math_except_the_grus_b_hn(kind):
    """nnx.SimpleCell / OptimizedLSTMCell / GRUCell keep torch's gate order but one bias each;
    nnx.GRUCell has no bias inside r * (W_hn h + b_hn), so a torch GRU fits only with b_hn = 0
    (`layouts.flax_native_recurrent` refuses otherwise; dropping it is a different model)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    module, tensors, x = one_layer(kind)
    if kind == "gru":
        with pytest.raises(ValueError, match="b_hn"):
            parity.layouts.flax_native_recurrent(kind, *tensors)
        with torch.no_grad():
            module.bias_hh_l0[8:] = 0.0
        tensors[3] = module.bias_hh_l0.detach().numpy()
    with jax.enable_x64(True):
        cell = {"rnn": nnx.SimpleCell, "lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}[kind](
            3, 4, dtype=jnp.float64, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        for path, value in parity.layouts.flax_native_recurrent(kind, *tensors).items():
            module_name, leaf = path.split(".")
            getattr(getattr(cell, module_name), leaf)[...] = jnp.asarray(value)
        output = np.asarray(nnx.RNN(cell)(jnp.asarray(x)))
    np.testing.assert_allclose(output, module(torch.from_numpy(x))[0].detach().numpy(), rtol=0, atol=1e-13)
