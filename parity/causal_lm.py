"""A small GPT (the `gpt2` architecture at character level) trained on the shipped text in every
framework from one canonical state, and sampled with parity.generation.

`char_gpt_spec` sizes a gpt2 spec for a character vocabulary; `text_batches` draws a fixed stream
of random windows of the text (the same in every framework): inputs are `seq_len` ids, targets the
same window shifted by one (next-character prediction, the causal-LM loss); `train` runs a
framework's native optimizer over the stream (parity.training's native steps) and keeps every
step's loss; `complete` continues a prompt with parity.generation.generate (KV cache, greedy or
seeded sampling). benchmarks/gpt_text.py and tests/test_causal_lm.py use these.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from parity.errors import InputError
from parity.frameworks import export_state
from parity.generation import generate
from parity.optimizers import OptimizerSpec
from parity.specs import Spec, spec as make_spec
from parity.text import Vocabulary
from parity.training import _run


def char_gpt_spec(vocabulary: Vocabulary, *, seq_len: int, n_embd: int, n_layer: int, n_head: int,
                  n_positions: int | None = None, **fields) -> Spec:
    """A `gpt2` spec over `vocabulary`'s characters, without dropout (runs must be comparable
    step by step), attending over up to `n_positions` characters (default: `seq_len`)."""
    return make_spec("gpt2", "tiny", vocab_size=vocabulary.size, n_positions=n_positions or seq_len,
                     n_embd=n_embd, n_layer=n_layer, n_head=n_head, seq_len=seq_len, **fields).deterministic()


def text_batches(ids: np.ndarray, steps: int, batch_size: int, seq_len: int, seed: int):
    """`steps` (inputs, targets) pairs: `batch_size` windows of seq_len + 1 ids at random offsets
    of `ids` (deterministic from `seed`), split into {"input_ids": window[:-1]} and window[1:]."""
    ids = np.asarray(ids, np.int64)
    if ids.ndim != 1 or ids.size <= seq_len + 1:
        raise InputError(f"text_batches: expected a 1-d id stream longer than seq_len + 1 = {seq_len + 1}, "
                         f"got shape {ids.shape}")
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        starts = rng.integers(0, ids.size - seq_len - 1, batch_size)
        windows = np.stack([ids[s:s + seq_len + 1] for s in starts])
        batches.append(({"input_ids": windows[:, :-1]}, windows[:, 1:]))
    return batches


@dataclasses.dataclass(frozen=True, eq=False)
class TextRun:
    """One framework's run: every step's loss (at the weights before its update), the canonical
    state at the end, the native model holding it, and the wall time (building included)."""

    framework: str
    losses: list[float]
    state: dict[str, np.ndarray]
    model: object
    seconds: float


def train(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches, dtype: str | None = None
          ) -> TextRun:
    """Train from the canonical `state` with the framework's native optimizer, one step per batch."""
    start = time.perf_counter()
    losses = []
    for loss, model, _, _ in _run(framework, spec, state, optimizer, batches, dtype, optimizer_state=None):
        losses.append(float(loss))
    return TextRun(framework, losses, export_state(framework, model), model, time.perf_counter() - start)


def complete(framework: str, model, vocabulary: Vocabulary, prompt: str, length: int, *, do_sample: bool = False,
             seed: int = 0, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0) -> str:
    """`length` characters after `prompt` (not included), through parity.generation.generate."""
    ids = generate(framework, model, {"input_ids": vocabulary.encode(prompt)[None, :]}, max_new_tokens=length,
                   do_sample=do_sample, seed=seed, top_k=top_k, top_p=top_p, temperature=temperature)
    return vocabulary.decode(ids[0, len(prompt):])
