"""Multi-head attention (`mha`) against torch.nn.MultiheadAttention itself, in every framework:
self- and cross-attention, both masks (torch's polarity), float32 and float64, gradients, fully
masked rows, attention dropout; and Keras' and Flax's own multi-head attention layers given the
split weights of parity.layouts.keras_native_mha / flax_native_mha."""
import math

import numpy as np
import pytest
import torch

import parity
from parity import layouts, tolerances
from parity.flops import forward_flops, train_step_flops

FRAMEWORKS = parity.FRAMEWORKS
DTYPES = ["float32", "float64"]
# (cross-attention, key_padding_mask, attn_mask, bias)
CASES = {"self": (False, False, False, True), "self-padding": (False, True, False, True),
         "cross": (True, False, False, True), "cross-attn-mask": (True, False, True, True),
         "cross-both-masks": (True, True, True, True), "cross-both-masks-no-bias": (True, True, True, False)}


def _spec(bias=True, **overrides):
    return parity.spec("mha", "tiny", bias=bias, **overrides)


def _state(spec, dtype):
    return parity.init_state(spec, 3, dtype)


def _inputs(spec, dtype, cross=True, padding=True, attn=True, batch=3, seed=0):
    """query (B, L, E), keys over S = source_len (cross) or the queries (self); a key padding mask
    with the first example unpadded, an attention mask that never blocks key 0."""
    rng = np.random.default_rng(seed)
    L, E = spec.seq_len, spec.embed_dim
    S = spec.source_len if cross else L
    inputs = {"query": rng.standard_normal((batch, L, E)).astype(dtype)}
    if cross:
        inputs["key"] = rng.standard_normal((batch, S, E)).astype(dtype)
        inputs["value"] = rng.standard_normal((batch, S, E)).astype(dtype)
    if padding:
        lengths = np.array([S, *rng.integers(1, S, batch - 1)])
        inputs["key_padding_mask"] = np.arange(S)[None, :] >= lengths[:, None]
    if attn:
        attn_mask = rng.random((L, S)) < 0.4
        attn_mask[:, 0] = False
        inputs["attn_mask"] = attn_mask
    return inputs


def _torch_reference(spec, state):
    """A plain torch.nn.MultiheadAttention (not parity's model) holding the canonical state."""
    module = torch.nn.MultiheadAttention(spec.embed_dim, spec.num_heads, dropout=spec.dropout, bias=spec.bias,
                                         batch_first=True, dtype=getattr(torch, next(iter(state.values())).dtype.name))
    module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()}, strict=True)
    return module.eval()


def _run_reference(module, inputs, grad=False):
    """(output, weights) of torch's module; key and value default to the query (the same tensor,
    so torch's fast path runs without gradients)."""
    query = torch.from_numpy(inputs["query"])
    key = torch.from_numpy(inputs["key"]) if "key" in inputs else query
    value = torch.from_numpy(inputs["value"]) if "value" in inputs else key
    masks = {name: torch.from_numpy(inputs[name]) for name in ("key_padding_mask", "attn_mask") if name in inputs}
    with torch.set_grad_enabled(grad):
        output, weights = module(query, key, value, need_weights=True, average_attn_weights=True, **masks)
    return output.detach().numpy(), weights.detach().numpy()


@pytest.fixture(scope="module")
def models():
    """Built once per (framework, dtype, bias): tests only run them."""
    cache = {}

    def get(framework, dtype, bias=True):
        if (framework, dtype, bias) not in cache:
            spec = _spec(bias)
            cache[framework, dtype, bias] = parity.build(framework, spec, _state(spec, dtype))
        return cache[framework, dtype, bias]
    return get


def _assert_close(actual, expected, dtype, what):
    max_abs, max_rel = tolerances.errors(actual, expected)
    assert max_rel <= tolerances.FORWARD[dtype].rtol, f"{what}: max abs {max_abs:.2e}, rel {max_rel:.2e}"


