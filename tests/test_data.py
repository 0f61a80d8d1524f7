"""Offline MNIST: provenance, sha256 checks, search order and the tf.data pipeline."""

import shutil

import numpy as np
import pytest

from diffusion_keras import data


def test_shipped_mnist_is_the_real_thing(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.dtype == np.uint8
    # published facts of MNIST (see data/README.md)
    np.testing.assert_array_equal(y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(y_test[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert x_train.mean() == pytest.approx(33.318, abs=1e-3)
    assert data.sha256_of(data.DATA_DIR / "mnist.npz") == data.MNIST_SHA256


def test_explicit_path_wins_and_environment_variable_is_used(tmp_path, monkeypatch):
    copy = tmp_path / "copy.npz"
    shutil.copy(data.DATA_DIR / "mnist.npz", copy)
    assert data.find_mnist(copy) == copy
    monkeypatch.setenv(data.MNIST_ENV_VARIABLE, str(copy))
    assert data.find_mnist() == copy


def test_missing_and_corrupt_files_say_where_and_how_to_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="path='.*nowhere.npz' does not exist"):
        data.load_mnist(tmp_path / "nowhere.npz")
    monkeypatch.setenv(data.MNIST_ENV_VARIABLE, str(tmp_path / "absent.npz"))
    with pytest.raises(FileNotFoundError, match="DIFFUSION_KERAS_MNIST=.*does not point to a file"):
        data.load_mnist()
    corrupt = tmp_path / "corrupt.npz"
    raw = bytearray((data.DATA_DIR / "mnist.npz").read_bytes())
    raw[1000] ^= 0xFF
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt or not the expected file: its sha256 is .* expected 06af5dfe"):
        data.load_mnist(corrupt)


def test_search_order_reports_every_place_when_nothing_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv(data.MNIST_ENV_VARIABLE, raising=False)
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)  # pretend the checkout has no data/
    with pytest.raises(FileNotFoundError, match=r"Searched, in order: \$DIFFUSION_KERAS_MNIST \(not set\); .*mnist.npz"):
        data.find_mnist(download=False)


def test_model_range_and_back(mnist):
    (x_train, _), _ = mnist
    images = data.to_model_range(x_train[:8])
    assert images.shape == (8, 32, 32, 1) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == 1.0
    # the 2-pixel border is background (-1), not a grey frame
    np.testing.assert_array_equal(images[:, :2], -1.0)
    np.testing.assert_array_equal(images[:, :, -2:], -1.0)
    np.testing.assert_array_equal(data.to_uint8(images), x_train[:8])
    unpadded = data.to_model_range(x_train[:8], image_size=28)
    assert unpadded.shape == (8, 28, 28, 1)
    np.testing.assert_array_equal(unpadded, images[:, 2:-2, 2:-2])
    np.testing.assert_array_equal(data.to_uint8(unpadded), x_train[:8])


def test_make_dataset_batches_shapes_ranges_and_labels():
    dataset = data.make_dataset(batch_size=32, subset=100, labels=True, seed=3)
    batches = list(dataset)
    assert len(batches) == 3  # 100 // 32 with drop_remainder
    images, labels = batches[0]
    assert images.shape == (32, 32, 32, 1) and images.dtype.name == "float32"
    assert labels.dtype.name == "int32" and labels.shape == (32,)
    assert float(np.min(images)) == -1.0 and float(np.max(images)) <= 1.0
    unlabelled = next(iter(data.make_dataset(batch_size=8, subset=16)))
    assert unlabelled.shape == (8, 32, 32, 1)
    unpadded = next(iter(data.make_dataset(batch_size=8, subset=16, image_size=28)))
    assert unpadded.shape == (8, 28, 28, 1) and float(np.max(unpadded)) == 1.0


def test_make_dataset_is_shuffled_with_a_seed():
    first = [b.numpy() for b in data.make_dataset(batch_size=16, subset=64, seed=5)]
    again = [b.numpy() for b in data.make_dataset(batch_size=16, subset=64, seed=5)]
    unshuffled = [b.numpy() for b in data.make_dataset(batch_size=16, subset=64, shuffle=False)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(unshuffled))
    # same images, only reordered
    np.testing.assert_allclose(np.sort(np.concatenate(first).ravel()), np.sort(np.concatenate(unshuffled).ravel()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "validation"}, "split must be one of"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1; received 0"),
        ({"subset": 0}, r"subset must be an integer in \[1, 60000\]"),
        ({"subset": 10, "batch_size": 32}, "batch_size=32 is larger than the 10 images"),
        ({"image_size": 30}, r"image_size must be 32 \(padded\) or 28 \(unpadded\); received 30"),
    ],
)
def test_make_dataset_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.make_dataset(**kwargs)


def test_conversions_reject_wrong_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"images must have shape \(n, 28, 28\); received shape \(2, 32, 32\)"):
        data.to_model_range(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="images must be uint8 in 0..255; received dtype float32"):
        data.to_model_range(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="received shape"):
        data.to_uint8(np.zeros((2, 30, 30)))
