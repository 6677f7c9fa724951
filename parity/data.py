"""Datasets for training, framework-neutral: numpy arrays in the canonical layout, validated.

`load_dataset` gives a frozen `Dataset` (train and test splits, canonical layout: (B, F) features
or (B, C, H, W) images, float32 in [0, 1] or standardised, int64 class labels):

- "digits": scikit-learn's 8x8 handwritten digits (1797 real images, bundled, no download);
- "synthetic": a seeded, separable Gaussian-cluster problem (16 features, 5 classes: the `mlp`
  "tiny" preset's shape);
- a path to an .npz file with the arrays x_train, y_train, x_test, y_test.

`Dataset.for_spec(spec)` serves the view a model takes: images flattened to features for an
MLP, or upsampled to the spec's image size for LeNet-5 (8x8 digits: x4 to 32x32, or x3 to 24x24
zero-padded to 28x28, the way MNIST centres a 20x20 digit in 28x28; nearest-neighbour via
np.kron, so every 8x8 pixel becomes a uniform block and no information is invented), and grey
repeated into every channel of a colour model (a torchvision ResNet takes 3).

`epoch_order` is the single source of the sample order: the torch Sampler, the tf.data pipeline
and the JAX iterator (`*_impl/data.py`) all read it, so the three serve identical batches.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from parity.errors import InputError
from parity.specs import Spec

INPUT_KINDS = {"features": 2, "image": 4}  # input kind -> ndim of its (batched) canonical array
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Tags that keep the random streams of sample orders, splits and synthetic data apart.
_ORDER, _SPLIT, _SYNTHETIC = 0xDA7A, 0x5B117, 0x5E7


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test arrays in the canonical layout, checked on construction."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self):
        _check_split(self.name, "train", self.x_train, self.y_train, self.num_classes)
        _check_split(self.name, "test", self.x_test, self.y_test, self.num_classes)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise InputError(f"dataset {self.name!r}: expected x_test samples of the x_train sample shape "
                             f"{self.x_train.shape[1:]}, got {self.x_test.shape[1:]}")

    @property
    def input_kind(self) -> str:
        return "features" if self.x_train.ndim == INPUT_KINDS["features"] else "image"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Canonical shape of one sample (no batch axis)."""
        return self.x_train.shape[1:]

    def _map(self, view: str, transform) -> Dataset:
        return dataclasses.replace(self, name=f"{self.name}[{view}]", x_train=transform(self.x_train),
                                   x_test=transform(self.x_test))

    def as_features(self) -> Dataset:
        """Every sample flattened to a feature vector, (B, C*H*W) in CHW order."""
        return self._map("features", lambda x: x.reshape(len(x), -1))

    def as_images(self, size: int) -> Dataset:
        """Images upsampled to size x size: nearest-neighbour by the largest integer factor
        (np.kron), then zero-padded evenly to `size` (8 -> 32: x4; 8 -> 28: x3 plus 2 each side)."""
        if self.input_kind != "image":
            raise InputError(f"dataset {self.name!r}: expected images (B, C, H, W) to resize, "
                             f"got features {self.x_train.shape}")
        _, height, width = self.input_shape
        factor = size // max(height, width)
        pad_h, pad_w = size - factor * height, size - factor * width
        if factor < 1 or pad_h % 2 or pad_w % 2:
            raise InputError(f"dataset {self.name!r}: cannot fit {height}x{width} images to {size}x{size} by an "
                             f"integer upsampling and even padding")
        block = np.ones((1, 1, factor, factor), self.x_train.dtype)
        pads = ((0, 0), (0, 0), (pad_h // 2, pad_h // 2), (pad_w // 2, pad_w // 2))
        return self._map(f"{size}x{size}", lambda x: np.pad(np.kron(x, block), pads))

    def as_channels(self, channels: int) -> Dataset:
        """Grey images repeated into `channels` identical channels: the view a model made for colour
        (a torchvision checkpoint takes RGB) has of a grey image."""
        if self.input_kind != "image" or self.input_shape[0] != 1:
            raise InputError(f"dataset {self.name!r}: expected 1-channel images (B, 1, H, W) to repeat into "
                             f"{channels} channels, got {self.x_train.shape}")
        return self._map(f"{channels}ch", lambda x: np.repeat(x, channels, axis=1))

    def for_spec(self, spec: Spec) -> Dataset:
        """The view `spec`'s model takes (flattened, or resized and grey repeated to its channels),
        checked against the spec."""
        data = self
        if spec.input_kind == "features" and self.input_kind == "image":
            data = self.as_features()
        elif spec.input_kind == "image" and self.input_kind == "image":
            channels, *size = spec.input_shape
            if list(data.input_shape[1:]) != size:
                data = data.as_images(size[-1])
            if data.input_shape[0] != channels:
                data = data.as_channels(channels)
        data.check_spec(spec)
        return data

    def check_spec(self, spec: Spec) -> None:
        """InputError unless the samples have `spec`'s input shape and the labels its classes."""
        if self.input_shape != spec.input_shape:
            raise InputError(f"dataset {self.name!r} for {spec.architecture}: expected samples of shape "
                             f"{spec.input_shape} ({spec.input_kind}), got {self.input_shape}")
        if spec.loss != "cross_entropy":
            raise InputError(f"dataset {self.name!r} for {spec.architecture}: training expects a class-index "
                             f"(cross_entropy) model, got a {spec.loss} model")
        if self.num_classes != spec.num_classes:
            raise InputError(f"dataset {self.name!r} for {spec.architecture}: expected {spec.num_classes} classes "
                             f"(spec.num_classes), the dataset has {self.num_classes}")


def _check_split(name: str, split: str, x, y, num_classes: int) -> None:
    what = f"dataset {name!r} {split}"
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise InputError(f"{what}: expected numpy arrays, got {type(x).__name__} and {type(y).__name__}")
    if x.ndim not in INPUT_KINDS.values() or len(x) == 0:
        raise InputError(f"{what}: expected x of shape (B, features) or (B, C, H, W) with B >= 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{what}: expected floating-point x, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what}: expected finite x, got {np.sum(~np.isfinite(x))} NaN/inf values")
    if y.shape != (len(x),):
        raise InputError(f"{what}: expected labels of shape ({len(x)},) (one per sample), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{what}: expected integer class labels, got {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise InputError(f"{what}: expected labels in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch `epoch` visits samples 0 .. n-1: a permutation from numpy's
    generator seeded by (seed, epoch), so any epoch can be reproduced on its own."""
    if n < 1 or seed < 0 or epoch < 0:
        raise InputError(f"epoch_order: expected n >= 1, seed >= 0, epoch >= 0, got n={n}, seed={seed}, epoch={epoch}")
    return np.random.default_rng([seed, epoch, _ORDER]).permutation(n)


def sample_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """`epoch_order`, or 0 .. n-1 in sequence when not shuffling (evaluation)."""
    return epoch_order(n, seed, epoch) if shuffle else np.arange(n)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches in one epoch of n samples (the last one partial unless drop_last)."""
    return n // batch_size if drop_last else -(-n // batch_size)


def split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """((x, y) kept, (x, y) held out): a seeded random `fraction` of the samples held out."""
    held = round(len(x) * fraction)
    if not 0 < held < len(x):
        raise InputError(f"split fraction: expected a fraction leaving both parts non-empty out of {len(x)} "
                         f"samples, got {fraction}")
    order = np.random.default_rng([seed, _SPLIT]).permutation(len(x))
    kept, out = np.sort(order[held:]), np.sort(order[:held])
    return (x[kept], y[kept]), (x[out], y[out])


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int,
                 test_fraction: float) -> Dataset:
    (x_train, y_train), (x_test, y_test) = split(x, y, test_fraction, seed)
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes)


def _digits(seed: int, test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits  # a dependency: the dataset ships inside it

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8), pixels 0..16 -> [0, 1]
    return _from_arrays("digits", images, digits.target.astype(np.int64), 10, seed, test_fraction)


def _synthetic(seed: int, test_fraction: float, n: int = 600, features: int = 16, classes: int = 5) -> Dataset:
    """Unit-variance Gaussian clusters around class centres about 6 apart (the expected distance
    of two centres drawn with standard deviation 6 / sqrt(2 * features)): 3 noise standard
    deviations from each centre to the midpoint, so nearly separable, not trivially so."""
    rng = np.random.default_rng([seed, _SYNTHETIC])
    centres = rng.standard_normal((classes, features)) * 6 / np.sqrt(2 * features)
    labels = rng.integers(0, classes, n)
    x = (centres[labels] + rng.standard_normal((n, features))).astype(np.float32)
    return _from_arrays("synthetic", x, labels.astype(np.int64), classes, seed, test_fraction)


def _npz(path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in NPZ_KEYS if k not in archive]
        if missing:
            raise InputError(f"dataset {str(path)!r}: expected the arrays {list(NPZ_KEYS)}, missing {missing} "
                             f"(found {sorted(archive)})")
        arrays = {k: archive[k] for k in NPZ_KEYS}
    labels = np.concatenate([arrays["y_train"].ravel(), arrays["y_test"].ravel()])
    if not labels.size or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"dataset {str(path)!r}: expected non-empty integer class labels, "
                         f"got {labels.dtype} {arrays['y_train'].shape} and {arrays['y_test'].shape}")
    return Dataset(path.name, num_classes=int(labels.max()) + 1, **arrays)  # classes 0 .. the largest label


