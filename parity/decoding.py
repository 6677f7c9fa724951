"""Decoding for encoder-decoder models with attention, framework-neutral: a synthetic
translation-like task, greedy and beam search over a step function, exact match, and attention
heat maps.

Special ids, shared by the task and the decoders: PAD 0 (padding, never a loss target),
BOS 1 (the decoder's first input), EOS 2 (ends a hypothesis; its log-probability is scored).

The task (`digit_reversal`): a source of 1..max_len digits, the target is the same digits
reversed. Digit d is id d + 3, so the vocabulary has 13 ids (`VOCAB_SIZE`) on both sides.

The decoders run one algorithm over any framework's native model through a step function

    step(previous_ids (N,) int64, state) -> (logits (N, V), attention (N, S), new_state)

`state` is a tuple of numpy arrays, each with the row axis (N) first. Both decoders take the
initial state with one row per example (batch_size rows); `beam_search` expands it to
N = batch_size * beam_size rows with `expand`, so row r belongs to example r // beam_size, and
N stays the same at every step (finished examples keep their rows). Anything the step closes
over per row (the encoder memory, the source mask) must be laid out the same way:
`expand(memory, beam_size)`. After every step the decoder gathers the parent row of each
surviving hypothesis from every state array, so a state array may also hold the memory itself.

Determinism across frameworks whose logits differ by float rounding: scores are sums of the
log-softmax of the logits computed in float64; every choice is a stable sort on descending
score (ties: the lower flat index beam * V + id first; greedy: the lowest id), so identical
logits always give identical results, and logits within rounding give the same result unless two
hypotheses are within rounding of each other.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from parity.errors import InputError
from parity.frameworks import _check_inputs, adapter
from parity.specs.attention import TransformerSpec
from parity.specs.seq2seq import Seq2SeqSpec

PAD, BOS, EOS = 0, 1, 2
DIGIT_OFFSET = 3  # digit d is id d + DIGIT_OFFSET
VOCAB_SIZE = DIGIT_OFFSET + 10
_SPECIAL_LABELS = {PAD: "<pad>", BOS: "<s>", EOS: "</s>"}


def _int_at_least(what: str, name: str, value, low: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise InputError(f"{what}: expected {name} an int >= {low}, got {value!r}")


# ---------------------------------------------------------------------------- the task


@dataclasses.dataclass(frozen=True, eq=False)
class Seq2SeqBatch:
    """Source/target pairs as int64 arrays, PAD-padded on the right.

    tokens (B, S) source ids; lengths (B,) source lengths; decoder_tokens (B, T) the decoder's
    inputs (BOS, then the target ids without EOS); targets (B, T) the ids to predict (the target
    ids, then EOS). decoder_tokens[:, 1:] is targets[:, :-1] with the EOS replaced by PAD: the
    decoder is never fed EOS (the step after it carries no loss)."""

    tokens: np.ndarray
    lengths: np.ndarray
    decoder_tokens: np.ndarray
    targets: np.ndarray

    def __post_init__(self):
        for name in ("tokens", "lengths", "decoder_tokens", "targets"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != np.int64:
                raise InputError(f"Seq2SeqBatch: expected {name} an int64 numpy array, got "
                                 f"{getattr(value, 'dtype', type(value).__name__)}")
        count = self.tokens.shape[0] if self.tokens.ndim == 2 else None
        if (self.tokens.ndim != 2 or self.lengths.shape != (count,) or self.decoder_tokens.ndim != 2
                or self.decoder_tokens.shape != self.targets.shape or self.targets.shape[0] != count):
            raise InputError(f"Seq2SeqBatch: expected tokens (B, S), lengths (B,), decoder_tokens and targets "
                             f"(B, T), got {self.tokens.shape}, {self.lengths.shape}, "
                             f"{self.decoder_tokens.shape}, {self.targets.shape}")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """The model inputs parity.forward takes: tokens, lengths, decoder_tokens."""
        return {"tokens": self.tokens, "lengths": self.lengths, "decoder_tokens": self.decoder_tokens}

    def minibatches(self, batch_size: int) -> list[Seq2SeqBatch]:
        """Consecutive slices of `batch_size` examples, in order (the last one may be smaller);
        array widths unchanged."""
        _int_at_least("Seq2SeqBatch.minibatches", "batch_size", batch_size, 1)
        return [Seq2SeqBatch(*(getattr(self, f.name)[start:start + batch_size] for f in dataclasses.fields(self)))
                for start in range(0, len(self), batch_size)]


def digit_reversal(count: int, *, min_len: int, max_len: int, seed: int) -> Seq2SeqBatch:
    """`count` examples of the digit-reversal task: sources of min_len..max_len uniform random
    digits (lengths uniform too), targets the digits reversed. Arrays: tokens (count, max_len),
    decoder_tokens and targets (count, max_len + 1). Deterministic from numpy's default_rng(seed)
    (lengths drawn first, then a (count, max_len) block of digits)."""
    _int_at_least("digit_reversal", "count", count, 1)
    _int_at_least("digit_reversal", "min_len", min_len, 1)
    _int_at_least("digit_reversal", "max_len", max_len, min_len)
    _int_at_least("digit_reversal", "seed", seed, 0)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=count).astype(np.int64)
    digits = rng.integers(0, 10, size=(count, max_len)).astype(np.int64) + DIGIT_OFFSET
    position = np.arange(max_len)
    inside = position < lengths[:, None]  # (count, max_len)
    tokens = np.where(inside, digits, PAD)
    source_of = np.clip(lengths[:, None] - 1 - position, 0, None)  # position i of the target is digit len-1-i
    reversed_ = np.where(inside, np.take_along_axis(digits, source_of, axis=1), PAD)
    targets = np.concatenate([reversed_, np.full((count, 1), PAD, np.int64)], axis=1)
    targets[np.arange(count), lengths] = EOS
    decoder_tokens = np.concatenate([np.full((count, 1), BOS, np.int64), reversed_], axis=1)
    return Seq2SeqBatch(tokens, lengths, decoder_tokens, targets)


def token_labels(ids) -> list[str]:
    """Readable labels of the task's ids: the digit of a digit id, <pad>, <s>, </s>."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise InputError(f"token_labels: expected a 1-D sequence of integer ids, got {ids.dtype} of shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
        raise InputError(f"token_labels: expected ids in [0, {VOCAB_SIZE}), got values in [{ids.min()}, {ids.max()}]")
    return [_SPECIAL_LABELS.get(i, str(i - DIGIT_OFFSET)) for i in ids.tolist()]


