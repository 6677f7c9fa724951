"""VGG (Simonyan & Zisserman 2014), configurations A (VGG-11) and D (VGG-16), with or without
batch norm, as torchvision builds them."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.cnn import ImageSpec

POOL = "M"  # a 2x2/2 max-pool in a configuration; numbers are 3x3 conv widths
CFG_A = (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL)
CFG_D = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL)


def _narrow(cfg, divisor):
    return tuple(v if v == POOL else v // divisor for v in cfg)


@dataclasses.dataclass(frozen=True)
class VGGSpec(ImageSpec):
    stochastic_fields = ("dropout",)
    classifier = "classifier.6"

    cfg: tuple = CFG_A
    batch_norm: bool = False
    num_classes: int = 1000
    dropout: float = 0.5
    in_channels: int = 3
    image_size: int = 224
    hidden: int = 4096  # the two hidden fully connected layers
    avgpool_size: int = 7  # AdaptiveAvgPool2d((7, 7))
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # torch convention

    def __post_init__(self):
        object.__setattr__(self, "cfg", tuple(self.cfg))
        self._require(all(v == POOL or (isinstance(v, int) and v > 0) for v in self.cfg)
                      and any(v != POOL for v in self.cfg), "cfg", f"conv widths and {POOL!r} pools")
        self._require(isinstance(self.batch_norm, bool), "batch_norm", "a bool")
        for name in ("num_classes", "hidden", "avgpool_size"):
            self._positive_int(name)
        self._probability("dropout")
        self._batch_norm_constants()
        self._image_fields()

    def feature_size(self) -> int:
        return self.image_size // 2 ** self.cfg.count(POOL)

    def layout(self):
        entries = {}
        channels, index, size = self.in_channels, 0, self.image_size
        # torchvision's `make_layers`: conv (+ BatchNorm2d), ReLU, or MaxPool, one index each.
        for value in self.cfg:
            if value == POOL:
                index += 1
                size //= 2
                continue
            entries.update(params.conv2d(f"features.{index}", channels, value, 3, output_size=size))
            if self.batch_norm:
                entries.update(params.batch_norm(f"features.{index + 1}", value))
            index += 3 if self.batch_norm else 2
            channels = value
        pooled = (channels, self.avgpool_size, self.avgpool_size)
        entries.update(params.linear("classifier.0", channels * self.avgpool_size ** 2, self.hidden,
                                     flatten_chw=pooled))
        entries.update(params.linear("classifier.3", self.hidden, self.hidden))
        entries.update(params.linear("classifier.6", self.hidden, self.num_classes))
        return entries


def _presets(name: str, cfg: tuple, batch_norm: bool) -> dict:
    fields = {"cfg": cfg, "batch_norm": batch_norm}
    # 64x64 leaves 2x2 maps, so the tiny adaptive pool's 3x3 bins overlap.
    tiny = {"cfg": _narrow(cfg, 8), "image_size": 64, "hidden": 32, "avgpool_size": 3, "num_classes": 10}
    return {"tiny": {**fields, **tiny}, name: fields}


@dataclasses.dataclass(frozen=True)
class VGG11Spec(VGGSpec):
    architecture = reference_preset = "vgg11"
    torchvision_presets = ("vgg11",)
    presets = _presets("vgg11", CFG_A, False)


@dataclasses.dataclass(frozen=True)
class VGG11BNSpec(VGGSpec):
    architecture = reference_preset = "vgg11_bn"
    torchvision_presets = ("vgg11_bn",)
    presets = _presets("vgg11_bn", CFG_A, True)


@dataclasses.dataclass(frozen=True)
class VGG16Spec(VGGSpec):
    architecture = reference_preset = "vgg16"
    torchvision_presets = ("vgg16",)
    presets = _presets("vgg16", CFG_D, False)


@dataclasses.dataclass(frozen=True)
class VGG16BNSpec(VGGSpec):
    architecture = reference_preset = "vgg16_bn"
    torchvision_presets = ("vgg16_bn",)
    presets = _presets("vgg16_bn", CFG_D, True)
