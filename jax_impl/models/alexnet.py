"""AlexNet (Krizhevsky et al. 2012), torchvision's variant, channels-last."""
import jax
from flax import nnx

from jax_impl.layers import AdaptiveAvgPool2d, Conv2d, MaxPool2d, Sequential


class AlexNet(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        c1, c2, c3, c4, c5 = spec.widths
        conv = dict(dtype=dtype, rngs=rngs)
        linear = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.features = Sequential(
            Conv2d(spec.in_channels, c1, 11, stride=4, padding=2, **conv), jax.nn.relu,
            MaxPool2d(3, 2),
            Conv2d(c1, c2, 5, padding=2, **conv), jax.nn.relu,
            MaxPool2d(3, 2),
            Conv2d(c2, c3, 3, padding=1, **conv), jax.nn.relu,
            Conv2d(c3, c4, 3, padding=1, **conv), jax.nn.relu,
            Conv2d(c4, c5, 3, padding=1, **conv), jax.nn.relu,
            MaxPool2d(3, 2),
        )
        self.avgpool = AdaptiveAvgPool2d(spec.avgpool_size)
        self.classifier = Sequential(
            nnx.Dropout(spec.dropout, rngs=rngs),
            nnx.Linear(c5 * spec.avgpool_size ** 2, spec.hidden, **linear), jax.nn.relu,
            nnx.Dropout(spec.dropout, rngs=rngs),
            nnx.Linear(spec.hidden, spec.hidden, **linear), jax.nn.relu,
            nnx.Linear(spec.hidden, spec.num_classes, **linear),
        )

    def __call__(self, x):  # (B, 224, 224, 3)
        x = self.features(x)  # (B, 6, 6, 256)
        x = self.avgpool(x)  # (B, 6, 6, 256): the identity at 224x224
        x = x.reshape(x.shape[0], -1)  # (B, 9216), in H, W, C order: classifier.1's rows are permuted to match
        return {"logits": self.classifier(x)}  # (B, num_classes)
