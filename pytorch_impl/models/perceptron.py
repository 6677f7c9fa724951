"""Rosenblatt's perceptron: z = w·x + b, output step(z) or sigmoid(z)."""
from torch import nn

from pytorch_impl.activations import activation


class Perceptron(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.fc = nn.Linear(spec.in_features, 1, dtype=dtype)
        self.output_fn = activation(spec.output)

    def forward(self, x):  # (B, F)
        z = self.fc(x)  # (B, 1)
        return {"logits": z, "output": self.output_fn(z)}
