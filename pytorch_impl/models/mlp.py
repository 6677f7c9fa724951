"""Multi-layer perceptron: [Linear -> (BatchNorm) -> activation -> Dropout] * depth -> Linear."""
from torch import nn

from pytorch_impl.activations import activation
from pytorch_impl.layers import BatchNorm


class MLPBlock(nn.Module):
    def __init__(self, in_features, out_features, spec, dtype):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, dtype=dtype)
        self.bn = (BatchNorm(out_features, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)
                   if spec.batch_norm else None)
        self.act = activation(spec.activation, spec.negative_slope)
        self.drop = nn.Dropout(spec.dropout)

    def forward(self, x):  # (B, in)
        x = self.fc(x)  # (B, out)
        if self.bn is not None:
            x = self.bn(x)
        return self.drop(self.act(x))


class MLP(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        widths = (spec.in_features, *spec.hidden_sizes)
        self.blocks = nn.ModuleList(MLPBlock(i, o, spec, dtype) for i, o in zip(widths, widths[1:]))
        self.head = nn.Linear(widths[-1], spec.num_classes, dtype=dtype)

    def forward(self, x):  # (B, in_features)
        for block in self.blocks:
            x = block(x)  # (B, hidden)
        return {"logits": self.head(x)}  # (B, num_classes)
