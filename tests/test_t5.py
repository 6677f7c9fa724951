"""T5 against Hugging Face transformers itself: T5ForConditionalGeneration's state dict (its
`encoder.embed_tokens`, `decoder.embed_tokens` and tied `lm_head` aliases of `shared` included)
loads unchanged in all three frameworks, which reproduce transformers' logits (tied and untied
heads, ReLU and gated-GELU, padding masks) and its gradients; the pitfalls each have a test here:
the relative position buckets (full tables to distance 600, and the float formula that XLA rounds
the other way), transformers' float64 T5 whose norm is float32, the RMS norm the native layers
compute, GELU's tanh approximation of "gated-gelu", transformers 5.24's always-tied head, the
finite mask fill and fully masked rows."""
import contextlib
import math

import numpy as np
import pytest

import parity
from parity import tolerances
from parity.tolerances import relative_error
from parity.flops import forward_flops, train_step_flops
from parity.frameworks import impl_module
from parity.specs.t5 import relative_position_bucket_float32

from hf_models import T5_FIELDS, hf_config, hf_model, hf_state

FRAMEWORKS = parity.FRAMEWORKS
DTYPES = ["float32", "float64"]
# (preset, overrides) checked against transformers.
VARIANTS = {
    "tiny": ("tiny", {}),  # t5-small's kind: ReLU, tied and scaled head
    "v1.1": ("tiny-v1.1", {}),  # T5 v1.1's kind: gated-gelu, untied unscaled head, 3 decoder blocks
    # what transformers 5.24 builds from a v1.1 config: its head tied (one tensor) yet unscaled
    "tied-unscaled": ("tiny", {"feed_forward_proj": "gated-gelu", "scale_decoder_outputs": False}),
}


def case_spec(variant):
    """The spec of a case (conftest's `cases` and `models` fixtures)."""
    preset, overrides = VARIANTS[variant]
    return parity.spec("t5", preset, **overrides)


