"""EfficientNet (Tan & Le 2019) as torchvision builds it: MBConv blocks (1x1 expand, depthwise
kxk, squeeze-and-excitation, 1x1 project, stochastic depth), scaled by the compound rule:
channels x width_mult (rounded to multiples of 8), layers x depth_mult (rounded up)."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.cnn import ImageSpec, conv_output_size, make_divisible, scaled_depth

# EfficientNet-B0's stages: (expand_ratio, kernel, stride, in_channels, out_channels, layers).
B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


@dataclasses.dataclass(frozen=True)
class Block:
    """One MBConv block after scaling."""
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    stochastic_depth_prob: float

    @property
    def expanded(self) -> int:
        return make_divisible(self.in_channels * self.expand_ratio)

    @property
    def squeeze(self) -> int:
        # torchvision squeezes to a quarter of the block's *input* width, not the expanded one.
        return max(1, self.in_channels // 4)

    def output_size(self, size: int) -> int:
        """Side of the block's output for an input of side `size` (the depthwise conv strides)."""
        return conv_output_size(size, self.kernel, self.stride, (self.kernel - 1) // 2)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclasses.dataclass(frozen=True)
class EfficientNetSpec(ImageSpec):
    stochastic_fields = ("dropout", "stochastic_depth_prob")
    classifier = "classifier.1"

    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout: float = 0.2
    stochastic_depth_prob: float = 0.2  # the last block's drop rate; earlier blocks scale linearly
    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224
    bn_eps: float = 1e-5  # torchvision: 1e-5 for B0-B4, 1e-3 for B5-B7 (the TF reference's)
    bn_momentum: float = 0.1  # torch convention; 0.01 for B5-B7

    def __post_init__(self):
        self._positive_float("width_mult")
        self._positive_float("depth_mult")
        self._probability("dropout")
        self._probability("stochastic_depth_prob")
        self._positive_int("num_classes")
        self._batch_norm_constants()
        self._image_fields()

    @property
    def stem_channels(self) -> int:
        return make_divisible(B0_STAGES[0][3] * self.width_mult)

    def stages(self) -> list[list[Block]]:
        """Every block, per stage, with its scaled widths and stochastic-depth rate."""
        scaled = [(e, k, s, make_divisible(i * self.width_mult), make_divisible(o * self.width_mult),
                   scaled_depth(n, self.depth_mult)) for e, k, s, i, o, n in B0_STAGES]
        total = sum(n for *_, n in scaled)
        stages, block_id = [], 0
        for expand, kernel, stride, cin, cout, layers in scaled:
            stage = []
            for index in range(layers):
                stage.append(Block(expand, kernel, stride if index == 0 else 1, cin if index == 0 else cout,
                                   cout, self.stochastic_depth_prob * block_id / total))
                block_id += 1
            stages.append(stage)
        return stages

    @property
    def head_channels(self) -> int:
        return 4 * self.stages()[-1][-1].out_channels

    @property
    def stem_size(self) -> int:
        """Side of the stem conv's output (3x3/2, pad 1)."""
        return conv_output_size(self.image_size, 3, 2, 1)

    def feature_size(self) -> int:
        size = self.stem_size
        for stage in self.stages():
            size = stage[0].output_size(size)
        return size

    def layout(self):
        entries = {**params.conv2d("features.0.0", self.in_channels, self.stem_channels, 3, bias=False,
                                   output_size=self.stem_size),
                   **params.batch_norm("features.0.1", self.stem_channels)}
        size = self.stem_size
        for s, stage in enumerate(self.stages(), start=1):
            for j, block in enumerate(stage):
                entries.update(self._block(f"features.{s}.{j}.block", block, size))
                size = block.output_size(size)
        last = self.stages()[-1][-1].out_channels
        entries.update(params.conv2d(f"features.{s + 1}.0", last, self.head_channels, 1, bias=False,
                                     output_size=size))
        entries.update(params.batch_norm(f"features.{s + 1}.1", self.head_channels))
        entries.update(params.linear("classifier.1", self.head_channels, self.num_classes))
        return entries

    @staticmethod
    def _block(prefix: str, block: Block, size: int):
        entries, index, out = {}, 0, block.output_size(size)
        if block.expanded != block.in_channels:
            entries.update(params.conv2d(f"{prefix}.0.0", block.in_channels, block.expanded, 1, bias=False,
                                         output_size=size))
            entries.update(params.batch_norm(f"{prefix}.0.1", block.expanded))
            index = 1
        entries.update(params.conv2d(f"{prefix}.{index}.0", block.expanded, block.expanded, block.kernel,
                                     bias=False, groups=block.expanded, output_size=out))
        entries.update(params.batch_norm(f"{prefix}.{index}.1", block.expanded))
        entries.update(params.conv2d(f"{prefix}.{index + 1}.fc1", block.expanded, block.squeeze, 1, output_size=1))
        entries.update(params.conv2d(f"{prefix}.{index + 1}.fc2", block.squeeze, block.expanded, 1, output_size=1))
        entries.update(params.conv2d(f"{prefix}.{index + 2}.0", block.expanded, block.out_channels, 1,
                                     bias=False, output_size=out))
        entries.update(params.batch_norm(f"{prefix}.{index + 2}.1", block.out_channels))
        return entries


def _scaled(width: float, depth: float, dropout: float, image_size: int, large: bool = False) -> dict:
    bn = {"bn_eps": 1e-3, "bn_momentum": 0.01} if large else {}
    return {"width_mult": width, "depth_mult": depth, "dropout": dropout, "image_size": image_size, **bn}


@dataclasses.dataclass(frozen=True)
class EfficientNetB0Spec(EfficientNetSpec):
    architecture = reference_preset = "efficientnet_b0"
    torchvision_presets = tuple(f"efficientnet_b{i}" for i in range(8))
    # torchvision's efficientnet_b0..b7: (width, depth, dropout) and the evaluation image size.
    presets = {
        "tiny": {"width_mult": 0.25, "depth_mult": 0.5, "image_size": 32, "num_classes": 10},
        "efficientnet_b0": _scaled(1.0, 1.0, 0.2, 224),
        "efficientnet_b1": _scaled(1.0, 1.1, 0.2, 240),
        "efficientnet_b2": _scaled(1.1, 1.2, 0.3, 288),
        "efficientnet_b3": _scaled(1.2, 1.4, 0.3, 300),
        "efficientnet_b4": _scaled(1.4, 1.8, 0.4, 380),
        "efficientnet_b5": _scaled(1.6, 2.2, 0.4, 456, large=True),
        "efficientnet_b6": _scaled(1.8, 2.6, 0.5, 528, large=True),
        "efficientnet_b7": _scaled(2.0, 3.1, 0.5, 600, large=True),
    }
