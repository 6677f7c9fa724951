"""Decoding, framework-neutral: the digit-reversal task, exact match, and greedy / beam search
checked against brute force on a toy step function whose state accumulates (so a wrong parent
gather or a row crossing examples changes the answer), plus the attention heat map."""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.decoding import (BOS, DIGIT_OFFSET, EOS, PAD, VOCAB_SIZE, DecodeResult, Seq2SeqBatch, beam_search,
                             digit_reversal, exact_match, expand, greedy, length_penalty_of, plot_attention,
                             token_labels)
from parity.errors import InputError

# ---------------------------------------------------------------------------- the task


def test_digit_reversal_shapes_padding_and_shift():
    batch = digit_reversal(50, min_len=2, max_len=6, seed=3)
    assert len(batch) == 50
    assert batch.tokens.shape == (50, 6) and batch.lengths.shape == (50,)
    assert batch.decoder_tokens.shape == batch.targets.shape == (50, 7)
    assert all(a.dtype == np.int64 for a in (batch.tokens, batch.lengths, batch.decoder_tokens, batch.targets))
    assert batch.lengths.min() >= 2 and batch.lengths.max() <= 6 and len(set(batch.lengths.tolist())) > 1
    for tokens, n, decoder, target in zip(batch.tokens, batch.lengths, batch.decoder_tokens, batch.targets):
        digits = tokens[:n]
        assert ((DIGIT_OFFSET <= digits) & (digits < VOCAB_SIZE)).all() and (tokens[n:] == PAD).all()
        assert list(target) == list(digits[::-1]) + [EOS] + [PAD] * (6 - n)
        assert list(decoder) == [BOS] + list(digits[::-1]) + [PAD] * (6 - n)
    # decoder_tokens is targets shifted right by one behind BOS, the EOS fed as PAD
    shifted = np.where(batch.targets[:, :-1] == EOS, PAD, batch.targets[:, :-1])
    np.testing.assert_array_equal(batch.decoder_tokens[:, 1:], shifted)
    assert set(batch.inputs) == {"tokens", "lengths", "decoder_tokens"}
    assert batch.inputs["tokens"] is batch.tokens


def test_digit_reversal_is_deterministic_and_seeded():
    a, b = (digit_reversal(20, min_len=1, max_len=5, seed=7) for _ in range(2))
    c = digit_reversal(20, min_len=1, max_len=5, seed=8)
    for name in ("tokens", "lengths", "decoder_tokens", "targets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.tokens, c.tokens)
    fixed = digit_reversal(5, min_len=3, max_len=3, seed=0)
    assert (fixed.lengths == 3).all()


def test_minibatches():
    batch = digit_reversal(10, min_len=1, max_len=4, seed=0)
    parts = batch.minibatches(4)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert all(isinstance(p, Seq2SeqBatch) and p.targets.shape[1] == 5 for p in parts)
    np.testing.assert_array_equal(np.concatenate([p.targets for p in parts]), batch.targets)
    with pytest.raises(InputError, match="batch_size"):
        batch.minibatches(0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(count=0, min_len=1, max_len=2, seed=0), "count"),
    (dict(count=3, min_len=0, max_len=2, seed=0), "min_len"),
    (dict(count=3, min_len=4, max_len=2, seed=0), "max_len an int >= 4"),
    (dict(count=3, min_len=1, max_len=2, seed=-1), "seed"),
])
def test_digit_reversal_rejects_bad_arguments(kwargs, message):
    count = kwargs.pop("count")
    with pytest.raises(InputError, match=message):
        digit_reversal(count, **kwargs)


def test_token_labels():
    assert token_labels(np.array([PAD, BOS, EOS, 3, 12])) == ["<pad>", "<s>", "</s>", "0", "9"]
    with pytest.raises(InputError, match=r"ids in \[0, 13\)"):
        token_labels([13])


