"""LeNet-5 (LeCun et al. 1998), channels-last."""
from flax import nnx

from jax_impl.activations import activation
from jax_impl.layers import pooling


class LeNet5(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        p = spec.conv1_padding
        common = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(spec.in_channels, 6, (5, 5), padding=((p, p), (p, p)), **common)
        self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", **common)  # nnx.Conv defaults to "SAME"
        self.fc1 = nnx.Linear(16 * 5 * 5, 120, **common)
        self.fc2 = nnx.Linear(120, 84, **common)
        self.fc3 = nnx.Linear(84, spec.num_classes, **common)
        self.act = activation(spec.activation, spec.negative_slope)
        self.pool = pooling(spec.pooling)

    def __call__(self, x):  # (B, 32, 32, C), or (B, 28, 28, C) padded by conv1
        x = self.pool(self.act(self.conv1(x)))  # (B, 14, 14, 6)
        x = self.pool(self.act(self.conv2(x)))  # (B, 5, 5, 16)
        x = x.reshape(x.shape[0], -1)  # (B, 400), in H, W, C order: fc1's rows are permuted to match
        x = self.act(self.fc1(x))  # (B, 120)
        x = self.act(self.fc2(x))  # (B, 84)
        return {"logits": self.fc3(x)}  # (B, num_classes)
