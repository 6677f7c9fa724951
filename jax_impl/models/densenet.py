"""DenseNet (Huang et al. 2016), torchvision's DenseNet-BC, channels-last."""
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d


def norm(spec, channels, dtype, *, rngs: nnx.Rngs):
    return BatchNorm(channels, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype, rngs=rngs)


class DenseLayer(nnx.Module):
    """BN-ReLU-1x1 conv to bn_size * growth, BN-ReLU-3x3 conv to growth new channels."""

    def __init__(self, spec, in_channels, dtype, *, rngs: nnx.Rngs):
        inner = spec.bn_size * spec.growth_rate
        self.norm1 = norm(spec, in_channels, dtype, rngs=rngs)
        self.conv1 = Conv2d(in_channels, inner, 1, bias=False, dtype=dtype, rngs=rngs)
        self.norm2 = norm(spec, inner, dtype, rngs=rngs)
        self.conv2 = Conv2d(inner, spec.growth_rate, 3, padding=1, bias=False, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.drop_rate, rngs=rngs)

    def __call__(self, features):  # every earlier map, each (B, H, W, C_i)
        x = jnp.concatenate(features, axis=-1)  # (B, H, W, sum C_i), oldest first, as torch's channels
        x = self.conv1(jax.nn.relu(self.norm1(x)))  # (B, H, W, bn_size * growth)
        x = self.conv2(jax.nn.relu(self.norm2(x)))  # (B, H, W, growth)
        return self.dropout(x)


class DenseBlock(nnx.Module):
    def __init__(self, spec, num_layers, in_channels, dtype, *, rngs: nnx.Rngs):
        self.size = num_layers
        for i in range(num_layers):
            setattr(self, f"denselayer{i + 1}",
                    DenseLayer(spec, in_channels + i * spec.growth_rate, dtype, rngs=rngs))

    def __call__(self, x):  # (B, H, W, C)
        features = [x]
        for i in range(self.size):
            features.append(getattr(self, f"denselayer{i + 1}")(features))
        return jnp.concatenate(features, axis=-1)  # (B, H, W, C + num_layers * growth)


class Transition(nnx.Module):
    """BN-ReLU-1x1 conv halving the channels, 2x2 average pool halving the size."""

    def __init__(self, spec, in_channels, dtype, *, rngs: nnx.Rngs):
        self.norm = norm(spec, in_channels, dtype, rngs=rngs)
        self.conv = Conv2d(in_channels, in_channels // 2, 1, bias=False, dtype=dtype, rngs=rngs)
        self.pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))

    def __call__(self, x):  # (B, H, W, C)
        return self.pool(self.conv(jax.nn.relu(self.norm(x))))  # (B, H / 2, W / 2, C / 2)


class Features(nnx.Module):
    """torchvision's `features`: stem, dense blocks joined by transitions, a final BN."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.size = len(spec.block_config)
        self.conv0 = Conv2d(spec.in_channels, spec.num_init_features, 7, stride=2, padding=3, bias=False,
                            dtype=dtype, rngs=rngs)
        self.norm0 = norm(spec, spec.num_init_features, dtype, rngs=rngs)
        self.pool0 = MaxPool2d(3, 2, padding=1)
        channels = spec.num_init_features
        for b, num_layers in enumerate(spec.block_config, start=1):
            setattr(self, f"denseblock{b}", DenseBlock(spec, num_layers, channels, dtype, rngs=rngs))
            channels += num_layers * spec.growth_rate
            if b < self.size:
                setattr(self, f"transition{b}", Transition(spec, channels, dtype, rngs=rngs))
                channels //= 2
        self.norm5 = norm(spec, channels, dtype, rngs=rngs)

    def __call__(self, x):  # (B, 224, 224, 3)
        x = self.pool0(jax.nn.relu(self.norm0(self.conv0(x))))  # (B, 56, 56, 64)
        for b in range(1, self.size + 1):
            x = getattr(self, f"denseblock{b}")(x)
            if b < self.size:
                x = getattr(self, f"transition{b}")(x)
        return self.norm5(x)  # (B, 7, 7, 1024) for DenseNet-121


class DenseNet(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.features = Features(spec, dtype, rngs=rngs)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.classifier = nnx.Linear(spec.num_features, spec.num_classes, dtype=dtype, param_dtype=dtype,
                                     rngs=rngs)

    def __call__(self, x):  # (B, 224, 224, 3)
        x = jax.nn.relu(self.features(x))  # (B, 7, 7, 1024)
        x = self.avgpool(x).reshape(x.shape[0], -1)  # (B, 1024)
        return {"logits": self.classifier(x)}  # (B, num_classes)
