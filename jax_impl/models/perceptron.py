"""Rosenblatt's perceptron: z = w·x + b, output step(z) or sigmoid(z)."""
from flax import nnx

from jax_impl.activations import activation


class Perceptron(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.fc = nnx.Linear(spec.in_features, 1, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.output_fn = activation(spec.output)

    def __call__(self, x):  # (B, F)
        z = self.fc(x)  # (B, 1)
        return {"logits": z, "output": self.output_fn(z)}
