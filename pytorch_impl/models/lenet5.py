"""LeNet-5 (LeCun et al. 1998), channels-first."""
import torch
from torch import nn

from pytorch_impl.activations import activation
from pytorch_impl.layers import pooling


class LeNet5(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(spec.in_channels, 6, 5, padding=spec.conv1_padding, dtype=dtype)
        self.conv2 = nn.Conv2d(6, 16, 5, dtype=dtype)
        self.fc1 = nn.Linear(16 * 5 * 5, 120, dtype=dtype)
        self.fc2 = nn.Linear(120, 84, dtype=dtype)
        self.fc3 = nn.Linear(84, spec.num_classes, dtype=dtype)
        self.act = activation(spec.activation, spec.negative_slope)
        self.pool = pooling(spec.pooling)

    def forward(self, x):  # (B, C, 32, 32), or (B, C, 28, 28) padded by conv1
        x = self.pool(self.act(self.conv1(x)))  # (B, 6, 14, 14)
        x = self.pool(self.act(self.conv2(x)))  # (B, 16, 5, 5)
        x = torch.flatten(x, 1)  # (B, 400), in C, H, W order
        x = self.act(self.fc1(x))  # (B, 120)
        x = self.act(self.fc2(x))  # (B, 84)
        return {"logits": self.fc3(x)}  # (B, num_classes)
