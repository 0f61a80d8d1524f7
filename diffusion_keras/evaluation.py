"""Evaluating generated MNIST digits: a small classifier, its feature space, FID, KID and friends.

Inception features mean little on 28x28 handwritten digits, so every metric here uses the package's own
MNIST classifier (a small CNN shipped in ``data/pretrained/``). Its penultimate layer (128 numbers per
image) is the feature space for FID and KID, and its softmax gives confidence, class balance, label
accuracy. A number alone says little, so each evaluation is reported next to the *real-data floor*: the
same metric between real training digits and the MNIST test set, with the same sample count.

Notation (code name -> paper symbol):

=========================  ====================  ===============================================
code                       symbol                meaning
=========================  ====================  ===============================================
``mean_a``, ``mean_b``     mu_a, mu_b            feature means of the two sets
``covariance_a/b``         Sigma_a, Sigma_b      feature covariances (float64)
``fid``                    d^2((mu_a, Sigma_a),  Frechet distance between Gaussian fits
                           (mu_b, Sigma_b))      (Heusel et al. 2017, Eq. 6)
``kid``                    MMD^2_u               unbiased squared MMD with the kernel
                                                 k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018)
``classification_          CAS                   accuracy on real test digits of a classifier trained
accuracy_score``                                 only on generated ones (Ravuri & Vinyals 2019)
=========================  ====================  ===============================================

Images: every public function that takes images accepts

- uint8 in 0..255 (other integer dtypes too, if their values lie in 0..255);
- float in [0, 1] or in [-1, 1] (the diffusion model's space);
- shapes (n, 28, 28), (n, 28, 28, 1), (n, 32, 32) or (n, 32, 32, 1); 32x32 is the padded model space
  and its 2-pixel border is cropped.

Float images are ambiguous: a batch whose values all lie in [0, 1] could be either range. The rule,
``value_range="auto"`` (the default), looks at the whole array: if any value is below -0.01 the array is
read as [-1, 1], otherwise as [0, 1]. Digits in model space always have a -1 background, so generated
samples are detected correctly; pass ``value_range="[-1, 1]"`` or ``"[0, 1]"`` to remove any doubt
(an all-white batch in [-1, 1] has no negative value and would be read as [0, 1]). Values outside the
chosen range by more than ``RANGE_TOLERANCE`` (0.001) are an error, never silently clipped; only that
rounding slack is clipped away.

Example:

>>> from diffusion_keras import data, evaluation
>>> (x_train, _), _ = data.load_mnist()
>>> result = evaluation.evaluate_images(x_train[:1000])  # doctest: +SKIP
>>> print(evaluation.format_table(result))               # doctest: +SKIP
"""

import json
import os
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

from diffusion_keras import _backend  # noqa: F401  (must run before the Keras import)
from diffusion_keras import data

import keras  # noqa: E402  (after _backend selects TensorFlow)

# ----------------------------------------------------------------------------------------------------
# Hyperparameters and shipped files
# ----------------------------------------------------------------------------------------------------
CLASSIFIER_PATH = data.DATA_DIR / "pretrained" / "mnist_classifier.weights.h5"
# sha256 of the shipped weights (see data/pretrained/CLASSIFIER.md for how they were trained).
CLASSIFIER_SHA256 = "85dd82b271f4a4fd8e584d9833fecdbe75e760b0da053843d7c4aa1a7e391e0a"
CLASSIFIER_ENV_VARIABLE = "DIFFUSION_KERAS_CLASSIFIER"
CACHE_ENV_VARIABLE = "DIFFUSION_KERAS_CACHE"
FEATURE_LAYER = "features"  # name of the penultimate layer whose activations are the feature space
FEATURE_DIM = 128
NUM_CLASSES = 10
RANGE_TOLERANCE = 1e-3  # float rounding slack allowed outside [0, 1] or [-1, 1]
AUTO_NEGATIVE_THRESHOLD = -0.01  # "auto" reads an array as [-1, 1] when a value is below this
VALUE_RANGES = ("auto", "[0, 1]", "[-1, 1]")
CONFIDENCE_THRESHOLD = 0.9
TRANSLATION_FRACTION = 2.0 / 28.0  # training augmentation: shifts of up to 2 pixels
CACHE_VERSION = 1  # bump when the reference ladder's definition changes


