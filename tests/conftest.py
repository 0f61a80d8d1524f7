import numpy as np
import pytest

import diffusion_keras as dk


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST arrays from data/, loaded once per test session."""
    return dk.data.load_mnist()


@pytest.fixture(scope="session")
def digits(mnist):
    """64 real training digits in model space, (64, 32, 32, 1) float32 in [-1, 1]."""
    (x_train, _), _ = mnist
    return dk.data.to_model_range(x_train[:64])


@pytest.fixture
def rng():
    return np.random.default_rng(0)
