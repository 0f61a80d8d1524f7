"""Select and check the Keras backend before anything else imports Keras."""

import os

# TensorFlow's C++ start-up banner is noise for learners and for nbval; users may still override this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _refuse(backend):
    raise ImportError(
        "diffusion_keras supports only the TensorFlow backend of Keras 3, but "
        f"KERAS_BACKEND={backend!r}. The model's custom train_step uses tf.GradientTape and "
        "tf.distribute. Set KERAS_BACKEND=tensorflow before importing keras (e.g. "
        "`export KERAS_BACKEND=tensorflow`) or unset it."
    )


# Refuse before importing Keras: importing it with e.g. the JAX backend fails obscurely when JAX is absent.
if os.environ["KERAS_BACKEND"] != "tensorflow":
    _refuse(os.environ["KERAS_BACKEND"])

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":  # Keras was imported earlier with another backend
    _refuse(keras.backend.backend())
