import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import parity
from parity.flops import forward_flops, layer_flops, train_step_flops


def test_mlp_hand_count():
    spec = parity.spec("mlp")  # 784-512-512-10
    assert forward_flops(spec) == 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert train_step_flops(spec, 4) == 4 * 2 * (3 * (784 * 512 + 512 * 512 + 512 * 10) - 784 * 512)


def test_lenet5_hand_count():
    macs = {layer.name: layer.macs for layer in layer_flops(parity.spec("lenet5"))}
    assert macs == {"conv1": 117_600, "conv2": 240_000, "fc1": 48_000, "fc2": 10_080, "fc3": 840}
    assert forward_flops(parity.spec("lenet5")) == 2 * 416_520  # LeNet-5: ~0.42 M MACs


@pytest.mark.parametrize("name", parity.architectures())
@pytest.mark.parametrize("preset", ["tiny", None])
def test_matches_torch_flop_counter(name, preset):
    """torch's dispatcher-level counter sees every matmul and convolution actually executed,
    forward and backward (LeNet-5 is the CNN)."""
    spec = parity.spec(name, preset)
    model = parity.build("torch", spec)
    inputs, targets = parity.example_batch(spec, 3)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(torch.from_numpy(inputs))
    assert counter.get_total_flops() == forward_flops(spec, 3)
    with FlopCounterMode(display=False) as counter:
        logits = model(torch.from_numpy(inputs))["logits"]
        loss = (torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets)) if spec.loss == "cross_entropy"
                else torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(targets)))
        loss.backward()
    assert counter.get_total_flops() == train_step_flops(spec, 3)