def test_exact_match():
    targets = np.array([[5, 4, EOS, PAD], [3, EOS, PAD, PAD], [7, 7, 7, EOS]])
    right = [np.array([5, 4]), np.array([3]), np.array([7, 7, 7])]
    assert exact_match(right, targets) == 1.0
    assert exact_match([np.array([5, 4, EOS, 9]), np.array([3, 3]), np.array([7, 7])], targets) == pytest.approx(1 / 3)
    assert exact_match([np.array([5]), np.array([], np.int64), np.array([7, 7, 7, 7])], targets) == 0.0
    assert exact_match(right, [np.array([5, 4]), np.array([3, EOS]), np.array([7, 7, 7])]) == 1.0
    with pytest.raises(InputError, match="expected 2 targets"):
        exact_match(right[:2], targets)
    with pytest.raises(InputError, match="non-empty list"):
        exact_match([], targets)
    with pytest.raises(InputError, match=r"predicted\[0\]"):
        exact_match([np.zeros((2, 2), np.int64)], targets[:1])


# ---------------------------------------------------------------------------- a toy model
# Log-probabilities from a table indexed by (hash of the whole prefix, previous id): the state
# is the running hash, plus each row's example index, which must never change (a gather that
# crosses examples fails loudly). Attention is another table row, so it identifies the prefix.

HASHES = 11


class Toy:
    def __init__(self, seed, vocab=4, source=3, scale=2.0):
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.logits = rng.normal(size=(HASHES, vocab, vocab)) * scale
        self.attention = rng.random(size=(HASHES, vocab, source))

    def initial_state(self, examples):
        examples = np.asarray(examples)
        return ((examples * 5 + 3) % HASHES, examples.copy())

    def step_for(self, examples, beam_size):
        expected_example = expand(np.asarray(examples), beam_size)  # row r is example r // beam_size

        def step(previous_ids, state):
            h, example = state
            assert previous_ids.dtype == np.int64 and previous_ids.shape == h.shape
            np.testing.assert_array_equal(example, expected_example)
            return (self.logits[h, previous_ids].astype(np.float32), self.attention[h, previous_ids],
                    ((h * 7 + previous_ids + 1) % HASHES, example))

        return step

    def log_probs(self, h, previous):
        z = self.logits[h, previous].astype(np.float32).astype(np.float64)
        return z - z.max() - np.log(np.exp(z - z.max()).sum())

    def replay(self, example, sequence, finished):
        """Score and attention rows of one hypothesis, fed one id at a time."""
        h, previous, score, rows = self.initial_state([example])[0][0], BOS, 0.0, []
        for token in list(sequence) + ([EOS] if finished else []):
            score += self.log_probs(h, previous)[token]
            rows.append(self.attention[h, previous])
            h, previous = (h * 7 + previous + 1) % HASHES, token
        return score, np.array(rows)

    def brute_force(self, example, max_len, alpha=0.0):
        """The best (normalised score, sequence, finished) over every sequence that ends in EOS
        within max_len ids or runs to max_len ids."""
        best = (-np.inf, None, None)
        for length in range(1, max_len + 1):
            for ids in itertools.product(range(self.vocab), repeat=length):
                if EOS in ids[:-1] or (ids[-1] != EOS and length < max_len):
                    continue
                finished = ids[-1] == EOS
                score, _ = self.replay(example, ids[:-1] if finished else ids, finished)
                rank = score / length_penalty_of(length, alpha)
                if rank > best[0]:
                    best = (rank, list(ids[:-1] if finished else ids), finished)
        return best


def decode(toy, examples, beam_size, max_len, alpha=0.0):
    step = toy.step_for(examples, beam_size)
    return beam_search(step, toy.initial_state(examples), len(examples), beam_size, max_len, alpha)


