"""The adapter parity's core dispatches to for framework "torch".

Inputs and outputs are numpy in the canonical layout; torch's layout *is* canonical, so nothing
is converted here. Callers go through `parity.build/forward/...`, which validate first.
"""
import os
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from parity.specs.base import IGNORE_INDEX
from parity.state import layout
from pytorch_impl.models import MODELS

FRAMEWORK = "torch"
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def set_deterministic():
    """Full-precision float32 matmuls (no TF32) and deterministic kernels."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def _device():
    # CPU unless PARITY_TORCH_DEVICE says otherwise (the GPU script sets "cuda").
    return torch.device(os.environ.get("PARITY_TORCH_DEVICE", "cpu"))


def build(spec, dtype="float32"):
    """An uninitialised model: built on the meta device, then given empty storage, because
    `parity.build` always loads a canonical state next (torch's own init of VGG's 130 M
    parameters would cost seconds for nothing)."""
    with torch.device("meta"):
        model = MODELS[spec.architecture](spec, _DTYPES[dtype])
    model = model.to_empty(device=_device())
    for module in model.modules():  # buffers that are not in the state (the Transformer's positions)
        if hasattr(module, "init_buffers"):
            module.init_buffers()
    return model.eval()


def dtype_of(model) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def load_state(model, state):
    # strict=True: every canonical name must exist natively and vice versa.
    model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in state.items()},
                          strict=True)
    return model


def export_state(model):
    native = model.state_dict()
    return {name: native[name].detach().cpu().numpy().copy() for name in layout(model.spec)}


def _set_mode(model, train):
    """model.train(train), with the batch norm `pytorch_impl.transfer.freeze` keeps in eval mode put
    back there: model.train() switches every submodule."""
    model.train(train)
    modules = dict(model.named_modules())
    for path in getattr(model, "frozen_norms", ()):
        modules[path].eval()


def _record(records, name, module, args, output):
    if isinstance(output, torch.Tensor):  # not a dict of outputs (a recurrent stack inside a model)
        records[name] = output.detach().cpu().numpy().copy()


def _native_inputs(spec, inputs):
    """Canonical numpy inputs (one array, or named arrays) -> (main input, keyword inputs), tensors
    on the model's device."""
    named = {name: torch.from_numpy(value).to(_device()) for name, value in (
        inputs if isinstance(inputs, dict) else {spec.input_kind: inputs}).items()}
    return named.pop(spec.input_kind), named


def forward(model, inputs, *, train=False, rng=None, trace=False):
    """Run the model on canonical numpy inputs; with `trace`, also every submodule's output."""
    if rng is not None:
        torch.manual_seed(rng)
    _set_mode(model, train)
    records = {}
    hooks = [module.register_forward_hook(partial(_record, records, name))
             for name, module in model.named_modules() if name] if trace else []
    try:
        with torch.no_grad():
            x, extra = _native_inputs(model.spec, inputs)
            outputs = model(x, **extra)
    finally:
        for hook in hooks:
            hook.remove()
        model.eval()
    outputs = {name: value.cpu().numpy() for name, value in outputs.items()}
    return (outputs, records) if trace else outputs


def decoder(model, inputs):
    """The encoder-decoder `model` as parity.decoding wants it: (initial_state, step) for validated
    canonical inputs {"tokens", optional "lengths"}. initial_state = (memory, mask, *model state),
    numpy arrays rows-first (all of them gathered by the beam search); step(previous_ids, state)
    -> (logits, attention, new_state) runs `model.decode_step` once in inference mode, without
    gradients, on tensors of the model's dtype on its device."""
    _set_mode(model, False)

    def native(array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(_device())

    def numpy(tensor):
        return tensor.cpu().numpy()

    with torch.no_grad():
        memory, mask, state = model.encode(native(inputs["tokens"]),
                                           None if inputs.get("lengths") is None else native(inputs["lengths"]))
        initial_state = (numpy(memory), numpy(mask), *(numpy(s) for s in state))

    def step(previous_ids, state):
        with torch.no_grad():
            memory, mask, *rest = state  # handed back as they came: the decoders gather them
            logits, attention, rest = model.decode_step(native(previous_ids), tuple(native(s) for s in rest),
                                                        native(memory), native(mask))
            return numpy(logits), numpy(attention), (memory, mask, *(numpy(s) for s in rest))

    return initial_state, step


def generator(model, kept, ids_name, batch, max_length, use_cache):
    """parity.generation's next_logits(ids (B, t)) -> logits (B, V) of the last position, for
    validated canonical inputs `kept` (all but the ids that grow, `ids_name`, and their mask).
    Without the cache: the forward pass over every id so far (the decoder's ids of an
    encoder-decoder, which reads `kept` again). With it: `model.decode` on
    the ids not fed yet, at their positions, into `model.init_cache`'s buffers of `max_length`
    slots (filled in place); init_cache gets `kept` too (an encoder-decoder encodes it once)."""
    if not use_cache:
        return lambda ids: forward(model, {**kept, ids_name: ids})["logits"][:, -1]
    _set_mode(model, False)
    with torch.no_grad():
        cache = model.init_cache(batch, max_length, **{name: torch.from_numpy(value).to(_device())
                                                       for name, value in kept.items()})
    fed = 0

    def next_logits(ids):
        nonlocal cache, fed
        with torch.no_grad():
            logits, cache = model.decode(torch.from_numpy(ids[:, fed:]).to(_device()), cache, fed)  # (B, t, V)
        fed = ids.shape[1]
        return logits[:, -1].cpu().numpy()

    return next_logits


def loss_function(kind, dtype):
    """The spec's loss, mean over the batch: fn(logits, targets) -> scalar."""
    if kind in ("cross_entropy", "masked_cross_entropy"):  # logits (..., classes): per example or per step
        # torch skips IGNORE_INDEX (-100) targets in both (its default ignore_index); parity's
        # checks let them through only for masked_cross_entropy.
        return lambda logits, targets: F.cross_entropy(logits.flatten(0, -2), targets.flatten(),
                                                       ignore_index=IGNORE_INDEX)
    if kind == "mse":
        return F.mse_loss
    return F.binary_cross_entropy_with_logits


def loss_and_grads(model, inputs, targets, *, train=False):
    """Mean loss of the spec's kind and its gradient w.r.t. every parameter, canonical names."""
    _set_mode(model, train)
    model.zero_grad(set_to_none=True)
    try:
        x, extra = _native_inputs(model.spec, inputs)
        prediction = model(x, **extra)[model.spec.loss_output]
        loss = loss_function(model.spec.loss, dtype_of(model))(prediction, torch.from_numpy(targets).to(_device()))
        loss.backward()
    finally:
        model.eval()
    params = dict(model.named_parameters())
    # A parameter the graph never touched has no .grad: report zeros so the parity check sees it.
    return loss.item(), {name: (params[name].grad if params[name].grad is not None
                                else torch.zeros_like(params[name])).detach().cpu().numpy().copy()
                         for name, param in layout(model.spec).items() if param.trainable}
