"""Text generation for the language models (GPT-2) and T5, framework-neutral: greedy decoding and
temperature / top-k / top-p sampling with a fixed seed, the way transformers' `generate` does it.

One loop runs over any framework's native model through the adapter's `generator`:

    next_logits(ids (B, t) int64) -> logits (B, V) of the last position

which returns the logits that follow `ids` (a decoder-only model: the prompt and what was
generated; T5: the decoder's ids, the encoder having read the prompt once). With `use_cache` it
feeds the model only the ids it has not seen, through the model's KV cache (static shapes:
buffers of `max_length` positions, so a compiled step is compiled once, not once per token).

Determinism across frameworks whose logits differ by float rounding: every choice is made here,
in float64 numpy, from the logits: greedy takes the first maximum, sampling draws one uniform
number per row from a numpy Generator seeded by `seed` and inverts the cumulative distribution
of the warped probabilities. Equal logits give equal tokens in every framework; logits within
rounding give equal tokens unless two candidates are within rounding of each other.
"""
from __future__ import annotations

import numpy as np

from parity.errors import InputError
from parity.frameworks import _check_inputs, adapter


def warp(logits: np.ndarray, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """float64 logits (N, V) with the tokens sampling may not pick at -inf, in transformers'
    order: TemperatureLogitsWarper, TopKLogitsWarper (keeps every token tied with the k-th
    largest), TopPLogitsWarper (drops the least likely tokens whose cumulative probability is
    at most 1 - top_p, always keeping the most likely one)."""
    scores = np.asarray(logits, dtype=np.float64) / temperature
    if top_k:
        kth = np.sort(scores, axis=-1)[:, -min(top_k, scores.shape[-1]), None]
        scores = np.where(scores < kth, -np.inf, scores)
    if top_p < 1.0:
        order = np.argsort(scores, axis=-1, kind="stable")  # ascending, as torch.sort
        ascending = np.take_along_axis(scores, order, axis=-1)
        probabilities = np.exp(ascending - ascending[:, -1:])
        cumulative = np.cumsum(probabilities / probabilities.sum(-1, keepdims=True), axis=-1)
        remove_sorted = cumulative <= 1 - top_p
        remove_sorted[:, -1] = False
        remove = np.empty_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        scores = np.where(remove, -np.inf, scores)
    return scores


def choose(logits: np.ndarray, rng: np.random.Generator | None = None, **warpers) -> np.ndarray:
    """The next id of every row: the first maximum (greedy, `rng` None), or a draw from the
    softmax of the warped logits with one uniform number per row from `rng`."""
    if rng is None:
        return np.argmax(np.asarray(logits, dtype=np.float64), axis=-1).astype(np.int64)
    scores = warp(logits, **warpers)
    probabilities = np.exp(scores - scores.max(-1, keepdims=True))
    cumulative = np.cumsum(probabilities, axis=-1)
    draws = rng.random(len(scores)) * cumulative[:, -1]
    ids = np.array([np.searchsorted(row, u, side="right") for row, u in zip(cumulative, draws)])
    return np.minimum(ids, scores.shape[-1] - 1).astype(np.int64)  # u * total can round up to total


def _check_options(max_new_tokens, temperature, top_k, top_p) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise InputError(f"temperature: expected a float > 0, got {temperature!r}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise InputError(f"top_k: expected an int >= 0 (0: no top-k), got {top_k!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise InputError(f"top_p: expected a float in (0, 1] (1: no top-p), got {top_p!r}")


def generate(framework: str, model, inputs, *, max_new_tokens: int, do_sample: bool = False, seed: int = 0,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, eos_token_id: int | None = None,
             pad_token_id: int | None = None, use_cache: bool = True) -> np.ndarray:
    """Generated ids, as transformers' `generate` returns them: a decoder-only model (GPT-2) gives
    the prompt `input_ids` (B, T) followed by up to `max_new_tokens` ids; T5 gives the decoder's
    ids, `decoder_start_token_id` first. A row that emits `eos_token_id` is finished: later
    positions hold `pad_token_id` (default: the EOS id, as transformers does for GPT-2), and
    generation stops once every row is finished. A decoder-only model's prompts are unpadded rows
    of one length (an `attention_mask` with zeros is refused: left padding is not implemented);
    T5's source may be padded (its encoder reads `attention_mask`)."""
    _check_options(max_new_tokens, temperature, top_k, top_p)
    spec = model.spec
    api = adapter(framework)
    encoder_decoder = "decoder_input_ids" in (spec.declared_inputs() or {})
    if encoder_decoder and isinstance(inputs, dict) and isinstance(inputs.get("input_ids"), np.ndarray):
        # The decoder starts from decoder_start_token_id (given ids would be overwritten: refuse them)
        if inputs.get("decoder_input_ids") is not None:
            raise InputError(f"{spec.architecture} generate: expected no decoder_input_ids (the decoder starts "
                             f"from decoder_start_token_id {spec.decoder_start_token_id}), got some")
        inputs = {**inputs, "decoder_input_ids": np.full((len(inputs["input_ids"]), 1), spec.decoder_start_token_id)}
    inputs = _check_inputs(spec, api.dtype_of(model), inputs)
    mask = inputs.get("decoder_attention_mask" if encoder_decoder else "attention_mask")
    if mask is not None and not mask.all():
        raise InputError(f"{spec.architecture} generate: expected an attention_mask of ones (unpadded prompts of "
                         f"one length), got {int((mask == 0).sum())} padded position(s)")
    batch = inputs["input_ids"].shape[0]
    ids = inputs["decoder_input_ids"] if encoder_decoder else inputs["input_ids"]
    max_length = ids.shape[1] + max_new_tokens
    limit = spec.axis_limits().get("T")
    if limit is not None and not encoder_decoder and max_length > limit[0]:
        raise InputError(f"{spec.architecture} generate: expected prompt + max_new_tokens <= {limit[0]} "
                         f"({limit[1]}), got {ids.shape[1]} + {max_new_tokens}")
    # Every registered LM has a KV cache now (GPT-2; T5, whose init_cache also encodes `kept` once);
    # a model without one is still refused by name rather than failing inside its adapter.
    if use_cache and not hasattr(model, "init_cache"):
        raise InputError(f"{spec.architecture} generate: the model has no KV cache; pass use_cache=False")
    ids_name = "decoder_input_ids" if encoder_decoder else "input_ids"
    # The prompt's mask goes (all ones, and the ids grow past it); T5's encoder inputs stay.
    dropped = (ids_name, "decoder_attention_mask" if encoder_decoder else "attention_mask")
    kept = {name: value for name, value in inputs.items() if name not in dropped}
    next_logits = api.generator(model, kept, ids_name, batch, max_length, use_cache)
    rng = np.random.default_rng(seed) if do_sample else None
    pad = eos_token_id if pad_token_id is None else pad_token_id
    finished = np.zeros(batch, bool)
    for _ in range(max_new_tokens):
        chosen = choose(next_logits(ids), rng, temperature=temperature, top_k=top_k, top_p=top_p)
        if eos_token_id is not None:
            chosen = np.where(finished, pad, chosen)
            finished |= chosen == eos_token_id
        ids = np.concatenate([ids, chosen[:, None]], axis=1)
        if finished.all():
            break
    return ids
