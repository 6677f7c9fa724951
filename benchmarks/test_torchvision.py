"""Our PyTorch ResNet-50 next to torchvision's own resnet50, same machine, same state, same step.

Both run through `pytorch_impl.bench`'s inference and training steps (torchvision's model is
wrapped to return `{"logits": ...}` like ours), so the only difference is the model code:

    python -m pytest benchmarks/test_torchvision.py --bench-batch 8 --benchmark-columns=median,iqr
"""
import pytest
import torch

import parity
from parity.bench import LEARNING_RATE, MODES, TASKS
from parity.reference import import_torchvision
from pytorch_impl import bench


class Logits(torch.nn.Module):
    """torchvision's model behind parity's output convention."""

    def __init__(self, model, spec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, x):
        return {"logits": self.model(x)}


def resnet50(implementation: str, spec, state):
    if implementation == "parity":
        return parity.build("torch", spec, state)
    torchvision = import_torchvision()
    model = torchvision.models.resnet50()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return Logits(model, spec)


@pytest.mark.parametrize("implementation", ["parity", "torchvision"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("mode", MODES)
def test_resnet50_against_torchvision(benchmark, request, implementation, mode, task):
    batch = request.config.getoption("--bench-batch")
    spec = parity.spec("resnet50")
    parity.set_deterministic(["torch"])
    model = resnet50(implementation, spec, parity.init_state(spec))
    inputs, targets = parity.example_batch(spec, batch)
    x, y = bench.to_device(model, [inputs, targets], "cpu")
    if task == "inference":
        step, args = bench.inference_step(model, mode == "compiled"), (x, {})
    else:
        step, args = bench.train_step(model, mode == "compiled", LEARNING_RATE), (x, {}, y)
    benchmark.extra_info.update(bench.thread_settings(), batch=batch, implementation=implementation)
    benchmark.pedantic(step, args=args, rounds=5, warmup_rounds=2)
