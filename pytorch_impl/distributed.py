"""Data parallelism on torch.distributed: DistributedDataParallel, one process per replica.

`parity.distributed` starts one worker process per replica with torchrun's environment variables
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so `torchrun` can start the same worker. Each rank
trains its contiguous share of every global batch; DDP all-reduces the gradients (averaged over
the ranks) bucket by bucket during `backward()`, and every rank's optimizer then takes the same step.
"""
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel

from parity.distributed import shard
from parity.frameworks import build, export_state
# Package-internal: the device parity places torch on, the spec's loss.
from pytorch_impl.api import _device, dtype_of, loss_function
from pytorch_impl.layers import BatchNorm
from pytorch_impl.optimizers import build_optimizer


def setup(devices):
    """Join the process group: gloo on CPU, NCCL on CUDA (one GPU per rank). Returns the rank."""
    on_cuda = _device().type == "cuda"
    if on_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if on_cuda else "gloo", timeout=datetime.timedelta(minutes=5))
    if dist.get_world_size() != devices:
        raise RuntimeError(f"expected {devices} ranks (WORLD_SIZE), got {dist.get_world_size()}")
    # N processes share the machine's cores: each gets its share of threads.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    return dist.get_rank()


def is_first(rank):
    return rank == 0


class _SyncBatchNorm(BatchNorm):
    """nn.SyncBatchNorm's computation where torch's own cannot run: nn.SyncBatchNorm refuses CPU
    tensors (its kernels, torch.batch_norm_stats and friends, exist for GPUs only). The mean and
    biased variance of the *global* batch, summed over the ranks by torch.distributed.nn's
    differentiable all_reduce (its backward all-reduces the gradients flowing into the
    statistics); the running variance unbiased by the global count, as nn.SyncBatchNorm."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        axes, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() // x.shape[1] * dist.get_world_size()
        mean = all_reduce(x.sum(axes)) / count
        variance = all_reduce(((x - mean.view(shape)) ** 2).sum(axes)) / count
        with torch.no_grad():
            unbiased = variance * (count / (count - 1))
            self.running_mean.copy_(self.momentum * mean + (1 - self.momentum) * self.running_mean)
            self.running_var.copy_(self.momentum * unbiased + (1 - self.momentum) * self.running_var)
            self.num_batches_tracked.add_(1)
        normalized = (x - mean.view(shape)) / torch.sqrt(variance.view(shape) + self.eps)
        return normalized * self.weight.view(shape) + self.bias.view(shape)


def _synchronize_batch_norm(model):
    """Batch statistics over every replica's examples: nn.SyncBatchNorm on GPUs, `_SyncBatchNorm` on CPU."""
    if _device().type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is BatchNorm:
            module.__class__ = _SyncBatchNorm
    return model


def train(rank, spec, state, opt_spec, batches, *, sync_batch_norm):
    """Yield (global mean loss, canonical-state thunk) after each step. Batch norm uses each
    rank's own batch statistics unless `sync_batch_norm`; DDP broadcasts rank 0's buffers at
    every forward, so the running statistics are rank 0's."""
    model = build("torch", spec, state)
    if sync_batch_norm:
        model = _synchronize_batch_norm(model)
    replicated = DistributedDataParallel(model, device_ids=[_device()] if _device().type == "cuda" else None)
    optimizer = build_optimizer(model, opt_spec)  # over the module's own parameters, which DDP shares
    loss_fn = loss_function(spec.loss, dtype_of(model))
    world = dist.get_world_size()
    replicated.train()
    for inputs, targets in batches:
        x = torch.from_numpy(shard(inputs, rank, world)).to(_device())
        y = torch.from_numpy(shard(targets, rank, world)).to(_device())
        loss = loss_fn(replicated(x)[spec.loss_output], y)  # this replica's mean
        loss.backward()  # DDP's hooks all-reduce the gradients (sum / world size) as they are produced
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        reported = loss.detach().clone()
        dist.all_reduce(reported)  # the global mean loss, for the report only
        yield reported.item() / world, lambda: export_state("torch", model)


def teardown(rank):
    dist.destroy_process_group()