@contextlib.contextmanager
def float64_norm(transformers, dtype):
    """transformers' T5LayerNorm computes mean(x^2) in float32 even in a float64 model (a downcast):
    within this context, in max(dtype, float32), as parity does, so float64 can be compared at 1e-12
    (test_transformers_float64_t5_norm_is_float32 keeps the unpatched measurement)."""
    import torch

    cls = transformers.models.t5.modeling_t5.T5LayerNorm
    original = cls.forward

    def forward(self, hidden_states):
        variance = hidden_states.to(torch.promote_types(hidden_states.dtype, torch.float32)).pow(2).mean(
            -1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    if dtype == "float64":
        cls.forward = forward
    try:
        yield
    finally:
        cls.forward = original


def hf_logits(transformers, model, inputs, dtype):
    import torch

    with torch.no_grad(), float64_norm(transformers, dtype):
        return model(**{name: torch.from_numpy(value) for name, value in inputs.items()}).logits.numpy()


def hf_loss_and_grads(transformers, model, inputs, targets, dtype):
    """The spec's loss on transformers' logits (cross-entropy over every position) and the gradient
    of every parameter by canonical name: `shared`'s sums the encoder's and decoder's embeddings'
    and a tied head's (named_parameters() lists the tied tensor once)."""
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    with float64_norm(transformers, dtype):
        logits = model(**{name: torch.from_numpy(value) for name, value in inputs.items()}).logits
        loss = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(targets).flatten())
        loss.backward()
    return loss.item(), {name: p.grad.numpy().copy() for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------- spec and layout


def test_spec_from_a_t5_config_dict(transformers):
    """T5Config(...).to_dict() builds the spec (its derived keys ignored with a warning). A v1.1
    config comes out tied and unscaled: transformers 5.24's T5Config says tie_word_embeddings=True
    always and keeps the flag as scale_decoder_outputs (see test_transformers_5_ties_...)."""
    config = transformers.T5Config(vocab_size=99, d_model=24, d_kv=5, d_ff=40, num_layers=3, num_decoder_layers=1,
                                   num_heads=4, relative_attention_num_buckets=10, relative_attention_max_distance=20,
                                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, layer_norm_epsilon=1e-5)
    with pytest.warns(UserWarning, match=r"ignored Hugging Face config keys .*'dense_act_fn'.*'is_gated_act'"):
        spec = parity.spec("t5", "tiny", **config.to_dict())
    assert (spec.vocab_size, spec.d_model, spec.d_kv, spec.d_ff, spec.num_layers, spec.decoder_layers,
            spec.num_heads, spec.inner_dim) == (99, 24, 5, 40, 3, 1, 4, 20)
    assert (spec.relative_attention_num_buckets, spec.relative_attention_max_distance, spec.layer_norm_epsilon,
            spec.seq_len, spec.target_len) == (10, 20, 1e-5, 7, 5)
    assert (spec.dense_act_fn, spec.activation, spec.is_gated_act) == (config.dense_act_fn, "gelu_tanh", True)
    assert (spec.tie_word_embeddings, spec.scales_decoder_outputs) == (True, False) == (
        config.tie_word_embeddings, config.scale_decoder_outputs)
    assert "lm_head.weight" not in parity.layout(spec)


def test_t5_small_preset_is_google_t5_small(transformers):
    import torch

    spec = parity.spec("t5")
    config = transformers.T5Config()  # its defaults are google-t5/t5-small's
    assert spec.reference_preset == "t5-small" and (spec.seq_len, spec.target_len) == (512, 128)
    for name in T5_FIELDS[:-2]:
        assert getattr(spec, name) == getattr(config, name), name
    assert spec.decoder_layers == config.num_decoder_layers and spec.scales_decoder_outputs
    with torch.device("meta"):
        reference = transformers.T5ForConditionalGeneration(config)
    parameters = sum(int(np.prod(p.shape)) for p in spec.layout().values())
    assert parameters == reference.num_parameters() == 60_506_624  # `shared` counted once


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_layout_is_transformers_state_dict_less_the_aliases(cases, variant):
    """The names, shapes and order of transformers' state_dict(), whose extra entries are the
    aliases of `shared`: both stacks' embed_tokens, and lm_head where the head is tied. Only
    block 0 of each stack holds a relative_attention_bias; no buffers."""
    spec, model, state, _, _ = cases(variant, "float32")
    layout = parity.layout(spec)
    assert [n for n in state if n in layout] == list(layout)
    assert {n: v.shape for n, v in state.items() if n in layout} == {n: p.shape for n, p in layout.items()}
    assert set(state) - set(layout) == set(spec.tied_weights())
    expected = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
    assert set(spec.tied_weights()) == (expected | {"lm_head.weight"} if spec.tie_word_embeddings else expected)
    assert model.encoder.embed_tokens.weight is model.shared.weight is model.decoder.embed_tokens.weight
    assert (model.lm_head.weight is model.shared.weight) == spec.tie_word_embeddings
    assert sorted(n for n in layout if "relative_attention_bias" in n) == [
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    assert not list(model.buffers())


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_init_matches_transformers_init(transformers, factor):
    """transformers' _init_weights: shared N(0, f), q N(0, f (C D)^-0.5), k, v N(0, f C^-0.5),
    o N(0, f (H D)^-0.5), the bias table N(0, f C^-0.5), wi_* N(0, f C^-0.5), wo N(0, f F^-0.5),
    an untied lm_head N(0, f); norms f. Per tensor, the standard deviation of our init_state and
    of transformers' init agree (within the sampling error of 512+ draws). parity's
    "norm_weight" init is 1: the layout records f in meta["value"] (not yet applied by init_state)."""
    import torch

    spec = parity.spec("t5", "tiny-v1.1", vocab_size=128, d_model=64, d_kv=8, d_ff=96, num_heads=8,
                       relative_attention_num_buckets=64, relative_attention_max_distance=128,
                       initializer_factor=factor)
    state = parity.init_state(spec, 0)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(hf_config(transformers, spec))
    reference = {n: v.numpy() for n, v in model.state_dict().items()}
    C, D, H, F = spec.d_model, spec.d_kv, spec.num_heads, spec.d_ff
    expected_std = {"q": (C * D) ** -0.5, "k": C ** -0.5, "v": C ** -0.5, "o": (H * D) ** -0.5,
                    "relative_attention_bias": C ** -0.5, "wi_0": C ** -0.5, "wi_1": C ** -0.5, "wo": F ** -0.5,
                    "shared": 1.0, "lm_head": 1.0}
    for name, param in parity.layout(spec).items():
        ours, theirs = state[name], reference[name]
        if param.init == "normal":
            expected = factor * expected_std[name.split(".")[-2]]
            assert param.meta["std"] == pytest.approx(expected), name
            assert abs(theirs.std() / expected - 1) < 0.1 and abs(ours.std() / expected - 1) < 0.1, name
        else:
            assert param.init == "norm_weight" and param.meta["value"] == factor, name
            assert np.all(theirs == factor), name


def test_transformers_5_ties_the_head_of_an_untied_config_and_from_pretrained_unties(transformers, tmp_path):
    """transformers 5.24: T5Config(tie_word_embeddings=False) builds a model whose lm_head IS
    `shared` (only the d_model^-0.5 scaling goes): our spec tie_word_embeddings=True,
    scale_decoder_outputs=False. A checkpoint whose lm_head differs (a real T5 v1.1) is untied by
    from_pretrained: our tie_word_embeddings=False, and it reproduces that model. Loading such a
    checkpoint into a tied spec is refused (the alias differs), never silently dropped."""
    import torch

    spec = parity.spec("t5", "tiny-v1.1")
    config = hf_config(transformers, spec)
    assert config.tie_word_embeddings and not config.scale_decoder_outputs
    torch.manual_seed(1)
    model = transformers.T5ForConditionalGeneration(config)
    assert model.lm_head.weight is model.shared.weight
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn(spec.vocab_size, spec.d_model))
    model.save_pretrained(tmp_path)
    loaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert loaded.lm_head.weight is not loaded.shared.weight
    state = hf_state(loaded)
    assert not np.array_equal(state["lm_head.weight"], state["shared.weight"])
    inputs, _ = parity.example_batch(spec, 3)
    expected = hf_logits(transformers, loaded, inputs, "float32")
    ours = parity.forward("torch", parity.build("torch", spec, state), inputs)["logits"]
    assert relative_error(ours, expected) <= tolerances.FORWARD["float32"].rtol
    with pytest.raises(parity.StateError, match=r"lm_head.weight: expected the tied weight shared.weight"):
        parity.build("torch", spec.replace(tie_word_embeddings=True), state)


# ---------------------------------------------------------------------------- relative position buckets


def framework_buckets(framework, relative_position, bidirectional, num_buckets, thresholds, compiled):
    """`relative_position_bucket` of one framework's model file, eager or compiled (XLA for
    Keras' TensorFlow and for JAX: the compilers that rewrite float arithmetic)."""
    bucket = impl_module(framework, "models.t5").relative_position_bucket
    if framework == "torch":
        import torch

        return bucket(torch.from_numpy(relative_position), bidirectional, num_buckets, thresholds).numpy()
    if framework == "keras":
        import tensorflow as tf

        def fn(r):
            return bucket(r, bidirectional, num_buckets, thresholds)

        fn = tf.function(fn, jit_compile=True) if compiled else fn
        return np.asarray(fn(tf.constant(relative_position.astype(np.int32))))
    import jax
    import jax.numpy as jnp

    def fn(r):
        return bucket(r, bidirectional, num_buckets, thresholds)

    fn = jax.jit(fn) if compiled else fn
    return np.asarray(fn(jnp.asarray(relative_position.astype(np.int32))))


BUCKET_CONFIGS = [(8, 16), (32, 128), (6, 100), (128, 100), (20, 1000)]  # tiny, t5-small, XLA's flips


@pytest.mark.parametrize("num_buckets, max_distance", BUCKET_CONFIGS)
def test_bucket_tables_match_transformers_to_distance_600(transformers, num_buckets, max_distance):
    """Every (query, key) bucket of 600 x 600 positions, encoder (bidirectional) and decoder
    (causal), equals transformers' _relative_position_bucket: in each framework eager and under
    XLA, and in the spec's float32 numpy reference the thresholds come from."""
    import torch

    T5Attention = transformers.models.t5.modeling_t5.T5Attention
    spec = parity.spec("t5", "tiny", relative_attention_num_buckets=num_buckets,
                       relative_attention_max_distance=max_distance)
    positions = np.arange(600)
    relative_position = positions[None, :] - positions[:, None]  # (600, 600) key - query
    for bidirectional in (True, False):
        expected = T5Attention._relative_position_bucket(torch.from_numpy(relative_position), bidirectional,
                                                         num_buckets, max_distance).numpy()
        assert np.array_equal(relative_position_bucket_float32(relative_position, bidirectional, num_buckets,
                                                               max_distance), expected)
        thresholds = spec.relative_position_thresholds(bidirectional)
        for framework in FRAMEWORKS:
            for compiled in ((False,) if framework == "torch" else (False, True)):
                ours = framework_buckets(framework, relative_position, bidirectional, num_buckets, thresholds,
                                         compiled)
                assert np.array_equal(ours, expected), (framework, compiled, bidirectional)


def test_transformers_float_bucket_formula_rounds_otherwise_under_xla(transformers):
    """Why the buckets are integer comparisons: transformers' float32 formula, written as it is in
    JAX and compiled, puts distance 10 of (6 buckets, max distance 100) in bucket 1 where
    transformers has 2. log(10) / log(100) * 2 is exactly 1 in float32 IEEE arithmetic; XLA
    multiplies by the reciprocal of the constant log(100) instead of dividing, and lands just
    below 1 (measured; jax 0.10.2)."""
    import jax
    import jax.numpy as jnp
    import torch

    num_buckets, max_distance = 6, 100
    relative_position = np.arange(-12, 13)

    @jax.jit
    def float_formula(relative_position):  # transformers' _relative_position_bucket, bidirectional, in JAX
        half = num_buckets // 2
        buckets = (relative_position > 0).astype(relative_position.dtype) * half
        distance = jnp.abs(relative_position)
        max_exact = half // 2
        large = max_exact + (jnp.log(distance.astype(jnp.float32) / max_exact)
                             / math.log(max_distance / max_exact) * (half - max_exact)).astype(distance.dtype)
        return buckets + jnp.where(distance < max_exact, distance, jnp.minimum(large, half - 1))

    expected = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.from_numpy(relative_position), True, num_buckets, max_distance).numpy()
    jitted = np.asarray(float_formula(jnp.asarray(relative_position, jnp.int32)))
    assert relative_position[jitted != expected].tolist() == [-10, 10]
    assert (expected[relative_position == 10], jitted[relative_position == 10]) == (5, 4)
    spec = parity.spec("t5", "tiny", relative_attention_num_buckets=num_buckets,
                       relative_attention_max_distance=max_distance)
    assert spec.relative_position_thresholds(True) == (1, 10)  # distance 10 is bucket 2 (of a direction)