def check_consistent(toy, examples, result: DecodeResult, alpha=0.0):
    """Scores and attention rows are those of the returned hypotheses."""
    assert len(result.sequences) == len(examples)
    for b, example in enumerate(examples):
        sequence = result.sequences[b]
        assert sequence.dtype == np.int64 and EOS not in sequence.tolist()
        score, rows = toy.replay(example, sequence, result.finished[b])
        assert result.scores[b] == pytest.approx(score, rel=1e-12, abs=1e-12)
        steps = len(sequence) + bool(result.finished[b])
        assert result.normalized_scores[b] == pytest.approx(score / length_penalty_of(steps, alpha), rel=1e-12)
        np.testing.assert_array_equal(result.attention[b], rows)


@pytest.mark.parametrize("alpha", [0.0, 0.8])
@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_brute_force_optimum(seed, alpha):
    toy, max_len = Toy(seed), 4
    examples = list(range(5))
    result = decode(toy, examples, beam_size=toy.vocab ** max_len, max_len=max_len, alpha=alpha)
    check_consistent(toy, examples, result, alpha)
    for b, example in enumerate(examples):
        rank, sequence, finished = toy.brute_force(example, max_len, alpha)
        assert result.sequences[b].tolist() == sequence and bool(result.finished[b]) == finished
        assert result.normalized_scores[b] == pytest.approx(rank, rel=1e-12)


@pytest.mark.parametrize("beam_size", [1, 2, 3, 8])
def test_results_do_not_depend_on_the_batch(beam_size):
    toy, examples = Toy(11), [4, 0, 7, 2, 9]
    together = decode(toy, examples, beam_size, max_len=6, alpha=0.6)
    check_consistent(toy, examples, together, alpha=0.6)
    for b, example in enumerate(examples):
        alone = decode(toy, [example], beam_size, max_len=6, alpha=0.6)
        np.testing.assert_array_equal(alone.sequences[0], together.sequences[b])
        assert alone.scores[0] == together.scores[b] and alone.finished[0] == together.finished[b]
        np.testing.assert_array_equal(alone.attention[0], together.attention[b])


