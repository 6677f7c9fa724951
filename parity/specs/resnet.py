"""ResNet (He et al. 2015) as torchvision builds it: ResNet-18/34 from basic blocks, ResNet-50/101
from bottleneck blocks (v1.5: the stride sits on the bottleneck's 3x3 conv)."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.cnn import ImageSpec, conv_output_size

EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclasses.dataclass(frozen=True)
class ResNetSpec(ImageSpec):
    classifier = "fc"

    block: str = "basic"  # "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1)
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage
    num_classes: int = 1000
    zero_init_residual: bool = False  # init each block's last BN scale at 0
    groups: int = 1
    width_per_group: int = 64
    in_channels: int = 3
    image_size: int = 224
    planes: tuple[int, ...] = (64, 128, 256, 512)  # stage widths before expansion; stem = planes[0]
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # torch convention

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "planes", tuple(self.planes))
        self._choice("block", tuple(EXPANSION))
        self._require(len(self.layers) == 4 and all(isinstance(n, int) and n > 0 for n in self.layers),
                      "layers", "4 positive ints")
        self._require(len(self.planes) == 4 and all(isinstance(n, int) and n > 0 for n in self.planes),
                      "planes", "4 positive ints")
        self._positive_int("num_classes")
        self._require(isinstance(self.zero_init_residual, bool), "zero_init_residual", "a bool")
        # Grouped convolutions (ResNeXt) have no CPU kernel in TensorFlow: dense convs only.
        self._require(self.groups == 1, "groups", "1 (grouped convolutions are not supported)")
        self._require(self.block == "bottleneck" or self.width_per_group == 64, "width_per_group",
                      "64 for basic blocks (torchvision's restriction)")
        self._positive_int("width_per_group")
        self._batch_norm_constants()
        self._image_fields()

    @property
    def expansion(self) -> int:
        return EXPANSION[self.block]

    @property
    def stem_size(self) -> int:
        """Side of conv1's output (7x7/2, pad 3)."""
        return conv_output_size(self.image_size, 7, 2, 3)

    def feature_size(self) -> int:
        size = conv_output_size(self.stem_size, 3, 2, 1)  # the 3x3/2 max-pool
        for _ in range(3):  # stages 2-4 open with a stride-2 3x3 pad-1 conv
            size = conv_output_size(size, 3, 2, 1)
        return size

    def width(self, planes: int) -> int:
        """A bottleneck's inner width (wide ResNets scale it by width_per_group / 64)."""
        return planes * self.width_per_group // 64 * self.groups

    def layout(self):
        entries = {**params.conv2d("conv1", self.in_channels, self.planes[0], 7, bias=False,
                                   output_size=self.stem_size),
                   **params.batch_norm("bn1", self.planes[0])}
        inplanes, size = self.planes[0], conv_output_size(self.stem_size, 3, 2, 1)
        for stage, (planes, blocks) in enumerate(zip(self.planes, self.layers)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                entries.update(self._block(f"layer{stage + 1}.{index}", inplanes, planes, stride, size))
                inplanes, size = planes * self.expansion, conv_output_size(size, 3, stride, 1)
        entries.update(params.linear("fc", inplanes, self.num_classes))
        return entries

    def _block(self, prefix: str, inplanes: int, planes: int, stride: int, size: int):
        out, strided = planes * self.expansion, conv_output_size(size, 3, stride, 1)
        if self.block == "basic":
            convs = [(inplanes, planes, 3, strided), (planes, planes, 3, strided)]
        else:
            width = self.width(planes)
            convs = [(inplanes, width, 1, size), (width, width, 3, strided), (width, out, 1, strided)]
        entries = {}
        for i, (cin, cout, kernel, output_size) in enumerate(convs, start=1):
            entries.update(params.conv2d(f"{prefix}.conv{i}", cin, cout, kernel, bias=False,
                                         output_size=output_size))
            entries.update(params.batch_norm(f"{prefix}.bn{i}", cout,
                                             zero_weight=self.zero_init_residual and i == len(convs)))
        if stride != 1 or inplanes != out:
            entries.update(params.conv2d(f"{prefix}.downsample.0", inplanes, out, 1, bias=False,
                                         output_size=strided))
            entries.update(params.batch_norm(f"{prefix}.downsample.1", out))
        return entries


def _presets(name: str, block: str, layers: tuple) -> dict:
    fields = {"block": block, "layers": layers}
    tiny = {"layers": (1, 1, 1, 1), "planes": (8, 16, 16, 32), "image_size": 32, "num_classes": 10}
    return {"tiny": {**fields, **tiny}, name: fields}


@dataclasses.dataclass(frozen=True)
class ResNet18Spec(ResNetSpec):
    architecture = reference_preset = "resnet18"
    torchvision_presets = ("resnet18",)
    presets = _presets("resnet18", "basic", (2, 2, 2, 2))


@dataclasses.dataclass(frozen=True)
class ResNet34Spec(ResNetSpec):
    architecture = reference_preset = "resnet34"
    torchvision_presets = ("resnet34",)
    presets = _presets("resnet34", "basic", (3, 4, 6, 3))


@dataclasses.dataclass(frozen=True)
class ResNet50Spec(ResNetSpec):
    architecture = reference_preset = "resnet50"
    torchvision_presets = ("resnet50",)
    presets = _presets("resnet50", "bottleneck", (3, 4, 6, 3))


@dataclasses.dataclass(frozen=True)
class ResNet101Spec(ResNetSpec):
    architecture = reference_preset = "resnet101"
    torchvision_presets = ("resnet101",)
    presets = _presets("resnet101", "bottleneck", (3, 4, 23, 3))
