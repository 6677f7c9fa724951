"""The canonical dataset as a torch.utils.data pipeline: a map-style Dataset over the arrays, a
Sampler that visits them in `parity.data.epoch_order`, and DataLoader's own batching.

torch's RandomSampler draws from torch's generator, which no seed makes equal to a numpy
permutation; a Sampler yielding the shared order is how the three frameworks see the same batches.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from parity.data import sample_order


class _Arrays(Dataset):
    """(x[i], y[i]) as tensors; canonical layout, which is torch's (NCHW)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class _EpochOrder(Sampler):
    """The sample indices of one epoch, in the shared order."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool):
        self.order = sample_order(n, seed, epoch, shuffle)

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        return iter(self.order.tolist())


def batches(x, y, *, batch_size, seed=0, epoch=0, shuffle=True, drop_last=False):
    """One epoch of (x, y) tensor batches: a DataLoader in the order of `parity.data.sample_order`."""
    return DataLoader(_Arrays(x, y), batch_size=batch_size, sampler=_EpochOrder(len(x), seed, epoch, shuffle),
                      drop_last=drop_last)