# ---------------------------------------------------------------------------- the norm


def test_transformers_float64_t5_norm_is_float32(cases, transformers):
    """transformers' T5LayerNorm computes mean(x^2) in float32 in a float64 model: its float64
    logits are float32-accurate (measured 1.1e-7 relative off the float64 computation on tiny),
    far outside the 1e-12 of a float64 check. parity's norm stays float64."""
    _, model, _, inputs, _ = cases("tiny", "float64")
    patched = hf_logits(transformers, model, inputs, "float64")
    unpatched = hf_logits(transformers, model, inputs, "float32")  # the context patches float64 only
    assert 1e-12 < relative_error(unpatched, patched) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_native_rms_norms_are_t5_layer_norm(transformers, dtype):
    """torch.nn.RMSNorm, keras.layers.RMSNormalization and nnx.RMSNorm (each framework's
    T5LayerNorm) compute transformers' w * x / sqrt(mean(x^2) + eps): torch bit for bit in float32
    (measured), Keras and Flax within float32 rounding (Flax multiplies x by rsqrt(...) * w, the
    other association), and all three within float64 rounding of a float64 reference."""
    import torch

    spec = parity.spec("t5", "tiny", d_model=64, layer_norm_epsilon=1e-3)
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal((4, 5, 64))).astype(dtype)
    weight = rng.uniform(0.5, 1.5, 64).astype(dtype)
    reference = weight * (x / np.sqrt(np.mean(x.astype(np.float64) ** 2, -1, keepdims=True) + 1e-3))
    hf = transformers.models.t5.modeling_t5.T5LayerNorm(64, eps=1e-3).to(getattr(torch, dtype))
    with torch.no_grad():
        hf.weight.copy_(torch.from_numpy(weight))
        theirs = hf(torch.from_numpy(x)).numpy()
    for framework in FRAMEWORKS:
        ours = norm_output(framework, spec, x, weight, dtype)
        assert ours.dtype == np.dtype(dtype)
        if dtype == "float32":
            assert relative_error(ours, theirs) <= (0 if framework == "torch" else 1e-6), framework
        else:
            assert relative_error(ours, reference) <= 1e-15, framework