# ---------------------------------------------------------------------------- against torch.nn


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_outputs_equal_torch_nn_multihead_attention(models, framework, dtype, case):
    """Both of torch's paths: with gradients (F.multi_head_attention_forward) and without (the fast
    path, torch._native_multi_head_attention, for self-attention)."""
    cross, padding, attn, bias = CASES[case]
    spec = _spec(bias)
    inputs = _inputs(spec, dtype, cross, padding, attn)
    outputs = parity.forward(framework, models(framework, dtype, bias), inputs)
    reference = _torch_reference(spec, _state(spec, dtype))
    for grad in (True, False):
        expected_output, expected_weights = _run_reference(reference, inputs, grad)
        _assert_close(outputs["output"], expected_output, dtype, f"output (torch grad={grad})")
        _assert_close(outputs["weights"], expected_weights, dtype, f"weights (torch grad={grad})")
    assert outputs["weights"].shape == (3, spec.seq_len, spec.source_len if cross else spec.seq_len)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_gradients_equal_torch_autograd_in_training_mode(framework, dtype):
    """Training mode with the attention dropout at 0 (spec.deterministic(): the frameworks' random
    streams cannot match; test_attention_dropout_* checks the dropout itself)."""
    spec = _spec().deterministic()
    state = _state(spec, dtype)
    inputs = _inputs(spec, dtype)
    targets = np.random.default_rng(1).standard_normal((3, spec.seq_len, spec.embed_dim)).astype(dtype)
    loss, grads = parity.loss_and_grads(framework, parity.build(framework, spec, state), inputs, targets, train=True)

    reference = _torch_reference(spec, state).train()
    output = reference(*(torch.from_numpy(inputs[n]) for n in ("query", "key", "value")),
                       key_padding_mask=torch.from_numpy(inputs["key_padding_mask"]),
                       attn_mask=torch.from_numpy(inputs["attn_mask"]))[0]
    expected = torch.nn.functional.mse_loss(output, torch.from_numpy(targets))
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=tolerances.FORWARD[dtype].rtol)
    scale = max(float(p.grad.abs().max()) for p in reference.parameters())
    for name, param in reference.named_parameters():
        max_abs, max_rel = tolerances.errors(grads[name], param.grad.numpy(), scale)
        assert max_rel <= tolerances.GRADIENT[dtype].rtol, f"{name}: {max_abs:.2e} ({max_rel:.2e} of the scale)"


