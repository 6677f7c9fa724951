"""The char-level language model end to end: the shipped text and its vocabulary, char-rnn's
truncated-BPTT windows, trajectories of native optimizers (Adam, clipped) over carried states that
match across frameworks, and sampling that gives the same text in all three from the same weights."""
import functools
import itertools
import re
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

import parity
from parity import tolerances
from parity.language_model import language_model_trajectory, next_id, sample
from parity.optimizers import TRAJECTORY, global_norm, optimizer
from parity.text import Vocabulary, bptt_windows, load_text
from parity.training import train_steps

FRAMEWORKS = parity.FRAMEWORKS
TEXT = load_text()
VOCAB = Vocabulary.from_text(TEXT)
SPEC = parity.spec("char_lm", "tiny", vocab_size=VOCAB.size)  # the text's 59 characters
BATCH, STEPS = 4, 5
WINDOWS = bptt_windows(VOCAB.encode(TEXT[:BATCH * SPEC.seq_len * STEPS + 1]), BATCH, SPEC.seq_len)
# The tiny model's gradient norm is ~0.27 at the init (test_clipping_happens): 0.1 clips every step.
ADAM = optimizer("adam", lr=1e-2, clip_norm=0.1)
# Measured worst over every pair of frameworks and the 5 steps: states (relative to scale)
# float32 3.6e-6, float64 5.3e-16, within the optimizer trajectories' tolerance; the losses (means
# of B * T = 28 cross-entropies) float32 1.8e-7, float64 2.2e-16 relative, within the forward one.
LOSS = tolerances.FORWARD


def as_dtype(state, dtype):
    return {name: value.astype(dtype) if value.dtype.kind == "f" else value for name, value in state.items()}


@functools.cache
def trajectory(framework, dtype):
    return language_model_trajectory(framework, SPEC, parity.init_state(SPEC, 0), ADAM, WINDOWS, dtype=dtype)


@functools.cache
def trained_model(framework):
    """Each framework's model, built once, holding the same weights: torch's trained float32 state."""
    return parity.build(framework, SPEC, trajectory("torch", "float32")[-1][1])


# --- the text, the vocabulary and the windows -------------------------------------------------

def test_the_shipped_text_is_64_kb_of_whole_lines_and_package_data():
    assert len(TEXT.encode("utf-8")) == 65536 and TEXT.isascii()
    assert TEXT.startswith("First Citizen:\nBefore we proceed any further, hear me speak.") and TEXT.endswith("\n")
    # 59 characters: the full tiny-shakespeare has 65 (the char-rnn preset's vocab_size); these
    # 64 KB have no '$', '&', '3', 'Q', 'X' or 'Z'.
    assert VOCAB.size == 59 and not set("$&3QXZ") & set(VOCAB.chars)
    # A non-editable install carries it only as declared package data.
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "datasets/*.txt" in pyproject["tool"]["setuptools"]["package-data"]["parity"]


def test_vocabulary_encodes_and_decodes():
    assert VOCAB.chars == "".join(sorted(set(TEXT))) and VOCAB.chars[:3] == "\n !"
    ids = VOCAB.encode("To be, or not")
    assert ids.dtype == np.int64 and ids.shape == (13,) and VOCAB.decode(ids) == "To be, or not"
    assert np.array_equal(VOCAB.encode(TEXT[:500]), [VOCAB.chars.index(c) for c in TEXT[:500]])
    assert VOCAB.decode([]) == "" and len(VOCAB) == VOCAB.size


def test_windows_are_contiguous_rows_of_the_stream():
    ids = np.arange(100)
    windows = bptt_windows(ids, 3, 5)  # (100 - 1) // 15 = 6 windows; rows of 30 ids
    assert len(windows) == 6
    for tokens, targets in windows:
        assert tokens.shape == targets.shape == (3, 5) and tokens.dtype == targets.dtype == np.int64
        assert np.array_equal(targets, tokens + 1)  # the next id of every token
    rows = np.concatenate([tokens for tokens, _ in windows], axis=1)
    assert np.array_equal(rows, ids[:90].reshape(3, 30))  # row b: one contiguous stretch
    for (_, before), (after, _) in itertools.pairwise(windows):
        assert np.array_equal(after[:, 0], before[:, -1])  # window k + 1 continues window k, row by row
    assert len(WINDOWS) == STEPS and VOCAB.decode(WINDOWS[1][0][0]) == TEXT[SPEC.seq_len:2 * SPEC.seq_len]


# --- trajectories -----------------------------------------------------------------------------

