"""AlexNet (Krizhevsky et al. 2012), torchvision's variant, channels-first."""
import torch
from torch import nn

from pytorch_impl.layers import AdaptiveAvgPool2d, Conv2d, MaxPool2d, Sequential


class AlexNet(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        c1, c2, c3, c4, c5 = spec.widths
        self.features = Sequential(
            Conv2d(spec.in_channels, c1, 11, stride=4, padding=2, dtype=dtype), nn.ReLU(),
            MaxPool2d(3, 2),
            Conv2d(c1, c2, 5, padding=2, dtype=dtype), nn.ReLU(),
            MaxPool2d(3, 2),
            Conv2d(c2, c3, 3, padding=1, dtype=dtype), nn.ReLU(),
            Conv2d(c3, c4, 3, padding=1, dtype=dtype), nn.ReLU(),
            Conv2d(c4, c5, 3, padding=1, dtype=dtype), nn.ReLU(),
            MaxPool2d(3, 2),
        )
        self.avgpool = AdaptiveAvgPool2d(spec.avgpool_size)
        self.classifier = Sequential(
            nn.Dropout(spec.dropout),
            nn.Linear(c5 * spec.avgpool_size ** 2, spec.hidden, dtype=dtype), nn.ReLU(),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden, spec.hidden, dtype=dtype), nn.ReLU(),
            nn.Linear(spec.hidden, spec.num_classes, dtype=dtype),
        )

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.features(x)  # (B, 256, 6, 6)
        x = self.avgpool(x)  # (B, 256, 6, 6): the identity at 224x224
        x = torch.flatten(x, 1)  # (B, 9216), in C, H, W order
        return {"logits": self.classifier(x)}  # (B, num_classes)
