"""Parity tolerances: every number with the reason it is what it is.

All errors are *relative to scale*: max |a - b| / max(max |a|, max |b|). Scaling by the
tensor's largest magnitude (not elementwise) keeps entries near zero, where relative rounding
error is unbounded, from failing a check whose absolute error is at the rounding level.
Gradients are scaled by the largest gradient entry of the whole model, so a parameter whose
gradient is tiny is still checked absolutely against the model's gradient scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    reason: str


FORWARD = {
    "float32": Tolerance(1e-5, "float32 has a 6e-8 unit roundoff; tiny presets accumulate a few hundred "
                               "roundings in different orders per framework (measured worst over every "
                               "preset, eval and train: 3.7e-7, MLP mnist), so 1e-5 leaves ~30x headroom and still catches any "
                               "real semantic difference (those show up at 1e-3 and above)"),
    "float64": Tolerance(1e-12, "float64 unit roundoff is 1.1e-16; measured worst 1.1e-15 (MLP mnist); "
                                "1e-12 catches any op silently computed in float32 (errors ~1e-8)"),
}
GRADIENT = {
    "float32": Tolerance(1e-4, "backward passes sum over the batch and chain several roundings per "
                               "layer; measured worst 7.2e-7 (MLP tiny)"),
    "float64": Tolerance(1e-10, "as float32, scaled by the float64 roundoff; measured worst 1.0e-15; any float32 "
                                "op in the backward pass shows up at ~1e-8"),
}
# Updated batch-norm buffers after a training step: a mean and a variance of the batch,
# the same arithmetic depth as a forward activation.
BUFFER = FORWARD


def errors(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> tuple[float, float]:
    """(max abs error, max abs error relative to scale) between two arrays of one shape."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    max_abs = float(np.max(np.abs(a - b)))
    if scale is None:
        scale = float(max(np.max(np.abs(a)), np.max(np.abs(b))))
    return max_abs, (max_abs / scale if scale > 0 else max_abs)


def relative_error(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> float:
    """The relative part of `errors`: max |a - b| / scale (by default the larger max |value|)."""
    return errors(a, b, scale)[1]