def assert_same(a: DecodeResult, b: DecodeResult):
    for x, y in zip(a.sequences, b.sequences, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.normalized_scores, b.normalized_scores)
    np.testing.assert_array_equal(a.finished, b.finished)
    for x, y in zip(a.attention, b.attention, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("seed", range(3))
def test_greedy_is_beam_search_of_width_one(seed):
    toy, examples = Toy(seed, vocab=5, scale=1.0), list(range(8))
    greedy_result = greedy(toy.step_for(examples, 1), toy.initial_state(examples), 8, 7)
    check_consistent(toy, examples, greedy_result)
    assert_same(greedy_result, decode(toy, examples, beam_size=1, max_len=7))


def log(probabilities):
    """Logits of a table of probabilities by previous id (row), -inf where 0."""
    with np.errstate(divide="ignore"):
        return np.log(np.array(probabilities))


def test_first_step_does_not_duplicate_beams():
    # After BOS: id 3 is likeliest, id 0 second; after 0 EOS is near certain, after 3 all are equal.
    # The optimum [0] needs both first ids in the beam: duplicated beams would keep 3 twice.
    table = log([[0.01, 0.01, 0.97, 0.01], [0.4, 0.05, 0.05, 0.5], [0.25] * 4, [0.25] * 4])

    def step(previous_ids, state):
        return table[previous_ids], np.ones((len(previous_ids), 1)), state

    assert beam_search(step, (), 1, 2, 3).sequences[0].tolist() == [0]
    assert greedy(step, (), 1, 3).sequences[0].tolist() == [3, 0]


@pytest.mark.parametrize("vocab", [4, 40])
def test_ties_go_to_the_lower_flat_index(vocab):
    def step(previous_ids, state):  # every id equally likely, always
        return np.zeros((len(previous_ids), vocab)), np.zeros((len(previous_ids), 2)), state

    for beam_size in (1, 2):  # EOS (id 2) never ranks within the first beam_size: id 0, cut at max_len
        result = beam_search(step, (), 2, beam_size, 3)
        assert [s.tolist() for s in result.sequences] == [[0, 0, 0]] * 2 and not result.finished.any()
        assert result.attention[0].shape == (3, 2)
    result = beam_search(step, (), 2, 3, 3)  # EOS ranks third at step 1 and nothing can beat it later
    assert [s.tolist() for s in result.sequences] == [[], []] and result.finished.all()
    assert result.scores == pytest.approx([np.log(1 / vocab)] * 2) and result.attention[0].shape == (1, 2)
    assert greedy(step, (), 1, 3).sequences[0].tolist() == [0, 0, 0]


def test_a_later_tie_does_not_replace_the_first_finished():
    # After BOS: 3 (0.5), 0 and EOS (0.25 each, bit-equal); after 0 EOS is certain (log-prob 0),
    # so [0] ties [] exactly, found one step later; after 3 all ids are equal.
    table = log([[0.0, 0.0, 1.0, 0.0], [0.25, 0.0, 0.25, 0.5], [0.25] * 4, [0.25] * 4])

    def step(previous_ids, state):
        return table[previous_ids], np.ones((len(previous_ids), 1)), state

    result = beam_search(step, (), 1, 3, 4)
    assert result.sequences[0].tolist() == [] and result.scores[0] == np.log(0.25)


def test_length_penalty_prefers_longer_hypotheses():
    # EOS at once (p = 0.5) against 0, 3, EOS (0.45 * 0.99 * 0.99 = 0.44): rows by previous id.
    table = log([[0.005, 0.0, 0.005, 0.99], [0.45, 0.05, 0.5, 0.0], [0.25] * 4, [0.005, 0.0, 0.99, 0.005]])

    def step(previous_ids, state):
        return table[previous_ids], np.ones((len(previous_ids), 1)), state

    plain = beam_search(step, (), 1, 2, 4)
    assert plain.sequences[0].tolist() == [] and plain.scores[0] == pytest.approx(np.log(0.5))
    long = beam_search(step, (), 1, 2, 4, length_penalty=1.0)
    assert long.sequences[0].tolist() == [0, 3]
    assert long.normalized_scores[0] == pytest.approx(long.scores[0] / length_penalty_of(3, 1.0))
    assert length_penalty_of(1, 0.0) == 1.0 and length_penalty_of(7, 1.0) == 2.0


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), vocab=st.integers(3, 5), max_len=st.integers(1, 3),
       beam_size=st.integers(1, 4), examples=st.lists(st.integers(0, 20), min_size=1, max_size=4),
       alpha=st.sampled_from([0.0, 0.6]))
def test_beam_search_properties(seed, vocab, max_len, beam_size, examples, alpha):
    toy = Toy(seed, vocab=vocab)
    result = decode(toy, examples, beam_size, max_len, alpha)
    check_consistent(toy, examples, result, alpha)
    wide = decode(toy, examples, vocab ** max_len, max_len, alpha)
    for b, example in enumerate(examples):
        rank, sequence, _ = toy.brute_force(example, max_len, alpha)
        assert wide.sequences[b].tolist() == sequence
        assert result.normalized_scores[b] <= rank + 1e-12  # a narrow beam never beats the optimum
        assert len(result.sequences[b]) <= max_len
    if beam_size == 1 and alpha == 0.0:
        assert_same(result, greedy(toy.step_for(examples, 1), toy.initial_state(examples), len(examples),
                                   max_len))


# ---------------------------------------------------------------------------- errors


def ok_step(previous_ids, state):
    return np.zeros((len(previous_ids), 4)), np.zeros((len(previous_ids), 3)), state


