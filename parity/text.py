"""Text for character-level language models, framework-neutral: a shipped corpus, its character
vocabulary, and char-rnn's truncated-BPTT windows.

Shipped texts (package data, `parity/datasets/<name>.txt`, read as a resource so an installed
package finds them too):

- "tiny_shakespeare": the first 65536 bytes of Karpathy's tiny-shakespeare
  (github.com/karpathy/char-rnn, data/tinyshakespeare/input.txt: ~40k lines from Shakespeare's
  plays, public domain), cut back to the last full line (the cut falls on one: all 65536 bytes).
  ASCII, 59 distinct characters (the full 1.1 MB text has 65: this cut has no '$', '&', '3',
  'Q', 'X' or 'Z').

`bptt_windows` lays the id stream out as char-rnn's loader does (CharSplitLMMinibatchLoader):
`batch_size` contiguous rows, cut into consecutive `seq_len`-step windows, so row b of window
k + 1 continues row b of window k and a model can carry its final state from one to the next.
"""
from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np

from parity.errors import InputError

TEXTS = ("tiny_shakespeare",)


def load_text(name: str = "tiny_shakespeare") -> str:
    """A shipped text, whole, as a str."""
    if name not in TEXTS:
        raise InputError(f"load_text: expected one of {list(TEXTS)}, got {name!r}")
    return resources.files("parity").joinpath("datasets", f"{name}.txt").read_text(encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Characters <-> int64 ids: id i is the i-th character of `chars` (sorted, unique)."""

    chars: str

    def __post_init__(self):
        if not isinstance(self.chars, str) or not self.chars:
            raise InputError(f"Vocabulary: expected a non-empty str of characters, got {self.chars!r}")
        if list(self.chars) != sorted(set(self.chars)):
            raise InputError(f"Vocabulary: expected sorted, unique characters (use Vocabulary.from_text), "
                             f"got {self.chars!r}")
        object.__setattr__(self, "_ids", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The sorted unique characters of `text`."""
        if not isinstance(text, str) or not text:
            raise InputError(f"Vocabulary.from_text: expected a non-empty str, got {text!r:.80}")
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """The ids of `text`'s characters, an int64 array of len(text)."""
        if not isinstance(text, str):
            raise InputError(f"Vocabulary.encode: expected a str, got {type(text).__name__}")
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError:
            position = next(i for i, c in enumerate(text) if c not in self._ids)
            raise InputError(f"Vocabulary.encode: expected characters of the vocabulary {self.chars!r}, got "
                             f"{text[position]!r} at position {position}") from None

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a 1-D integer array or list)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise InputError(f"Vocabulary.decode: expected a 1-D sequence of integer ids, got "
                             f"{ids.dtype} of shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise InputError(f"Vocabulary.decode: expected ids in [0, {self.size}), got values in "
                             f"[{ids.min()}, {ids.max()}]")
        return "".join(self.chars[i] for i in ids.tolist())


def _positive_int(what: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InputError(f"bptt_windows: expected {what} a positive int, got {value!r}")


def bptt_windows(ids, batch_size: int, seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """char-rnn's truncated-BPTT batches of an id stream: a list of (tokens, targets), both int64
    (batch_size, seq_len), targets the next id of every token.

    The stream (its first n = batch_size * K * seq_len + 1 ids, K as large as fits) is split into
    `batch_size` contiguous rows of K * seq_len tokens; window k holds steps k * seq_len ..
    (k + 1) * seq_len - 1 of every row. So window k + 1 continues window k row by row (its first
    token is the last target of window k), and the final state of one window is the right initial
    state of the next."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"bptt_windows: expected a 1-D integer array of ids, got {ids.dtype} of shape {ids.shape}")
    _positive_int("batch_size", batch_size)
    _positive_int("seq_len", seq_len)
    windows = (ids.size - 1) // (batch_size * seq_len)  # the last id is only a target
    if windows < 1:
        raise InputError(f"bptt_windows: expected at least batch_size * seq_len + 1 = "
                         f"{batch_size * seq_len + 1} ids, got {ids.size}")
    row = windows * seq_len
    tokens = ids[:batch_size * row].astype(np.int64).reshape(batch_size, row)
    targets = ids[1:batch_size * row + 1].astype(np.int64).reshape(batch_size, row)
    return [(np.ascontiguousarray(tokens[:, k * seq_len:(k + 1) * seq_len]),
             np.ascontiguousarray(targets[:, k * seq_len:(k + 1) * seq_len])) for k in range(windows)]
