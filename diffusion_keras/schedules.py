"""Noise schedules: how much signal and how much noise each timestep holds.

Notation (code name -> paper symbol, Ho et al. 2020 "Denoising Diffusion Probabilistic Models"):

==============================  =======================================  ==========================
code                            symbol                                   meaning
==============================  =======================================  ==========================
``betas``                       beta_t                                   variance added at step t
``alphas``                      alpha_t = 1 - beta_t                     signal kept by step t
``alpha_bar``                   alpha_bar_t = prod_{s<=t} alpha_s        signal power left at t
``sqrt_alpha_bar``              sqrt(alpha_bar_t)                        signal scale of x_t
``sqrt_one_minus_alpha_bar``    sqrt(1 - alpha_bar_t)                    noise scale of x_t
``snr``                         alpha_bar_t / (1 - alpha_bar_t)          signal-to-noise ratio
``log_snr``                     lambda_t = log snr                       (Kingma et al. 2021)
``posterior_variance``          beta_tilde_t (Ho et al. Eq. 7)           variance of q(x_{t-1}|x_t,x_0)
``posterior_mean_coef1/2``      coefficients of x_0 and x_t in mu_tilde  (Ho et al. Eq. 7)
==============================  =======================================  ==========================

Timesteps are 0-based array indices: index ``t`` in ``[0, T-1]`` is the paper's step ``t + 1``. So
``alpha_bar[0] = 1 - beta_1`` (one step of noise) and ``alpha_bar[T-1]`` is the end of the process.

Every schedule is computed in NumPy float64 once and exposed as float32 tensors (attributes) for the
model; ``schedule.numpy(name)`` gives the float64 values for analysis and tests. Schedules know nothing
of Keras models.

Every schedule also speaks a common language so that different families can be compared:
``signal_scale[t]`` and ``noise_scale[t]`` with ``x_t = signal_scale[t] * x_0 + noise_scale[t] * eps``,
and one step ``x_t = step_signal_scale[t] * x_{t-1} + step_noise_scale[t] * eps_t``.
"""

import math

import numpy as np
import tensorflow as tf

from diffusion_keras import _backend  # noqa: F401

SCHEDULE_NAMES = ("linear", "cosine", "sigmoid", "article")


def _as_float32_tensor(values):
    return tf.constant(np.asarray(values, dtype=np.float32))


class _Schedule:
    """Shared machinery: float64 storage, float32 tensors, timestep validation, config."""

    def __init__(self, name, arrays, config):
        self.name = name
        self._float64 = {key: np.asarray(value, dtype=np.float64) for key, value in arrays.items()}
        self._config = dict(config)
        self.T = int(len(self._float64["signal_scale"]))
        for key, value in self._float64.items():
            setattr(self, key, _as_float32_tensor(value))

    def numpy(self, name):
        """Return the float64 NumPy array named ``name`` (e.g. ``"alpha_bar"``)."""
        if name not in self._float64:
            raise ValueError(
                f"name must be one of {sorted(self._float64)}; received {name!r}."
            )
        return self._float64[name].copy()

    @property
    def fields(self):
        """Names of every per-timestep array this schedule holds."""
        return tuple(sorted(self._float64))

    def check_timesteps(self, t, argument="t"):
        """Raise ``ValueError`` unless every value of ``t`` is an integer in ``[0, T-1]``.

        Works on Python ints, NumPy arrays and eager tensors. Returns ``t`` unchanged.
        """
        values = np.asarray(t.numpy() if hasattr(t, "numpy") else t)
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                f"{argument} must hold integer timesteps in [0, {self.T - 1}]; received dtype "
                f"{values.dtype}."
            )
        if values.size and (values.min() < 0 or values.max() > self.T - 1):
            raise ValueError(
                f"{argument} must be in [0, T-1] = [0, {self.T - 1}] for this {self.name!r} schedule; "
                f"received values from {values.min()} to {values.max()}."
            )
        return t

    def get_config(self):
        """A JSON-friendly dict from which ``schedules.get(**config)`` rebuilds this schedule."""
        return {"name": self.name, **self._config}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}(name={self.name!r}, {args})"


