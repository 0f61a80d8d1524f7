"""MNIST, offline first, and the tf.data pipeline that feeds the diffusion model.

``load_mnist`` returns the same arrays as ``keras.datasets.mnist.load_data()``. It looks for the file in
this order and checks its sha256 before using it:

1. the ``path`` argument;
2. the ``DIFFUSION_KERAS_MNIST`` environment variable;
3. the repository's ``data/mnist.npz`` (shipped with the checkout, so a fresh clone needs no network);
4. Keras' own download (``keras.utils.get_file``), which works in Colab.

``make_dataset`` turns the uint8 digits into the model's input space: float32 in [-1, 1], padded from
28x28 to 32x32 with the background value -1 so that a U-Net can halve the size three times
(``image_size=28`` skips the padding, for a U-Net that halves it twice: 28 -> 14 -> 7).
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from diffusion_keras import _backend  # noqa: F401

MNIST_ENV_VARIABLE = "DIFFUSION_KERAS_MNIST"
# sha256 of the file shipped in data/ (see data/README.md).
MNIST_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
# Keras' hosted copy is a different file (another compression) with the same arrays.
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
KERAS_MNIST_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KNOWN_SHA256 = (MNIST_SHA256, KERAS_MNIST_SHA256)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
IMAGE_SIZE = 32  # padded side length fed to the networks
MNIST_SIZE = 28
PAD = (IMAGE_SIZE - MNIST_SIZE) // 2
IMAGE_SIZES = (IMAGE_SIZE, MNIST_SIZE)  # padded (the default) or the digits as they are
SPLITS = ("train", "test")


def sha256_of(path):
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path, expected_sha256, what="file"):
    """Raise ``ValueError`` if ``path``'s sha256 is not one of ``expected_sha256`` (str or tuple)."""
    expected = (expected_sha256,) if isinstance(expected_sha256, str) else tuple(expected_sha256)
    actual = sha256_of(path)
    if actual not in expected:
        raise ValueError(
            f"{what} at {path} is corrupt or not the expected file: its sha256 is {actual}, "
            f"expected {' or '.join(expected)}. Delete it and restore it (e.g. `git checkout -- data/` "
            "in a clone of the repository), or pass the path of a good copy."
        )
    return path


def find_mnist(path=None, download=True):
    """Return the path of a verified ``mnist.npz``, searching in the documented order.

    Args:
        path: explicit path to an ``mnist.npz``. If given it must exist; nothing else is searched.
        download: whether to fall back to Keras' download when no local copy exists.

    Raises:
        FileNotFoundError: no copy was found; the message lists every place that was searched.
        ValueError: a copy was found but its sha256 is wrong.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"path={str(path)!r} does not exist or is not a file; expected the MNIST file "
                "mnist.npz (as shipped in the repository's data/ folder)."
            )
        return verify_file(path, KNOWN_SHA256, "MNIST file")

    searched = []
    from_env = os.environ.get(MNIST_ENV_VARIABLE)
    if from_env:
        env_path = Path(from_env).expanduser()
        if not env_path.is_file():
            raise FileNotFoundError(
                f"{MNIST_ENV_VARIABLE}={from_env!r} does not point to a file; expected the path of "
                "mnist.npz. Fix or unset the variable."
            )
        return verify_file(env_path, KNOWN_SHA256, "MNIST file")
    searched.append(f"${MNIST_ENV_VARIABLE} (not set)")

    shipped = DATA_DIR / "mnist.npz"
    if shipped.is_file():
        return verify_file(shipped, KNOWN_SHA256, "MNIST file")
    searched.append(str(shipped))

    if download:
        import keras

        try:
            downloaded = keras.utils.get_file(
                "mnist.npz", origin=KERAS_MNIST_ORIGIN, file_hash=KERAS_MNIST_SHA256
            )
            return verify_file(downloaded, KNOWN_SHA256, "MNIST file")
        except Exception as error:  # no network, blocked host, ...
            searched.append(f"Keras download from {KERAS_MNIST_ORIGIN} ({type(error).__name__}: {error})")
    raise FileNotFoundError(
        "Could not find MNIST. Searched, in order: " + "; ".join(searched) + ". Fix: clone the "
        "repository with its data/ folder, set "
        f"{MNIST_ENV_VARIABLE}=/path/to/mnist.npz, or pass load_mnist(path=...)."
    )


def load_mnist(path=None, download=True):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))``, uint8, like Keras.

    Args:
        path: optional explicit path to ``mnist.npz``.
        download: fall back to Keras' download if no local copy is found.

    Returns:
        ``x_*``: uint8 arrays of shape (n, 28, 28) with values 0..255; ``y_*``: uint8 labels 0..9.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_test.shape
    ((60000, 28, 28), (10000, 28, 28))
    """
    file_path = find_mnist(path, download=download)
    try:
        with np.load(file_path, allow_pickle=False) as arrays:
            x_train, y_train = arrays["x_train"], arrays["y_train"]
            x_test, y_test = arrays["x_test"], arrays["y_test"]
    except (KeyError, ValueError, OSError) as error:
        raise ValueError(
            f"MNIST file at {file_path} could not be read ({error}); expected an .npz with "
            "x_train, y_train, x_test, y_test."
        ) from error
    return (x_train, y_train), (x_test, y_test)


