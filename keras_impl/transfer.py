"""Freezing in Keras: `trainable = False`. A frozen variable leaves `model.trainable_variables`,
so the GradientTape step and fit() never ask for its gradient and the optimizer never gets it: no
update, no weight decay, no slot. (The flag does not reach the TensorFlow variable underneath: a
tape still watches it, and asked for its gradient, computes it.)

A BatchNormalization *layer* with trainable=False also runs in inference mode: it normalises with
its moving statistics and stops updating them, whatever `training` says. That is the "frozen"
policy of `parity.transfer`; for the "train" policy only the layer's gamma and beta variables are
frozen, and the layer keeps normalising with batch statistics and updating its moving ones.
"""
import keras_impl  # noqa: F401  (selects the backend before keras is imported)

# The adapter's package-internal maps of canonical paths to Keras layers and variables.
from keras_impl.api import _named_layers, _named_variables


def freeze(model, names, norms):
    """Freeze the variables `names` (canonical) and the batch-norm layers `norms` (inference mode)."""
    variables = _named_variables(model)
    for name in names:
        variables[name].trainable = False
    layers = dict(_named_layers(model))
    for path in norms:
        layers[path].trainable = False
    return model
