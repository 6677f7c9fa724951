"""THE table of layout conversions between the canonical (PyTorch) layout and Keras / Flax.

Every weight and activation transpose in the project lives here, keyed by the `kind` of a
layout entry (see `parity/params.py`). Model files never transpose anything; the adapters call
`to_native` when loading, `from_native` when exporting state or gradients, and the activation
helpers at the input/output boundary. Each row has a round-trip test (tests/test_layouts.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Conversion:
    to_native: Callable[[np.ndarray, dict], np.ndarray]
    from_native: Callable[[np.ndarray, dict], np.ndarray]
    why: str


def _identity(array, meta):
    return array


def _flatten_linear_to_channels_last(weight, meta):
    # (out, C*H*W) in CHW order -> (H*W*C, out): the input features a channels-last Flatten emits.
    c, h, w = meta["chw"]
    out = weight.shape[0]
    return weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)


def _flatten_linear_from_channels_last(kernel, meta):
    c, h, w = meta["chw"]
    out = kernel.shape[1]
    return kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w)


IDENTITY = Conversion(_identity, _identity, "same layout")
LINEAR = Conversion(lambda w, m: w.T, lambda k, m: k.T,
                    "torch Linear weight is (out, in); Keras Dense / Flax Linear kernel is (in, out)")
CONV2D = Conversion(lambda w, m: w.transpose(2, 3, 1, 0), lambda k, m: k.transpose(3, 2, 0, 1),
                    "torch Conv2d weight is OIHW; Keras Conv2D / Flax Conv kernel is HWIO")
DEPTHWISE_KERAS = Conversion(lambda w, m: w.transpose(2, 3, 0, 1), lambda k, m: k.transpose(2, 3, 0, 1),
                              "torch depthwise Conv2d (groups=C) weight is (C, 1, kH, kW); Keras "
                              "DepthwiseConv2D kernel is (kH, kW, C, multiplier=1)")
DEPTHWISE_FLAX = Conversion(CONV2D.to_native, CONV2D.from_native,
                            "Flax has no depthwise layer: nnx.Conv with feature_group_count=C takes "
                            "a grouped HWIO kernel (kH, kW, C / groups = 1, C), the dense conv2d transpose")
FLATTEN_LINEAR = Conversion(_flatten_linear_to_channels_last, _flatten_linear_from_channels_last,
                            "first Linear after a flatten: torch flattens CHW, channels-last "
                            "frameworks flatten HWC, so the input rows are permuted as well as transposed")

# kind -> framework -> conversion. torch is the canonical layout, so its column is the identity.
LAYOUTS: dict[str, dict[str, Conversion]] = {
    "linear": {"torch": IDENTITY, "keras": LINEAR, "jax": LINEAR},
    "flatten_linear": {"torch": IDENTITY, "keras": FLATTEN_LINEAR, "jax": FLATTEN_LINEAR},
    "conv2d": {"torch": IDENTITY, "keras": CONV2D, "jax": CONV2D},
    "depthwise_conv2d": {"torch": IDENTITY, "keras": DEPTHWISE_KERAS, "jax": DEPTHWISE_FLAX},
    "embedding": {"torch": IDENTITY, "keras": IDENTITY, "jax": IDENTITY},  # (vocab, dim) everywhere
    # Hugging Face's GPT-2 Conv1D computes x @ W + b with W stored (in, out): already the
    # Keras Dense / Flax Linear kernel layout, so nothing moves (a `linear` transpose would be wrong).
    "conv1d": {"torch": IDENTITY, "keras": IDENTITY, "jax": IDENTITY},
    "vector": {"torch": IDENTITY, "keras": IDENTITY, "jax": IDENTITY},
    "counter": {"torch": IDENTITY, "keras": IDENTITY, "jax": IDENTITY},
}

# Native variable (leaf) name -> canonical leaf name, per framework.
NATIVE_NAMES: dict[str, dict[str, str]] = {
    "torch": {},
    "keras": {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "embeddings": "weight",
              "scale": "weight", "moving_mean": "running_mean", "moving_variance": "running_var",
              "num_batches_tracked": "num_batches_tracked"},
    "jax": {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight", "mean": "running_mean",
            "var": "running_var", "num_batches_tracked": "num_batches_tracked"},
}

# Activations and inputs: torch is channels-first, Keras and Flax are written channels-last. Only
# images have channels; features (B, F) and batch-first sequences (B, T, F) are the same everywhere.
CHANNELS_LAST = {"torch": False, "keras": True, "jax": True}

# torch.nn.RNN/LSTM/GRU keep each layer's and direction's tensors flat on the module
# (`weight_ih_l0_reverse`); Keras and Flax cells are submodules `l0_reverse` owning `weight_ih`.
RECURRENT_LEAVES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_RECURRENT_CELL = re.compile(r"l\d+(?:_reverse)?")


def to_native(framework: str, kind: str, array: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Canonical tensor -> the framework's layout (a contiguous copy)."""
    return np.array(LAYOUTS[kind][framework].to_native(array, meta or {}), order="C")