def check_image_size(image_size):
    """``image_size`` as an int if it is one the data pipeline makes (32 padded, 28 unpadded), else ValueError."""
    if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
        raise ValueError(
            f"image_size must be {IMAGE_SIZE} (padded) or {MNIST_SIZE} (unpadded); received {image_size!r}."
        )
    return int(image_size)


def to_model_range(images, image_size=IMAGE_SIZE):
    """Map uint8 digits (n, 28, 28) to float32 model inputs (n, image_size, image_size, 1) in [-1, 1].

    Pixels go to ``x / 127.5 - 1``. For ``image_size=32`` the border is padded with -1, the background
    value, so the padding looks like more background rather than a grey frame; 28 keeps the digits as
    they are (784/1024 of the pixels for the network to process).
    """
    pad = (check_image_size(image_size) - MNIST_SIZE) // 2
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise ValueError(
            f"images must have shape (n, {MNIST_SIZE}, {MNIST_SIZE}); received shape {images.shape}."
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in 0..255; received dtype {images.dtype}.")
    scaled = images.astype(np.float32) / 127.5 - 1.0
    padded = np.pad(scaled, ((0, 0), (pad, pad), (pad, pad)), constant_values=-1.0)
    return padded[..., None]  # (n, image_size, image_size, 1)


def to_uint8(images):
    """Inverse of ``to_model_range``: float images in [-1, 1] -> uint8 (n, 28, 28).

    Accepts (n, 32, 32, 1), (n, 32, 32), (n, 28, 28, 1) or (n, 28, 28). Values outside [-1, 1] are
    clipped here on purpose: this is the display/export step, after sampling.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] not in ((IMAGE_SIZE, IMAGE_SIZE), (MNIST_SIZE, MNIST_SIZE)):
        raise ValueError(
            "images must have shape (n, 32, 32[, 1]) or (n, 28, 28[, 1]); received shape "
            f"{np.asarray(images).shape}."
        )
    if images.shape[1] == IMAGE_SIZE:
        images = images[:, PAD:-PAD, PAD:-PAD]
    return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def make_dataset(
    split="train",
    batch_size=128,
    subset=None,
    labels=False,
    shuffle=True,
    seed=0,
    drop_remainder=True,
    path=None,
    image_size=IMAGE_SIZE,
):
    """Return a shuffled, batched, prefetched ``tf.data.Dataset`` of MNIST in model space.

    Args:
        split: ``"train"`` (60,000 digits) or ``"test"`` (10,000).
        batch_size: images per batch, >= 1.
        subset: if given, keep only the first ``subset`` images (for small runs and CI).
        labels: if True, elements are ``(images, labels)``; otherwise just ``images``.
        shuffle: reshuffle every epoch (seeded, so runs repeat).
        seed: shuffle seed.
        drop_remainder: drop the last incomplete batch, so every step sees ``batch_size`` images.
        path: optional explicit path to ``mnist.npz``.
        image_size: 32 (padded with the background value, the default) or 28 (unpadded).

    Returns:
        A dataset of float32 images of shape (batch, image_size, image_size, 1) in [-1, 1] (and int32
        labels).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; received {split!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
    check_image_size(image_size)
    (x_train, y_train), (x_test, y_test) = load_mnist(path)
    images, targets = (x_train, y_train) if split == "train" else (x_test, y_test)
    if subset is not None:
        if not isinstance(subset, (int, np.integer)) or not 1 <= subset <= len(images):
            raise ValueError(
                f"subset must be an integer in [1, {len(images)}] for split={split!r}; received {subset!r}."
            )
        images, targets = images[:subset], targets[:subset]
    if drop_remainder and batch_size > len(images):
        raise ValueError(
            f"batch_size={batch_size} is larger than the {len(images)} images available, and "
            "drop_remainder=True would yield no batch. Use a smaller batch_size or a larger subset."
        )
    images = to_model_range(images, image_size)
    if labels:
        dataset = tf.data.Dataset.from_tensor_slices((images, targets.astype(np.int32)))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(images)
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