class NoiseSchedule(_Schedule):
    """A variance-preserving (DDPM) schedule defined by its betas.

    The forward process adds Gaussian noise in T steps,
    ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)`` (Ho et al. 2020, Eq. 2), which in
    closed form is ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)`` (Eq. 4).

    Args:
        betas: 1-D array of T values, each in (0, 1).
        name: a label for plots and configs.
        config: constructor arguments that rebuild it through ``schedules.get``.

    Example:

    >>> schedule = linear(T=1000)
    >>> float(schedule.numpy("alpha_bar")[-1]) < 1e-4
    True
    """

    def __init__(self, betas, name="custom", config=None):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 1:
            raise ValueError(
                f"betas must be a 1-D array with T >= 1 values; received shape {betas.shape}."
            )
        if not np.all(np.isfinite(betas)) or betas.min() <= 0.0 or betas.max() >= 1.0:
            raise ValueError(
                "every beta must be in the open interval (0, 1); received values from "
                f"{betas.min()!r} to {betas.max()!r}."
            )
        alphas = 1.0 - betas
        alpha_bar = np.cumprod(alphas)
        alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
        # Posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I), Ho et al. 2020, Eqs. 6-7.
        posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        # beta_tilde at the first step is 0; its log is clipped to the next value, as in Ho et al.'s
        # released code, so that log-variances stay finite.
        clipped_first = posterior_variance[1] if betas.size > 1 else betas[0]
        posterior_log_variance_clipped = np.log(np.append(clipped_first, posterior_variance[1:]))
        arrays = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "sqrt_alpha_bar": np.sqrt(alpha_bar),
            "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - alpha_bar),
            "snr": alpha_bar / (1.0 - alpha_bar),
            "log_snr": np.log(alpha_bar) - np.log1p(-alpha_bar),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": posterior_log_variance_clipped,
            "posterior_mean_coef1": betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar),
            "posterior_mean_coef2": (1.0 - alpha_bar_prev) * np.sqrt(alphas) / (1.0 - alpha_bar),
            # the common language shared with the article's variance-exploding process
            "signal_scale": np.sqrt(alpha_bar),
            "noise_scale": np.sqrt(1.0 - alpha_bar),
            "step_signal_scale": np.sqrt(alphas),
            "step_noise_scale": np.sqrt(betas),
        }
        super().__init__(name, arrays, config if config is not None else {"T": int(betas.size)})

    def get_config(self):
        if self.name == "custom":
            return {"name": "custom", "betas": self.numpy("betas").tolist()}
        return super().get_config()


class VarianceExplodingSchedule(_Schedule):
    """The origin article's additive random walk, ``x_t = x_{t-1} + sqrt(2 alpha_t) xi_t``.

    Reading used here: ``xi_t ~ N(0, 1)``, so each step adds variance ``2 alpha_t`` and the signal is
    never scaled down. In the common language: ``signal_scale = 1`` and
    ``noise_scale[t]^2 = sum_{i<=t} 2 alpha_i``, so ``snr[t] = 1 / noise_scale[t]^2``. Here ``alpha``
    is the article's step size, not the DDPM ``alpha_t = 1 - beta_t``; the array is called
    ``step_size``.

    Args:
        alpha_0: the first step size, > 0. The article uses 0.01.
        T: number of steps, >= 1. The article uses 50.
    """

    def __init__(self, alpha_0=0.01, T=50):
        _check_T(T)
        if not np.isfinite(alpha_0) or alpha_0 <= 0:
            raise ValueError(f"alpha_0 must be a finite number > 0; received {alpha_0!r}.")
        step = np.arange(1, T + 1, dtype=np.float64)  # the article's i = 1..T
        step_size = alpha_0 * np.exp(-(step - 1.0) / T)  # alpha_i = alpha_0 e^{-(i-1)/T}
        noise_variance = np.cumsum(2.0 * step_size)
        arrays = {
            "step_size": step_size,
            "signal_scale": np.ones(T),
            "noise_scale": np.sqrt(noise_variance),
            "snr": 1.0 / noise_variance,
            "log_snr": -np.log(noise_variance),
            "step_signal_scale": np.ones(T),
            "step_noise_scale": np.sqrt(2.0 * step_size),
        }
        super().__init__("article", arrays, {"alpha_0": float(alpha_0), "T": int(T)})


def _check_T(T):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be an integer >= 1; received {T!r}.")


def _check_beta_range(beta_start, beta_end):
    for argument, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{argument} must be in the open interval (0, 1); received {value!r}.")
    if beta_start > beta_end:
        raise ValueError(
            f"beta_start must be <= beta_end; received beta_start={beta_start!r}, beta_end={beta_end!r}."
        )


def linear(T=1000, beta_start=1e-4, beta_end=0.02):
    """Linear betas from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4)."""
    _check_T(T)
    _check_beta_range(beta_start, beta_end)
    betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    return NoiseSchedule(betas, "linear", {"T": T, "beta_start": beta_start, "beta_end": beta_end})


def cosine(T=1000, s=0.008, max_beta=0.999):
    """Cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", Eq. 17).

    ``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos(((t / T + s) / (1 + s)) * pi / 2)^2``. The betas
    are ``beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1)`` clipped at ``max_beta`` so the last step is not
    a division by ~0; ``alpha_bar`` is then rebuilt from the clipped betas.
    """
    _check_T(T)
    if s < 0:
        raise ValueError(f"s must be >= 0; received {s!r}.")
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must be in the open interval (0, 1); received {max_beta!r}.")

    def f(time):
        return np.cos((time / T + s) / (1.0 + s) * np.pi / 2.0) ** 2

    steps = np.arange(T + 1, dtype=np.float64)
    betas = np.minimum(1.0 - f(steps[1:]) / f(steps[:-1]), max_beta)
    return NoiseSchedule(betas, "cosine", {"T": T, "s": s, "max_beta": max_beta})