def from_native(framework: str, kind: str, array: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """The framework's layout -> canonical tensor (a contiguous copy)."""
    return np.array(LAYOUTS[kind][framework].from_native(array, meta or {}), order="C")


def canonical_leaf(framework: str, native_leaf: str) -> str:
    return NATIVE_NAMES[framework].get(native_leaf, native_leaf)


def canonical_name(framework: str, path) -> str:
    """A native variable path (module names..., leaf) -> its canonical name: the leaf renamed by
    NATIVE_NAMES, and a recurrent cell's ("l0_reverse", "weight_ih") -> "weight_ih_l0_reverse"."""
    *modules, leaf = (str(p) for p in path)
    leaf = canonical_leaf(framework, leaf)
    if modules and leaf in RECURRENT_LEAVES and _RECURRENT_CELL.fullmatch(modules[-1]):
        return ".".join([*modules[:-1], f"{leaf}_{modules[-1]}"])
    return ".".join([*modules, leaf])


def _channels_last(framework: str, input_kind: str, ndim: int) -> bool:
    return CHANNELS_LAST[framework] and input_kind == "image" and ndim >= 3


def input_permutation(framework: str, ndim: int, input_kind: str = "image") -> tuple[int, ...] | None:
    """The transpose a traced graph applies to a canonical input (exporters take canonical NCHW
    inputs in every framework), or None where the layouts agree."""
    if _channels_last(framework, input_kind, ndim):
        return (0, *range(2, ndim), 1)
    return None


def activation_to_native(framework: str, array: np.ndarray, input_kind: str) -> np.ndarray:
    """Canonical activation/input of a model taking `input_kind` -> the framework's layout:
    image maps (B, C, *spatial) -> (B, *spatial, C) where channels-last, everything else as is."""
    if _channels_last(framework, input_kind, array.ndim):
        return np.ascontiguousarray(np.moveaxis(array, 1, -1))
    return array


def activation_from_native(framework: str, array: np.ndarray, input_kind: str) -> np.ndarray:
    """Inverse of `activation_to_native`."""
    if _channels_last(framework, input_kind, array.ndim):
        return np.ascontiguousarray(np.moveaxis(array, -1, 1))
    return array


# Porting torch.nn's recurrent tensors into the frameworks' OWN layers. parity's Keras and Flax
# models use cells that hold torch's four tensors as they are (exact state round trips, one
# gradient per tensor); these say what keras.layers.SimpleRNN/LSTM/GRU and nnx.SimpleCell/
# OptimizedLSTMCell/GRUCell need instead, and what they lose (tests/test_sequence.py).
def _gates(array: np.ndarray, hidden: int, order: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([array[g * hidden:(g + 1) * hidden] for g in order])


def keras_native_recurrent(kind: str, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> list[np.ndarray]:
    """`set_weights` of keras.layers.SimpleRNN / LSTM / GRU(reset_after=True) for one torch.nn
    layer and direction. LSTM gates i, f, c, o are torch's i, f, g, o; the GRU's z, r, h are
    torch's r, z, n reordered, with both biases kept as a (2, 3H) stack. SimpleRNN and LSTM have
    one bias: only b_ih + b_hh survives (the forward pass is exact; the state cannot go back)."""
    hidden = weight_hh.shape[1]
    order = (1, 0, 2) if kind == "gru" else tuple(range(weight_hh.shape[0] // hidden))
    weights = [_gates(weight_ih, hidden, order).T, _gates(weight_hh, hidden, order).T]
    if bias_ih is not None:
        biases = (_gates(bias_ih, hidden, order), _gates(bias_hh, hidden, order))
        weights.append(np.stack(biases) if kind == "gru" else biases[0] + biases[1])
    return weights


def flax_native_recurrent(kind: str, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> dict[str, np.ndarray]:
    """Parameters (by attribute path) of nnx.SimpleCell / OptimizedLSTMCell / GRUCell for one
    torch.nn layer and direction; gates are torch's order in all three. Only one bias survives
    the sum (on `dense_i` for SimpleCell and GRUCell, `dense_h` for the LSTM). nnx.GRUCell has no
    bias inside r * (W_hn h + b_hn): torch's GRU fits only where b_hn is 0, else a ValueError."""
    hidden = weight_hh.shape[1]
    params = {"dense_i.kernel": weight_ih.T, "dense_h.kernel": weight_hh.T}
    if bias_ih is None:
        return params
    if kind == "gru":
        if np.any(bias_hh[2 * hidden:]):
            raise ValueError("nnx.GRUCell cannot hold torch's GRU: b_hn (bias_hh's last third) sits inside "
                             "r * (W_hn h + b_hn), where the cell has no bias; it fits only when b_hn = 0")
        params["dense_i.bias"] = bias_ih + np.concatenate([bias_hh[:2 * hidden], np.zeros(hidden, bias_hh.dtype)])
    else:
        params["dense_h.bias" if kind == "lstm" else "dense_i.bias"] = bias_ih + bias_hh
    return params


# Porting torch.nn.MultiheadAttention's packed tensors into the frameworks' OWN attention layers.
# parity's Keras and Flax models hold torch's packed `in_proj_weight` as one variable (exact state
# round trips, one gradient per tensor); these say what keras.layers.MultiHeadAttention and
# nnx.MultiHeadAttention need instead (tests/test_attention.py runs both against torch).
def _split_attention(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads: int) -> dict:
    """torch's (3E, E) packed q, k, v weight and (E, E) out_proj as per-head kernels: the query,
    key and value kernels (E, H, D), their biases (H, D), the output kernel (H, D, E) and bias (E,).
    Head h owns the features h*D .. h*D + D - 1 of each projection, as torch's view(B, L, H, D)."""
    embed = out_proj_weight.shape[0]
    if embed % num_heads or in_proj_weight.shape != (3 * embed, embed):
        raise ValueError(f"expected in_proj_weight (3E, E) = {(3 * embed, embed)} with E divisible by num_heads "
                         f"({num_heads}), got in_proj_weight {in_proj_weight.shape}, out_proj.weight "
                         f"{out_proj_weight.shape}")
    head_dim = embed // num_heads
    split = {}
    for i, name in enumerate(("query", "key", "value")):
        split[f"{name}.kernel"] = in_proj_weight[i * embed:(i + 1) * embed].T.reshape(embed, num_heads, head_dim)
        if in_proj_bias is not None:
            split[f"{name}.bias"] = in_proj_bias[i * embed:(i + 1) * embed].reshape(num_heads, head_dim)
    split["out.kernel"] = out_proj_weight.T.reshape(num_heads, head_dim, embed)
    if out_proj_bias is not None:
        split["out.bias"] = out_proj_bias
    return {name: np.ascontiguousarray(value) for name, value in split.items()}


def keras_native_mha(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads: int) -> list[np.ndarray]:
    """`set_weights` of keras.layers.MultiHeadAttention(num_heads, key_dim=D, value_dim=D) for one
    torch.nn.MultiheadAttention (kdim = vdim = embed_dim; biases None for bias=False): the query,
    key, value and output EinsumDense kernels and biases, in that order. Keras then computes
    torch's function, given masks of the opposite polarity (`attention_mask` True = attend)."""
    split = _split_attention(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads)
    return [split[f"{layer}.{leaf}"] for layer in ("query", "key", "value", "out") for leaf in ("kernel", "bias")
            if f"{layer}.{leaf}" in split]


def flax_native_mha(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads: int) -> dict[str, np.ndarray]:
    """Parameters (by attribute path) of nnx.MultiHeadAttention(num_heads, in_features=E,
    qkv_features=E, out_features=E) for one torch.nn.MultiheadAttention (biases None for
    bias=False): `query`/`key`/`value`.kernel (E, H, D) and .bias (H, D), `out`.kernel (H, D, E) and
    .bias (E,). Flax then computes torch's function, given a mask of the opposite polarity
    (True = attend) shaped (B, 1, L, S)."""
    return _split_attention(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads)
