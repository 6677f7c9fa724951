"""Encoder-decoders with attention (seq2seq_bahdanau, seq2seq_luong) against a numpy reference of
the equations in parity/specs/seq2seq.py, in every framework: teacher forcing, greedy decoding,
padding, the encode/decode_step halves a decoding loop drives, and bad inputs."""
import contextlib

import numpy as np
import pytest

import parity
from parity import decoding
from parity.errors import InputError

FRAMEWORKS = parity.FRAMEWORKS
NAMES = ["seq2seq_bahdanau", "seq2seq_luong"]
# Luong's "dot" score has no attention.score weight: checked too.
SPECS = {"bahdanau": ("seq2seq_bahdanau", {}), "luong-general": ("seq2seq_luong", {}),
         "luong-dot": ("seq2seq_luong", {"score": "dot"})}


# ---------------------------------------------------------------------------- numpy reference


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cell(kind, state, prefix, x, h, c):
    """One torch.nn GRU (r, z, n) or LSTM (i, f, g, o) step of the tensors `prefix`_*."""
    gi = state[f"{prefix[0]}.weight_ih_{prefix[1]}"] @ x + state[f"{prefix[0]}.bias_ih_{prefix[1]}"]
    gh = state[f"{prefix[0]}.weight_hh_{prefix[1]}"] @ h + state[f"{prefix[0]}.bias_hh_{prefix[1]}"]
    if kind == "gru":
        i_r, i_z, i_n = np.split(gi, 3)
        h_r, h_z, h_n = np.split(gh, 3)
        r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
        return (1 - z) * np.tanh(i_n + r * h_n) + z * h, None
    i, f, g, o = np.split(gi + gh, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def _encoder(kind, state, x, layers, directions, hidden):
    """The encoder over one unpadded source (L, E): outputs (L, D*H), final (h, c) per layer/direction."""
    finals = []
    for layer in range(layers):
        outputs = []
        for suffix in ("", "_reverse")[:directions]:
            h, c, out = np.zeros(hidden), np.zeros(hidden), []
            for x_t in (x[::-1] if suffix else x):
                h, c = _cell(kind, state, ("encoder", f"l{layer}{suffix}"), x_t, h, c)
                out.append(h)
            outputs.append(np.array(out[::-1] if suffix else out))
            finals.append((h, c))
        x = np.concatenate(outputs, axis=-1)
    return x, finals


def _softmax(e):
    e = np.exp(e - e.max())
    return e / e.sum()


def reference(spec, state, tokens, lengths, decoder_tokens):
    """Teacher-forced logits (B, T, V) and attention (B, T, S), one example at a time on its
    unpadded source, from the spec's equations."""
    s = {k: v.astype(np.float64) for k, v in state.items()}
    H = spec.hidden_size
    all_logits, all_attention = [], []
    for b in range(tokens.shape[0]):
        source = s["encoder_embedding.weight"][tokens[b, :lengths[b]]]  # (L, E)
        bahdanau = spec.architecture == "seq2seq_bahdanau"
        memory, finals = _encoder("gru" if bahdanau else "lstm", s, source, spec.num_layers,
                                  2 if bahdanau else 1, H)
        if bahdanau:
            dec = np.tanh(s["bridge.weight"] @ finals[-1][0] + s["bridge.bias"])  # s_0 from h<-_1 of the last layer
            keys = memory @ s["attention.key.weight"].T  # (L, A)
        else:
            hs, cs, htilde = [f[0] for f in finals], [f[1] for f in finals], np.zeros(H)
        logits, attention = [], []
        for y in decoder_tokens[b]:
            emb = s["decoder_embedding.weight"][y]
            if bahdanau:
                e = np.tanh(s["attention.query.weight"] @ dec + keys) @ s["attention.energy.weight"][0]
                alpha = _softmax(e)
                context = alpha @ memory
                dec, _ = _cell("gru", s, ("decoder", "l0"), np.concatenate([emb, context]), dec, None)
                logits.append(s["head.weight"] @ np.concatenate([dec, context]) + s["head.bias"])
            else:
                x = np.concatenate([emb, htilde])
                for layer in range(spec.num_layers):
                    hs[layer], cs[layer] = _cell("lstm", s, ("decoder", f"l{layer}"), x, hs[layer], cs[layer])
                    x = hs[layer]
                query = s["attention.score.weight"] @ x if spec.score == "general" else x
                alpha = _softmax(memory @ query)
                context = alpha @ memory
                htilde = np.tanh(s["attention.combine.weight"] @ np.concatenate([context, x]))
                logits.append(s["head.weight"] @ htilde + s["head.bias"])
            attention.append(np.pad(alpha, (0, tokens.shape[1] - lengths[b])))
        all_logits.append(logits)
        all_attention.append(attention)
    return np.array(all_logits), np.array(all_attention)


# ---------------------------------------------------------------------------- helpers


def _setup(key, dtype="float64", batch=4):
    name, overrides = SPECS[key]
    spec = parity.spec(name, "tiny", **overrides)
    state = parity.init_state(spec, 3, dtype)
    inputs, targets = parity.example_batch(spec, batch, 1, dtype)
    return spec, state, inputs, targets


@pytest.fixture(scope="module")
def models():
    """Built once per (spec, framework, dtype): tests only run them."""
    cache = {}

    def get(key, framework, dtype="float64"):
        if (key, framework, dtype) not in cache:
            spec, state, _, _ = _setup(key, dtype)
            cache[key, framework, dtype] = parity.build(framework, spec, state)
        return cache[key, framework, dtype]
    return get


def _native(framework, array):
    if framework == "torch":
        import torch
        return torch.from_numpy(array)
    if framework == "keras":
        import keras
        return keras.ops.convert_to_tensor(array)
    import jax.numpy as jnp
    return jnp.asarray(array)


def _precision(framework, dtype):
    """JAX computes float64 only inside jax.enable_x64 (as its adapter does)."""
    if framework == "jax" and dtype == "float64":
        import jax
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _numpy(value):
    value = value.detach() if hasattr(value, "detach") else value
    return np.asarray(value)


# ---------------------------------------------------------------------------- the equations


@pytest.mark.parametrize("key", list(SPECS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_teacher_forced_outputs_equal_the_numpy_reference(models, framework, key):
    spec, state, inputs, _ = _setup(key)
    assert inputs["lengths"].min() < spec.source_len  # padding exercised beside a full row
    expected_logits, expected_attention = reference(spec, state, inputs["tokens"], inputs["lengths"],
                                                    inputs["decoder_tokens"])
    outputs = parity.forward(framework, models(key, framework), inputs)
    np.testing.assert_allclose(outputs["logits"], expected_logits, rtol=0, atol=1e-12)
    np.testing.assert_allclose(outputs["attention"], expected_attention, rtol=0, atol=1e-13)


@pytest.mark.parametrize("key", list(SPECS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_attention_rows_sum_to_one_and_are_exactly_zero_on_padding(models, framework, key):
    spec, _, inputs, _ = _setup(key)
    for dtype in ("float64", "float32"):
        model = models(key, framework, dtype)
        attention = parity.forward(framework, model, inputs)["attention"]  # (B, T, S)
        assert attention.shape == (4, spec.target_len, spec.source_len)
        padded = np.arange(spec.source_len)[None, None, :] >= inputs["lengths"][:, None, None]
        assert np.all(attention[np.broadcast_to(padded, attention.shape)] == 0.0)  # exactly, not ~1e-9
        np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-6 if dtype == "float32" else 1e-14)


@pytest.mark.parametrize("key", ["bahdanau", "luong-general"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_padded_source_steps_change_nothing(models, framework, key):
    """Garbage ids at the padded positions give bit-identical outputs, and every example equals
    itself run alone on its unpadded source."""
    spec, _, inputs, _ = _setup(key)
    model = models(key, framework)
    outputs = parity.forward(framework, model, inputs)
    garbage = dict(inputs, tokens=inputs["tokens"].copy())
    padded = np.arange(spec.source_len)[None, :] >= inputs["lengths"][:, None]
    garbage["tokens"][padded] = np.random.default_rng(5).integers(0, spec.source_vocab_size, padded.sum())
    again = parity.forward(framework, model, garbage)
    for name in ("logits", "attention"):
        assert np.array_equal(outputs[name], again[name]), name
    for b in np.flatnonzero(inputs["lengths"] < spec.source_len):
        n = inputs["lengths"][b]
        alone = parity.forward(framework, model, {"tokens": inputs["tokens"][b:b + 1, :n],
                                                  "decoder_tokens": inputs["decoder_tokens"][b:b + 1]})
        np.testing.assert_allclose(alone["logits"][0], outputs["logits"][b], rtol=0, atol=1e-13)
        np.testing.assert_allclose(alone["attention"][0], outputs["attention"][b, :, :n], rtol=0, atol=1e-14)


@pytest.mark.parametrize("key", ["bahdanau", "luong-general"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_greedy_decoding_equals_teacher_forcing_on_its_own_argmax(models, framework, key):
    spec, _, inputs, _ = _setup(key)
    model = models(key, framework)
    source = {"tokens": inputs["tokens"], "lengths": inputs["lengths"]}
    greedy = parity.forward(framework, model, source)  # no decoder_tokens: target_len greedy steps from BOS
    assert greedy["logits"].shape == (4, spec.target_len, spec.target_vocab_size)
    chosen = greedy["logits"].argmax(-1)
    fed = np.concatenate([np.full((4, 1), spec.BOS), chosen[:, :-1]], axis=1)
    forced = parity.forward(framework, model, {**source, "decoder_tokens": fed})
    np.testing.assert_allclose(forced["logits"], greedy["logits"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(forced["attention"], greedy["attention"], rtol=0, atol=1e-14)
    # Teacher forcing reads any number of steps, not only target_len.
    longer = parity.forward(framework, model, {**source, "decoder_tokens": np.concatenate([fed, fed], axis=1)})
    assert longer["logits"].shape == (4, 2 * spec.target_len, spec.target_vocab_size)


@pytest.mark.parametrize("key", list(SPECS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_encode_and_decode_step_loop_equals_forward_and_drives_parity_decoding(models, framework, key):
    """The two halves a decoding loop uses, on native tensors: the state is a tuple with the
    batch first everywhere, and parity.decoding.greedy over decode_step picks forward's argmax."""
    spec, _, inputs, _ = _setup(key)
    model = models(key, framework)
    outputs = parity.forward(framework, model, inputs)
    with _precision(framework, "float64"):
        memory, mask, state = model.encode(_native(framework, inputs["tokens"]), _native(framework, inputs["lengths"]))
        assert _numpy(memory).shape == (4, spec.source_len, spec.memory_size)
        assert np.array_equal(_numpy(mask), np.arange(spec.source_len)[None] < inputs["lengths"][:, None])
        assert isinstance(state, tuple) and all(_numpy(s).shape[0] == 4 for s in state)
        initial = tuple(_numpy(s) for s in state)
        logits, attention = [], []
        for t in range(spec.target_len):
            step_logits, weights, state = model.decode_step(
                _native(framework, inputs["decoder_tokens"][:, t]), state, memory, mask)
            logits.append(_numpy(step_logits))
            attention.append(_numpy(weights))
        np.testing.assert_allclose(np.stack(logits, 1), outputs["logits"], rtol=0, atol=1e-13)
        np.testing.assert_allclose(np.stack(attention, 1), outputs["attention"], rtol=0, atol=1e-14)

        def step(ids, state):  # numpy in and out, as parity.decoding's contract says
            logits, weights, state = model.decode_step(_native(framework, ids), tuple(
                _native(framework, s) for s in state), memory, mask)
            return _numpy(logits), _numpy(weights), tuple(_numpy(s) for s in state)

        result = decoding.greedy(step, initial, 4, spec.target_len)
    chosen = parity.forward(framework, model, {"tokens": inputs["tokens"], "lengths": inputs["lengths"]})[
        "logits"].argmax(-1)
    for b, sequence in enumerate(result.sequences):
        assert list(sequence) == list(chosen[b, :len(sequence)])
        if result.finished[b]:
            assert chosen[b, len(sequence)] == spec.EOS


# ---------------------------------------------------------------------------- inputs, export, FLOPs


def test_bad_inputs_are_clear_errors(models):
    spec, _, inputs, targets = _setup("bahdanau")
    model = models("bahdanau", "torch")
    cases = [
        (dict(inputs, decoder_tokens=np.where(inputs["decoder_tokens"] == 3, 8, inputs["decoder_tokens"])),
         r"inputs\['decoder_tokens'\]: expected token ids \(the target vocabulary\) in \[0, 8\), got values in \[1, 8\]"),
        (dict(inputs, tokens=np.where(inputs["tokens"] == 3, 7, inputs["tokens"])),
         r"inputs\['tokens'\]: expected token ids \(the source vocabulary\) in \[0, 7\), got values in \[0, 7\]"),
        (dict(inputs, lengths=np.array([5, 0, 2, 1])), r"expected every length in \[1, 5\].*got values in \[0, 5\]"),
        (dict(inputs, lengths=np.array([6, 1, 2, 1])), r"expected every length in \[1, 5\].*got values in \[1, 6\]"),
        (dict(inputs, tokens=inputs["tokens"][0]), r"inputs\['tokens'\]: expected integer token ids of shape "
                                                   r"\('B', 'T'\), got int64 \(5,\)"),
        (dict(inputs, decoder_tokens=inputs["decoder_tokens"][:, 0]),
         r"inputs\['decoder_tokens'\]: expected integer token ids of shape \(4, 'T'\), got int64 \(4,\)"),
        (dict(inputs, decoder_tokens=inputs["decoder_tokens"][:3]),
         r"inputs\['decoder_tokens'\]: expected integer token ids of shape \(4, 'T'\), got int64 \(3, 4\)"),
        (dict(inputs, decoder_tokens=inputs["decoder_tokens"].astype(np.float64)),
         r"inputs\['decoder_tokens'\]: expected integer token ids \(the target vocabulary\) of shape \(4, 4\), "
         r"got float64 \(4, 4\)"),
        (dict(inputs, h_0=np.zeros((2, 4, 6))), r"expected a dict with the key 'tokens' and optionally "
                                                r"\['lengths', 'decoder_tokens'\]"),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            parity.forward("torch", model, bad)
    with pytest.raises(InputError, match=r"targets: expected integer class indices of shape \(4, 4\), got int64 \(4, 3\)"):
        parity.loss_and_grads("torch", model, inputs, targets[:, :3])
    with pytest.raises(InputError, match=r"targets: expected class indices in \[0, 8\), got values in \[2, 9\]"):
        parity.loss_and_grads("torch", model, inputs, np.where(targets == 3, 9, targets))
    greedy = {"tokens": inputs["tokens"], "lengths": inputs["lengths"]}  # without decoder_tokens: target_len steps
    with pytest.raises(InputError, match=r"shape \(4, 4\)"):
        parity.loss_and_grads("torch", model, greedy, np.concatenate([targets, targets], axis=1))
    assert np.isfinite(parity.loss_and_grads("torch", model, greedy, targets)[0])


@pytest.mark.parametrize("field, value, expected", [("target_vocab_size", 2, r"an int > 2 \(PAD, BOS, EOS are ids 0-2\)"),
                                                    ("score", "concat", r"one of \['general', 'dot'\]"),
                                                    ("source_len", 0, "a positive int")])
def test_invalid_spec_fields_name_field_expected_and_given(field, value, expected):
    name = "seq2seq_bahdanau" if field != "score" else "seq2seq_luong"
    with pytest.raises(parity.SpecError, match=rf"{name}\.{field}: expected {expected}, got {value!r}"):
        parity.spec(name, "tiny", **{field: value})


@pytest.mark.parametrize("name", NAMES)
def test_export_refuses_encoder_decoders_naming_the_limitation(name, tmp_path):
    from parity.export import export, exportable_architectures

    with pytest.raises(InputError, match=rf"export: {name} cannot be exported: encoder-decoder models .*"
                                         r"Python loop of decode steps.*`encode` and `decode_step`"):
        export("torch", parity.spec(name, "tiny"), tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())
    assert name not in exportable_architectures() and "char_lm" in exportable_architectures()


def test_reference_presets_are_the_papers_sizes_and_flops_count_the_attention():
    from parity.flops import forward_flops

    rnnsearch = parity.spec("seq2seq_bahdanau")
    S, T, H, A, E, V = 50, 50, 1000, 1000, 620, 30000
    macs = (2 * S * 3 * H * (E + H)  # bidirectional encoder GRU
            + H * H + S * 2 * H * A  # bridge, keys U_a h_j once per source
            + T * (H * A + S * A + S * 2 * H)  # per step: W_a s, v^T tanh(.), the context
            + T * 3 * H * (E + 2 * H + H)  # decoder GRU
            + T * V * 3 * H)  # head
    assert forward_flops(rnnsearch) == 2 * macs
    luong = parity.spec("seq2seq_luong")
    assert (luong.num_layers, luong.hidden_size, luong.embedding_dim, luong.target_vocab_size, luong.score) == (
        4, 1000, 1000, 50000, "general")
    assert parity.spec("seq2seq_luong", score="dot").layout().keys() == luong.layout().keys() - {"attention.score.weight"}


# ---------------------------------------------------------------------------- Keras's own attention layers


def test_keras_additive_attention_is_this_math_but_holds_v_as_a_vector_and_fills_masks_with_minus_1e9():
    """keras.layers.AdditiveAttention(use_scale=True) computes Bahdanau's sum_a v_a tanh(q_a + k_a)
    on projections made outside it, with v as a (A,) `scale` where the canonical `attention.energy`
    is torch's (1, A) Linear. Its mask subtracts 1e9 instead of -inf: the padded weights still
    underflow to exactly 0, but a row with no valid position silently attends as if nothing were
    masked (every score shifted by the same 1e9, the softmax unchanged), where this project's masked_softmax gives NaN (lengths >= 1 is checked instead)."""
    import keras

    from keras_impl.models.seq2seq import masked_softmax

    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 5))
    scale = rng.standard_normal(3)
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    layer = keras.layers.AdditiveAttention(use_scale=True, dtype="float64")
    context, weights = layer([q, v, k], mask=[None, mask], return_attention_scores=True)
    layer.scale.assign(scale)
    context, weights = layer([q, v, k], mask=[None, mask], return_attention_scores=True)
    expected = np.asarray(masked_softmax(np.tanh(q + k) @ scale, mask))  # (2, 4)
    np.testing.assert_allclose(np.asarray(weights)[:, 0], expected, rtol=0, atol=1e-15)
    assert np.all(np.asarray(weights)[0, 0, 2:] == 0.0)
    assert tuple(layer.scale.shape) == (3,)
    nothing = np.zeros((2, 4), bool)
    _, unmasked = layer([q, v, k], mask=[None, nothing], return_attention_scores=True)
    everything = np.asarray(masked_softmax(np.tanh(q + k) @ scale, ~nothing))
    np.testing.assert_allclose(np.asarray(unmasked)[:, 0], everything, rtol=0, atol=1e-6)  # as if nothing were masked
    assert np.all(np.isnan(np.asarray(masked_softmax(np.tanh(q + k) @ scale, nothing))))


@pytest.mark.parametrize("key", ["bahdanau", "luong-general"])
def test_keras_decoder_cells_step_inside_a_tf_function(key):
    """Recurrent.step calls Keras cells directly; inside a tf.function a cell's name becomes a root
    name scope, and the private cell class's auto name ("_gru_cell") is not a valid one ("'_gru_cell'
    is not a valid root scope name", a ValueError): the cells are named after their attributes."""
    import tensorflow as tf

    spec, state, inputs, _ = _setup(key, "float32")
    model = parity.build("keras", spec, state)
    eager = parity.forward("keras", model, inputs)
    compiled = tf.function(lambda tokens, lengths, decoder_tokens: model(tokens, lengths=lengths,
                                                                          decoder_tokens=decoder_tokens))
    outputs = compiled(*(tf.constant(inputs[name]) for name in ("tokens", "lengths", "decoder_tokens")))
    for name in ("logits", "attention"):
        np.testing.assert_allclose(np.asarray(outputs[name]), eager[name], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- parity.decoding.decode


def _decode_setup(name, dtype):
    """A tiny model whose head is scaled up (x8): random tiny weights otherwise give nearly flat
    logits and the same trivial hypothesis everywhere; these give finished and cut, long and short
    hypotheses, and greedy and beam results that differ."""
    spec = parity.spec(name, "tiny")
    state = parity.init_state(spec, 3, dtype)
    state["head.weight"] = state["head.weight"] * 8
    inputs, _ = parity.example_batch(spec, 8, 1, dtype)
    return spec, state, {"tokens": inputs["tokens"], "lengths": inputs["lengths"]}


@pytest.fixture(scope="module")
def decoded():
    """decode's greedy and beam (K=3) results per (name, framework, dtype), from one state."""
    cache = {}

    def get(name, framework, dtype):
        if (name, framework, dtype) not in cache:
            spec, state, source = _decode_setup(name, dtype)
            model = parity.build(framework, spec, state)
            cache[name, framework, dtype] = (
                model, decoding.decode(framework, model, source, max_len=6),
                decoding.decode(framework, model, source, beam_size=3, max_len=6))
        return cache[name, framework, dtype]
    return get


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_decode_greedy_equals_the_models_own_greedy_forward(decoded, framework, name):
    spec, _, source = _decode_setup(name, "float64")
    model, _, _ = decoded(name, framework, "float64")
    result = decoding.decode(framework, model, source)  # max_len: the spec's target_len, as forward's
    chosen = parity.forward(framework, model, source)["logits"].argmax(-1)  # (B, target_len)
    for b, sequence in enumerate(result.sequences):
        ids = list(chosen[b])
        expected = ids[:ids.index(spec.EOS)] if spec.EOS in ids else ids
        assert list(sequence) == expected
        assert result.finished[b] == (spec.EOS in ids)
    assert len(result.attention[0]) == len(result.sequences[0]) + result.finished[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_decode_gives_the_same_hypotheses_in_every_framework(decoded, name, dtype):
    """Greedy and beam search from one canonical state: the same ids in every framework, scores
    and attention within rounding."""
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    _, torch_greedy, torch_beam = decoded(name, "torch", dtype)
    assert len({tuple(s) for s in torch_beam.sequences}) > 1  # not one trivial hypothesis everywhere
    assert any(not np.array_equal(g, b) for g, b in zip(torch_greedy.sequences, torch_beam.sequences))
    for framework in FRAMEWORKS[1:]:
        _, greedy, beam = decoded(name, framework, dtype)
        for expected, got in ((torch_greedy, greedy), (torch_beam, beam)):
            assert [list(s) for s in got.sequences] == [list(s) for s in expected.sequences], framework
            assert np.array_equal(got.finished, expected.finished)
            np.testing.assert_allclose(got.scores, expected.scores, rtol=tolerance, atol=tolerance)
            np.testing.assert_allclose(got.normalized_scores, expected.normalized_scores, rtol=tolerance,
                                       atol=tolerance)
            for a, b in zip(got.attention, expected.attention):
                np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_decode_with_a_length_penalty_runs_beam_search_and_lengths_are_optional(decoded):
    spec, _, source = _decode_setup("seq2seq_luong", "float64")
    model, _, _ = decoded("seq2seq_luong", "torch", "float64")
    full = {"tokens": source["tokens"]}
    result = decoding.decode("torch", model, full, beam_size=1, length_penalty=0.6, max_len=6)
    assert len(result.sequences) == 8 and result.attention[0].shape[1] == spec.source_len
    np.testing.assert_allclose(result.normalized_scores, result.scores / decoding.length_penalty_of(
        [len(s) + f for s, f in zip(result.sequences, result.finished)], 0.6))


def test_decode_bad_inputs_are_clear_errors(decoded):
    spec, _, source = _decode_setup("seq2seq_bahdanau", "float64")
    model, _, _ = decoded("seq2seq_bahdanau", "torch", "float64")
    cases = [
        (dict(source, tokens=np.where(source["tokens"] == 3, 7, source["tokens"])),
         {}, r"inputs\['tokens'\]: expected token ids \(the source vocabulary\) in \[0, 7\)"),
        (dict(source, lengths=np.zeros(8, np.int64)), {}, r"expected every length in \[1, 5\]"),
        (dict(source, decoder_tokens=np.ones((8, 4), np.int64)), {},
         r"decode: expected inputs a dict with 'tokens' and optionally 'lengths'"),
        (source["tokens"], {}, r"decode: expected inputs a dict"),
        (source, {"beam_size": 0}, r"decode: expected beam_size an int >= 1, got 0"),
        (source, {"max_len": 0}, r"decode: expected max_len an int >= 1, got 0"),
        (source, {"beam_size": 2, "length_penalty": -1.0}, r"length_penalty a finite float >= 0"),
    ]
    for bad, kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            decoding.decode("torch", model, bad, **kwargs)
    mlp = parity.build("torch", parity.spec("mlp", "tiny"))
    with pytest.raises(InputError, match=r"decode: expected an encoder-decoder model .*, got mlp"):
        decoding.decode("torch", mlp, source)
    with pytest.raises(parity.FrameworkError, match="unknown framework 'mxnet'"):
        decoding.decode("mxnet", model, source)
