"""torch.nn.init initializers by canonical name. torch's are the canonical semantics."""
import math

import torch


def sample(name: str, shape, seed: int, mode: str = "fan_in"):
    """A canonical-layout draw (numpy) of the named initializer through torch.nn.init."""
    weight = torch.empty(shape, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    if name == "glorot_uniform":
        torch.nn.init.xavier_uniform_(weight, generator=generator)
    elif name == "glorot_normal":
        torch.nn.init.xavier_normal_(weight, generator=generator)
    elif name == "he_uniform":
        torch.nn.init.kaiming_uniform_(weight, mode=mode, nonlinearity="relu", generator=generator)
    elif name == "he_normal":
        torch.nn.init.kaiming_normal_(weight, mode=mode, nonlinearity="relu", generator=generator)
    elif name == "default":  # what nn.Linear / nn.Conv2d.reset_parameters draw
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    elif name == "lecun_normal":  # torch has no lecun_normal: Kaiming with gain 1 is N(0, 1/fan_in)
        torch.nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="linear", generator=generator)
    else:
        torch.nn.init.orthogonal_(weight, generator=generator)
    return weight.numpy()
