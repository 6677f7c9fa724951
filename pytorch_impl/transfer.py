"""Freezing in PyTorch: `requires_grad_(False)`. autograd computes no gradient for a frozen
parameter and `build_optimizer` leaves it out of the optimizer, so no update, no weight decay and
no optimizer state reach it.

A frozen batch norm (the "frozen" policy of `parity.transfer`) must be in eval mode to use and keep
its running statistics. `model.train()` puts every submodule back in training mode, so the modules
are recorded on the model and the adapter returns them to eval mode after each switch
(`pytorch_impl.api._set_mode`): requires_grad_ alone leaves them normalising with batch statistics
and updating their running statistics.
"""


def freeze(model, names, norms):
    """Freeze the parameters `names` (canonical) and keep the batch-norm modules `norms` in eval mode."""
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(False)
    model.frozen_norms = tuple(norms)
    return model