# ----------------------------------------------------------------------------------------------------
# The classifier
# ----------------------------------------------------------------------------------------------------
def build_classifier(dropout_rate=0.4, norm_momentum=0.99, name="mnist_classifier"):
    """Build the small CNN MNIST classifier whose penultimate layer is the evaluation feature space.

    Two blocks of two 3x3 convolutions (32 then 64 channels, batch norm, ReLU, 2x2 max pooling), then a
    128-unit dense layer named ``"features"`` and a 10-way softmax. It is a functional model made only
    of built-in Keras layers (no ``Lambda``, no custom objects), so a saved ``.keras`` file loads with
    ``safe_mode=True`` and nothing needs registering.

    Args:
        dropout_rate: dropout between the feature layer and the softmax, in [0, 1).
        norm_momentum: momentum of the batch-norm moving statistics. 0.99 suits long training; short
            runs on few images (CAS in tests) need a lower value so the statistics catch up.
        name: model name.

    Returns:
        An uncompiled ``keras.Model`` mapping float32 (batch, 28, 28, 1) images in [0, 1] to class
        probabilities (batch, 10).

    Example:

    >>> model = build_classifier()
    >>> model.output_shape
    (None, 10)
    """
    if not 0.0 <= float(dropout_rate) < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1); received {dropout_rate!r}.")
    layers = keras.layers
    inputs = keras.Input(shape=(data.MNIST_SIZE, data.MNIST_SIZE, 1), name="images")
    x = inputs
    for block, filters in enumerate((32, 64)):
        for repeat in range(2):
            # No bias: batch norm right after supplies the shift.
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block}_{repeat}")(x)
            x = layers.BatchNormalization(momentum=norm_momentum, name=f"norm{block}_{repeat}")(x)
            x = layers.ReLU(name=f"relu{block}_{repeat}")(x)
        x = layers.MaxPooling2D(name=f"pool{block}")(x)  # (batch, 14, 14, 32), then (batch, 7, 7, 64)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(FEATURE_DIM, use_bias=False, name="dense_features")(x)
    x = layers.BatchNormalization(momentum=norm_momentum, name="norm_features")(x)
    x = layers.ReLU(name=FEATURE_LAYER)(x)  # (batch, 128): the feature space of FID and KID
    x = layers.Dropout(dropout_rate, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _fit_classifier(
    images, labels, epochs, batch_size, seed, verbose, learning_rate=1e-3, norm_momentum=0.99
):
    """Train a fresh ``build_classifier()`` on float [0, 1] (n, 28, 28, 1) images; return it."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    classifier = build_classifier(norm_momentum=norm_momentum)
    # Augmentation lives in a wrapper, not in the shipped classifier, so inference never sees it.
    trainer = keras.Sequential(
        [
            keras.Input(shape=(data.MNIST_SIZE, data.MNIST_SIZE, 1)),
            keras.layers.RandomTranslation(
                TRANSLATION_FRACTION, TRANSLATION_FRACTION, fill_mode="constant", fill_value=0.0,
                seed=seed, name="random_shift",
            ),
            classifier,
        ],
        name="classifier_trainer",
    )
    steps_per_epoch = int(np.ceil(len(images) / batch_size))
    # Cosine decay to zero: the last epochs polish the weights with small steps.
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps_per_epoch)
    trainer.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainer.optimizer.build(trainer.trainable_variables)  # before fit traces its step, so it traces once
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
        .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    trainer.fit(dataset, epochs=epochs, verbose=verbose, shuffle=False)  # the dataset shuffles
    return classifier


def fit_classifier(images, labels, epochs=3, batch_size=128, seed=0, value_range="auto", verbose=0,
                   norm_momentum=0.99):
    """Train a fresh ``build_classifier()`` on any labelled digits, with the evaluation classifier's recipe.

    For experiments that need a classifier of *other* images than whole MNIST digits, e.g. notebook 06's
    classifier of upper halves, which bounds how many labels an inpainter can recover.

    Args:
        images: images in any accepted format (see ``prepare_images``).
        labels: (n,) integer digits.
        epochs: passes over ``images``; batch_size, seed, verbose: as in ``train_classifier``.
        value_range: as in ``prepare_images``.
        norm_momentum: as in ``build_classifier``.

    Returns:
        The trained ``keras.Model`` (float [0, 1] (batch, 28, 28, 1) images to (batch, 10) probabilities).
    """
    prepared = prepare_images(images, value_range=value_range)
    labels = _check_labels(labels, len(prepared))
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; received {epochs!r}.")
    return _fit_classifier(
        prepared, labels, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose, norm_momentum=norm_momentum
    )


def _accuracy(classifier, images, labels, batch_size=1000):
    """Top-1 accuracy of ``classifier`` on float [0, 1] (n, 28, 28, 1) images."""
    probabilities = classifier.predict(images, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(labels)))


def train_classifier(epochs=8, seed=0, out=None, batch_size=128, verbose=2):
    """Train the evaluation classifier on the 60,000 MNIST training digits and save its weights.

    Training uses random shifts of up to 2 pixels, Adam with a cosine-decayed learning rate and the
    cross-entropy loss. The MNIST test set is used once, at the end, to report accuracy; it never
    steers training.

    Args:
        epochs: passes over the training set (8 reaches about 99.5% test accuracy).
        seed: seeds weight initialization, shuffling and augmentation.
        out: where to write the weights (a ``.weights.h5`` path); ``None`` writes nothing.
        batch_size: images per step.
        verbose: Keras ``fit`` verbosity (0, 1 or 2).

    Returns:
        A dict with ``classifier`` (the trained model), ``test_accuracy``, ``seconds`` (training wall
        time), and, when ``out`` is given, ``path`` and ``sha256`` of the saved file.

    Example:

    >>> result = train_classifier(epochs=8, seed=0, out="mnist_classifier.weights.h5")  # doctest: +SKIP
    >>> result["test_accuracy"] > 0.992                                                  # doctest: +SKIP
    True
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; received {epochs!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
    if out is not None and not str(out).endswith(".weights.h5"):
        raise ValueError(f"out must end with '.weights.h5' (Keras' weights format); received {out!r}.")
    (x_train, y_train), (x_test, y_test) = data.load_mnist()
    start = time.perf_counter()
    classifier = _fit_classifier(
        prepare_images(x_train), y_train, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose
    )
    seconds = time.perf_counter() - start
    result = {
        "classifier": classifier,
        "test_accuracy": _accuracy(classifier, prepare_images(x_test), y_test),
        "seconds": seconds,
    }
    if out is not None:
        out = Path(out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        classifier.save_weights(out)
        result.update(path=out, sha256=data.sha256_of(out))
    return result


def load_classifier(path=None, expected_sha256=None):
    """Load the evaluation classifier's weights, checked by sha256.

    Search order: the ``path`` argument, the ``DIFFUSION_KERAS_CLASSIFIER`` environment variable, the
    shipped ``data/pretrained/mnist_classifier.weights.h5``. The shipped weights must match
    ``CLASSIFIER_SHA256``; a file given by path or environment variable is checked only when
    ``expected_sha256`` is passed (a classifier you trained yourself has its own hash).

    Args:
        path: optional path of a ``.weights.h5`` file written by ``train_classifier``.
        expected_sha256: optional hex sha256 the file must have.

    Returns:
        ``(classifier, sha256)``: the ``keras.Model`` and the hex sha256 of the file it came from, which
        keys every cache of reference features.

    Raises:
        FileNotFoundError: no weights file; the message says where it looked and how to fix it.
        ValueError: the file's sha256 is not the expected one (a corrupt or different file).

    Example:

    >>> classifier, sha256 = load_classifier()
    >>> classifier.output_shape
    (None, 10)
    """
    if path is None and os.environ.get(CLASSIFIER_ENV_VARIABLE):
        path = os.environ[CLASSIFIER_ENV_VARIABLE]
    if path is None:
        path, expected_sha256 = CLASSIFIER_PATH, expected_sha256 or CLASSIFIER_SHA256
        if not path.is_file():
            raise FileNotFoundError(
                f"The evaluation classifier's weights are missing: looked for {path} (the shipped file) "
                f"because neither path= nor ${CLASSIFIER_ENV_VARIABLE} was given. Fix: restore data/ "
                "from the repository (`git checkout -- data/pretrained`), train new weights with "
                "`python -m diffusion_keras train-classifier --out PATH` and pass path=PATH, or set "
                f"{CLASSIFIER_ENV_VARIABLE}=PATH."
            )
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"path={str(path)!r} does not exist or is not a file; expected the classifier weights "
            "(a .weights.h5 file written by train_classifier). Train one with "
            "`python -m diffusion_keras train-classifier --out PATH` or omit path to use the shipped one."
        )
    sha256 = data.sha256_of(path)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ValueError(
            f"Classifier weights at {path} are corrupt or not the expected file: its sha256 is {sha256}, "
            f"expected {expected_sha256}. Restore the shipped file (`git checkout -- data/pretrained`) "
            "or retrain it with `python -m diffusion_keras train-classifier`."
        )
    classifier = build_classifier()
    try:
        classifier.load_weights(path)
    except Exception as error:  # h5py/Keras raise many types for a wrong or truncated file
        raise ValueError(
            f"Classifier weights at {path} could not be loaded ({type(error).__name__}: {error}); "
            "expected a .weights.h5 file written by train_classifier for build_classifier()."
        ) from error
    return classifier, sha256


# ----------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------
def prepare_images(images, value_range="auto", argument="images"):
    """Validate images in any accepted format and return float32 (n, 28, 28, 1) in [0, 1].

    Args:
        images: uint8 (or integer) in 0..255, or float in [0, 1] or [-1, 1]; shaped (n, 28, 28),
            (n, 28, 28, 1), (n, 32, 32) or (n, 32, 32, 1). The 2-pixel border of 32x32 images is
            cropped.
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"``; only used for float images. ``"auto"``
            reads the array as [-1, 1] if any value is below -0.01, otherwise as [0, 1].
        argument: the argument name used in error messages.

    Returns:
        float32 array of shape (n, 28, 28, 1) in [0, 1], the classifier's input space.

    Raises:
        ValueError: empty array, wrong shape, non-numeric dtype, NaN/inf, or values outside the range
            by more than ``RANGE_TOLERANCE``. The message names ``argument``.

    Example:

    >>> prepare_images(np.zeros((2, 32, 32, 1), dtype=np.uint8)).shape
    (2, 28, 28, 1)
    """
    if value_range not in VALUE_RANGES:
        raise ValueError(f"value_range must be one of {VALUE_RANGES}; received {value_range!r}.")
    images = np.asarray(images)
    expected = (
        "uint8 in 0..255 or float in [0, 1] or [-1, 1], shaped (n, 28, 28), (n, 28, 28, 1), "
        "(n, 32, 32) or (n, 32, 32, 1)"
    )
    if images.dtype == bool or not (
        np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    ):
        raise ValueError(f"{argument} must be {expected}; received dtype {images.dtype}.")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    sizes = ((data.MNIST_SIZE, data.MNIST_SIZE), (data.IMAGE_SIZE, data.IMAGE_SIZE))
    if images.ndim != 3 or images.shape[1:] not in sizes:
        hint = " Add a batch axis for a single image (images[None])." if images.ndim == 2 else ""
        raise ValueError(f"{argument} must be {expected}; received shape {np.shape(images)}.{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"{argument} must hold at least one image; received an empty array {images.shape}.")
    if images.shape[1] == data.IMAGE_SIZE:
        images = images[:, data.PAD : -data.PAD, data.PAD : -data.PAD]

    if np.issubdtype(images.dtype, np.integer):
        low, high = images.min(), images.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"{argument} has integer dtype {images.dtype} with values in [{low}, {high}]; expected "
                "pixel values in 0..255 (uint8). Convert float images to float, not to int."
            )
        return (images.astype(np.float32) / 255.0)[..., None]

    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{argument} contains NaN or infinite values; expected finite pixel values.")
    low, high = float(images.min()), float(images.max())
    how = f"value_range={value_range!r}"
    if value_range == "auto":
        value_range = "[-1, 1]" if low < AUTO_NEGATIVE_THRESHOLD else "[0, 1]"
        how = f"value_range='auto' read the array as {value_range}"
    range_low = -1.0 if value_range == "[-1, 1]" else 0.0
    if low < range_low - RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        raise ValueError(
            f"{argument} has float values in [{low:.4g}, {high:.4g}], outside {value_range} ({how}); "
            "expected float images in [0, 1] or [-1, 1]. Clip sampler outputs deliberately (np.clip) "
            "or convert them with data.to_uint8 before evaluating."
        )
    if range_low < 0:
        images = (images + 1.0) / 2.0  # [-1, 1] -> [0, 1]
    # Only rounding slack (at most RANGE_TOLERANCE) is removed here.
    return np.clip(images, 0.0, 1.0)[..., None]


# ----------------------------------------------------------------------------------------------------
# Features and probabilities
# ----------------------------------------------------------------------------------------------------
class FeatureExtractor:
    """The evaluation classifier seen as a feature extractor: images -> (features, probabilities).

    Wraps a classifier built by ``build_classifier`` in a two-output model that returns the
    activations of its penultimate layer (``"features"``, 128 numbers per image) and its softmax, so
    one forward pass gives everything FID, KID and the label metrics need. Results are float64, the
    precision FID's matrix square root needs.

    Args:
        classifier: a model from ``build_classifier``; ``None`` loads the shipped, sha256-checked one.
        sha256: the sha256 of the weights file ``classifier`` came from. It keys the on-disk cache of
            reference features; ``None`` (an in-memory classifier) turns caching off.
        batch_size: images per forward pass.

    Call arguments:
        images: images in any accepted format (see the module docstring).
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.

    Example:

    >>> extractor = FeatureExtractor()
    >>> extractor(np.zeros((3, 28, 28), dtype=np.uint8)).shape
    (3, 128)
    """

    def __init__(self, classifier=None, sha256=None, batch_size=500):
        if classifier is None:
            classifier, sha256 = load_classifier()
        if not isinstance(classifier, keras.Model):
            raise ValueError(
                "classifier must be a keras.Model from build_classifier(); received "
                f"{type(classifier).__name__}."
            )
        try:
            feature_output = classifier.get_layer(FEATURE_LAYER).output
        except ValueError as error:
            raise ValueError(
                f"classifier has no layer named {FEATURE_LAYER!r}; expected a model from build_classifier()."
            ) from error
        self.classifier = classifier
        self.sha256 = sha256
        self.batch_size = int(batch_size)
        self._two_outputs = keras.Model(classifier.inputs, [feature_output, classifier.outputs[0]])

    def features_and_probabilities(self, images, value_range="auto", argument="images"):
        """Return ``(features, probabilities)``: float64 arrays of shape (n, 128) and (n, 10)."""
        prepared = prepare_images(images, value_range=value_range, argument=argument)
        features, probabilities = self._two_outputs.predict(prepared, batch_size=self.batch_size, verbose=0)
        return features.astype(np.float64), probabilities.astype(np.float64)

    def __call__(self, images, value_range="auto"):
        return self.features_and_probabilities(images, value_range)[0]

    def __repr__(self):
        weights = f"sha256={self.sha256[:12]}..." if self.sha256 else "in-memory weights"
        return f"FeatureExtractor({weights})"


_DEFAULT_EXTRACTOR = []  # filled on first use, so importing the module loads no weights


def default_extractor():
    """Return the shared ``FeatureExtractor`` of the shipped classifier (loaded once per process)."""
    if not _DEFAULT_EXTRACTOR:
        _DEFAULT_EXTRACTOR.append(FeatureExtractor())
    return _DEFAULT_EXTRACTOR[0]


def features(images, value_range="auto", extractor=None):
    """Return the classifier's penultimate-layer features of ``images``, float64 (n, 128).

    Args:
        images: images in any accepted format (see the module docstring).
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.
        extractor: a ``FeatureExtractor``; ``None`` uses the shipped classifier.

    Returns:
        float64 array of shape (n, 128).

    Example:

    >>> (x_train, _), _ = data.load_mnist()
    >>> features(x_train[:5]).shape
    (5, 128)
    """
    return (extractor or default_extractor()).features_and_probabilities(images, value_range)[0]


def class_probabilities(images, value_range="auto", extractor=None):
    """Return the classifier's softmax for ``images``, float64 (n, 10). Arguments as ``features``."""
    return (extractor or default_extractor()).features_and_probabilities(images, value_range)[1]


# ----------------------------------------------------------------------------------------------------
# Metrics on features: FID and KID
# ----------------------------------------------------------------------------------------------------
def _check_features(values, argument, min_rows=2):
    values = np.asarray(values)
    if values.dtype == bool or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        raise ValueError(
            f"{argument} must be a numeric (n, d) array of features; received dtype {values.dtype}."
        )
    if values.ndim != 2 or values.shape[0] < min_rows or values.shape[1] < 1:
        raise ValueError(
            f"{argument} must be a 2-D (n, d) array of features with n >= {min_rows}; received shape "
            f"{values.shape}. Compute features with evaluation.features(images)."
        )
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{argument} contains NaN or infinite values.")
    return values


def _check_same_dimension(features_a, features_b):
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"features_a and features_b must have the same feature dimension; received "
            f"{features_a.shape[1]} and {features_b.shape[1]}."
        )


def _sqrt_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix through its eigen-decomposition."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    # Tiny negative eigenvalues are rounding error of a PSD matrix, not information.
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mean_a, covariance_a, mean_b, covariance_b):
    """Fréchet distance between two Gaussians N(mean_a, covariance_a) and N(mean_b, covariance_b).

    d^2 = ||mu_a - mu_b||^2 + Tr(Sigma_a + Sigma_b - 2 (Sigma_a Sigma_b)^{1/2})   (Heusel et al. 2017,
    Eq. 6; the closed form for Gaussians is Dowson & Landau 1982).

    ``Sigma_a Sigma_b`` is not symmetric, so instead of a general matrix square root (scipy's
    ``sqrtm``) this uses Tr((Sigma_a Sigma_b)^{1/2}) = Tr((S Sigma_b S)^{1/2}) with S = Sigma_a^{1/2}:
    the two products have the same eigenvalues, and ``S Sigma_b S`` is symmetric PSD, so the trace is
    the sum of the square roots of its eigenvalues. Everything is float64.

    Args:
        mean_a, mean_b: (d,) feature means.
        covariance_a, covariance_b: (d, d) feature covariances.

    Returns:
        The squared Fréchet distance, a float >= 0.

    Example:

    >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
    2.0
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    covariance_a = np.asarray(covariance_a, np.float64)
    covariance_b = np.asarray(covariance_b, np.float64)
    sqrt_a = _sqrt_psd(covariance_a)
    middle = sqrt_a @ covariance_b @ sqrt_a
    middle = (middle + middle.T) / 2.0  # symmetric up to rounding; make it exactly so for eigvalsh
    trace_sqrt_product = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)))
    difference = mean_a - mean_b
    distance = (
        difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2.0 * trace_sqrt_product
    )
    return float(max(distance, 0.0))  # a distance; -1e-12 is rounding of an exact 0


def fid(features_a, features_b):
    """Fréchet distance between Gaussian fits of two feature sets (FID; Heusel et al. 2017, Eq. 6).

    Each set is summarized by its mean and covariance (float64, ``ddof=1``) and the two Gaussians are
    compared with ``frechet_distance``. FID is biased upward for small sets, so compare numbers only at
    the same sample count, and next to the real-data floor (``reference_ladder``).

    Args:
        features_a: (n_a, d) features, e.g. ``features(generated_images)``; n_a >= 2.
        features_b: (n_b, d) features, e.g. of the MNIST test set; n_b >= 2.

    Returns:
        FID as a float >= 0 (0 for identical sets).

    Example:

    >>> (x_train, _), (x_test, _) = data.load_mnist()
    >>> fid(features(x_train[:2000]), features(x_test[:2000])) < 5.0
    True
    """
    features_a = _check_features(features_a, "features_a")
    features_b = _check_features(features_b, "features_b")
    _check_same_dimension(features_a, features_b)
    return frechet_distance(
        features_a.mean(axis=0), np.cov(features_a, rowvar=False),
        features_b.mean(axis=0), np.cov(features_b, rowvar=False),
    )


KernelDistance = namedtuple("KernelDistance", ["mean", "std"])


def polynomial_kernel(features_a, features_b):
    """KID's kernel k(x, y) = (x . y / d + 1)^3 for every pair of rows (Binkowski et al. 2018)."""
    dimension = features_a.shape[1]
    kernel = features_a @ features_b.T / dimension + 1.0
    return kernel * kernel * kernel  # two multiplies: faster than a general power