def _until_eos(sequence, what: str) -> list[int]:
    array = np.asarray(sequence)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise InputError(f"exact_match: expected {what} a 1-D sequence of integer ids, got "
                         f"{array.dtype} of shape {array.shape}")
    ids = array.tolist()
    return ids[:ids.index(EOS)] if EOS in ids else ids


def exact_match(predicted, targets) -> float:
    """The fraction of examples whose predicted ids, up to (excluding) the first EOS, equal the
    target's up to its first EOS. `predicted`: a list of 1-D id arrays (DecodeResult.sequences);
    `targets`: a (B, T) array (Seq2SeqBatch.targets) or a list of 1-D id arrays."""
    if not isinstance(predicted, (list, tuple)) or not predicted:
        raise InputError(f"exact_match: expected predicted a non-empty list of id arrays, got {predicted!r:.80}")
    if isinstance(targets, np.ndarray) and targets.ndim != 2:
        raise InputError(f"exact_match: expected targets a (B, T) array or a list of id arrays, got an array of "
                         f"shape {targets.shape}")
    if len(targets) != len(predicted):
        raise InputError(f"exact_match: expected {len(predicted)} targets (one per prediction), got {len(targets)}")
    hits = sum(_until_eos(p, f"predicted[{i}]") == _until_eos(t, f"targets[{i}]")
               for i, (p, t) in enumerate(zip(predicted, targets)))
    return hits / len(predicted)