def test_written_out_attention_is_what_torch_computes():
    """pytorch_impl's scaled_dot_product_attention and allowed_positions (what the Keras and Flax
    files run) reproduce torch.nn.MultiheadAttention on its own projections."""
    from pytorch_impl.models.attention import allowed_positions, scaled_dot_product_attention

    spec = _spec()
    state = _state(spec, "float64")
    inputs = _inputs(spec, "float64")
    expected_output, expected_weights = _run_reference(_torch_reference(spec, state), inputs)
    E, H, D = spec.embed_dim, spec.num_heads, spec.head_dim
    w, b = torch.from_numpy(state["in_proj_weight"]), torch.from_numpy(state["in_proj_bias"])

    def heads(x, i):  # the i-th third of the packed projection, (B, H, N, D)
        projected = torch.nn.functional.linear(torch.from_numpy(x), w[i * E:(i + 1) * E], b[i * E:(i + 1) * E])
        return projected.unflatten(-1, (H, D)).transpose(1, 2)

    q, k, v = (heads(inputs[name], i) for i, name in enumerate(("query", "key", "value")))
    mask = allowed_positions(torch.from_numpy(inputs["key_padding_mask"]), torch.from_numpy(inputs["attn_mask"]))
    context, weights = scaled_dot_product_attention(q, k, v, mask)
    output = torch.nn.functional.linear(context.transpose(1, 2).flatten(-2), torch.from_numpy(state["out_proj.weight"]),
                                        torch.from_numpy(state["out_proj.bias"]))
    np.testing.assert_allclose(output.numpy(), expected_output, rtol=0, atol=1e-14)
    np.testing.assert_allclose(weights.mean(1).numpy(), expected_weights, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------- masks


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_masked_keys_get_weight_exactly_zero_and_change_nothing(models, framework):
    """True = masked out (torch's polarity): the weight of a masked (query, key) pair is exactly 0,
    and any value at a padded key gives bit-identical outputs."""
    spec = _spec()
    inputs = _inputs(spec, "float64")
    model = models(framework, "float64")
    outputs = parity.forward(framework, model, inputs)
    masked = inputs["key_padding_mask"][:, None, :] | inputs["attn_mask"][None]  # (B, L, S)
    assert masked.any() and not masked.all(-1).any()
    assert np.all(outputs["weights"][masked] == 0.0) and np.all(outputs["weights"][~masked] > 0.0)
    np.testing.assert_allclose(outputs["weights"].sum(-1), 1.0, rtol=0, atol=1e-14)
    garbage = {**inputs, "key": inputs["key"].copy(), "value": inputs["value"].copy()}
    padded = inputs["key_padding_mask"]
    for name in ("key", "value"):
        garbage[name][padded] = np.random.default_rng(9).standard_normal((padded.sum(), spec.embed_dim)) * 1e3
    again = parity.forward(framework, model, garbage)
    for name in ("output", "weights"):
        assert np.array_equal(outputs[name], again[name]), name


def _fully_masked(spec, dtype):
    """Example 1 has every key padded; query row 2 may attend to no key."""
    inputs = _inputs(spec, dtype)
    inputs["key_padding_mask"][1] = True
    inputs["attn_mask"][2] = True
    return inputs


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fully_masked_rows_are_nan_as_in_torch(models, framework):
    """torch 2.13 (CPU) gives NaN to a query row with every key masked (softmax over -inf alone),
    in the output and the weights, on its fast path and its slow one: ours fill with -inf too and
    give NaN at exactly those places; every other entry is torch's."""
    spec = _spec()
    inputs = _fully_masked(spec, "float64")
    nan_rows = np.zeros((3, spec.seq_len), bool)
    nan_rows[1] = True
    nan_rows[:, 2] = True
    reference = _torch_reference(spec, _state(spec, "float64"))
    for grad in (True, False):
        expected_output, expected_weights = _run_reference(reference, inputs, grad)
        assert np.array_equal(np.isnan(expected_output).any(-1), nan_rows)
        assert np.array_equal(np.isnan(expected_weights).any(-1), nan_rows)
    outputs = parity.forward(framework, models(framework, "float64"), inputs)
    for name, expected in (("output", expected_output), ("weights", expected_weights)):
        assert np.array_equal(np.isnan(outputs[name]), np.isnan(expected)), name
        np.testing.assert_allclose(outputs[name][~nan_rows], expected[~nan_rows], rtol=0, atol=1e-13)


def test_torch_without_weights_gives_a_fully_masked_row_zero_attention():
    """Measured so the docstrings stay true: with need_weights=False (torch.nn.Transformer's layers
    ask that) and cross-attention, torch.nn.MultiheadAttention goes through
    F.scaled_dot_product_attention, whose fully masked row attends to nothing: the output is
    out_proj.bias, not NaN. parity's models always return the weights, so they keep the NaN."""
    spec = _spec()
    state = _state(spec, "float64")
    inputs = _fully_masked(spec, "float64")
    module = _torch_reference(spec, state)
    with torch.no_grad():
        output, weights = module(*(torch.from_numpy(inputs[n]) for n in ("query", "key", "value")),
                                 key_padding_mask=torch.from_numpy(inputs["key_padding_mask"]),
                                 attn_mask=torch.from_numpy(inputs["attn_mask"]), need_weights=False)
    assert weights is None and not torch.isnan(output).any()
    np.testing.assert_array_equal(output[1].numpy(), np.broadcast_to(state["out_proj.bias"], output[1].shape))
    np.testing.assert_array_equal(output[:, 2].numpy(), np.broadcast_to(state["out_proj.bias"], output[:, 2].shape))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_value_without_key_and_a_self_attention_padding_mismatch_are_refused(models, framework):
    spec = _spec()
    inputs = _inputs(spec, "float32")
    model = models(framework, "float32")
    with pytest.raises(ValueError, match=r"got `value` without `key`"):
        parity.forward(framework, model, {"query": inputs["query"], "value": inputs["value"]})
    with pytest.raises(ValueError, match=r"key_padding_mask has 5 key positions, the keys have 4"):
        parity.forward(framework, model, {"query": inputs["query"], "key_padding_mask": inputs["key_padding_mask"]})


def test_bad_inputs_name_the_input_and_the_expectation():
    spec = _spec()
    inputs = _inputs(spec, "float32")
    model = parity.build("torch", spec)
    with pytest.raises(parity.InputError,
                       match=r"attn_mask'\]: expected shape \('L', 'S'\) with L=4 S=5, got \(4, 6\)"):
        parity.forward("torch", model, {**inputs, "attn_mask": np.zeros((4, 6), bool)})
    with pytest.raises(parity.InputError, match=r"key_padding_mask'\]: expected a bool mask .*got int64"):
        parity.forward("torch", model, {**inputs, "key_padding_mask": inputs["key_padding_mask"].astype(np.int64)})
    with pytest.raises(parity.InputError, match=r"query'\]: expected shape \('B', 'L', 8\)"):
        parity.forward("torch", model, {"query": inputs["query"][..., :7]})


# ---------------------------------------------------------------------------- training mode


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_attention_dropout_drops_weights_at_rate_p_and_rescales_the_rest(framework):
    """In training, dropout acts on the attention weights after the softmax, and the returned
    weights are the dropped ones (torch's): with one head, each is 0 with probability p or its
    eval value / (1 - p)."""
    p = 0.5
    spec = parity.spec("mha", "tiny", num_heads=1, dropout=p, seq_len=32, source_len=32)
    state = _state(spec, "float64")
    inputs = _inputs(spec, "float64", padding=False, attn=False, batch=4)
    model = parity.build(framework, spec, state)
    expected = parity.forward(framework, model, inputs)["weights"]
    weights = parity.forward(framework, model, inputs, train=True, rng=5)["weights"]
    kept = weights != 0
    assert 0.45 < 1 - kept.mean() < 0.55
    np.testing.assert_allclose(weights[kept], expected[kept] / (1 - p), rtol=1e-13)


# ---------------------------------------------------------------------------- FLOPs


def test_flop_count_matches_torch_counter_with_every_input():
    """parity.flops (in_proj's thirds over L queries and S keys, scores and context in
    `activation_matmuls`) against torch's FlopCounterMode, on cross-attention with both masks."""
    from torch.utils.flop_counter import FlopCounterMode

    from pytorch_impl.api import loss_function
    from pytorch_impl.models import MODELS

    spec = _spec()
    inputs, targets = parity.example_batch(spec, 3)
    model = MODELS["mha"](spec, torch.float32).train()
    tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**tensors)
    assert counter.get_total_flops() == forward_flops(spec, 3)
    with FlopCounterMode(display=False) as counter:
        loss_function("mse", "float32")(model(**tensors)["output"], torch.from_numpy(targets)).backward()
    assert counter.get_total_flops() == train_step_flops(spec, 3)