def norm_output(framework, spec, x, weight, dtype):
    """One framework's T5LayerNorm of `spec` with `weight`, applied to x."""
    T5LayerNorm = impl_module(framework, "models.t5").T5LayerNorm
    if framework == "torch":
        import torch

        norm = T5LayerNorm(spec, getattr(torch, dtype))
        with torch.no_grad():
            norm.weight.copy_(torch.from_numpy(weight))
            return norm(torch.from_numpy(x)).numpy()
    if framework == "keras":
        norm = T5LayerNorm(spec, dtype)
        norm.build(x.shape)
        norm.scale.assign(weight)
        return np.asarray(norm(x))
    import jax
    import jax.numpy as jnp
    from flax import nnx

    with jax.enable_x64(dtype == "float64"):
        norm = T5LayerNorm(spec, jnp.dtype(dtype), rngs=nnx.Rngs(0))
        norm.scale[...] = jnp.asarray(weight)
        return np.asarray(norm(jnp.asarray(x)))


# ---------------------------------------------------------------------------- against transformers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reproduces_transformers_logits(transformers, cases, models, variant, framework, dtype):
    """transformers' state dict, unchanged (aliases included), loads; the logits match its eager
    attention with both padding masks, and without masks."""
    spec, model, _, inputs, _ = cases(variant, dtype)
    for mask in ("attention_mask", "decoder_attention_mask"):
        assert inputs[mask][0].all() and inputs[mask][1:].min() == 0
    ours = models(variant, framework, dtype)
    for given in (inputs, {n: inputs[n] for n in ("input_ids", "decoder_input_ids")}):
        logits = parity.forward(framework, ours, given)["logits"]
        assert logits.dtype == np.dtype(dtype) and logits.shape == (4, spec.target_len, spec.vocab_size)
        error = relative_error(logits, hf_logits(transformers, model, given, dtype))
        assert error <= tolerances.FORWARD[dtype].rtol, (sorted(given), error)