@pytest.mark.parametrize("pair", list(itertools.combinations(FRAMEWORKS, 2)), ids="-".join)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trajectories_match_across_frameworks(dtype, pair):
    first, second = trajectory(pair[0], dtype), trajectory(pair[1], dtype)
    assert len(first) == len(second) == STEPS
    for step, ((loss_a, state_a), (loss_b, state_b)) in enumerate(zip(first, second), 1):
        assert abs(loss_a - loss_b) <= LOSS[dtype].rtol * abs(loss_a), f"loss after step {step}"
        assert list(state_a) == list(parity.layout(SPEC))
        for name in state_a:
            assert state_a[name].dtype == np.dtype(dtype)
            error = tolerances.errors(state_a[name], state_b[name])[1]
            assert error <= TRAJECTORY[dtype].rtol, f"{pair} {dtype}: {name} after step {step}: {error:.2e}"


def test_clipping_happens_and_the_model_learns():
    model = parity.build("torch", SPEC, parity.init_state(SPEC, 0))
    tokens, targets = WINDOWS[0]
    _, grads = parity.loss_and_grads("torch", model, {"tokens": tokens}, targets, train=True)
    assert global_norm(grads) > 2 * ADAM.clip_norm
    losses = [loss for loss, _ in trajectory("torch", "float64")]
    assert losses[0] == pytest.approx(np.log(VOCAB.size), rel=0.05)  # near uniform at the init
    unclipped = language_model_trajectory("torch", SPEC, parity.init_state(SPEC, 0), optimizer("adam", lr=1e-2),
                                          WINDOWS, dtype="float64")
    assert max(tolerances.errors(a[1][k], b[1][k])[1] for a, b in zip(unclipped, trajectory("torch", "float64"))
               for k in a[1]) > 1e-3


def test_truncation_carries_the_previous_windows_final_state_and_stops_the_gradient():
    """Step 2 of the trajectory is exactly one optimizer step on window 1 from the state after
    step 1, with h_0 = window 0's h_n (at the weights before step 1) given as a constant input."""
    start = as_dtype(parity.init_state(SPEC, 0), "float64")
    zeros = np.zeros((SPEC.num_layers, BATCH, SPEC.hidden_size))
    (tokens_0, targets_0), (tokens_1, targets_1) = WINDOWS[:2]
    first = parity.forward("torch", parity.build("torch", SPEC, start), {"tokens": tokens_0, "h_0": zeros, "c_0": zeros})
    after_1, optimizer_1 = train_steps("torch", SPEC, start, ADAM, [({"tokens": tokens_0}, targets_0)])
    carried = {"tokens": tokens_1, "h_0": first["h_n"], "c_0": first["c_n"]}
    after_2, _ = train_steps("torch", SPEC, after_1, ADAM, [(carried, targets_1)], optimizer_1)
    run = trajectory("torch", "float64")
    for expected, (_, actual) in ((after_1, run[0]), (after_2, run[1])):
        assert max(tolerances.errors(expected[k], actual[k])[1] for k in expected) <= 1e-13
    model = parity.build("torch", SPEC, after_1)
    loss, _ = parity.loss_and_grads("torch", model, carried, targets_1)
    assert loss == pytest.approx(run[1][0], rel=1e-13)
    fresh, _ = parity.loss_and_grads("torch", model, {"tokens": tokens_1}, targets_1)  # from zeros instead
    assert abs(fresh - run[1][0]) > 1e-4


# --- sampling -----------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"seed": 3}, {"seed": 3, "top_k": 5, "temperature": 0.7}, {"temperature": 0}],
                         ids=["temperature-1", "top-5", "greedy"])
def test_sampling_gives_the_same_text_in_every_framework(options):
    texts = {f: sample(f, trained_model(f), VOCAB, "ROMEO:\n", 60, **options) for f in FRAMEWORKS}
    assert len(texts["torch"]) == 60 and set(texts["torch"]) <= set(VOCAB.chars)
    assert all(text == texts["torch"] for text in texts.values()), texts


def test_sampling_is_reproducible_by_seed():
    model = trained_model("torch")
    first = sample("torch", model, VOCAB, "The ", 40, seed=7)
    assert sample("torch", model, VOCAB, "The ", 40, seed=7) == first
    assert sample("torch", model, VOCAB, "The ", 40, seed=8) != first
    assert sample("torch", model, VOCAB, "The ", 0) == ""


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sampling_carries_the_states(framework):
    """Greedy text fed back one character at a time equals the argmax of one pass over the whole
    prompt + text: the states are carried from each step to the next."""
    model, prompt = trained_model(framework), "KING"
    text = sample(framework, model, VOCAB, prompt, 12, temperature=0)
    logits = parity.forward(framework, model, {"tokens": VOCAB.encode(prompt + text[:-1])[None]})["logits"][0]
    assert VOCAB.decode(logits[len(prompt) - 1:].argmax(-1)) == text


