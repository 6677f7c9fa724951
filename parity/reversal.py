"""Train encoder-decoders (with attention, and the Transformer) on the digit-reversal task
(parity.decoding), in every framework from one canonical state, and compare what they learn.

`reversal_spec` sizes a seq2seq spec for the task; `training_batches` draws a fixed stream of
fresh minibatches (the same in every framework); `train_until` runs a framework's native
optimizer over the stream (parity.training's native steps, the spec's loss in training mode) and stops
at the first evaluation whose held-out greedy exact match reaches a target; `evaluate` decodes a
held-out set greedily and with beam search. `max_relative_difference` and `identical_fraction`
compare the runs. benchmarks/seq2seq_reversal.py and tests/test_seq2seq_training.py use these.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from parity.decoding import VOCAB_SIZE, DecodeResult, Seq2SeqBatch, decode, digit_reversal, exact_match
from parity.errors import InputError
from parity.frameworks import export_state
from parity.optimizers import OptimizerSpec
from parity.specs import Spec, spec as make_spec
from parity.training import _run


def reversal_spec(architecture: str, *, max_len: int, **fields) -> Spec:
    """A spec for digit reversal of up to `max_len` digits: the task's vocabulary on both sides,
    source_len max_len, target_len max_len + 1 (the digits and EOS); `fields` size the model
    (the `tiny` preset's otherwise). seq2seq_bahdanau / seq2seq_luong: embedding_dim,
    hidden_size, num_layers (default 1), attention_size (Bahdanau's alignment units); transformer: d_model,
    nhead, num_encoder_layers, ... (its positions table, the spec's own max_len, is set to the
    target length)."""
    if architecture not in ("seq2seq_bahdanau", "seq2seq_luong", "transformer"):
        raise InputError(f"reversal_spec: expected architecture 'seq2seq_bahdanau', 'seq2seq_luong' or "
                         f"'transformer', got {architecture!r}")
    lengths = {"source_len": max_len, "target_len": max_len + 1}
    if architecture == "transformer":
        lengths["max_len"] = max_len + 1
    else:
        fields.setdefault("num_layers", 1)
    return make_spec(architecture, "tiny", source_vocab_size=VOCAB_SIZE, target_vocab_size=VOCAB_SIZE, **lengths,
                     **fields)


def training_batches(steps: int, batch_size: int, *, min_len: int, max_len: int, seed: int) -> list[Seq2SeqBatch]:
    """`steps` minibatches of `batch_size` fresh examples (no example seen twice), deterministic
    from `seed`."""
    return digit_reversal(steps * batch_size, min_len=min_len, max_len=max_len, seed=seed).minibatches(batch_size)


@dataclasses.dataclass(frozen=True, eq=False)
class ReversalRun:
    """One framework's training run. losses: the loss of every step, at the weights before its
    update; evaluations: (steps done, held-out greedy exact match) at each evaluation; state: the
    canonical state at the end; model: the native model holding it; seconds: wall time of
    building the native model and optimizer, the training steps and evaluations."""

    framework: str
    losses: list[float]
    evaluations: list[tuple[int, float]]
    state: dict[str, np.ndarray]
    model: object
    seconds: float

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def reached(self) -> float:
        return self.evaluations[-1][1] if self.evaluations else float("nan")


def train_until(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches: list[Seq2SeqBatch],
                held_out: Seq2SeqBatch, *, target: float = 0.95, eval_every: int = 100,
                dtype: str | None = None) -> ReversalRun:
    """Train from the canonical `state` with the framework's native optimizer, one step per batch,
    evaluating held-out greedy exact match every `eval_every` steps (and after the last batch);
    stop at the first evaluation reaching `target` (or when the batches run out)."""
    if not batches or not all(isinstance(b, Seq2SeqBatch) for b in batches):
        raise InputError("train_until: expected batches a non-empty list of Seq2SeqBatch")
    if not 0 < eval_every:
        raise InputError(f"train_until: expected eval_every >= 1, got {eval_every!r}")
    steps = _run(framework, spec, state, optimizer, [(batch.inputs, batch.targets) for batch in batches], dtype,
                 optimizer_state=None)
    losses, evaluations = [], []
    start = time.perf_counter()
    for step, (loss, model, _, _) in enumerate(steps, start=1):
        losses.append(float(loss))
        if step % eval_every == 0 or step == len(batches):
            evaluations.append((step, evaluate(framework, model, held_out)[0]))
            if evaluations[-1][1] >= target:
                break
    seconds = time.perf_counter() - start
    return ReversalRun(framework, losses, evaluations, export_state(framework, model), model, seconds)


def evaluate(framework: str, model, held_out: Seq2SeqBatch, *, beam_size: int = 1,
             length_penalty: float = 0.0) -> tuple[float, DecodeResult]:
    """(exact match, decoded) of `held_out`'s sources: greedy for beam_size 1, else beam search,
    at most target_len ids."""
    result = decode(framework, model, {"tokens": held_out.tokens, "lengths": held_out.lengths},
                    beam_size=beam_size, length_penalty=length_penalty)
    return exact_match(result.sequences, held_out.targets), result


def max_relative_difference(curves: list[list[float]], steps: int) -> float:
    """max over the first `steps` steps of |a - b| / |b| between every curve and the first."""
    reference = np.asarray(curves[0][:steps], np.float64)
    return max(float(np.max(np.abs(np.asarray(c[:steps], np.float64) - reference) / np.abs(reference)))
               for c in curves[1:])


def identical_fraction(results: list[DecodeResult]) -> float:
    """The fraction of examples whose sequences are identical, id for id, in every result."""
    first = results[0].sequences
    same = [all(np.array_equal(r.sequences[i], first[i]) for r in results[1:]) for i in range(len(first))]
    return float(np.mean(same))
