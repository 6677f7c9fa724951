"""VGG (Simonyan & Zisserman 2014), configurations A and D, with or without batch norm, channels-last."""
import jax
from flax import nnx

from jax_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d, Sequential


def make_layers(spec, dtype, *, rngs: nnx.Rngs):
    """torchvision's `make_layers`: 3x3 conv (+ batch norm), ReLU per width; 2x2 max-pool per "M"."""
    layers, channels = [], spec.in_channels
    for value in spec.cfg:
        if value == "M":
            layers.append(MaxPool2d(2, 2))
            continue
        layers.append(Conv2d(channels, value, 3, padding=1, dtype=dtype, rngs=rngs))
        if spec.batch_norm:
            layers.append(BatchNorm(value, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype, rngs=rngs))
        layers.append(jax.nn.relu)
        channels = value
    return Sequential(*layers)


class VGG(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        width = [v for v in spec.cfg if v != "M"][-1]
        linear = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.features = make_layers(spec, dtype, rngs=rngs)
        self.avgpool = AdaptiveAvgPool2d(spec.avgpool_size)
        self.classifier = Sequential(
            nnx.Linear(width * spec.avgpool_size ** 2, spec.hidden, **linear), jax.nn.relu,
            nnx.Dropout(spec.dropout, rngs=rngs),
            nnx.Linear(spec.hidden, spec.hidden, **linear), jax.nn.relu,
            nnx.Dropout(spec.dropout, rngs=rngs),
            nnx.Linear(spec.hidden, spec.num_classes, **linear),
        )

    def __call__(self, x):  # (B, 224, 224, 3)
        x = self.features(x)  # (B, 7, 7, 512)
        x = self.avgpool(x)  # (B, 7, 7, 512): the identity at 224x224
        x = x.reshape(x.shape[0], -1)  # (B, 25088), in H, W, C order: classifier.0's rows are permuted to match
        return {"logits": self.classifier(x)}  # (B, num_classes)
