"""Shipped pretrained diffusion models in ``data/pretrained/``, loaded offline and sha256-checked.

``load_pretrained("mnist")`` (or ``"mnist-conditional"``, the class-conditional model) returns a ``DiffusionModel`` whose networks hold the EMA weights of the
training run described in ``data/pretrained/README.md`` (its model card), together with the schedule and
prediction target it was trained with, so samplers need nothing else::

    model = load_pretrained("mnist")
    images = samplers.sample(model.ema_network, model.schedule, "ddim", steps=50, target=model.target)
"""

from pathlib import Path

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras.data import DATA_DIR, verify_file

PRETRAINED_DIR = DATA_DIR / "pretrained"
# name -> (file in data/pretrained/, sha256)
PRETRAINED = {
    "mnist": ("mnist_diffusion.keras", "70338e0994433e852219b25cb4183f59dab6869adbe583ae41f1d918d3479950"),
    "mnist-conditional": (
        "mnist_conditional.keras", "363b1a075c3f44bb71905cb2827b9902583a35338a2348904387edbe2e4ad5b3"
    ),
}


def pretrained_path(name="mnist"):
    """Return the verified path of the shipped model ``name`` (see ``PRETRAINED``)."""
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}; received {name!r}.")
    filename, sha256 = PRETRAINED[name]
    path = PRETRAINED_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"The pretrained model {name!r} should be at {path}, which does not exist. Clone the "
            "repository with its data/ folder (`git clone` brings it), or pass your own weights."
        )
    return verify_file(path, sha256, f"pretrained model {name!r}")


def load_pretrained(name="mnist"):
    """Load the shipped ``DiffusionModel`` called ``name``, checking its sha256 first."""
    import keras

    return keras.saving.load_model(pretrained_path(name), safe_mode=True)


def export_for_shipping(checkpoint, path, use_ema=True):
    """Write the weights of a training checkpoint as a small, optimizer-free ``DiffusionModel``.

    Both networks of the exported model hold the same weights, the EMA ones by default (or the
    trained network's with ``use_ema=False``, e.g. early in training when the average still lags), so
    ``model.network`` and ``model.ema_network`` sample the same digits. Returns the file's sha256.
    """
    import keras

    from diffusion_keras import data
    from diffusion_keras.model import DiffusionModel

    trained = keras.saving.load_model(checkpoint, safe_mode=True)
    exported = DiffusionModel.from_config(trained.get_config())
    weights = (trained.ema_network if use_ema else trained.network).get_weights()
    exported.network.set_weights(weights)
    exported.ema_network.set_weights(weights)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    exported.save(path)
    return data.sha256_of(path)
