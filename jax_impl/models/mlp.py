"""Multi-layer perceptron: [Linear -> (BatchNorm) -> activation -> Dropout] * depth -> Linear."""
from flax import nnx

from jax_impl.activations import activation
from jax_impl.layers import BatchNorm


class MLPBlock(nnx.Module):
    def __init__(self, in_features, out_features, spec, dtype, *, rngs: nnx.Rngs):
        self.fc = nnx.Linear(in_features, out_features, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.bn = (BatchNorm(out_features, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype,
                             rngs=rngs) if spec.batch_norm else None)
        self.act = activation(spec.activation, spec.negative_slope)
        self.drop = nnx.Dropout(spec.dropout, rngs=rngs)

    def __call__(self, x):  # (B, in)
        x = self.fc(x)  # (B, out)
        if self.bn is not None:
            x = self.bn(x)
        return self.drop(self.act(x))


class MLP(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        widths = (spec.in_features, *spec.hidden_sizes)
        self.blocks = nnx.List([MLPBlock(i, o, spec, dtype, rngs=rngs) for i, o in zip(widths, widths[1:])])
        self.head = nnx.Linear(widths[-1], spec.num_classes, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):  # (B, in_features)
        for block in self.blocks:
            x = block(x)  # (B, hidden)
        return {"logits": self.head(x)}  # (B, num_classes)
