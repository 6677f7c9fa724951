"""Shape arithmetic and validation shared by the CNN specs (torchvision's conventions)."""
from __future__ import annotations

import dataclasses
import math

from parity.specs.base import Spec


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a torch Conv2d / MaxPool2d (floor mode) with symmetric padding."""
    return (size + 2 * padding - kernel) // stride + 1


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's `_make_divisible`: round channels to a multiple of `divisor`, never more
    than 10 % below `value` (EfficientNet's width scaling)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def scaled_depth(num_layers: int, depth_mult: float) -> int:
    """EfficientNet's depth scaling: ceil(layers * depth_mult)."""
    return int(math.ceil(num_layers * depth_mult))


@dataclasses.dataclass(frozen=True)
class ImageSpec(Spec):
    """The CNN families: (C, H, W) square images, class logits, one docs page (docs/cnn.md).
    Subclasses have `in_channels` and `image_size` fields and say how far they shrink an image."""
    input_kind = "image"
    loss = "cross_entropy"
    family = "cnn"

    @property
    def input_shape(self):
        return (self.in_channels, self.image_size, self.image_size)

    def feature_size(self) -> int:
        """Side of the last feature map, before the classifier's pooling."""
        raise NotImplementedError

    def _image_fields(self) -> None:
        """`image_size` and `in_channels` are positive and leave at least 1x1 maps at the end."""
        self._positive_int("in_channels")
        self._positive_int("image_size")
        final = self.feature_size()
        self._require(final >= 1, "image_size", f"a size the network does not shrink below 1x1 "
                                                f"(it leaves {final}x{final})")