def mmd_squared_unbiased(features_a, features_b):
    """Unbiased estimate of MMD^2 with the polynomial kernel, for two sets of equal size m.

    MMD^2_u = 1/(m(m-1)) sum_{i != j} [k(a_i, a_j) + k(b_i, b_j)] - 2/m^2 sum_{i, j} k(a_i, b_j)
    (Gretton et al. 2012, Lemma 6, as used for KID by Binkowski et al. 2018). Leaving out the diagonal
    i = j is what makes it unbiased: the expectation is exactly 0 when both sets come from one
    distribution, so the estimate can be negative.
    """
    m = features_a.shape[0]
    kernel_aa = polynomial_kernel(features_a, features_a)
    kernel_bb = polynomial_kernel(features_b, features_b)
    kernel_ab = polynomial_kernel(features_a, features_b)
    within = (kernel_aa.sum() - np.trace(kernel_aa) + kernel_bb.sum() - np.trace(kernel_bb)) / (m * (m - 1))
    return float(within - 2.0 * kernel_ab.mean())


def kid(features_a, features_b, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance: unbiased MMD^2 with a cubic kernel, averaged over random subsets.

    Following Binkowski et al. 2018 ("Demystifying MMD GANs", Sec. on KID): draw ``subsets`` pairs of
    ``subset_size`` rows (without replacement within a subset) from each set, compute
    ``mmd_squared_unbiased`` with k(x, y) = (x . y / d + 1)^3 on each pair, and report the mean and
    the standard deviation across subsets. Unlike FID, KID is unbiased: its expectation does not depend
    on the sample count, and it is 0 on average (sometimes negative) for two samples of one
    distribution.

    Args:
        features_a: (n_a, d) features.
        features_b: (n_b, d) features with the same d.
        subsets: number of random subsets, >= 1.
        subset_size: rows per subset, in [2, min(n_a, n_b)]; ``None`` means min(1000, n_a, n_b).
        seed: seed of the subset draws (the same seed gives the same number).

    Returns:
        ``KernelDistance(mean, std)``: floats; std is the spread of single-subset estimates (the
        standard error of the mean is std / sqrt(subsets)).

    Example:

    >>> (x_train, _), (x_test, _) = data.load_mnist()
    >>> result = kid(features(x_train[:2000]), features(x_test[:2000]), subsets=10)
    >>> abs(result.mean) < 3 * result.std + 1e-3
    True
    """
    features_a = _check_features(features_a, "features_a")
    features_b = _check_features(features_b, "features_b")
    _check_same_dimension(features_a, features_b)
    largest = min(len(features_a), len(features_b))
    if subset_size is None:
        subset_size = min(1000, largest)
    if not isinstance(subset_size, (int, np.integer)) or not 2 <= subset_size <= largest:
        raise ValueError(
            f"subset_size must be an integer in [2, min(n_a, n_b)] = [2, {largest}]; received "
            f"{subset_size!r}. Pass a smaller subset_size or more samples."
        )
    if not isinstance(subsets, (int, np.integer)) or subsets < 1:
        raise ValueError(f"subsets must be an integer >= 1; received {subsets!r}.")
    generator = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for index in range(subsets):
        rows_a = generator.choice(len(features_a), subset_size, replace=False)
        rows_b = generator.choice(len(features_b), subset_size, replace=False)
        estimates[index] = mmd_squared_unbiased(features_a[rows_a], features_b[rows_b])
    return KernelDistance(float(estimates.mean()), float(estimates.std(ddof=1)) if subsets > 1 else 0.0)


# ----------------------------------------------------------------------------------------------------
# Metrics on class probabilities and labels
# ----------------------------------------------------------------------------------------------------
def _check_probabilities(probabilities, argument="probabilities"):
    probabilities = np.asarray(probabilities)
    if (
        probabilities.ndim != 2
        or probabilities.shape[0] < 1
        or probabilities.shape[1] != NUM_CLASSES
        or not np.issubdtype(probabilities.dtype, np.floating)
    ):
        raise ValueError(
            f"{argument} must be a float (n, {NUM_CLASSES}) array of class probabilities with n >= 1; "
            f"received shape {probabilities.shape} and dtype {probabilities.dtype}. Use "
            "evaluation.class_probabilities(images)."
        )
    probabilities = probabilities.astype(np.float64)
    if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or not np.allclose(
        probabilities.sum(axis=1), 1.0, atol=1e-3
    ):
        raise ValueError(f"{argument} must hold finite, non-negative rows that sum to 1 (a softmax).")
    return probabilities


def _check_labels(labels, count, argument="labels"):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{argument} must be a 1-D integer array of {count} labels (one per image); received shape "
            f"{labels.shape} and dtype {labels.dtype}."
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(
            f"{argument} must be digits in 0..{NUM_CLASSES - 1}; received values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    return labels.astype(np.int64)


Confidence = namedtuple("Confidence", ["mean_max_probability", "share_confident"])


def confidence(probabilities, threshold=CONFIDENCE_THRESHOLD):
    """How sure the classifier is about each image: mean max-probability and the share above a threshold.

    Real digits score near 1 and many bad samples score lower, but confidence alone is easy to fool:
    it measures recognizability only, not diversity (one perfect "1" repeated scores perfectly), and a
    classifier can be sure about images unlike any digit (the shipped one reads the blurry one-shot
    "mean digit" as an 8 with probability 0.99999). Read it together with FID and ``class_balance``.

    Args:
        probabilities: (n, 10) class probabilities, e.g. ``class_probabilities(images)``.
        threshold: the confidence counted as sure, in (0, 1).

    Returns:
        ``Confidence(mean_max_probability, share_confident)``, two floats in [0, 1].

    Example:

    >>> confidence(np.eye(10)[[3, 3]])
    Confidence(mean_max_probability=1.0, share_confident=1.0)
    """
    probabilities = _check_probabilities(probabilities)
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1); received {threshold!r}.")
    max_probability = probabilities.max(axis=1)
    return Confidence(float(max_probability.mean()), float(np.mean(max_probability > threshold)))


def label_histogram(probabilities):
    """Share of images predicted as each digit 0..9 (argmax of ``probabilities``), float64 (10,)."""
    probabilities = _check_probabilities(probabilities)
    counts = np.bincount(np.argmax(probabilities, axis=1), minlength=NUM_CLASSES)
    return counts / counts.sum()


def class_balance(probabilities):
    """KL divergence, in nats, from the predicted-label histogram to the uniform distribution over 10 digits.

    KL(p || u) = sum_c p_c log(p_c / (1/10)) = log 10 - H(p), with 0 log 0 = 0. It is 0 when every digit
    is predicted equally often (MNIST itself is close: about 0.001) and log 10 = 2.303 when every image
    is predicted as one digit (mode collapse).

    Args:
        probabilities: (n, 10) class probabilities.

    Returns:
        A float in [0, log 10].

    Example:

    >>> round(class_balance(np.eye(10)[[7, 7, 7]]), 3)
    2.303
    """
    histogram = label_histogram(probabilities)
    present = histogram > 0
    return float(np.sum(histogram[present] * np.log(histogram[present] * NUM_CLASSES)))


def label_accuracy(images, labels, value_range="auto", extractor=None):
    """Share of images the classifier reads as the digit they were generated to be.

    For class-conditional samples: ``labels[i]`` is the class image ``i`` was conditioned on.

    Args:
        images: images in any accepted format (see the module docstring).
        labels: (n,) integer digits 0..9.
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.
        extractor: a ``FeatureExtractor``; ``None`` uses the shipped classifier.

    Returns:
        Accuracy, a float in [0, 1].

    Example:

    >>> _, (x_test, y_test) = data.load_mnist()
    >>> label_accuracy(x_test[:1000], y_test[:1000]) > 0.98
    True
    """
    probabilities = class_probabilities(images, value_range, extractor)
    labels = _check_labels(labels, len(probabilities))
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def classification_accuracy_score(
    images, labels, epochs=5, batch_size=64, seed=0, n_test=None, value_range="auto", verbose=0
):
    """Classification Accuracy Score (CAS; Ravuri & Vinyals 2019): train on generated, test on real.

    A fresh ``build_classifier()`` is trained only on the generated ``images`` with their conditioning
    ``labels`` (same recipe as the evaluation classifier: 2-pixel random shifts, Adam, cosine decay),
    then scored on real MNIST test digits. High CAS needs samples that are both correct and diverse
    enough to teach every digit's variations; a collapsed generator scores low even if each sample
    looks good. As a reference, 10,000 random real training digits with the default settings score
    0.991. Batch norm uses momentum 0.9 instead of 0.99 so its moving statistics settle within
    the few hundred steps a small sample set gives.

    Args:
        images: generated images in any accepted format.
        labels: (n,) integer digits the images were conditioned on.
        epochs: training epochs over ``images``.
        batch_size: images per training step. Use at least ~50 steps in all (epochs x n / batch_size):
            fewer leave the batch-norm statistics unsettled and the score near chance.
        seed: seeds initialization, shuffling and augmentation.
        n_test: score on the first ``n_test`` MNIST test digits; ``None`` uses all 10,000.
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.
        verbose: Keras ``fit`` verbosity.

    Returns:
        Test accuracy, a float in [0, 1].

    Example:

    >>> (x_train, y_train), _ = data.load_mnist()
    >>> classification_accuracy_score(x_train[:1500], y_train[:1500], epochs=3) > 0.9  # doctest: +SKIP
    True
    """
    _, (x_test, y_test) = data.load_mnist()
    if n_test is not None:
        if not isinstance(n_test, (int, np.integer)) or not 1 <= n_test <= len(x_test):
            raise ValueError(f"n_test must be an integer in [1, {len(x_test)}] or None; received {n_test!r}.")
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    classifier = fit_classifier(
        images, labels, epochs=epochs, batch_size=batch_size, seed=seed, value_range=value_range, verbose=verbose,
        norm_momentum=0.9,
    )
    return _accuracy(classifier, prepare_images(x_test), y_test)


# ----------------------------------------------------------------------------------------------------
# Degradations: known-bad versions of real digits that calibrate the metrics
# ----------------------------------------------------------------------------------------------------
def add_pixel_noise(images, sigma, seed=0, value_range="auto"):
    """Add Gaussian noise of standard deviation ``sigma`` in [0, 1] pixel units, then clip to [0, 1].

    The clip is what saving the noisy image as a picture would do; it also keeps the result a valid
    input. (sigma = 0.1 in [0, 1] units is sigma = 0.2 in the model's [-1, 1] space.)

    Args:
        images: images in any accepted format.
        sigma: noise standard deviation in [0, 1] pixel units, >= 0.
        seed: noise seed.
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.

    Returns:
        float32 (n, 28, 28) in [0, 1].

    Example:

    >>> add_pixel_noise(np.zeros((2, 28, 28), np.uint8), sigma=0.1).shape
    (2, 28, 28)
    """
    if not float(sigma) >= 0.0:
        raise ValueError(f"sigma must be >= 0; received {sigma!r}.")
    prepared = prepare_images(images, value_range=value_range)[..., 0]
    noise = np.random.default_rng(seed).standard_normal(prepared.shape).astype(np.float32)
    return np.clip(prepared + float(sigma) * noise, 0.0, 1.0)


def gaussian_blur(images, sigma, value_range="auto"):
    """Blur with a Gaussian of standard deviation ``sigma`` pixels (separable, zero = background padding).

    Args:
        images: images in any accepted format.
        sigma: blur standard deviation in pixels, > 0. The kernel is cut at 3 sigma.
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.

    Returns:
        float32 (n, 28, 28) in [0, 1].

    Example:

    >>> gaussian_blur(np.zeros((2, 28, 28), np.uint8), sigma=1.0).shape
    (2, 28, 28)
    """
    if not float(sigma) > 0.0:
        raise ValueError(f"sigma must be > 0; received {sigma!r}.")
    prepared = prepare_images(images, value_range=value_range)[..., 0]  # (n, 28, 28)
    radius = int(np.ceil(3.0 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    size = prepared.shape[1]
    for axis in (1, 2):  # a 2-D Gaussian is two 1-D passes
        padding = [(0, 0), (0, 0), (0, 0)]
        padding[axis] = (radius, radius)
        padded = np.pad(prepared, padding)  # zeros: the background continues past the edge
        blurred = np.zeros_like(prepared)
        for weight, start in zip(kernel, range(2 * radius + 1)):
            blurred += weight * np.take(padded, np.arange(start, start + size), axis=axis)
        prepared = blurred
    return np.clip(prepared, 0.0, 1.0)


def _class_means(train_images, train_labels):
    """Mean image of each digit 0..9 and of all images, float64 in [0, 1]: ``(class_means, mean)``."""
    prepared = prepare_images(train_images, argument="train_images")[..., 0]
    train_labels = _check_labels(train_labels, len(prepared), "train_labels")
    flat = prepared.reshape(len(prepared), -1).astype(np.float64)  # float64: 60,000 terms per sum
    one_hot = np.eye(NUM_CLASSES)[train_labels]  # (n_train, 10)
    counts = one_hot.sum(axis=0)
    if np.any(counts == 0):
        raise ValueError(
            f"train_labels must contain every digit 0..9; counts per digit are {counts.astype(int)}."
        )
    class_means = (one_hot.T @ flat / counts[:, None]).reshape(NUM_CLASSES, data.MNIST_SIZE, data.MNIST_SIZE)
    return class_means, flat.mean(axis=0).reshape(data.MNIST_SIZE, data.MNIST_SIZE)


_MNIST_MEANS = []  # the MNIST training set's means, computed once per process


def _mnist_means():
    if not _MNIST_MEANS:
        (train_images, train_labels), _ = data.load_mnist()
        _MNIST_MEANS.append(_class_means(train_images, train_labels))
    return _MNIST_MEANS[0]


def mean_digit_images(count, train_images=None, train_labels=None):
    """The dataset's mean image, repeated ``count`` times: what a one-shot x_0 denoiser outputs.

    A denoiser trained with MSE to predict x_0 learns E[x_0 | x_t]. From pure noise x_T, which carries
    no information about x_0, that expectation is the mean training image: a grey blur of every digit
    on top of each other. "Sampling" with one pass of such a denoiser therefore gives this image for
    every noise draw, with no diversity at all.

    Args:
        count: number of copies, >= 1.
        train_images, train_labels: the images to average (labels only checked); ``None`` uses the
            60,000 MNIST training digits.

    Returns:
        float32 (count, 28, 28) in [0, 1].

    Example:

    >>> mean_digit_images(4).shape
    (4, 28, 28)
    """
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an integer >= 1; received {count!r}.")
    if train_images is None:
        _, mean_image = _mnist_means()
    else:
        if train_labels is None:
            train_labels = np.arange(len(np.asarray(train_images))) % NUM_CLASSES  # unused by the mean
        _, mean_image = _class_means(train_images, train_labels)
    return np.repeat(mean_image[None].astype(np.float32), count, axis=0)


def class_mean_digit_images(labels, train_images=None, train_labels=None):
    """Each label's mean training digit: what a one-shot, class-conditional x_0 denoiser outputs.

    Args:
        labels: (n,) integer digits 0..9; image ``i`` is the mean of all training images of ``labels[i]``.
        train_images, train_labels: what to average; ``None`` uses the MNIST training set.

    Returns:
        float32 (n, 28, 28) in [0, 1].

    Example:

    >>> class_mean_digit_images([0, 1, 1]).shape
    (3, 28, 28)
    """
    labels = _check_labels(labels, len(np.asarray(labels)))
    if train_images is None or train_labels is None:
        class_means, _ = _mnist_means()
    else:
        class_means, _ = _class_means(train_images, train_labels)
    return class_means[labels].astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Reference features and the reference ladder, cached on disk
# ----------------------------------------------------------------------------------------------------
# name -> description, grouped by kind. Measured FID order (n = 10,000): floor < blur_1.0 < noise_0.1
# < class_mean_digit < noise_0.3 < mean_digit; the tests check the orderings that must hold.
LADDER_RUNGS = {
    "floor": "real training digits (the floor: train vs test)",
    "noise_0.1": "real + Gaussian noise, sigma 0.1 in [0, 1] pixel units, clipped",
    "noise_0.3": "real + Gaussian noise, sigma 0.3 in [0, 1] pixel units, clipped",
    "blur_1.0": "real, Gaussian blur with sigma 1 pixel",
    "class_mean_digit": "each digit's class-mean image (one-shot conditional denoiser)",
    "mean_digit": "the mean training image, repeated (one-shot denoiser on pure noise)",
}
REFERENCE_SEED = 0  # fixes which test digits form a reference subset smaller than 10,000


def cache_directory(cache_dir=None):
    """Where reference features and ladders are cached: ``cache_dir``, ``$DIFFUSION_KERAS_CACHE`` or
    ``~/.cache/diffusion_keras``, plus ``/evaluation``. Returns ``None`` if ``cache_dir`` is False."""
    if cache_dir is False:
        return None
    root = cache_dir or os.environ.get(CACHE_ENV_VARIABLE) or Path.home() / ".cache" / "diffusion_keras"
    return Path(root).expanduser() / "evaluation"


def _atomic_write(path, write):
    """Write through a temporary file and rename, so a reader never sees half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)


def reference_features(n_reference=10000, extractor=None, cache_dir=None):
    """Features, probabilities and labels of real MNIST test digits, computed once and cached.

    The cache file is keyed by the classifier's sha256 (``test_features_<sha256[:16]>.npz``), so new
    weights never reuse old features. With an in-memory classifier (no sha256) nothing is cached.

    Args:
        n_reference: how many test digits, in [2, 10000]. Fewer than 10,000 are a fixed random subset
            (not the first ones: the first 5,000 MNIST test digits are the cleaner half).
        extractor: a ``FeatureExtractor``; ``None`` uses the shipped classifier.
        cache_dir: cache root (see ``cache_directory``); ``False`` disables the cache.

    Returns:
        ``(features, probabilities, labels)``: float64 (n, 128), float64 (n, 10), int64 (n,).
    """
    extractor = extractor or default_extractor()
    _, (x_test, y_test) = data.load_mnist()
    if not isinstance(n_reference, (int, np.integer)) or not 2 <= n_reference <= len(x_test):
        raise ValueError(f"n_reference must be an integer in [2, {len(x_test)}]; received {n_reference!r}.")
    directory = cache_directory(cache_dir)
    path = None
    if directory is not None and extractor.sha256:
        path = directory / f"test_features_{extractor.sha256[:16]}.npz"
    if path is not None and path.is_file():
        with np.load(path) as cached:
            test_features, test_probabilities = cached["features"], cached["probabilities"]
    else:
        test_features, test_probabilities = extractor.features_and_probabilities(x_test)
        if path is not None:
            def write(target):
                with open(target, "wb") as handle:  # a handle: np.savez would append ".npz" to a name
                    np.savez(handle, features=test_features, probabilities=test_probabilities)

            _atomic_write(path, write)
    rows = np.arange(len(x_test))
    if n_reference < len(x_test):
        rows = np.random.default_rng(REFERENCE_SEED).permutation(len(x_test))[:n_reference]
    return test_features[rows], test_probabilities[rows], y_test[rows].astype(np.int64)


def _metrics_against_reference(
    sample_features, sample_probabilities, reference, labels=None, kid_subsets=100, seed=0
):
    """Every label-free metric (and label accuracy when labels are known) of one set of samples."""
    reference_feature_values = reference[0]
    subset_size = min(1000, len(sample_features), len(reference_feature_values))
    kernel_distance = kid(
        sample_features, reference_feature_values, subsets=kid_subsets, subset_size=subset_size, seed=seed
    )
    sure = confidence(sample_probabilities)
    metrics = {
        "fid": fid(sample_features, reference_feature_values),
        "kid_mean": kernel_distance.mean,
        "kid_std": kernel_distance.std,
        "kid_subset_size": subset_size,
        "mean_max_probability": sure.mean_max_probability,
        "share_confident": sure.share_confident,
        "class_balance_kl": class_balance(sample_probabilities),
        "label_accuracy": None,
    }
    if labels is not None:
        metrics["label_accuracy"] = float(np.mean(np.argmax(sample_probabilities, axis=1) == labels))
    return metrics


def _rung_images(name, images, labels, seed):
    if name == "floor":
        return images
    if name.startswith("noise_"):
        return add_pixel_noise(images, float(name.split("_")[1]), seed=seed)
    if name.startswith("blur_"):
        return gaussian_blur(images, float(name.split("_")[1]))
    if name == "class_mean_digit":
        return class_mean_digit_images(labels)
    if name == "mean_digit":
        return mean_digit_images(len(images))
    raise ValueError(f"rung must be one of {tuple(LADDER_RUNGS)}; received {name!r}.")


def reference_ladder(
    n_samples=10000, n_reference=10000, rungs=None, extractor=None, cache_dir=None, seed=0, kid_subsets=100
):
    """Metrics of real and deliberately degraded digits against the test set: the scale to read results on.

    Every rung takes ``n_samples`` random MNIST *training* digits (never test digits), transforms them
    (see ``LADDER_RUNGS``) and scores them against ``n_reference`` test digits exactly like generated
    samples are scored. ``"floor"`` (untouched training digits) is the best any generator can expect
    at this sample count; FID is biased by the sample count, so compare a model only with the floor
    at its own ``n_samples``. Results are cached in ``ladder_<sha256[:16]>_n.._ref.._seed.._k...json``.

    Args:
        n_samples: images per rung, in [2, 60000]: use the number of generated samples you evaluate.
        n_reference: real test digits to compare against, in [2, 10000].
        rungs: names from ``LADDER_RUNGS`` to compute; ``None`` computes all.
        extractor: a ``FeatureExtractor``; ``None`` uses the shipped classifier.
        cache_dir: cache root (see ``cache_directory``); ``False`` disables the cache.
        seed: seeds the choice of training digits, the noise and KID's subsets.
        kid_subsets: KID subsets per rung.

    Returns:
        ``{rung name: {"description", "fid", "kid_mean", "kid_std", "kid_subset_size",
        "mean_max_probability", "share_confident", "class_balance_kl", "label_accuracy"}}`` in
        ``LADDER_RUNGS`` order.

    Example:

    >>> ladder = reference_ladder(n_samples=2000, n_reference=2000)  # doctest: +SKIP
    >>> ladder["floor"]["fid"] < ladder["noise_0.1"]["fid"] < ladder["noise_0.3"]["fid"]  # doctest: +SKIP
    True
    """
    rungs = tuple(LADDER_RUNGS) if rungs is None else tuple(rungs)
    for name in rungs:
        if name not in LADDER_RUNGS:
            raise ValueError(f"rungs must be names from {tuple(LADDER_RUNGS)}; received {name!r}.")
    extractor = extractor or default_extractor()
    (x_train, y_train), _ = data.load_mnist()
    if not isinstance(n_samples, (int, np.integer)) or not 2 <= n_samples <= len(x_train):
        raise ValueError(f"n_samples must be an integer in [2, {len(x_train)}]; received {n_samples!r}.")
    reference = reference_features(n_reference, extractor, cache_dir)

    directory = cache_directory(cache_dir)
    path = None
    cached = {}
    if directory is not None and extractor.sha256:
        path = directory / (
            f"ladder_{extractor.sha256[:16]}_n{n_samples}_ref{n_reference}_seed{seed}_k{kid_subsets}"
            f"_v{CACHE_VERSION}.json"
        )
        if path.is_file():
            cached = json.loads(path.read_text())
    missing = [name for name in rungs if name not in cached]
    if missing:
        rows = np.random.default_rng(seed).choice(len(x_train), n_samples, replace=False)
        images, labels = x_train[rows], y_train[rows].astype(np.int64)
        for name in missing:
            rung_features, rung_probabilities = extractor.features_and_probabilities(
                _rung_images(name, images, labels, seed)
            )
            cached[name] = {"description": LADDER_RUNGS[name]}
            cached[name].update(
                _metrics_against_reference(
                    rung_features, rung_probabilities, reference, labels, kid_subsets=kid_subsets, seed=seed
                )
            )
        if path is not None:
            _atomic_write(path, lambda target: target.write_text(json.dumps(cached, indent=1)))
    return {name: cached[name] for name in LADDER_RUNGS if name in rungs}


# ----------------------------------------------------------------------------------------------------
# Evaluating images and printing the result
# ----------------------------------------------------------------------------------------------------
def evaluate_images(
    images,
    labels=None,
    n_reference=10000,
    value_range="auto",
    extractor=None,
    cache_dir=None,
    seed=0,
    kid_subsets=100,
    cas_epochs=None,
    include_ladder=True,
):
    """Every metric of a set of generated digits, next to the real-data floor at the same sample count.

    Args:
        images: generated images in any accepted format (see the module docstring), n >= 2. FID needs a
            few thousand images to be stable; 10,000 is the standard.
        labels: optional (n,) digits the images were conditioned on; enables label accuracy and CAS.
        n_reference: real MNIST test digits to compare against, in [2, 10000].
        value_range: ``"auto"``, ``"[0, 1]"`` or ``"[-1, 1]"`` for float images.
        extractor: a ``FeatureExtractor``; ``None`` uses the shipped classifier.
        cache_dir: cache root for reference features and ladders; ``False`` disables the cache.
        seed: seeds KID's subsets and the floor's choice of training digits.
        kid_subsets: KID subsets.
        cas_epochs: if given (and ``labels`` too), also compute CAS with this many training epochs.
            It trains a classifier, so it takes minutes; ``None`` skips it.
        include_ladder: also return the whole reference ladder (cached after the first call);
            otherwise only the floor is computed.

    Returns:
        A JSON-ready dict: ``n_samples``, ``n_reference``, ``classifier_sha256``, ``fid``,
        ``kid_mean``, ``kid_std``, ``kid_subset_size``, ``mean_max_probability``, ``share_confident``,
        ``class_balance_kl``, ``label_histogram`` (10 shares), ``label_accuracy`` and ``cas`` (None
        when not computed), ``floor`` (the same metrics for real training digits), ``fid_ratio``
        (FID / floor FID) and ``ladder`` (all rungs, or only the floor).

    Example:

    >>> (x_train, _), _ = data.load_mnist()
    >>> result = evaluate_images(x_train[-1000:])  # doctest: +SKIP
    >>> print(format_table(result))                # doctest: +SKIP
    """
    extractor = extractor or default_extractor()
    sample_features, sample_probabilities = extractor.features_and_probabilities(images, value_range)
    n_samples = len(sample_features)
    if not 2 <= n_samples <= 60000:
        raise ValueError(
            f"images must hold between 2 and 60,000 images (FID needs 2; the floor draws as many real "
            f"training digits as there are samples); received {n_samples}."
        )
    if labels is not None:
        labels = _check_labels(labels, n_samples)
    reference = reference_features(n_reference, extractor, cache_dir)
    result = {
        "n_samples": n_samples,
        "n_reference": int(n_reference),
        "classifier_sha256": extractor.sha256,
    }
    result.update(
        _metrics_against_reference(
            sample_features, sample_probabilities, reference, labels, kid_subsets=kid_subsets, seed=seed
        )
    )
    result["label_histogram"] = [float(share) for share in label_histogram(sample_probabilities)]
    result["cas"] = None
    if cas_epochs is not None and labels is not None:
        result["cas"] = classification_accuracy_score(
            images, labels, epochs=cas_epochs, seed=seed, value_range=value_range
        )
    ladder = reference_ladder(
        n_samples, n_reference, rungs=None if include_ladder else ("floor",), extractor=extractor,
        cache_dir=cache_dir, seed=seed, kid_subsets=kid_subsets,
    )
    result["floor"] = ladder["floor"]
    floor_fid = ladder["floor"]["fid"]
    result["fid_ratio"] = result["fid"] / floor_fid if floor_fid > 0 else float("inf")
    result["ladder"] = ladder
    return result


def _number(value, scale=1.0, digits=3):
    return "-" if value is None else f"{value * scale:.{digits}f}"


def format_ladder(ladder):
    """Return the reference ladder as text: one line per rung with FID, KID x 1000 and confidence."""
    lines = [f"{'reference rung':<18}{'FID':>10}{'KID x1000':>22}{'confidence':>12}  description"]
    for name, rung in ladder.items():
        kid_text = f"{rung['kid_mean'] * 1e3:.3f} ± {rung['kid_std'] * 1e3:.3f}"
        lines.append(
            f"{name:<18}{rung['fid']:>10.3f}{kid_text:>22}{rung['mean_max_probability']:>12.3f}  "
            f"{rung['description']}"
        )
    return "\n".join(lines)


def format_table(result):
    """Return an ``evaluate_images`` result as a text table: each metric next to the real-data floor.

    KID is shown x 1000 (the usual convention; the dict holds the raw value). The reference ladder, if
    present, follows so that a FID can be placed between "noisy" and "blurred" real digits.

    Example:

    >>> print(format_table(evaluate_images(x_train[-1000:])))  # doctest: +SKIP
    """
    floor = result["floor"]
    rows = [
        ("FID", _number(result["fid"]), _number(floor["fid"])),
        (
            "KID x1000",
            f"{result['kid_mean'] * 1e3:.3f} ± {result['kid_std'] * 1e3:.3f}",
            f"{floor['kid_mean'] * 1e3:.3f} ± {floor['kid_std'] * 1e3:.3f}",
        ),
        (
            "mean max probability",
            _number(result["mean_max_probability"]),
            _number(floor["mean_max_probability"]),
        ),
        (
            f"share confidence > {CONFIDENCE_THRESHOLD}",
            _number(result["share_confident"]),
            _number(floor["share_confident"]),
        ),
        (
            "class balance KL (nats)",
            _number(result["class_balance_kl"], digits=4),
            _number(floor["class_balance_kl"], digits=4),
        ),
        ("label accuracy", _number(result["label_accuracy"]), _number(floor["label_accuracy"])),
    ]
    if result.get("cas") is not None:
        rows.append(("CAS (train on samples)", _number(result["cas"]), "-"))
    sha = result.get("classifier_sha256") or "in-memory classifier"
    lines = [
        f"{result['n_samples']} samples vs {result['n_reference']} real MNIST test digits "
        f"(classifier {sha[:12]}); floor = {result['n_samples']} real training digits",
        f"{'metric':<28}{'samples':>24}{'real floor':>24}",
    ]
    lines += [f"{name:<28}{value:>24}{floor_value:>24}" for name, value, floor_value in rows]
    lines.append(f"FID / floor FID: {result['fid_ratio']:.2f}x")
    histogram = " ".join(f"{digit}:{share:.2f}" for digit, share in enumerate(result["label_histogram"]))
    lines.append(f"predicted digits: {histogram}")
    if len(result.get("ladder", {})) > 1:
        lines += ["", format_ladder(result["ladder"])]
    return "\n".join(lines)