def test_gated_gelu_is_gelu_tanh_approximation(transformers, cases):
    """T5Config maps "gated-gelu" to "gelu_new", GELU's tanh approximation (a plain "gelu" is the
    exact erf): with the exact GELU in its place, transformers' logits move by far more than the
    tolerance, so the approximation is passed explicitly (jax.nn.gelu and keras.ops.gelu default
    to tanh, torch to exact)."""
    spec, model, _, inputs, _ = cases("v1.1", "float64")
    assert (model.config.dense_act_fn, spec.activation) == ("gelu_new", "gelu_tanh")
    exact = hf_model(transformers, spec, "float64")  # the same seed: the same weights
    for module in exact.modules():
        if isinstance(module, transformers.models.t5.modeling_t5.T5DenseGatedActDense):
            module.act = transformers.activations.ACT2FN["gelu"]
    assert relative_error(hf_logits(transformers, model, inputs, "float64"),
                          hf_logits(transformers, exact, inputs, "float64")) > 1e-6
    assert parity.spec("t5", "tiny", feed_forward_proj="gelu").activation == "gelu"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fully_masked_rows_attend_uniformly_like_transformers_eager(transformers, cases, models, framework):
    """The masks add finfo(dtype).min (finite): a query whose every key is masked (every position
    of an all-zero attention_mask row, in the encoder and in every cross-attention; the first
    positions of a left-padded decoder row) has all its scores at that minimum, so it attends
    uniformly and stays finite, as transformers' eager attention does."""
    spec, model, _, inputs, _ = cases("tiny", "float64")
    attention_mask = inputs["attention_mask"].copy()
    attention_mask[2] = 0
    decoder_attention_mask = inputs["decoder_attention_mask"].copy()
    decoder_attention_mask[1] = [0, 0, 1, 1, 1]
    given = {**inputs, "attention_mask": attention_mask, "decoder_attention_mask": decoder_attention_mask}
    ours = parity.forward(framework, models("tiny", framework, "float64"), given)["logits"]
    assert np.isfinite(ours).all()
    assert relative_error(ours, hf_logits(transformers, model, given, "float64")) <= tolerances.FORWARD["float64"].rtol


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_reproduces_transformers_default_sdpa_attention_on_padded_rows(transformers, cases, framework):
    """transformers' default attention ("sdpa": the position bias becomes the float mask, with
    finfo.min where masked) agrees with the eager additive fill under right padding."""
    spec, _, _, inputs, _ = cases("tiny", "float32")
    model = hf_model(transformers, spec, "float32", attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    ours = parity.forward(framework, parity.build(framework, spec, hf_state(model)), inputs)["logits"]
    assert relative_error(ours, hf_logits(transformers, model, inputs, "float32")) <= tolerances.FORWARD["float32"].rtol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("variant", ["tiny", "v1.1"])
def test_loss_and_gradients_match_transformers(transformers, cases, models, variant, framework, dtype):
    """The cross-entropy over every position and the gradient of every parameter, against
    transformers' loss.backward(): shared's gradient sums both embeddings' and a tied head's."""
    _, model, _, inputs, targets = cases(variant, dtype)
    expected_loss, expected = hf_loss_and_grads(transformers, model, inputs, targets, dtype)
    loss, grads = parity.loss_and_grads(framework, models(variant, framework, dtype), inputs, targets)
    assert relative_error(loss, expected_loss) <= tolerances.FORWARD[dtype].rtol
    assert set(grads) == set(expected)
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for name, grad in expected.items():
        assert relative_error(grads[name], grad, scale) <= tolerances.GRADIENT[dtype].rtol, name


@pytest.mark.slow
def test_t5_small_reproduces_transformers(transformers):
    """t5-small's sizes (60.5 M parameters), float32, batch 2 x 512 source and 128 target positions
    with padding: measured 8.4e-7 worst (Flax), Keras 5.3e-7; torch bit-exact."""
    spec = parity.spec("t5")
    model = hf_model(transformers, spec, "float32")
    state = hf_state(model)
    inputs, _ = parity.example_batch(spec, 2, 0, "float32")
    expected = hf_logits(transformers, model, inputs, "float32")
    del model
    for framework in FRAMEWORKS:
        ours = parity.forward(framework, parity.build(framework, spec, state), inputs)["logits"]
        assert relative_error(ours, expected) <= tolerances.FORWARD["float32"].rtol, framework


@pytest.mark.parametrize("variant", ["tiny", "v1.1"])
def test_flop_count_matches_torch_flop_counter(variant):
    """parity.flops' analytic count (the layout's `steps`, the attention matmuls and the tied head
    of activation_matmuls) against torch's FlopCounterMode, forward and train step, with every
    input given (tests/test_flops.py hands the model its main input only)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pytorch_impl.api import loss_function
    from pytorch_impl.models import MODELS

    spec = parity.spec("t5", VARIANTS[variant][0])
    inputs, targets = parity.example_batch(spec, 3)
    model = MODELS["t5"](spec, torch.float32).train()
    named = {name: torch.from_numpy(value) for name, value in inputs.items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**named)
    assert counter.get_total_flops() == forward_flops(spec, 3)
    with FlopCounterMode(display=False) as counter:
        loss_function(spec.loss, "float32")(model(**named)["logits"], torch.from_numpy(targets)).backward()
    assert counter.get_total_flops() == train_step_flops(spec, 3)


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bad_inputs_name_expected_and_given(models, cases, framework):
    spec, _, _, inputs, targets = cases("tiny", "float32")
    model = models("tiny", framework, "float32")
    for name in ("input_ids", "decoder_input_ids"):
        out_of_vocabulary = inputs[name].copy()
        out_of_vocabulary[0, 0] = spec.vocab_size
        with pytest.raises(parity.InputError, match=rf"t5 inputs\['{name}'\]: expected token ids \(the vocabulary\)"
                                                    rf".* in \[0, 64\), got values in \[\d+, 64\]"):
            parity.forward(framework, model, {**inputs, name: out_of_vocabulary})
    with pytest.raises(parity.InputError, match=r"t5 inputs\['attention_mask'\]: expected shape \('B', 'S'\) "
                                                r"with B=4 S=7, got \(4, 6\)"):
        parity.forward(framework, model, {**inputs, "attention_mask": inputs["attention_mask"][:, :6]})
    with pytest.raises(parity.InputError, match=r"t5 inputs\['decoder_attention_mask'\]: expected shape "
                                                r"\('B', 'T'\) with B=4 T=5, got \(4, 7\)"):
        parity.forward(framework, model, {**inputs, "decoder_attention_mask": inputs["attention_mask"]})
    with pytest.raises(parity.InputError, match=r"t5 inputs: expected a dict with the key\(s\) \['input_ids', "
                                                r"'decoder_input_ids'\] .*got keys \['input_ids', 'attention_mask'\] "
                                                r"\(missing \['decoder_input_ids'\]\)"):
        parity.forward(framework, model, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]})
    with pytest.raises(parity.InputError, match=r"t5 targets: expected shape \('B', 'T'\) with B=4 T=5, got \(4, 4\)"):
        parity.loss_and_grads(framework, model, inputs, targets[:, :4])
