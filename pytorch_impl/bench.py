"""Benchmark steps for PyTorch: inference and one SGD training step, eager or `torch.compile`d.

Every step returns only after the device finished (CUDA is synchronised; CPU is synchronous).
"""

import torch

from pytorch_impl.api import dtype_of, loss_function


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "gpu" else "cpu"


def to_device(model, arrays, device: str):
    """Move the model and numpy arrays (floats in the model's dtype) to the device once, before timing."""
    target = torch.device("cuda" if device == "gpu" else "cpu")
    model.to(target)
    dtype = next(model.parameters()).dtype
    return [torch.from_numpy(a).to(target, dtype=dtype if a.dtype.kind == "f" else None) for a in arrays]


def _synchronize(tensor):
    if tensor.is_cuda:
        torch.cuda.synchronize()


def inference_step(model, compiled: bool):
    model.eval()
    if compiled:
        # Inductor's `freezing` (weights as constants, prepacked for oneDNN) is the recommended
        # CPU inference setting; without it LeNet-5's fused tanh+avg_pool loop made compiled
        # 2.2x slower than eager (docs/benchmarks.md has the profile). It is read from the
        # global config (torch.compile(options=...) did not apply it) and only affects
        # graphs compiled under no_grad/inference_mode, so training steps are untouched.
        torch._inductor.config.freezing = True
    forward = torch.compile(model) if compiled else model

    def step(x, extra):  # the main input, the other named inputs
        with torch.inference_mode():
            outputs = forward(x, **extra)[model.spec.output_names[0]]
        _synchronize(outputs)
        return outputs

    return step


def train_step(model, compiled: bool, learning_rate: float):
    """forward, loss, backward and a torch.optim.SGD update, in training mode."""
    model.train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    loss_fn = loss_function(model.spec.loss, dtype_of(model))

    def step(x, extra, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x, **extra)[model.spec.loss_output], y)
        loss.backward()
        optimizer.step()
        return loss.item()  # a host read: the step is done

    return step


def peak_memory_bytes(device: str):
    return torch.cuda.max_memory_allocated() if device == "gpu" else None


def matmul_step(n: int):
    """A float32 n x n matmul on the CPU, finished when the call returns (parity.bench times it)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: a @ b


def thread_settings() -> dict:
    return {"torch_intra_op_threads": torch.get_num_threads(),
            "torch_inter_op_threads": torch.get_num_interop_threads(),
            "torch_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "torch_version": torch.__version__}
