"""diffusion_keras: diffusion models on MNIST, taught with Keras 3.

Modules follow the notebooks: ``schedules`` (01), ``forward`` (02), ``data`` (MNIST) and
``plotting`` (figures). Import the package and use the submodules, e.g.::

    import diffusion_keras as dk
    schedule = dk.schedules.get("cosine")
    (x_train, y_train), (x_test, y_test) = dk.data.load_mnist()
"""

from diffusion_keras import _backend  # noqa: F401  (must run before any Keras import)
from diffusion_keras import data, forward, plotting, schedules
from diffusion_keras import evaluation, networks, model, samplers  # registers the Keras classes for load_model
from diffusion_keras.model import DiffusionModel
from diffusion_keras.pretrained import load_pretrained
from diffusion_keras.profile import is_ci_profile, profile

__version__ = "0.1.0"

__all__ = [
    "data", "evaluation", "forward", "plotting", "schedules", "networks", "model", "samplers", "DiffusionModel", "load_pretrained",
    "is_ci_profile", "profile", "__version__",
]
