"""Select and check the Keras backend before anything else imports Keras."""

import os

# TensorFlow's C++ start-up banner is noise for learners and for nbval; users may still override this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "diffusion_keras supports only the TensorFlow backend of Keras 3, but "
        f"KERAS_BACKEND={keras.backend.backend()!r}. The model's custom train_step uses "
        "tf.GradientTape and tf.distribute. Set KERAS_BACKEND=tensorflow before importing keras "
        "(e.g. `export KERAS_BACKEND=tensorflow`) or unset it."
    )
