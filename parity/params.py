"""Entries of a canonical layout: what each named tensor is, and builders for common layers.

A `Param` describes one canonical tensor: its shape, its dtype ("float" follows the state's
float dtype, "int64" for counters), its *kind* (which row of the conversion table in
`parity/layouts.py` applies) and how `parity.init_state` fills it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    shape: tuple[int, ...]
    kind: str  # linear | conv1d | flatten_linear | conv2d | depthwise_conv2d | embedding | vector | counter
    init: str  # uniform | normal (std meta['std'], default 1) | ones | zeros | norm_weight | norm_bias | norm_mean | norm_var
    dtype: str = "float"  # "float" (the state's float dtype) or "int64"
    trainable: bool = True
    fan_in: int = 0  # uniform init bound 1/sqrt(fan_in): torch.nn's default for Linear/Conv
    meta: dict = field(default_factory=dict, compare=False)  # e.g. flatten_linear's source (C, H, W)


def linear(prefix: str, in_features: int, out_features: int, *, bias: bool = True,
           flatten_chw: tuple[int, int, int] | None = None, steps: int | None = None) -> dict[str, Param]:
    """torch.nn.Linear: weight (out, in), bias (out,). `flatten_chw` marks a Linear fed by a
    CHW flatten, whose input order differs in channels-last frameworks (HWC); `steps`, one
    applied at every time step of a sequence (for the FLOP count)."""
    if flatten_chw is not None:
        weight = Param((out_features, in_features), "flatten_linear", "uniform", fan_in=in_features,
                       meta={"chw": tuple(flatten_chw)})
    else:
        weight = Param((out_features, in_features), "linear", "uniform", fan_in=in_features,
                       meta={} if steps is None else {"steps": steps})
    params = {f"{prefix}.weight": weight}
    if bias:
        params[f"{prefix}.bias"] = Param((out_features,), "vector", "uniform", fan_in=in_features)
    return params


def conv2d(prefix: str, in_channels: int, out_channels: int, kernel_size: int, *, output_size: int,
           bias: bool = True, groups: int = 1) -> dict[str, Param]:
    """torch.nn.Conv2d: weight (out, in / groups, kH, kW) = OIHW, bias (out,).

    `groups` is 1 (a dense convolution) or the channel count (depthwise: one filter per
    channel), the two the CNNs use; the native layouts of a depthwise kernel differ per framework.
    `output_size` (the side of the square output map) is kept for the analytic FLOP count.
    """
    if groups not in (1, in_channels) or (groups > 1 and out_channels != in_channels):
        raise ValueError(f"{prefix}: expected groups 1 or depthwise (groups == in == out channels), "
                         f"got groups={groups}, in={in_channels}, out={out_channels}")
    fan_in = in_channels // groups * kernel_size * kernel_size
    kind = "conv2d" if groups == 1 else "depthwise_conv2d"
    params = {f"{prefix}.weight": Param((out_channels, in_channels // groups, kernel_size, kernel_size),
                                        kind, "uniform", fan_in=fan_in, meta={"output_size": output_size})}
    if bias:
        params[f"{prefix}.bias"] = Param((out_channels,), "vector", "uniform", fan_in=fan_in)
    return params


def batch_norm(prefix: str, num_features: int, *, zero_weight: bool = False) -> dict[str, Param]:
    """torch.nn.BatchNorm{1,2}d: affine weight/bias plus running buffers and the batch counter.
    `zero_weight` starts the scale at 0 (ResNet's `zero_init_residual`)."""
    n = (num_features,)
    return {
        f"{prefix}.weight": Param(n, "vector", "zeros" if zero_weight else "norm_weight"),
        f"{prefix}.bias": Param(n, "vector", "norm_bias"),
        f"{prefix}.running_mean": Param(n, "vector", "norm_mean", trainable=False),
        f"{prefix}.running_var": Param(n, "vector", "norm_var", trainable=False),
        f"{prefix}.num_batches_tracked": Param((), "counter", "zeros", dtype="int64", trainable=False),
    }