@pytest.mark.parametrize("kwargs, message", [
    (dict(beam_size=0), "beam_size an int >= 1"),
    (dict(max_len=0), "max_len an int >= 1"),
    (dict(batch_size=0), "batch_size an int >= 1"),
    (dict(length_penalty=-0.5), "length_penalty a finite float >= 0"),
    (dict(step="no"), "step a callable"),
    (dict(initial_state=np.zeros(2)), "initial_state a tuple"),
    (dict(initial_state=(np.zeros((3, 2)),)), r"initial_state\[0\] a numpy array of 2 rows"),
])
def test_beam_search_rejects_bad_arguments(kwargs, message):
    arguments = dict(step=ok_step, initial_state=(), batch_size=2, beam_size=2, max_len=3) | kwargs
    with pytest.raises(InputError, match=message):
        beam_search(**arguments)


def steps_returning(logits=None, attention=None, new_state=None, later=False):
    def step(previous_ids, state):
        n = len(previous_ids)
        first = not np.any(previous_ids != BOS)
        if later and first:
            return ok_step(previous_ids, state)
        return (np.zeros((n, 4)) if logits is None else logits(n),
                np.zeros((n, 3)) if attention is None else attention(n),
                state if new_state is None else new_state(n))

    return step


@pytest.mark.parametrize("step, message", [
    (lambda ids, state: (np.zeros((len(ids), 4)), np.zeros((len(ids), 3))), r"return \(logits, attention"),
    (steps_returning(logits=lambda n: np.zeros((n + 1, 4))), r"logits a float numpy array of shape \(4, V\)"),
    (steps_returning(logits=lambda n: np.zeros((n, 2))), "at least 3 ids"),
    (steps_returning(logits=lambda n: np.zeros((n, 4), np.int64)), "logits a float"),
    (steps_returning(logits=lambda n: np.full((n, 4), np.nan)), "NaN"),
    (steps_returning(logits=lambda n: np.full((n, 4), -np.inf)), "a row of -inf"),
    (steps_returning(attention=lambda n: np.zeros(n)), r"attention a float numpy array of shape \(4, S\)"),
    (steps_returning(logits=lambda n: np.zeros((n, 5)), later=True), r"shape \(4, V = 4\)"),
    (steps_returning(attention=lambda n: np.zeros((n, 2)), later=True), r"shape \(4, S = 3\)"),
    (steps_returning(new_state=lambda n: (np.zeros(n), np.zeros(n))), "new_state a tuple of 1 arrays"),
    (steps_returning(new_state=lambda n: (np.zeros(n - 1),)), r"new_state\[0\] a numpy array of 4 rows"),
])
def test_bad_steps_are_named(step, message):
    with pytest.raises(InputError, match=message):
        beam_search(step, (np.zeros(2),), 2, 2, 3)


def test_greedy_rejects_bad_arguments():
    with pytest.raises(InputError, match="max_len an int >= 1"):
        greedy(ok_step, (), 2, 0)
    with pytest.raises(InputError, match=r"logits a float numpy array of shape \(2, V\)"):
        greedy(steps_returning(logits=lambda n: np.zeros((n + 1, 4))), (), 2, 3)


def test_expand():
    memory = np.arange(6).reshape(3, 2)
    np.testing.assert_array_equal(expand(memory, 2), [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]])
    pair = expand([memory, np.arange(3)], 3)
    assert isinstance(pair, tuple) and pair[1].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert set(expand({"memory": memory}, 1)) == {"memory"}
    with pytest.raises(InputError, match="beam_size"):
        expand(memory, 0)
    with pytest.raises(InputError, match=r"arrays\[1\] a numpy array"):
        expand((memory, 3.0), 2)


# ---------------------------------------------------------------------------- plots


def test_plot_attention_writes_a_png(tmp_path):
    attention = np.random.default_rng(0).dirichlet(np.ones(4), size=3)
    path = plot_attention(attention, ["1", "2", "3", "<pad>"], ["3", "2", "</s>"], tmp_path / "attention.png")
    assert path == tmp_path / "attention.png" and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="source_labels a list of 4 labels"):
        plot_attention(attention, ["1"], ["3", "2", "</s>"], tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"\(T, S\)"):
        plot_attention(np.zeros(3), [], [], tmp_path / "bad.png")
