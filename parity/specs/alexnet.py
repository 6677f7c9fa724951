"""AlexNet (Krizhevsky et al. 2012) as torchvision builds it (the single-GPU "one weird trick"
variant: 64-192-384-256-256 filters, no local response normalisation)."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.cnn import ImageSpec, conv_output_size


@dataclasses.dataclass(frozen=True)
class AlexNetSpec(ImageSpec):
    architecture = "alexnet"
    presets = {
        # 96x96 leaves 2x2 maps before the adaptive pool, so its 6x6 bins overlap (the case
        # AdaptiveAvgPool2d handles that a fixed pooling layer does not).
        "tiny": {"image_size": 96, "widths": (8, 16, 16, 16, 16), "hidden": 32, "num_classes": 10},
        "alexnet": {},
    }
    reference_preset = "alexnet"
    torchvision_presets = ("alexnet",)
    stochastic_fields = ("dropout",)
    classifier = "classifier.6"

    num_classes: int = 1000
    dropout: float = 0.5
    in_channels: int = 3
    image_size: int = 224
    widths: tuple[int, ...] = (64, 192, 384, 256, 256)  # conv1..conv5 filters
    hidden: int = 4096  # the two hidden fully connected layers
    avgpool_size: int = 6  # AdaptiveAvgPool2d((6, 6))

    # (kernel, stride, padding) of conv1..conv5, and which convs a 3x3/2 max-pool follows.
    CONVS = ((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
    POOLED = (0, 1, 4)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        self._require(len(self.widths) == 5 and all(isinstance(w, int) and w > 0 for w in self.widths),
                      "widths", "5 positive ints")
        for name in ("num_classes", "in_channels", "hidden", "avgpool_size"):
            self._positive_int(name)
        self._probability("dropout")
        self._image_fields()

    def _sizes(self) -> tuple[list[int], int]:
        """Side of each conv's output map, and of the maps handed to the adaptive pool."""
        size, sizes = self.image_size, []
        for i, (kernel, stride, padding) in enumerate(self.CONVS):
            size = conv_output_size(size, kernel, stride, padding)
            sizes.append(size)
            if i in self.POOLED:
                size = conv_output_size(size, 3, 2, 0)
        return sizes, size

    def feature_size(self) -> int:
        return self._sizes()[1]

    def layout(self):
        entries = {}
        channels = self.in_channels
        # torchvision's features Sequential: conv, ReLU (+ MaxPool) at these indices.
        for index, width, (kernel, _, _), size in zip((0, 3, 6, 8, 10), self.widths, self.CONVS, self._sizes()[0]):
            entries.update(params.conv2d(f"features.{index}", channels, width, kernel, output_size=size))
            channels = width
        pooled = (channels, self.avgpool_size, self.avgpool_size)
        entries.update(params.linear("classifier.1", channels * self.avgpool_size ** 2, self.hidden,
                                     flatten_chw=pooled))
        entries.update(params.linear("classifier.4", self.hidden, self.hidden))
        entries.update(params.linear("classifier.6", self.hidden, self.num_classes))
        return entries
