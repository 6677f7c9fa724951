"""Freezing in Flax NNX + optax: a mask. A frozen Param is marked (`frozen` metadata) and
`build_optimizer` sends it to `optax.set_to_zero()` through `optax.multi_transform`, so the
optimizer keeps no state for it and its update is zero; weight decay (chained inside the trained
branch) never reaches it. The update is still *added*: a -0.0 comes back +0.0.

A frozen batch norm (the "frozen" policy of `parity.transfer`) needs use_running_average=True.
`model.train()` sets use_running_average=False on every module, so the modules are recorded on the
model and the adapter sets it back after each switch (`jax_impl.api._set_mode`).
"""
# The adapter's package-internal map of canonical names to nnx Variables.
from jax_impl.api import _named_variables


def freeze(model, names, norms):
    """Mark the Params `names` (canonical) frozen and keep the batch-norm modules `norms` on their
    running statistics."""
    variables = _named_variables(model)
    for name in names:
        variables[name].set_metadata(frozen=True)
    model.frozen_norms = tuple(norms)
    return model