# ---------------------------------------------------------------------------- native layers


def _uniform_attention_output(spec, state, value):
    """What a query row attending to every key with weight 1/S gives (a large finite fill's answer
    to a fully masked row): out_proj of the mean projected value. value (S, E) -> (E,)"""
    E = spec.embed_dim
    values = value @ state["in_proj_weight"][2 * E:].T + state["in_proj_bias"][2 * E:]  # (S, E)
    return values.mean(0) @ state["out_proj.weight"].T + state["out_proj.bias"]


def _split_args(spec, state):
    return (state["in_proj_weight"], state.get("in_proj_bias"), state["out_proj.weight"], state.get("out_proj.bias"),
            spec.num_heads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_multi_head_attention_reproduces_torch_given_split_weights(dtype):
    """keras.layers.MultiHeadAttention holds the packed projection as three (E, H, D) kernels; given
    keras_native_mha's split and the masks inverted (its attention_mask True = attend), it computes
    torch's function. A fully masked row is where it differs: Keras fills with -1e9, then (when the
    scores are returned) zeroes that row's weights, so the output is out_proj's bias; without the
    scores it runs ops.dot_product_attention, whose row is uniform over the keys. torch: NaN."""
    import keras

    spec = _spec()
    state = _state(spec, dtype)
    inputs = _inputs(spec, dtype)
    expected_output, expected_weights = _run_reference(_torch_reference(spec, state), inputs)
    layer = keras.layers.MultiHeadAttention(spec.num_heads, spec.head_dim, value_dim=spec.head_dim, dtype=dtype)
    attend = ~(inputs["key_padding_mask"][:, None, :] | inputs["attn_mask"][None])  # (B, L, S), True = attend
    layer(inputs["query"], inputs["value"], key=inputs["key"], attention_mask=attend)
    layer.set_weights(layouts.keras_native_mha(*_split_args(spec, state)))
    output, scores = layer(inputs["query"], inputs["value"], key=inputs["key"], attention_mask=attend,
                           return_attention_scores=True)
    _assert_close(np.asarray(output), expected_output, dtype, "output")
    _assert_close(np.asarray(scores).mean(1), expected_weights, dtype, "weights averaged over the heads")

    full = _fully_masked(spec, dtype)
    attend = ~(full["key_padding_mask"][:, None, :] | full["attn_mask"][None])
    output, scores = (np.asarray(x) for x in layer(full["query"], full["value"], key=full["key"],
                                                   attention_mask=attend, return_attention_scores=True))
    assert np.all(scores[1] == 0) and np.all(scores[:, :, 2] == 0)
    np.testing.assert_allclose(output[1], np.broadcast_to(state["out_proj.bias"], output[1].shape), rtol=1e-6)
    output = np.asarray(layer(full["query"], full["value"], key=full["key"], attention_mask=attend))
    uniform = _uniform_attention_output(spec, state, full["value"][1])
    np.testing.assert_allclose(output[1], np.broadcast_to(uniform, output[1].shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flax_multi_head_attention_reproduces_torch_given_split_weights(dtype):
    """nnx.MultiHeadAttention holds three LinearGeneral kernels (E, H, D); given flax_native_mha's
    split and the mask inverted (True = attend, shaped (B, 1, L, S)), it computes torch's function.
    Two differences measured: its default path, jax.nn.dot_product_attention, always takes the
    softmax in float32 ("always carried out in fp32"), so in float64 it is float32-accurate
    (~2e-8 here, against 1e-12 wanted; with sow_weights=True it runs its own float64 softmax); and
    it fills masked scores with finfo.min, so a fully masked row is uniform, not torch's NaN."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    spec = _spec()
    state = _state(spec, dtype)
    inputs = _inputs(spec, dtype)
    expected_output, expected_weights = _run_reference(_torch_reference(spec, state), inputs)
    full = _fully_masked(spec, dtype)
    with jax.enable_x64(dtype == "float64"):
        layer = nnx.MultiHeadAttention(spec.num_heads, spec.embed_dim, spec.embed_dim, spec.embed_dim, decode=False,
                                       dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0))
        for path, value in layouts.flax_native_mha(*_split_args(spec, state)).items():
            module, leaf = path.split(".")
            getattr(getattr(layer, module), leaf)[...] = jnp.asarray(value)

        def run(x, sow_weights=False):
            attend = ~(x["key_padding_mask"][:, None, :] | x["attn_mask"][None])[:, None]  # (B, 1, L, S)
            args = (*(jnp.asarray(x[n]) for n in ("query", "key", "value")),)
            if not sow_weights:
                return np.asarray(layer(*args, mask=jnp.asarray(attend)))
            output, sown = nnx.capture(layer, nnx.Intermediate)(*args, mask=jnp.asarray(attend), sow_weights=True)
            return np.asarray(output), np.asarray(sown["attention_weights"][0])  # (B, H, L, S)

        default, (own_softmax, weights), full_output = run(inputs), run(inputs, sow_weights=True), run(full)
    _assert_close(own_softmax, expected_output, dtype, "output (sow_weights=True)")
    _assert_close(weights.mean(1), expected_weights, dtype, "sown weights averaged over the heads")
    max_rel = tolerances.errors(default, expected_output)[1]
    if dtype == "float64":
        assert 1e-10 < max_rel < 1e-6, f"jax.nn.dot_product_attention's float32 softmax: {max_rel:.2e}"
    else:
        assert max_rel <= tolerances.FORWARD[dtype].rtol
    uniform = _uniform_attention_output(spec, state, full["value"][1])
    np.testing.assert_allclose(full_output[1], np.broadcast_to(uniform, full_output[1].shape), rtol=1e-5, atol=1e-6)


def test_native_splits_put_head_h_on_features_h_times_d():
    """The split is torch's head layout: head h of a projection is its features h*D .. h*D + D - 1."""
    spec = _spec()
    state = _state(spec, "float64")
    split = layouts.flax_native_mha(*_split_args(spec, state))
    E, D = spec.embed_dim, spec.head_dim
    for i, name in enumerate(("query", "key", "value")):
        assert split[f"{name}.kernel"].shape == (E, spec.num_heads, D)
        for h in range(spec.num_heads):
            rows = slice(i * E + h * D, i * E + (h + 1) * D)
            np.testing.assert_array_equal(split[f"{name}.kernel"][:, h], state["in_proj_weight"][rows].T)
            np.testing.assert_array_equal(split[f"{name}.bias"][h], state["in_proj_bias"][rows])
    np.testing.assert_array_equal(split["out.kernel"].reshape(E, E), state["out_proj.weight"].T)
    keras_weights = layouts.keras_native_mha(*_split_args(spec, state))
    assert [w.shape for w in keras_weights] == [(E, 2, D), (2, D)] * 3 + [(2, D, E), (E,)]
    no_bias = _spec(bias=False)
    assert len(layouts.keras_native_mha(*_split_args(no_bias, _state(no_bias, "float64")))) == 4
    assert math.isclose(spec.head_dim * spec.num_heads, E)
