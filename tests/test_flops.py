import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import parity
from parity.flops import forward_flops, layer_flops, train_step_flops
from pytorch_impl.api import loss_function
from pytorch_impl.models import MODELS


def test_mlp_hand_count():
    spec = parity.spec("mlp")  # 784-512-512-10
    assert forward_flops(spec) == 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert train_step_flops(spec, 4) == 4 * 2 * (3 * (784 * 512 + 512 * 512 + 512 * 10) - 784 * 512)


def test_lenet5_hand_count():
    macs = {layer.weight.removesuffix(".weight"): layer.macs for layer in layer_flops(parity.spec("lenet5"))}
    assert macs == {"conv1": 117_600, "conv2": 240_000, "fc1": 48_000, "fc2": 10_080, "fc3": 840}
    assert forward_flops(parity.spec("lenet5")) == 2 * 416_520  # LeNet-5: ~0.42 M MACs


def torch_counter_depthwise_excess(spec, batch: int) -> int:
    """torch's FlopCounterMode counts a grouped conv's weight gradient as if it were dense
    (torch/utils/flop_counter.py `conv_backward_flop` leaves groups out), so for a depthwise
    conv over C channels it counts C times the real work: (C - 1) x its MACs too many."""
    entries = spec.layout()
    return 2 * batch * sum(layer.macs * (entries[layer.weight].shape[0] - 1)
                           for layer in layer_flops(spec)
                           if layer.weight in entries and entries[layer.weight].kind == "depthwise_conv2d")


@pytest.mark.parametrize("name", parity.architectures())
@pytest.mark.parametrize("preset", ["tiny", None])
def test_matches_torch_flop_counter(name, preset):
    """torch's dispatcher-level counter sees every matmul and convolution actually executed,
    forward and backward. On the meta device shapes propagate without arithmetic, so even
    VGG-16 at 224x224 is counted in milliseconds."""
    spec = parity.spec(name, preset)
    with torch.device("meta"):
        model = MODELS[name](spec, torch.float32).train()
        example_inputs, example_targets = parity.example_batch(spec, 3)
        # Models that declare their inputs get every one (an encoder-decoder needs its decoder ids).
        named = example_inputs if spec.declared_inputs() is not None else {
            spec.input_kind: example_inputs[spec.input_kind] if isinstance(example_inputs, dict) else example_inputs}
        inputs, extra = None, {}
        for name, array in named.items():
            tensor = torch.zeros(array.shape, dtype=getattr(torch, str(array.dtype)))
            inputs, extra = (tensor, extra) if name == spec.input_kind else (inputs, {**extra, name: tensor})
        targets = torch.zeros(example_targets.shape, dtype=getattr(torch, str(example_targets.dtype)))
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(inputs, **extra)
    assert counter.get_total_flops() == forward_flops(spec, 3)
    with FlopCounterMode(display=False) as counter:
        prediction = model(inputs, **extra)[spec.loss_output]
        loss_function(spec.loss, "float32")(prediction, targets).backward()
    assert counter.get_total_flops() == train_step_flops(spec, 3) + torch_counter_depthwise_excess(spec, 3)


@pytest.mark.parametrize("name, preset", [(name, preset) for name in parity.architectures()
                                          for preset in parity.spec(name).torchvision_presets])
def test_matches_torchvisions_published_counts(name, preset, torchvision):
    """torchvision publishes each pretrained model's forward cost at its evaluation size
    ("GFLOPS" in its docs, counted as multiply-adds): the spec's analytic count reproduces all."""
    weights = next(iter(torchvision.models.get_model_weights(preset)))
    assert round(forward_flops(parity.spec(name, preset)) / 2e9, 3) == weights.meta["_ops"]