# ---------------------------------------------------------------------------- decoders


@dataclasses.dataclass(frozen=True, eq=False)
class DecodeResult:
    """The chosen hypothesis of every example.

    sequences: int64 id arrays without BOS and EOS. scores: (B,) float64 sums of the
    log-probabilities of every emitted id (EOS included). normalized_scores: (B,) the scores
    divided by the length penalty, the ranking used (equal to scores when length_penalty is 0,
    and for greedy). finished: (B,) whether the hypothesis ended with EOS (False: cut at max_len).
    attention: (steps, S) float64 per example, the attention row of each emitted id, EOS
    included, so len(sequence) + 1 rows when finished, len(sequence) when cut."""

    sequences: list[np.ndarray]
    scores: np.ndarray
    normalized_scores: np.ndarray
    finished: np.ndarray
    attention: list[np.ndarray]


def expand(arrays, beam_size: int):
    """Every row repeated beam_size times consecutively (np.repeat on axis 0), so row r of the
    result belongs to row r // beam_size: an array, or each array of a tuple/list (-> tuple) or
    dict (-> dict)."""
    _int_at_least("expand", "beam_size", beam_size, 1)

    def one(name, array):
        if not isinstance(array, np.ndarray) or array.ndim < 1:
            raise InputError(f"expand: expected {name} a numpy array with a row axis first, got "
                             f"{type(array).__name__} of shape {np.shape(array)}")
        return np.repeat(array, beam_size, axis=0)

    if isinstance(arrays, dict):
        return {name: one(repr(name), array) for name, array in arrays.items()}
    if isinstance(arrays, (tuple, list)):
        return tuple(one(f"arrays[{i}]", array) for i, array in enumerate(arrays))
    return one("arrays", arrays)


def length_penalty_of(steps, alpha: float):
    """GNMT's length penalty ((5 + steps) / 6) ** alpha (Wu et al. 2016, eq. 14), steps the
    number of scored ids (EOS included); 1 when alpha is 0."""
    return ((5.0 + np.asarray(steps, np.float64)) / 6.0) ** alpha


def _check_decoder(what: str, step, initial_state, batch_size: int, max_len: int) -> tuple:
    if not callable(step):
        raise InputError(f"{what}: expected step a callable (previous_ids, state) -> (logits, attention, state), "
                         f"got {type(step).__name__}")
    _int_at_least(what, "batch_size", batch_size, 1)
    _int_at_least(what, "max_len", max_len, 1)
    if not isinstance(initial_state, (tuple, list)):
        raise InputError(f"{what}: expected initial_state a tuple of numpy arrays, got {type(initial_state).__name__}")
    for i, array in enumerate(initial_state):
        if not isinstance(array, np.ndarray) or array.ndim < 1 or array.shape[0] != batch_size:
            raise InputError(f"{what}: expected initial_state[{i}] a numpy array of {batch_size} rows (batch_size, "
                             f"the row axis first), got {type(array).__name__} of shape {np.shape(array)}")
    return tuple(initial_state)


