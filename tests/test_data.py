"""Datasets and the three input pipelines: validated data, one sample order, identical batches."""
import dataclasses

import numpy as np
import pytest

import parity
from parity import layouts
from parity.data import Dataset, epoch_order, load_dataset, spec_for_dataset, steps_per_epoch
from parity.frameworks import FRAMEWORKS, impl_module



def _data_module(framework):
    """`pytorch_impl.data`, `keras_impl.data` or `jax_impl.data`."""
    return impl_module(framework, "data")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_are_real_8x8_images_in_the_unit_interval(digits):
    assert digits.input_kind == "image" and digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert len(digits.x_train) + len(digits.x_test) == 1797 and len(digits.x_test) == round(1797 * 0.2)
    assert digits.x_train.dtype == np.float32 and digits.x_train.min() == 0 and digits.x_train.max() == 1
    assert sorted(np.unique(digits.y_train)) == list(range(10))


def test_digits_views_flatten_for_the_mlp_and_upsample_for_lenet(digits):
    features = digits.for_spec(spec_for_dataset(parity.spec("mlp", "tiny"), digits))
    assert features.x_train.shape == (len(digits.x_train), 64)
    np.testing.assert_array_equal(features.x_train, digits.x_train.reshape(-1, 64))

    image = digits.x_train[0, 0]
    big = digits.for_spec(spec_for_dataset(parity.spec("lenet5"), digits)).x_train[0, 0]  # 32x32: x4 blocks
    np.testing.assert_array_equal(big, np.repeat(np.repeat(image, 4, 0), 4, 1))
    small = digits.for_spec(spec_for_dataset(parity.spec("lenet5", "tiny"), digits)).x_train[0, 0]  # 28x28
    np.testing.assert_array_equal(small[2:26, 2:26], np.repeat(np.repeat(image, 3, 0), 3, 1))
    assert not small[:2].any() and not small[26:].any() and not small[:, :2].any() and not small[:, 26:].any()


def test_splits_depend_on_the_seed_only(digits):
    again, other = load_dataset("digits"), load_dataset("digits", seed=1)
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    assert not np.array_equal(other.y_test, digits.y_test)


def test_synthetic_fits_the_tiny_mlp():
    data = load_dataset("synthetic")
    data.check_spec(parity.spec("mlp", "tiny"))  # 16 features, 5 classes
    np.testing.assert_array_equal(load_dataset("synthetic").x_train, data.x_train)


def test_npz_files_load_as_given(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((10, 3), np.float32), "y_train": np.arange(10) % 4,
              "x_test": rng.random((4, 3), np.float32), "y_test": np.arange(4)}
    np.savez(tmp_path / "mine.npz", **arrays)
    data = load_dataset(str(tmp_path / "mine.npz"))
    assert data.num_classes == 4 and data.input_kind == "features"
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(data, key), value)


def _features(n=8, classes=3):
    rng = np.random.default_rng(0)
    return rng.random((n, 4), np.float32), np.arange(n) % classes


def _bad(**changes):
    x, y = _features()
    fields = {"name": "bad", "x_train": x, "y_train": y, "x_test": x, "y_test": y, "num_classes": 3, **changes}
    return Dataset(**fields)


@pytest.mark.parametrize("make, message", [
    (lambda: _bad(y_train=np.arange(8) % 4), r"expected labels in \[0, 3\), got values in \[0, 3\]"),
    (lambda: _bad(y_test=-np.arange(8)), r"expected labels in \[0, 3\), got values in \[-7, 0\]"),
    (lambda: _bad(x_train=np.where(np.eye(8, 4) > 0, np.nan, 0).astype(np.float32)), r"expected finite x, got 4 NaN"),
    (lambda: _bad(x_test=np.full((8, 4), np.inf, np.float32)), r"expected finite x, got 32 NaN/inf"),
    (lambda: _bad(y_train=np.arange(7) % 3), r"expected labels of shape \(8,\) \(one per sample\), got \(7,\)"),
    (lambda: _bad(y_train=np.zeros(8)), r"expected integer class labels, got float64"),
    (lambda: _bad(x_test=np.zeros((8, 5), np.float32)), r"x_train sample shape \(4,\), got \(5,\)"),
    (lambda: _bad(x_train=np.zeros((8, 2, 2), np.float32)), r"\(B, features\) or \(B, C, H, W\).*got \(8, 2, 2\)"),
    (lambda: _bad().check_spec(parity.spec("mlp", "tiny")), r"expected samples of shape \(16,\).*got \(4,\)"),
    (lambda: _bad(x_train=np.zeros((8, 16), np.float32), x_test=np.zeros((8, 16), np.float32)).check_spec(
        parity.spec("mlp", "tiny")), r"expected 5 classes \(spec.num_classes\), the dataset has 3"),
    (lambda: load_dataset("synthetic").check_spec(parity.spec("perceptron", "tiny")),
     r"expected samples of shape \(4,\)"),
    (lambda: _bad().check_spec(parity.spec("perceptron", "tiny")),
     r"expects a class-index \(cross_entropy\) model, got a binary_cross_entropy model"),
    (lambda: load_dataset("mnist"), r"unknown dataset 'mnist'; expected one of \['digits', 'synthetic'\]"),
    (lambda: load_dataset("digits", test_fraction=0.0), r"split fraction"),
])
def test_bad_data_is_refused_naming_expected_and_given(make, message):
    with pytest.raises(parity.InputError, match=message):
        make()


