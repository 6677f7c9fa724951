"""DenseNet (Huang et al. 2016) as torchvision builds it: dense blocks whose layers each see the
concatenation of every earlier feature map, joined by 1x1-conv + 2x2 avg-pool transitions."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.cnn import ImageSpec, conv_output_size


@dataclasses.dataclass(frozen=True)
class DenseNetSpec(ImageSpec):
    stochastic_fields = ("drop_rate",)
    classifier = "classifier"

    growth_rate: int = 32  # channels each dense layer adds
    block_config: tuple[int, ...] = (6, 12, 24, 16)  # dense layers per block
    num_init_features: int = 64
    bn_size: int = 4  # bottleneck width = bn_size * growth_rate
    drop_rate: float = 0.0  # dropout after each dense layer
    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # torch convention

    def __post_init__(self):
        object.__setattr__(self, "block_config", tuple(self.block_config))
        self._require(len(self.block_config) > 0 and all(isinstance(n, int) and n > 0
                                                          for n in self.block_config),
                      "block_config", "a non-empty tuple of positive ints")
        for name in ("growth_rate", "num_init_features", "bn_size", "num_classes"):
            self._positive_int(name)
        self._probability("drop_rate")
        self._batch_norm_constants()
        self._image_fields()

    @property
    def stem_size(self) -> int:
        """Side of conv0's output (7x7/2, pad 3)."""
        return conv_output_size(self.image_size, 7, 2, 3)

    def feature_size(self) -> int:
        size = conv_output_size(self.stem_size, 3, 2, 1)  # the 3x3/2 max-pool
        return size // 2 ** (len(self.block_config) - 1)  # a 2x2/2 avg-pool per transition

    @property
    def num_features(self) -> int:
        """Channels of the final feature map: each layer adds growth_rate, each transition halves."""
        channels = self.num_init_features
        for b, layers in enumerate(self.block_config, start=1):
            channels += layers * self.growth_rate
            if b < len(self.block_config):
                channels //= 2
        return channels

    def layout(self):
        entries = {**params.conv2d("features.conv0", self.in_channels, self.num_init_features, 7, bias=False,
                                   output_size=self.stem_size),
                   **params.batch_norm("features.norm0", self.num_init_features)}
        channels, size = self.num_init_features, conv_output_size(self.stem_size, 3, 2, 1)
        inner = self.bn_size * self.growth_rate
        for b, layers in enumerate(self.block_config, start=1):
            for i in range(1, layers + 1):
                prefix = f"features.denseblock{b}.denselayer{i}"
                entries.update(params.batch_norm(f"{prefix}.norm1", channels))
                entries.update(params.conv2d(f"{prefix}.conv1", channels, inner, 1, bias=False, output_size=size))
                entries.update(params.batch_norm(f"{prefix}.norm2", inner))
                entries.update(params.conv2d(f"{prefix}.conv2", inner, self.growth_rate, 3, bias=False,
                                             output_size=size))
                channels += self.growth_rate
            if b < len(self.block_config):
                entries.update(params.batch_norm(f"features.transition{b}.norm", channels))
                entries.update(params.conv2d(f"features.transition{b}.conv", channels, channels // 2, 1,
                                             bias=False, output_size=size))
                channels, size = channels // 2, size // 2
        entries.update(params.batch_norm("features.norm5", channels))
        entries.update(params.linear("classifier", channels, self.num_classes))
        return entries


@dataclasses.dataclass(frozen=True)
class DenseNet121Spec(DenseNetSpec):
    architecture = reference_preset = "densenet121"
    torchvision_presets = ("densenet121",)
    presets = {
        "tiny": {"growth_rate": 4, "block_config": (2, 2), "num_init_features": 8, "bn_size": 2,
                 "image_size": 32, "num_classes": 10},
        "densenet121": {},
    }
