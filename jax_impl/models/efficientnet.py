"""EfficientNet (Tan & Le 2019), torchvision's B0-B7, channels-last."""
import jax
from flax import nnx

from jax_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, DepthwiseConv2d, Sequential


class ConvNormActivation(Sequential):
    """torchvision's Conv2dNormActivation: conv (symmetric "same" padding), BN, SiLU or nothing."""

    def __init__(self, spec, in_channels, out_channels, kernel_size, stride=1, *, depthwise=False,
                 activation=True, dtype, rngs: nnx.Rngs):
        padding = (kernel_size - 1) // 2
        conv = (DepthwiseConv2d(in_channels, kernel_size, stride, padding, bias=False, dtype=dtype, rngs=rngs)
                if depthwise else
                Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype, rngs=rngs))
        norm = BatchNorm(out_channels, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype, rngs=rngs)
        super().__init__(conv, norm, *([jax.nn.silu] if activation else []))


class SqueezeExcitation(nnx.Module):
    """Channel attention: global average -> 1x1 conv down -> SiLU -> 1x1 conv up -> sigmoid gate."""

    def __init__(self, channels, squeeze, dtype, *, rngs: nnx.Rngs):
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(channels, squeeze, 1, dtype=dtype, rngs=rngs)
        self.fc2 = Conv2d(squeeze, channels, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x):  # (B, H, W, C)
        scale = self.fc2(jax.nn.silu(self.fc1(self.avgpool(x))))  # (B, 1, 1, C)
        return jax.nn.sigmoid(scale) * x


class StochasticDepth(nnx.Dropout):
    """Training only: drop the whole residual branch of each example with probability p and scale
    survivors by 1 / (1 - p) (torchvision's mode="row").

    That is nnx.Dropout with one mask value per example (broadcast over H, W, C): it follows
    train()/eval() and draws from the "dropout" stream, so nnx.reseed(model, dropout=...) reseeds it.
    """

    def __init__(self, p, *, rngs: nnx.Rngs):
        super().__init__(p, broadcast_dims=(1, 2, 3), rngs=rngs)

    def __call__(self, x):  # (B, H, W, C); defined here to be traced, see layers.Conv2d
        return super().__call__(x)


class MBConv(nnx.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project."""

    def __init__(self, spec, block, dtype, *, rngs: nnx.Rngs):
        self.residual = block.residual
        layers = []
        if block.expanded != block.in_channels:
            layers.append(ConvNormActivation(spec, block.in_channels, block.expanded, 1, dtype=dtype, rngs=rngs))
        layers.append(ConvNormActivation(spec, block.expanded, block.expanded, block.kernel, block.stride,
                                         depthwise=True, dtype=dtype, rngs=rngs))
        layers.append(SqueezeExcitation(block.expanded, block.squeeze, dtype, rngs=rngs))
        layers.append(ConvNormActivation(spec, block.expanded, block.out_channels, 1, activation=False,
                                         dtype=dtype, rngs=rngs))
        self.block = Sequential(*layers)
        self.stochastic_depth = StochasticDepth(block.stochastic_depth_prob, rngs=rngs)

    def __call__(self, x):  # (B, H, W, in)
        out = self.block(x)  # (B, H/s, W/s, out)
        return self.stochastic_depth(out) + x if self.residual else out


class EfficientNet(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        stages = spec.stages()
        self.features = Sequential(
            ConvNormActivation(spec, spec.in_channels, spec.stem_channels, 3, 2, dtype=dtype, rngs=rngs),
            *(Sequential(*(MBConv(spec, block, dtype, rngs=rngs) for block in stage)) for stage in stages),
            ConvNormActivation(spec, stages[-1][-1].out_channels, spec.head_channels, 1, dtype=dtype, rngs=rngs),
        )
        self.avgpool = AdaptiveAvgPool2d(1)
        self.classifier = Sequential(nnx.Dropout(spec.dropout, rngs=rngs),
                                     nnx.Linear(spec.head_channels, spec.num_classes, dtype=dtype,
                                                param_dtype=dtype, rngs=rngs))

    def __call__(self, x):  # (B, 224, 224, 3)
        x = self.features(x)  # (B, 7, 7, 1280) for B0
        x = self.avgpool(x).reshape(x.shape[0], -1)  # (B, 1280)
        return {"logits": self.classifier(x)}  # (B, num_classes)