def sigmoid(T=1000, beta_start=1e-4, beta_end=0.02, start=-6.0, end=6.0):
    """Sigmoid betas (Xu et al. 2022, "GeoDiff").

    ``beta_t = beta_start + (beta_end - beta_start) * sigmoid(linspace(start, end, T))``, with
    ``start = -6`` and ``end = 6`` by default.
    """
    _check_T(T)
    _check_beta_range(beta_start, beta_end)
    if not start < end:
        raise ValueError(f"start must be < end; received start={start!r}, end={end!r}.")
    ramp = 1.0 / (1.0 + np.exp(-np.linspace(start, end, T, dtype=np.float64)))
    betas = ramp * (beta_end - beta_start) + beta_start
    return NoiseSchedule(
        betas,
        "sigmoid",
        {"T": T, "beta_start": beta_start, "beta_end": beta_end, "start": start, "end": end},
    )


def article(alpha_0=0.01, T=50):
    """The origin article's variance-exploding random walk (see ``VarianceExplodingSchedule``)."""
    return VarianceExplodingSchedule(alpha_0=alpha_0, T=T)


def get(name, **kwargs):
    """Build a schedule by name: ``"linear"``, ``"cosine"``, ``"sigmoid"``, ``"article"``.

    A schedule object is returned unchanged; ``name="custom"`` takes ``betas=...``. Extra keyword
    arguments go to the constructor, e.g. ``get("cosine", T=500)``.
    """
    if isinstance(name, _Schedule):
        return name
    if isinstance(name, dict):
        return get(**name)
    constructors = {"linear": linear, "cosine": cosine, "sigmoid": sigmoid, "article": article}
    if name == "custom":
        return NoiseSchedule(kwargs.pop("betas"), "custom", **kwargs)
    if name not in constructors:
        raise ValueError(
            f"Unknown schedule name {name!r}; expected one of {SCHEDULE_NAMES} (or 'custom' with betas)."
        )
    return constructors[name](**kwargs)


def check_log_snr_normal(value, argument="log_snr_normal"):
    """``None`` (uniform timesteps) or ``(mean, std)`` of a normal log-SNR density, returned as a list of two
    floats; anything else raises ``ValueError`` naming ``argument``."""
    if value is None:
        return None
    if (
        isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2
        or not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value) or not value[1] > 0
    ):
        raise ValueError(
            f"{argument} must be None (t uniform) or (mean, std) of the log-SNR, two finite numbers with "
            f"std > 0, e.g. (2.4, 2.4); received {value!r}."
        )
    return [float(value[0]), float(value[1])]


def log_snr_normal_probabilities(schedule, mean, std):
    """Per-timestep probabilities that make the log-SNR of the drawn ``t`` close to ``N(mean, std^2)``.

    Training on noise levels drawn from a density other than "t uniform" reweights the objective over
    noise levels. Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative
    Models", Table 1) draw ``ln sigma ~ N(-1.2, 1.2^2)``, where ``sigma`` is the noise level of
    ``x_t / sqrt(alpha_bar) = x_0 + sigma eps``, so ``sigma^2 = 1 / snr`` and
    ``lambda = -2 ln sigma ~ N(2.4, 2.4^2)``. Esser et al. 2024 ("Scaling Rectified Flow Transformers
    for High-Resolution Image Synthesis") draw the time of ``(1 - t) x_0 + t eps`` from a
    logit-normal(0, 1); its ``lambda = 2 ln((1 - t) / t)``, so that is ``lambda ~ N(0, 2^2)``.

    Draw ``lambda ~ N(mean, std^2)`` and take the timestep whose ``log_snr`` is nearest: timestep ``t``
    owns the log-SNRs between the midpoints to its neighbours (the first and last to +-infinity), so
    its probability is the normal mass of that interval, and the probabilities sum to 1.

    Args:
        schedule: a schedule (``log_snr`` must decrease with ``t``, as in every schedule here).
        mean, std: of the log-SNR density; ``std > 0``.

    Returns:
        float64 array (T,).
    """
    mean, std = check_log_snr_normal((mean, std), "(mean, std)")
    log_snr = schedule.numpy("log_snr")
    if not np.all(np.diff(log_snr) < 0):
        raise ValueError(f"schedule {schedule!r} must have a log-SNR that decreases with t.")
    edges = np.concatenate([[np.inf], (log_snr[:-1] + log_snr[1:]) / 2, [-np.inf]])
    normal_cdf = np.vectorize(lambda x: 0.5 * math.erfc(-(x - mean) / (std * math.sqrt(2.0))))
    return normal_cdf(edges[:-1]) - normal_cdf(edges[1:])
