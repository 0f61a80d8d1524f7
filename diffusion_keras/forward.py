"""Forward noising q(x_t | x_0) and the conversions between what a network can predict.

Notation: ``signal_scale[t]`` is alpha_t in Kingma et al. 2021 and sqrt(alpha_bar_t) in Ho et al. 2020;
``noise_scale[t]`` is sigma_t, i.e. sqrt(1 - alpha_bar_t) for a DDPM schedule. With them,

    x_t = signal_scale[t] * x_0 + noise_scale[t] * eps,    eps ~ N(0, I)     (Ho et al. 2020, Eq. 4)

A network may predict the noise ``eps``, the clean image ``x_0`` or the velocity
``v = signal_scale * eps - noise_scale * x_0`` (Salimans & Ho 2022, "Progressive Distillation",
Sec. 4 and Appendix D). Any one of them, together with x_t, determines the other two.

Shapes: images are ``(batch, height, width, channels)`` float tensors; ``t`` is an integer vector
``(batch,)`` of 0-based timesteps in ``[0, T-1]`` (see ``schedules``).
"""

import keras
import tensorflow as tf
from keras import ops

from diffusion_keras import _backend  # noqa: F401

PREDICTION_TARGETS = ("epsilon", "x0", "v")


def check_target(target, argument="target"):
    """Raise ``ValueError`` unless ``target`` is one of ``PREDICTION_TARGETS``."""
    if target not in PREDICTION_TARGETS:
        raise ValueError(f"{argument} must be one of {PREDICTION_TARGETS}; received {target!r}.")
    return target


