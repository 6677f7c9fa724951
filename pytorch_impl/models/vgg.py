"""VGG (Simonyan & Zisserman 2014), configurations A and D, with or without batch norm, channels-first."""
import torch
from torch import nn

from pytorch_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d, Sequential


def make_layers(spec, dtype):
    """torchvision's `make_layers`: 3x3 conv (+ batch norm), ReLU per width; 2x2 max-pool per "M"."""
    layers, channels = [], spec.in_channels
    for value in spec.cfg:
        if value == "M":
            layers.append(MaxPool2d(2, 2))
            continue
        layers.append(Conv2d(channels, value, 3, padding=1, dtype=dtype))
        if spec.batch_norm:
            layers.append(BatchNorm(value, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype))
        layers.append(nn.ReLU())
        channels = value
    return Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        width = [v for v in spec.cfg if v != "M"][-1]
        self.features = make_layers(spec, dtype)
        self.avgpool = AdaptiveAvgPool2d(spec.avgpool_size)
        self.classifier = Sequential(
            nn.Linear(width * spec.avgpool_size ** 2, spec.hidden, dtype=dtype), nn.ReLU(),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden, spec.hidden, dtype=dtype), nn.ReLU(),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden, spec.num_classes, dtype=dtype),
        )

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.features(x)  # (B, 512, 7, 7)
        x = self.avgpool(x)  # (B, 512, 7, 7): the identity at 224x224
        x = torch.flatten(x, 1)  # (B, 25088), in C, H, W order
        return {"logits": self.classifier(x)}  # (B, num_classes)