def test_next_id_draws_from_the_softmax():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    draws = [next_id(logits, 1.0, None, np.random.default_rng(s)) for s in range(4000)]
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 4000, [0.1, 0.2, 0.3, 0.4], atol=0.025)
    assert {next_id(logits, 1.0, 2, np.random.default_rng(s)) for s in range(200)} == {2, 3}  # top 2 only
    assert next_id(logits, 0, None, None) == 3  # greedy: no draw
    cold = [next_id(logits, 0.05, None, np.random.default_rng(s)) for s in range(200)]
    assert cold.count(3) > 190  # low temperature sharpens towards the argmax


# --- bad inputs ---------------------------------------------------------------------------------

def test_bad_text_inputs_raise():
    with pytest.raises(parity.InputError, match=r"load_text: expected one of \['tiny_shakespeare'\], got 'hamlet'"):
        load_text("hamlet")
    with pytest.raises(parity.InputError, match=r"expected characters of the vocabulary .*, got 'Z' at position 4"):
        VOCAB.encode("ABC Zounds")
    with pytest.raises(parity.InputError, match=r"decode: expected ids in \[0, 59\), got values in \[0, 59\]"):
        VOCAB.decode([0, 59])
    with pytest.raises(parity.InputError, match=r"expected sorted, unique characters"):
        Vocabulary("ba")
    with pytest.raises(parity.InputError, match=r"expected at least batch_size \* seq_len \+ 1 = 21 ids, got 20"):
        bptt_windows(np.arange(20), 4, 5)
    with pytest.raises(parity.InputError, match=r"expected seq_len a positive int, got 0"):
        bptt_windows(np.arange(20), 2, 0)
    with pytest.raises(parity.InputError, match=r"expected a 1-D integer array of ids, got float64 of shape \(3,\)"):
        bptt_windows(np.zeros(3), 1, 1)


def test_bad_trajectory_inputs_raise():
    state = parity.init_state(SPEC, 0)
    with pytest.raises(parity.InputError, match=r"windows\[1\]: expected batch size 4 \(the states carried from "
                                                r"window 0\), got 2"):
        language_model_trajectory("torch", SPEC, state, ADAM, [WINDOWS[0], (WINDOWS[1][0][:2], WINDOWS[1][1][:2])])
    with pytest.raises(parity.InputError, match=r"windows\[0\]: expected a pair \(tokens, targets\) of integer "
                                                r"arrays of one shape \(B, T\), got \(int64 \(4, 7\), int64 \(4, 6\)\)"):
        language_model_trajectory("torch", SPEC, state, ADAM, [(WINDOWS[0][0], WINDOWS[0][1][:, :6])])
    with pytest.raises(parity.InputError, match=r"windows: expected a non-empty list"):
        language_model_trajectory("torch", SPEC, state, ADAM, [])
    mlp = parity.spec("mlp", "tiny")
    with pytest.raises(parity.InputError, match=r"expected a language model spec .* got 'mlp'"):
        language_model_trajectory("torch", mlp, parity.init_state(mlp), ADAM, WINDOWS)
    with pytest.raises(parity.InputError, match=r"expected every dropout-like rate 0 .* got \{'dropout': 0.5\}"):
        language_model_trajectory("torch", SPEC.replace(dropout=0.5), state, ADAM, WINDOWS)
    with pytest.raises(parity.InputError, match=r"inputs\['tokens'\]: expected token ids \(the vocabulary\) in "
                                                r"\[0, 11\), got values in"):
        language_model_trajectory("torch", parity.spec("char_lm", "tiny"), parity.init_state(
            parity.spec("char_lm", "tiny")), ADAM, WINDOWS)
    with pytest.raises(parity.FrameworkError, match="unknown framework 'mxnet'"):
        language_model_trajectory("mxnet", SPEC, state, ADAM, WINDOWS)


@pytest.mark.parametrize("arguments, message", [
    ({"vocabulary": Vocabulary("abc")}, r"expected a vocabulary of 59 characters \(the model's vocab_size\), got 3"),
    ({"vocabulary": "abc"}, r"expected vocabulary a parity.text.Vocabulary, got str"),
    ({"prompt": ""}, r"expected prompt a non-empty str"),
    ({"prompt": "Zeus"}, r"expected characters of the vocabulary .*, got 'Z' at position 0"),
    ({"length": -1}, r"expected length an int >= 0, got -1"),
    ({"length": 2.5}, r"expected length an int >= 0, got 2.5"),
    ({"temperature": -0.5}, r"expected temperature a finite float >= 0 \(0: greedy\), got -0.5"),
    ({"top_k": 0}, r"expected top_k None or an int in \[1, 59\], got 0"),
    ({"top_k": 60}, r"expected top_k None or an int in \[1, 59\], got 60"),
    ({"seed": -1}, r"expected seed an int >= 0, got -1"),
])
def test_bad_sampling_arguments_raise(arguments, message):
    given = {"vocabulary": VOCAB, "prompt": "The", "length": 5, **arguments}
    keywords = {k: given.pop(k) for k in ("temperature", "top_k", "seed") if k in given}
    with pytest.raises(parity.InputError, match=message):
        sample("torch", trained_model("torch"), given["vocabulary"], given["prompt"], given["length"], **keywords)