def _check_images(x, argument):
    dtype = keras.backend.standardize_dtype(x.dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise ValueError(
            f"{argument} must be a float tensor (images in model space, e.g. [-1, 1]); received dtype "
            f"{dtype}. Convert uint8 digits with diffusion_keras.data.to_model_range first."
        )
    if len(x.shape) < 2:
        raise ValueError(
            f"{argument} must have a batch axis and at least one more axis, e.g. (batch, 32, 32, 1); "
            f"received shape {tuple(x.shape)}."
        )


def _check_timesteps(t, batch_size, schedule, argument="t"):
    dtype = keras.backend.standardize_dtype(t.dtype)
    if not dtype.startswith(("int", "uint")):
        raise ValueError(
            f"{argument} must be an integer tensor of timesteps in [0, {schedule.T - 1}]; received "
            f"dtype {dtype}."
        )
    if len(t.shape) != 1 or (t.shape[0] is not None and batch_size is not None and t.shape[0] != batch_size):
        raise ValueError(
            f"{argument} must have shape (batch,) = ({batch_size},), one timestep per image; received "
            f"shape {tuple(t.shape)}."
        )
    if tf.executing_eagerly():  # value checks need concrete numbers; graphs are validated upstream
        schedule.check_timesteps(t, argument)


def _validate(x, t, schedule, x_argument="x_0", others=()):
    x = ops.convert_to_tensor(x)
    t = ops.convert_to_tensor(t)
    _check_images(x, x_argument)
    _check_timesteps(t, x.shape[0], schedule)
    checked = []
    for name, value in others:
        value = ops.convert_to_tensor(value)
        if tuple(value.shape) != tuple(x.shape):
            raise ValueError(
                f"{name} must have the same shape as {x_argument}, {tuple(x.shape)}; received "
                f"{tuple(value.shape)}."
            )
        checked.append(ops.cast(value, x.dtype))
    return x, t, checked


def scales_at(schedule, t, ndim=4, dtype="float32"):
    """Return ``(signal_scale[t], noise_scale[t])`` shaped ``(batch, 1, ..., 1)`` to broadcast on images."""
    shape = (-1,) + (1,) * (ndim - 1)
    signal = ops.reshape(ops.take(schedule.signal_scale, t), shape)
    noise = ops.reshape(ops.take(schedule.noise_scale, t), shape)
    return ops.cast(signal, dtype), ops.cast(noise, dtype)


def q_sample(x_0, t, noise, schedule):
    """Sample x_t ~ q(x_t | x_0) in closed form (Ho et al. 2020, Eq. 4).

    ``x_t = signal_scale[t] * x_0 + noise_scale[t] * noise``. For a DDPM schedule that is
    ``sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``; for the article's process it is
    ``x_0 + sqrt(sum_i 2 alpha_i) eps``.

    Args:
        x_0: clean images, float, shape (batch, ...).
        t: integer timesteps, shape (batch,), in [0, T-1].
        noise: standard normal noise with the shape of ``x_0``.
        schedule: a schedule from ``diffusion_keras.schedules``.

    Returns:
        x_t with the shape and dtype of ``x_0``.
    """
    x_0, t, (noise,) = _validate(x_0, t, schedule, others=(("noise", noise),))
    signal, sigma = scales_at(schedule, t, len(x_0.shape), x_0.dtype)
    return signal * x_0 + sigma * noise


def _seed_generator(seed):
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    return keras.random.SeedGenerator(seed)


def q_sample_stepwise(x_0, t, schedule, seed=None):
    """Sample x_t by applying the one-step kernel q(x_s | x_{s-1}) for s = 0..t (Ho et al. Eq. 2).

    Each step is ``x_s = step_signal_scale[s] * x_{s-1} + step_noise_scale[s] * eps_s`` with fresh
    noise, i.e. ``sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) eps_s`` for DDPM schedules and
    ``x_{s-1} + sqrt(2 alpha_s) xi_s`` for the article's. It is slow (t + 1 steps) and exists to show
    that it has the same distribution as ``q_sample``.

    Args:
        x_0: clean images, float, shape (batch, ...).
        t: integer timesteps, shape (batch,), in [0, T-1]; each image gets its own number of steps.
        schedule: a schedule from ``diffusion_keras.schedules``.
        seed: int, None or a ``keras.random.SeedGenerator``.
    """
    x_0, t, _ = _validate(x_0, t, schedule)
    generator = _seed_generator(seed)
    t_column = ops.reshape(t, (-1,) + (1,) * (len(x_0.shape) - 1))

    @tf.function  # traced once; the Python loop below then costs one graph call per step
    def one_step(x, step):
        eps = keras.random.normal(ops.shape(x), dtype=x.dtype, seed=generator)
        signal = ops.cast(ops.take(schedule.step_signal_scale, step), x.dtype)
        noise = ops.cast(ops.take(schedule.step_noise_scale, step), x.dtype)
        return ops.where(t_column >= step, signal * x + noise * eps, x)  # finished images stop moving

    x = x_0
    for step in range(int(ops.max(t)) + 1):
        x = one_step(x, tf.constant(step, dtype=t.dtype))
    return x


def prediction_target(x_0, noise, t, schedule, target="epsilon"):
    """The regression target a network is trained on: ``noise``, ``x_0`` or ``v`` (Salimans & Ho 2022)."""
    check_target(target)
    if target == "epsilon":
        return noise
    if target == "x0":
        return x_0
    signal, sigma = scales_at(schedule, t, len(x_0.shape), x_0.dtype)
    return signal * noise - sigma * x_0


def convert_prediction(prediction, x_t, t, schedule, source, target):
    """Convert a network output from one parameterisation to another, given x_t.

    With ``a = signal_scale[t]`` and ``s = noise_scale[t]`` and ``x_t = a x_0 + s eps``:

    * eps -> x_0:  ``x_0 = (x_t - s eps) / a``                       (Ho et al. 2020, Eq. 15)
    * x_0 -> eps:  ``eps = (x_t - a x_0) / s``
    * v   -> x_0:  ``x_0 = (a x_t - s v) / (a^2 + s^2)``             (Salimans & Ho 2022, App. D)
    * v   -> eps:  ``eps = (s x_t + a v) / (a^2 + s^2)``
    * to v:        ``v = a eps - s x_0``

    For DDPM schedules ``a^2 + s^2 = 1``; keeping the denominator makes the formulas exact for the
    article's variance-exploding process too.

    Args:
        prediction: the network output, shape of ``x_t``.
        x_t: the noisy input the prediction was made from.
        t: integer timesteps (batch,).
        schedule: the schedule x_t was made with.
        source, target: each one of ``"epsilon"``, ``"x0"``, ``"v"``.
    """
    check_target(source, "source")
    check_target(target, "target")
    x_t, t, (prediction,) = _validate(x_t, t, schedule, "x_t", (("prediction", prediction),))
    if source == target:
        return prediction
    a, s = scales_at(schedule, t, len(x_t.shape), x_t.dtype)
    if source == "epsilon":
        eps, x_0 = prediction, (x_t - s * prediction) / a
    elif source == "x0":
        eps, x_0 = (x_t - a * prediction) / s, prediction
    else:
        power = a * a + s * s
        eps, x_0 = (s * x_t + a * prediction) / power, (a * x_t - s * prediction) / power
    if target == "epsilon":
        return eps
    if target == "x0":
        return x_0
    return a * eps - s * x_0