DATASETS = ("digits", "synthetic")


def load_dataset(name: str, *, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """A built-in dataset ("digits", "synthetic"), split by `seed`, or a path to an .npz file
    (already split: seed and test_fraction do not apply)."""
    if name == "digits":
        return _digits(seed, test_fraction)
    if name == "synthetic":
        return _synthetic(seed, test_fraction)
    if name.endswith(".npz"):
        if not Path(name).is_file():
            raise InputError(f"dataset: no .npz file at {name!r}")
        return _npz(Path(name))
    raise InputError(f"unknown dataset {name!r}; expected one of {list(DATASETS)} or a path to an .npz file "
                     f"with arrays {list(NPZ_KEYS)}")


def spec_for_dataset(spec: Spec, dataset: Dataset) -> Spec:
    """`spec` with its input width (or channels) and class count set to the dataset's; the image
    size stays the spec's (`Dataset.for_spec` resizes to it)."""
    fields = spec.field_names()
    overrides = {"num_classes": dataset.num_classes} if "num_classes" in fields else {}
    if spec.input_kind == "features" and "in_features" in fields:
        overrides["in_features"] = int(np.prod(dataset.input_shape))
    if spec.input_kind == "image" and "in_channels" in fields and dataset.input_kind == "image":
        overrides["in_channels"] = dataset.input_shape[0]
    return spec.replace(**overrides)