def test_sampling_needs_a_language_model():
    mlp = parity.spec("mlp", "tiny")
    with pytest.raises(parity.InputError, match=r"sample: model.spec: expected a language model spec .* got 'mlp'"):
        sample("torch", parity.build("torch", mlp), VOCAB, "The", 5)


# --- the reference preset, trained (slow) ------------------------------------------------------
# char-rnn's model (2 x 128 LSTM, 50-step windows) on the shipped text, from one init in all three
# frameworks, Adam with char-rnn's gradient clipping (5), batches of 32 rows: 40 windows per pass,
# 300 steps = 7.5 passes. Measured on 2 CPU cores: torch 7.3 s, JAX 17 s, Keras 81-92 s (its
# eager per-step LSTM loop); final loss 1.68 nats against the text's unigram entropy of 3.28.

TRAIN_STEPS = 300


@functools.cache
def trained_char_rnn():
    spec = parity.spec("char_lm", "char-rnn", vocab_size=VOCAB.size)  # the preset's 65 is the full text's
    windows = bptt_windows(VOCAB.encode(TEXT), 32, spec.seq_len)
    schedule = (windows * (TRAIN_STEPS // len(windows) + 1))[:TRAIN_STEPS]
    # Each pass restarts the rows: carrying the state from the end of the text back to its
    # start is what char-rnn does too (it never resets between passes), harmless either way.
    state = parity.init_state(spec, 0)
    runs, seconds = {}, {}
    for framework in FRAMEWORKS:
        start = time.perf_counter()
        runs[framework] = language_model_trajectory(framework, spec, state, optimizer("adam", lr=3e-3, clip_norm=5.0),
                                                    schedule)
        seconds[framework] = time.perf_counter() - start
    return spec, runs, seconds


def unigram_entropy(text):
    counts = np.unique(np.frombuffer(text.encode(), np.uint8), return_counts=True)[1] / len(text)
    return float(-(counts * np.log(counts)).sum())


@pytest.mark.slow
def test_the_char_rnn_preset_learns_shakespeare_in_every_framework():
    spec, runs, seconds = trained_char_rnn()
    entropy = unigram_entropy(TEXT)  # 3.28 nats: what knowing only the character frequencies gives
    words = set(re.findall(r"[A-Za-z']+", TEXT))
    report = {}
    for framework, run in runs.items():
        losses = [loss for loss, _ in run]
        final = float(np.mean(losses[-20:]))  # one loss per window: average the last 20
        model = parity.build(framework, spec, run[-1][1])
        text = sample(framework, model, VOCAB, "ROMEO:\n", 300, temperature=0.8, seed=0)
        sampled = [w for w in re.findall(r"[A-Za-z']+", text) if len(w) > 1]
        real = [w for w in sampled if w in words]  # an untrained model's random letters make none
        report[framework] = (seconds[framework], final, len(real) / max(len(sampled), 1), text)
        assert losses[0] == pytest.approx(np.log(spec.vocab_size), rel=0.05)
        assert final < entropy - 1.0, f"{framework}: final loss {final:.3f} against unigram entropy {entropy:.3f}"
        assert len(real) >= 15 and len(real) >= 0.5 * len(sampled), f"{framework} sampled {text!r}"
    print("\n".join(f"{f}: {t:.1f} s, final loss {l:.3f}, real words {w:.0%}\n{s}" for f, (t, l, w, s) in report.items()))
    # One init, one text: the runs stay together while float32 rounding differences grow. Measured
    # (CPU): step losses within 2e-6 relative over the first 150 steps, 1e-5 by 200, 1.4e-3 by 300;
    # final losses 1.6798 (torch), 1.6800 (Keras, JAX).
    for a, b in itertools.combinations(FRAMEWORKS, 2):
        assert abs(report[a][1] - report[b][1]) < 0.01
        assert max(abs(x[0] - y[0]) / x[0] for x, y in zip(runs[a][:100], runs[b][:100])) < 1e-5
