"""diffusion_keras: diffusion models on MNIST, taught with Keras 3.

Modules follow the notebooks: ``schedules`` (01), ``forward`` (02), ``networks``, ``model`` and
``training`` (03), ``samplers`` (04), ``evaluation`` (05), ``editing`` (06), with ``data`` (MNIST), ``plotting``
(figures) and ``pretrained`` (shipped weights) beside them. For example::

    import diffusion_keras as dk
    schedule = dk.schedules.get("cosine")
    (x_train, y_train), (x_test, y_test) = dk.data.load_mnist()
"""

from diffusion_keras import _backend  # noqa: F401  (must run before any Keras import)
from diffusion_keras import data, forward, plotting, schedules
from diffusion_keras import editing, evaluation, model, networks, samplers, training  # registers Keras classes
from diffusion_keras.model import DiffusionModel
from diffusion_keras.pretrained import load_pretrained
from diffusion_keras.profile import is_ci_profile, profile

__version__ = "0.1.0"

__all__ = [
    "data", "editing", "evaluation", "forward", "model", "networks", "plotting", "samplers", "schedules", "training",
    "DiffusionModel", "load_pretrained", "is_ci_profile", "profile", "__version__",
]