class _Stepper:
    """Calls the step function, checks what it returns against the first call (V, S fixed), and
    gives float64 log-probabilities."""

    def __init__(self, what: str, step, rows: int):
        self.what, self.step, self.rows = what, step, rows
        self.vocab = self.source = None

    def __call__(self, ids: np.ndarray, state: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
        returned = self.step(ids, state)
        if not isinstance(returned, tuple) or len(returned) != 3:
            raise InputError(f"{self.what}: expected step to return (logits, attention, new_state), got "
                             f"{type(returned).__name__}")
        logits, attention, new_state = returned
        logits = self._array("logits", logits, self.vocab)
        attention = self._array("attention", attention, self.source)
        if self.vocab is None:
            if logits.shape[1] <= EOS:
                raise InputError(f"{self.what}: expected step's logits over at least {EOS + 1} ids (PAD {PAD}, "
                                 f"BOS {BOS}, EOS {EOS}), got {logits.shape[1]}")
            self.vocab, self.source = logits.shape[1], attention.shape[1]
        if np.isnan(logits).any() or np.isposinf(logits).any() or np.isneginf(logits).all(axis=1).any():
            raise InputError(f"{self.what}: expected step's logits finite or -inf with a finite entry per row, got "
                             f"NaN, +inf or a row of -inf")
        if not isinstance(new_state, tuple) or len(new_state) != len(state):
            given = f"a tuple of {len(new_state)}" if isinstance(new_state, tuple) else type(new_state).__name__
            raise InputError(f"{self.what}: expected step's new_state a tuple of {len(state)} arrays (as the state), "
                             f"got {given}")
        for i, array in enumerate(new_state):
            if not isinstance(array, np.ndarray) or array.ndim < 1 or array.shape[0] != self.rows:
                raise InputError(f"{self.what}: expected step's new_state[{i}] a numpy array of {self.rows} rows, got "
                                 f"{type(array).__name__} of shape {np.shape(array)}")
        z = logits.astype(np.float64)
        top = z.max(axis=1, keepdims=True)
        log_probs = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
        return log_probs, attention.astype(np.float64), new_state

    def _array(self, name: str, value, width: int | None) -> np.ndarray:
        shape = np.shape(value)
        if (not isinstance(value, np.ndarray) or value.ndim != 2 or value.shape[0] != self.rows
                or (width is not None and value.shape[1] != width) or value.dtype.kind != "f"):
            expected = f"({self.rows}, {'V' if name == 'logits' else 'S'}" + (f" = {width}" if width else "") + ")"
            raise InputError(f"{self.what}: expected step's {name} a float numpy array of shape {expected}, got "
                             f"{type(value).__name__} {getattr(value, 'dtype', '')} of shape {shape}")
        return value


def greedy(step, initial_state, batch_size: int, max_len: int) -> DecodeResult:
    """Greedy decoding: every example emits its highest-scoring next id (the lowest id on ties)
    until EOS or max_len ids. Equal to beam_search(beam_size=1) with length_penalty 0."""
    state = _check_decoder("greedy", step, initial_state, batch_size, max_len)
    run = _Stepper("greedy", step, batch_size)
    ids = np.full(batch_size, BOS, np.int64)
    scores = np.zeros(batch_size)
    steps = np.zeros(batch_size, np.int64)
    done = np.zeros(batch_size, bool)
    emitted, attention = [], []
    for t in range(1, max_len + 1):
        log_probs, att, state = run(ids, state)
        candidates = scores[:, None] + log_probs  # as beam_search ranks them: the same sums, the same ties
        ids = np.argmax(candidates, axis=1)
        scores = np.where(done, scores, candidates[np.arange(batch_size), ids])
        steps[~done] = t
        emitted.append(ids)
        attention.append(att)
        done |= ids == EOS
        if done.all():
            break
    emitted, attention = np.stack(emitted, axis=1), np.stack(attention, axis=1)  # (B, t), (B, t, S)
    return DecodeResult(sequences=[emitted[b, :steps[b] - done[b]].astype(np.int64) for b in range(batch_size)],
                        scores=scores, normalized_scores=scores.copy(), finished=done,
                        attention=[attention[b, :steps[b]] for b in range(batch_size)])


def beam_search(step, initial_state, batch_size: int, beam_size: int, max_len: int,
                length_penalty: float = 0.0) -> DecodeResult:
    """Beam search with beam_size live hypotheses per example.

    Every step extends each live hypothesis by every id and ranks the beam_size * V candidates
    of an example by score (the float64 sum of log-probabilities; stable sort on descending
    score, so ties go to the lower flat index beam * V + id). Candidates that end in EOS and rank
    among the first beam_size are finished hypotheses; the first beam_size candidates that do not
    end in EOS are the next live ones (their parents' state rows are gathered). At the first step
    only beam 0 is live (the others start at -inf), so the beams do not duplicate.

    Finished hypotheses are ranked by score / ((5 + steps) / 6) ** length_penalty (GNMT; steps =
    ids scored, EOS included; 0 ranks by the plain sum) and the best is kept (ties: the one
    found first). An example stops when its best finished hypothesis ranks at least as high as
    any live one could ever reach (best live score / the penalty at max_len: log-probabilities
    only lower the sum, and for length_penalty >= 0 the penalty grows with length), so stopping
    early never changes the result. At max_len the live hypotheses become candidates too, cut
    without EOS. Decoding ends when every example has stopped or after max_len steps."""
    what = "beam_search"
    state = _check_decoder(what, step, initial_state, batch_size, max_len)
    _int_at_least(what, "beam_size", beam_size, 1)
    if (not isinstance(length_penalty, (int, float, np.floating)) or isinstance(length_penalty, bool)
            or not 0 <= length_penalty < np.inf):
        raise InputError(f"{what}: expected length_penalty a finite float >= 0 (GNMT's alpha; 0: none), "
                         f"got {length_penalty!r}")
    B, K = batch_size, beam_size
    N = B * K
    run = _Stepper(what, step, N)
    state = expand(state, K)
    first_row = np.arange(B)[:, None] * K  # (B, 1): row of each example's beam 0
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0
    ids = np.full(N, BOS, np.int64)
    emitted = np.zeros((N, max_len), np.int64)
    attention = None  # (N, max_len, S), allocated once S is known
    best_rank = np.full(B, -np.inf)
    best: list[tuple | None] = [None] * B  # (score, sequence, attention, finished)
    done = np.zeros(B, bool)
    final_penalty = length_penalty_of(max_len, length_penalty)
    for t in range(1, max_len + 1):
        log_probs, att, state = run(ids, state)
        V = log_probs.shape[1]
        if attention is None:
            attention = np.zeros((N, max_len, att.shape[1]))
        attention[:, t - 1] = att
        candidates = (scores.reshape(N, 1) + log_probs).reshape(B, K * V)
        order = np.argsort(-candidates, axis=1, kind="stable")[:, :2 * K]  # at most K end in EOS
        ranked = np.take_along_axis(candidates, order, axis=1)  # (B, 2K), descending
        beam, token = np.divmod(order, V)
        is_eos = token == EOS
        # The best new candidate of each example: the first EOS among the top K, or at the last
        # step the top one (an EOS or a live hypothesis cut at max_len).
        eligible = np.zeros_like(is_eos)
        eligible[:, :K] = is_eos[:, :K] if t < max_len else np.arange(K) == 0
        eligible &= np.isfinite(ranked) & ~done[:, None]
        position = np.argmax(eligible, axis=1)
        rank = ranked[np.arange(B), position] / length_penalty_of(t, length_penalty)
        for b in np.flatnonzero(eligible.any(axis=1) & (rank > best_rank)):
            row = first_row[b, 0] + beam[b, position[b]]
            finished = bool(is_eos[b, position[b]])
            sequence = emitted[row, :t - 1] if finished else np.append(emitted[row, :t - 1], token[b, position[b]])
            best_rank[b] = rank[b]
            best[b] = (ranked[b, position[b]], sequence.copy(), attention[row, :t].copy(), finished)
        keep = np.argsort(is_eos, axis=1, kind="stable")[:, :K]  # the first K not ending in EOS
        parents = (first_row + np.take_along_axis(beam, keep, axis=1)).reshape(N)
        ids = np.take_along_axis(token, keep, axis=1).reshape(N)
        scores = np.take_along_axis(ranked, keep, axis=1)
        emitted, attention = emitted[parents], attention[parents]
        emitted[:, t - 1] = ids
        state = tuple(array[parents] for array in state)
        done |= best_rank >= scores.max(axis=1) / final_penalty
        if done.all():
            break
    return DecodeResult(sequences=[sequence.astype(np.int64) for _, sequence, _, _ in best],
                        scores=np.array([score for score, _, _, _ in best], np.float64),
                        normalized_scores=best_rank,
                        finished=np.array([finished for _, _, _, finished in best], bool),
                        attention=[att for _, _, att, _ in best])


def decode(framework: str, model, inputs, *, beam_size: int = 1, max_len: int | None = None,
           length_penalty: float = 0.0) -> DecodeResult:
    """Decode the sources `inputs` ({"tokens" (B, S) int64, optional "lengths" (B,)}, canonical
    numpy, validated like parity.forward's) with a native encoder-decoder `model` of `framework`
    (seq2seq_bahdanau, seq2seq_luong, transformer): `greedy` when beam_size is 1 and
    length_penalty 0, else `beam_search`. max_len (None: the spec's target_len) bounds the emitted
    ids, EOS included; a transformer's is at most its positions table (the spec's max_len). The
    framework's adapter (`<impl>.api.decoder`) encodes once and steps `model.decode_step` in
    inference mode."""
    api = adapter(framework)
    spec = getattr(model, "spec", None)
    if not isinstance(spec, (Seq2SeqSpec, TransformerSpec)):
        raise InputError(f"decode: expected an encoder-decoder model (seq2seq_bahdanau, seq2seq_luong, transformer), "
                         f"got {getattr(spec, 'architecture', type(model).__name__)}")
    if not isinstance(inputs, dict) or "decoder_tokens" in inputs:
        given = list(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise InputError(f"decode: expected inputs a dict with 'tokens' and optionally 'lengths' (the decoder "
                         f"feeds itself), got {given}")
    _int_at_least("decode", "beam_size", beam_size, 1)
    max_len = spec.target_len if max_len is None else max_len
    _int_at_least("decode", "max_len", max_len, 1)
    limit = spec.axis_limits().get("T")
    if limit is not None and max_len > limit[0]:
        raise InputError(f"decode: expected max_len at most {limit[0]} (the {spec.architecture} spec's {limit[1]}: "
                         f"the decoder's positions), got {max_len}")
    if isinstance(spec, TransformerSpec) and isinstance(inputs.get("tokens"), np.ndarray) and inputs["tokens"].ndim:
        # The transformer declares decoder_tokens required: validate with the decoder's first input, BOS.
        first = np.full((inputs["tokens"].shape[0], 1), BOS, np.int64)
        inputs = _check_inputs(spec, api.dtype_of(model), {**inputs, "decoder_tokens": first})
        inputs.pop("decoder_tokens")
    else:
        inputs = _check_inputs(spec, api.dtype_of(model), inputs)
    initial_state, step = api.decoder(model, inputs)
    batch_size = inputs["tokens"].shape[0]
    if beam_size == 1 and length_penalty == 0:
        return greedy(step, initial_state, batch_size, max_len)
    return beam_search(step, initial_state, batch_size, beam_size, max_len, length_penalty)


# ---------------------------------------------------------------------------- plots


def plot_attention(attention, source_labels, target_labels, path) -> Path:
    """A heat map of `attention` (T, S), rows the emitted tokens (target_labels, T of them),
    columns the source tokens (source_labels, S), written as a png to `path` (matplotlib's Agg
    backend, nothing displayed); returns the path."""
    attention = np.asarray(attention)
    if attention.ndim != 2 or attention.dtype.kind not in "fiu" or 0 in attention.shape:
        raise InputError(f"plot_attention: expected attention a non-empty (T, S) numeric array, got "
                         f"{attention.dtype} of shape {attention.shape}")
    for name, labels, size in (("target_labels", target_labels, attention.shape[0]),
                               ("source_labels", source_labels, attention.shape[1])):
        if not isinstance(labels, (list, tuple)) or len(labels) != size:
            raise InputError(f"plot_attention: expected {name} a list of {size} labels (attention is "
                             f"{attention.shape}), got {labels!r:.80}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = attention.shape
    fig, ax = plt.subplots(figsize=(1.5 + 0.4 * columns, 1.2 + 0.4 * rows))
    image = ax.imshow(attention, cmap="viridis", aspect="auto")
    ax.set_xticks(range(columns), [str(label) for label in source_labels])
    ax.set_yticks(range(rows), [str(label) for label in target_labels])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