def test_npz_without_the_expected_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2, np.int64))
    with pytest.raises(parity.InputError, match=r"missing \['x_test', 'y_test'\]"):
        load_dataset(str(tmp_path / "partial.npz"))


def test_epoch_order_is_a_seeded_permutation_per_epoch():
    order = epoch_order(100, seed=3, epoch=2)
    assert sorted(order) == list(range(100))
    np.testing.assert_array_equal(order, epoch_order(100, seed=3, epoch=2))
    assert not np.array_equal(order, epoch_order(100, seed=3, epoch=3))
    assert not np.array_equal(order, epoch_order(100, seed=4, epoch=2))


def _native_batches(framework, x, y, **kwargs):
    """Every batch as numpy, in the framework's native layout."""
    return [(np.asarray(a), np.asarray(b)) for a, b in _data_module(framework).batches(x, y, **kwargs)]


@pytest.mark.parametrize("view", ["features", "image"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_the_three_pipelines_yield_identical_batches(digits, view, drop_last):
    spec = spec_for_dataset(parity.spec("mlp" if view == "features" else "lenet5", "tiny"), digits)
    data = digits.for_spec(spec)
    x, y = data.x_train[:100], data.y_train[:100]  # 100 = 3 batches of 32 and a remainder of 4
    per_framework = {f: _native_batches(f, x, y, batch_size=32, seed=5, epoch=2, drop_last=drop_last)
                     for f in FRAMEWORKS}
    order = epoch_order(100, 5, 2)
    assert len(per_framework["torch"]) == steps_per_epoch(100, 32, drop_last) == (3 if drop_last else 4)
    for framework, batches in per_framework.items():
        assert len(batches) == len(per_framework["torch"]), framework
        for i, (inputs, targets) in enumerate(batches):
            expected = order[32 * i:32 * (i + 1)]
            np.testing.assert_array_equal(inputs, layouts.activation_to_native(framework, x[expected], "image"))
            np.testing.assert_array_equal(targets, y[expected])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_epochs_differ_in_order_not_in_content(digits, framework):
    x, y = digits.x_train[:64], digits.y_train[:64]
    first, second = (np.concatenate([t for _, t in _native_batches(framework, x, y, batch_size=16, epoch=e)])
                     for e in (0, 1))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unshuffled_batches_are_in_sample_order(digits, framework):
    x, y = digits.x_train[:40], digits.y_train[:40]
    targets = np.concatenate([t for _, t in _native_batches(framework, x, y, batch_size=16, shuffle=False)])
    np.testing.assert_array_equal(targets, y)


def test_native_shuffles_cannot_reproduce_the_shared_order():
    """tf.data's shuffle (TensorFlow's RNG through a buffer) and torch's RandomSampler (torch's
    generator) are each seeded, but neither gives numpy's permutation, nor each other's: the
    pipelines apply `epoch_order` explicitly instead."""
    import tensorflow as tf
    import torch

    n, seed = 64, 0
    numpy_order = epoch_order(n, seed, 0)
    tf_order = np.array(list(tf.data.Dataset.range(n).shuffle(n, seed=seed).as_numpy_iterator()))
    torch_order = np.array(list(torch.utils.data.RandomSampler(range(n), generator=torch.Generator().manual_seed(seed))))
    for order in (tf_order, torch_order):
        assert sorted(order) == list(range(n))
    assert not np.array_equal(tf_order, numpy_order)
    assert not np.array_equal(torch_order, numpy_order)
    assert not np.array_equal(tf_order, torch_order)


def test_a_dataset_is_frozen(digits):
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits.num_classes = 3
