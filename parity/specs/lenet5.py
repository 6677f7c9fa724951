"""LeNet-5 (LeCun et al. 1998): conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> classes."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.base import ACTIVATIONS, Spec


@dataclasses.dataclass(frozen=True)
class LeNet5Spec(Spec):
    architecture = "lenet5"
    presets = {
        # The variant most people train on MNIST today: 28x28 padded to 32, ReLU, max pooling.
        "tiny": {"image_size": 28, "activation": "relu", "pooling": "max"},
        # The paper's layout: 32x32 input, tanh, average (subsampling) pooling.
        "lenet5": {},
    }
    reference_preset = "lenet5"
    input_kind = "image"
    loss = "cross_entropy"
    classifier = "fc3"

    in_channels: int = 1
    image_size: int = 32  # 28 pads conv1 by 2 so the feature maps are the paper's 28 -> 14 -> 10 -> 5
    num_classes: int = 10
    activation: str = "tanh"
    negative_slope: float = 0.01  # leaky_relu only
    pooling: str = "avg"  # "avg" (the paper's subsampling, without its trainable scale) or "max"

    def __post_init__(self):
        self._positive_int("in_channels")
        self._choice("image_size", (28, 32))
        self._positive_int("num_classes")
        self._choice("activation", ACTIVATIONS)
        self._require(isinstance(self.negative_slope, (int, float)) and self.negative_slope >= 0,
                      "negative_slope", "a float >= 0")
        self._choice("pooling", ("avg", "max"))

    @property
    def conv1_padding(self) -> int:
        return (32 - self.image_size) // 2

    @property
    def input_shape(self):
        return (self.in_channels, self.image_size, self.image_size)

    def layout(self):
        return {
            **params.conv2d("conv1", self.in_channels, 6, 5, output_size=28),
            **params.conv2d("conv2", 6, 16, 5, output_size=10),
            # 16 maps of 5x5 flattened in torch's CHW order; Keras/Flax flatten HWC.
            **params.linear("fc1", 16 * 5 * 5, 120, flatten_chw=(16, 5, 5)),
            **params.linear("fc2", 120, 84),
            **params.linear("fc3", 84, self.num_classes),
        }
