"""Samplers: turn pure noise into digits by running the learned reverse process.

A trained network predicts, from a noisy image ``x_t`` and its timestep ``t``, the noise ``eps``, the
clean image ``x_0`` or the velocity ``v`` (see ``forward``). Every sampler here turns that prediction
into a predicted clean image ``x_0_hat`` and a predicted noise ``eps_hat`` and then takes a step to a
less noisy image. They differ only in how big the steps are and how much fresh noise they add:

* ``ddpm_sample``: ancestral sampling through all T steps (Ho et al. 2020, Algorithm 2);
* ``ddim_sample``: any number of steps, from stochastic (eta = 1) to deterministic (eta = 0)
  (Song et al. 2021, "Denoising Diffusion Implicit Models", Eqs. 12 and 16); ``ddim_invert`` runs the
  deterministic one backwards, from an image to its latent noise;
* ``dpm_solver_pp_2m_sample``: a second-order multistep ODE solver for 10-20 steps
  (Lu et al. 2022, "DPM-Solver++", Algorithm 2).

Notation (code name -> paper symbol). Ho et al. and Song et al. write alpha for different things: Song's
alpha_t is Ho's alpha_bar_t. Lu et al. write alpha_t for sqrt(alpha_bar_t).

=========================  ======================================  ====================================
code                       symbol                                  meaning
=========================  ======================================  ====================================
``alpha_bar``              alpha_bar_t (Ho), alpha_t (Song)        signal power left at t
``alpha_bar_prev``         alpha_bar_{t-1}, alpha_{tau_{i-1}}      the same at the step we move to
``signal_scale``           sqrt(alpha_bar_t), alpha_t (Lu)         scale of x_0 inside x_t
``noise_scale``            sqrt(1 - alpha_bar_t), sigma_t (Lu)     scale of eps inside x_t
``log_signal_to_noise``    lambda_t = log(alpha_t / sigma_t) (Lu)  half the log SNR
``sigma``                  sigma_t (Ho Alg. 2, Song Eq. 16)        std of the fresh noise of a step
``x_0_hat``                x_0 prediction f_theta / x_theta        the network's guess of the image
``eps_hat``                eps_theta(x_t, t)                       the network's guess of the noise
``timesteps``              tau_S > ... > tau_1 (Song Sec. 4.2)     the sub-sequence of steps visited
``guidance``               w (Ho & Salimans 2022)                  classifier-free guidance weight
=========================  ======================================  ====================================

Timesteps are 0-based indices as everywhere in the package: index ``t`` is the paper's step ``t + 1``.
After the last visited timestep every sampler lands on x_0 itself, where ``alpha_bar = 1``.

Network call convention: ``network([x_t, t])`` for an unconditional network and
``network([x_t, t, labels])`` for a conditional one, with ``x_t`` float32 ``(batch, 32, 32, 1)``,
``t`` int32 ``(batch,)`` and ``labels`` int32 ``(batch,)`` where the value ``num_classes`` is the null
label. A conditional network has an integer attribute ``num_classes``.

Example::

    import diffusion_keras as dk
    from diffusion_keras import samplers

    schedule = dk.schedules.linear(T=1000)
    images = samplers.sample(network, schedule, "dpm_solver_pp_2m", steps=15, n=16, seed=0)
    result = samplers.ddim_sample(network, schedule, steps=50, n=16, eta=0.0, return_trajectory=True)
    dk.plotting.show_grid(result.x0_trajectory[::10, 0])  # how the prediction of x_0 sharpens

Speed: each step (one network evaluation plus the update) is a ``tf.function`` traced once per
network, schedule, batch shape and sampler kind; every per-step number is passed in as a tensor, so
the Python loop over steps never retraces. Randomness is keyed by ``(seed, timestep)``: the same seed
gives the same images, and DDPM and DDIM with eta = 1 draw identical noise at the same timestep.
"""

import collections
import math
import statistics
import weakref

import keras
import numpy as np
import tensorflow as tf

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras import forward
from diffusion_keras.bench import median_seconds

SAMPLER_NAMES = ("ddpm", "ddim", "dpm_solver_pp_2m")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
DDPM_VARIANCES = ("beta", "beta_tilde")
DEFAULT_IMAGE_SHAPE = (32, 32, 1)
DEFAULT_N = 64

SampleResult = collections.namedtuple(
    "SampleResult", ["images", "x_t_trajectory", "x0_trajectory", "timesteps"]
)
SampleResult.__doc__ = """What a sampler returns with ``return_trajectory=True`` (NumPy float32 arrays).

Fields:
    images: the final images, ``(n, 32, 32, 1)``.
    x_t_trajectory: ``(steps + 1, n, 32, 32, 1)``: the starting point (x_T, or x_0 for
        ``ddim_invert``) followed by the image after every step.
    x0_trajectory: ``(steps, n, 32, 32, 1)``: the network's x_0 prediction at every step.
    timesteps: ``(steps,)`` int, the timestep index the network was evaluated at in each step.
"""


# ---------------------------------------------------------------------------------------------------
# Timesteps
# ---------------------------------------------------------------------------------------------------


def _round_half_even(numerator, denominator):
    """``round(numerator / denominator)`` of integer arrays, exactly, ties to even (as ``np.round``)."""
    quotient, remainder = np.divmod(numerator, denominator)
    up = (2 * remainder > denominator) | ((2 * remainder == denominator) & (quotient % 2 == 1))
    return quotient + up


def timesteps(T, steps, spacing="trailing"):
    """The decreasing timestep indices a ``steps``-step sampler visits out of ``T``.

    The three spacings are the common definitions (those of the diffusers library's
    ``set_timesteps``):

    * ``"leading"``: ``arange(0, steps) * (T // steps)``, reversed: the sub-sequence of Song et al.
      2021, Sec. 4.2. Unless ``steps = T`` it never starts at ``T - 1`` (``T=1000, steps=10`` starts
      at 900), so the first step is told x_T holds less noise than it does.
    * ``"trailing"``: ``round(arange(T, 0, -T / steps)) - 1``: always starts at ``T - 1``. Lin et al.
      2024 ("Common Diffusion Noise Schedules and Sample Steps Are Flawed", Sec. 3.3) recommend it;
      it is our default.
    * ``"linspace"``: ``round(linspace(0, T - 1, steps))``, reversed: from ``T - 1`` down to 0.

    Rounding is half to even, as NumPy's. We compute the roundings in exact integer arithmetic: the
    floating-point forms above can tip an exact tie (e.g. ``50 - 3 * 50 / 12 = 37.5``) either way,
    and ``arange(T, 0, -T / steps)`` sometimes returns ``steps + 1`` values (e.g. ``T=50,
    steps=29``). Both forms agree for the usual step counts (every one of 5, 8, 10, 12, 15, 16, 20,
    25, 30, 40, 50, 60, 75, 100, 200, 250, 500 and 1000 with ``T=1000``).

    Args:
        T: number of training timesteps of the schedule.
        steps: number of sampling steps, in ``[1, T]``.
        spacing: ``"leading"``, ``"trailing"`` or ``"linspace"``.

    Returns:
        int64 array of shape ``(steps,)``, strictly decreasing, values in ``[0, T - 1]``.

    Example:

    >>> timesteps(1000, 4, "trailing").tolist()
    [999, 749, 499, 249]
    """
    _check_steps(steps, T)
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"spacing must be one of {TIMESTEP_SPACINGS}; received {spacing!r}.")
    index = np.arange(steps, dtype=np.int64)
    if spacing == "leading":
        values = index[::-1] * (T // steps)
    elif spacing == "trailing":
        values = _round_half_even(T * (steps - index), steps) - 1  # T - i T / steps
    elif steps == 1:
        values = np.zeros(1, np.int64)  # linspace(0, T - 1, 1) = [0]
    else:
        values = _round_half_even(index[::-1] * (T - 1), steps - 1)  # i (T - 1) / (steps - 1)
    return np.ascontiguousarray(values, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# Validation (at the boundary, once per call)
# ---------------------------------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_steps(steps, T):
    if not _is_int(steps) or not 1 <= steps <= T:
        raise ValueError(
            f"steps must be an integer in [1, T] = [1, {T}] for this schedule; received {steps!r}."
        )


def _check_schedule(schedule):
    if not hasattr(schedule, "numpy") or "alpha_bar" not in getattr(schedule, "fields", ()):
        raise ValueError(
            "schedule must be a variance-preserving DDPM schedule with alpha_bar (e.g. "
            "diffusion_keras.schedules.linear() or .cosine()); received "
            f"{schedule!r}. The article's variance-exploding walk has no alpha_bar to sample with."
        )


def _check_network(network):
    if not callable(network):
        raise ValueError(f"network must be a callable Keras model; received {type(network).__name__}.")


def _num_classes(network):
    value = getattr(network, "num_classes", None)
    return None if value is None else int(value)


def _check_guidance(guidance):
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.number)):
        raise ValueError(f"guidance must be a number >= 0; received {guidance!r}.")
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(
            f"guidance must be a finite number >= 0 (0: unconditional, 1: conditional, >1: "
            f"stronger guidance); received {guidance!r}."
        )
    return float(guidance)


def _check_labels(network, labels, n, guidance):
    """Return ``(labels as int32 array or None, guided)`` and raise on anything inconsistent."""
    guidance = _check_guidance(guidance)
    num_classes = _num_classes(network)
    if labels is None:
        if guidance != 1.0:
            raise ValueError(
                f"guidance={guidance} needs labels to guide towards; pass labels=... or leave "
                "guidance at 1.0."
            )
        # A conditional network samples unconditionally with the null label.
        return (None if num_classes is None else np.full(n, num_classes, np.int32)), False
    if num_classes is None:
        raise ValueError(
            "labels were given but this network is unconditional (its num_classes is None); "
            "train a conditional network or pass labels=None."
        )
    values = np.asarray(labels)
    if values.ndim == 0:
        values = np.full(n, values)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"labels must be integers in [0, {num_classes - 1}]; received dtype {values.dtype}.")
    if values.shape != (n,):
        raise ValueError(
            f"labels must have shape (n,) = ({n},), one per image; received shape {values.shape}."
        )
    if values.min() < 0 or values.max() > num_classes - 1:
        raise ValueError(
            f"labels must be class indices in [0, {num_classes - 1}] (the null label {num_classes} is "
            f"used internally for guidance); received values from {values.min()} to {values.max()}."
        )
    return values.astype(np.int32), guidance != 1.0


def _check_target(target):
    return forward.check_target(target)


def _check_clip(clip_x0):
    if not isinstance(clip_x0, (bool, np.bool_)):
        raise ValueError(f"clip_x0 must be True or False; received {clip_x0!r}.")
    return bool(clip_x0)


def _image_shape(network):
    """The (height, width, channels) a network expects, from its first input when it is known."""
    declared = getattr(network, "image_shape", None)
    if isinstance(declared, tuple) and len(declared) == 3:
        return tuple(int(size) for size in declared)
    try:
        shape = tuple(network.inputs[0].shape[1:])
        if len(shape) == 3 and all(isinstance(size, int) for size in shape):
            return shape
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return DEFAULT_IMAGE_SHAPE


def _resolve_seed(seed):
    """An int seed from an int, a ``keras.random.SeedGenerator`` or None (Keras' global generator)."""
    if _is_int(seed):
        if not 0 <= seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2**31); received {seed!r}.")
        return int(seed)
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return int(keras.random.randint((), 0, 2**31 - 1, seed=seed))
    raise ValueError(f"seed must be an int, a keras.random.SeedGenerator or None; received {seed!r}.")


def _start(network, n, x, seed, argument):
    """Return the starting images ``(n, h, w, c)`` float32 and the int seed for step noise."""
    shape = _image_shape(network)
    seed = _resolve_seed(seed)
    if x is None:
        n = DEFAULT_N if n is None else n
        if not _is_int(n) or n < 1:
            raise ValueError(f"n must be an integer >= 1 (images to sample); received {n!r}.")
        # Key 0 is x_T; the step that leaves timestep t uses key t + 1 (see _step_noise).
        x = tf.random.stateless_normal((n,) + shape, seed=tf.constant([seed, 0], tf.int64))
        return x, seed
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{argument} must be a float array; received dtype {x.dtype}.")
    expected = (x.shape[0] if x.ndim else None,) + shape
    if x.ndim != 4 or x.shape[1:] != shape or x.shape[0] < 1:
        raise ValueError(
            f"{argument} must have shape (n,) + {shape} = {expected}; received shape {x.shape}."
        )
    if n is not None and _is_int(n) and x.shape[0] != n:
        raise ValueError(f"{argument} holds {x.shape[0]} images but n={n}; pass n=None or matching n.")
    return tf.constant(x.astype(np.float32)), seed


# ---------------------------------------------------------------------------------------------------
# One compiled network evaluation: x_t, t -> (eps_hat, x_0_hat), with guidance and clipping
# ---------------------------------------------------------------------------------------------------


def _predict(network, schedule, target, clip_x0, guided, x_t, t, labels, guidance):
    """Return ``(eps_hat, x_0_hat)`` for images ``x_t`` all at timestep ``t`` (a scalar tensor).

    Classifier-free guidance (Ho & Salimans 2022, Eq. 6, with w here meaning their 1 + w):
    ``eps_hat = eps(x_t, null) + w (eps(x_t, c) - eps(x_t, null))``, both predictions from one
    network call on a doubled batch. Combining in epsilon space is exact for every target: the
    conversions to epsilon are affine in the prediction at fixed x_t and the weights (1 - w, w) sum to
    1, so mixing x_0 or v predictions with the same weights would give the same step.
    """
    batch = tf.shape(x_t)[0]
    t_batch = tf.fill([batch], tf.cast(t, tf.int32))  # (batch,)
    if guided:
        null = tf.fill([batch], _num_classes(network))
        both = network(
            [tf.concat([x_t, x_t], 0), tf.concat([t_batch, t_batch], 0), tf.concat([labels, null], 0)]
        )  # (2 batch, 32, 32, 1): conditional first, then unconditional
        conditional, unconditional = tf.split(tf.cast(both, tf.float32), 2, axis=0)
        eps_conditional, eps_unconditional = (
            forward.convert_prediction(prediction, x_t, t_batch, schedule, target, "epsilon")
            for prediction in (conditional, unconditional)
        )
        eps_hat = eps_unconditional + guidance * (eps_conditional - eps_unconditional)
        x_0_hat = forward.convert_prediction(eps_hat, x_t, t_batch, schedule, "epsilon", "x0")
    else:
        inputs = [x_t, t_batch] if labels is None else [x_t, t_batch, labels]
        prediction = tf.cast(network(inputs), tf.float32)
        eps_hat = forward.convert_prediction(prediction, x_t, t_batch, schedule, target, "epsilon")
        x_0_hat = forward.convert_prediction(prediction, x_t, t_batch, schedule, target, "x0")
    if clip_x0:
        # Clip, then re-derive eps_hat from the clipped x_0_hat so the step stays consistent with x_t.
        x_0_hat = tf.clip_by_value(x_0_hat, -1.0, 1.0)
        eps_hat = forward.convert_prediction(x_0_hat, x_t, t_batch, schedule, "x0", "epsilon")
    return eps_hat, x_0_hat


def _step_noise(x_t, seed, t):
    """Standard normal noise keyed by ``(seed, t + 1)``: the same for every sampler leaving step t."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(t, tf.int64) + 1])
    # keras.random.normal takes only Python ints or SeedGenerators; inside a compiled step the seed is
    # a tensor, so we call the stateless op that Keras' TensorFlow backend itself uses.
    return tf.random.stateless_normal(tf.shape(x_t), seed=key, dtype=x_t.dtype)


# Compiled steps, cached per network so that a second sampler call does not retrace.
_step_cache = weakref.WeakKeyDictionary()


def _compiled_step(network, schedule, target, clip_x0, guided, conditional, update, stochastic):
    """The ``tf.function`` that runs one network evaluation and the ``update`` of one sampler."""
    key = (id(schedule), target, clip_x0, guided, conditional, update.__name__, stochastic)
    cache = _step_cache.setdefault(network, {})
    if key not in cache:
        # A weak reference, so that the cached function does not keep its own cache key alive.
        network_reference = weakref.ref(network)

        def step(x_t, t, coefficients, previous_x_0, seed, labels, guidance):
            eps_hat, x_0_hat = _predict(
                network_reference(), schedule, target, clip_x0, guided, x_t, t,
                labels if conditional else None, guidance,
            )
            noise = _step_noise(x_t, seed, t) if stochastic else None
            return update(x_t, eps_hat, x_0_hat, previous_x_0, coefficients, noise), x_0_hat

        # The schedule is kept alive with the function so that its id cannot be reused by another.
        # autograph is off: every branch in a step is on Python values, fixed when it is traced.
        cache[key] = (schedule, tf.function(step, reduce_retracing=True, autograph=False))
    return cache[key][1]


def _run(network, schedule, x, steps_t, coefficients, update, *, target, clip_x0, labels, guided,
         guidance, seed, stochastic, return_trajectory, progress):
    """The Python loop over steps shared by every sampler (no per-step tracing, no per-image loop)."""
    conditional = labels is not None
    if not getattr(network, "built", True):
        # Build the network eagerly: variables created inside a tf.function cost a second trace.
        network([x[:1], tf.fill([1], int(steps_t[0]))] + ([tf.constant(labels[:1])] if conditional else []))
    step = _compiled_step(network, schedule, target, clip_x0, guided, conditional, update, stochastic)
    n = int(x.shape[0])
    labels_tensor = tf.constant(labels if conditional else np.zeros(n, np.int32))
    guidance_tensor = tf.constant(guidance, tf.float32)
    seed_tensor = tf.constant(seed, tf.int64)
    t_tensors = [tf.constant(t, tf.int32) for t in steps_t]
    coefficient_tensors = [tf.constant(row, tf.float32) for row in np.asarray(coefficients, np.float64)]
    previous_x_0 = tf.zeros_like(x)
    x_t_trajectory, x0_trajectory = [x.numpy()] if return_trajectory else None, []
    bar = keras.utils.Progbar(len(steps_t), unit_name="step") if progress else None
    for index, (t, row) in enumerate(zip(t_tensors, coefficient_tensors)):
        x, previous_x_0 = step(x, t, row, previous_x_0, seed_tensor, labels_tensor, guidance_tensor)
        if return_trajectory:
            x_t_trajectory.append(x.numpy())
            x0_trajectory.append(previous_x_0.numpy())
        if bar is not None:
            bar.update(index + 1)
    images = x.numpy()
    if not return_trajectory:
        return images
    return SampleResult(
        images=images,
        x_t_trajectory=np.stack(x_t_trajectory),
        x0_trajectory=np.stack(x0_trajectory),
        timesteps=np.asarray(steps_t, np.int64),
    )


def _common(network, schedule, target, clip_x0, n, labels, guidance, x, seed, argument="x_T"):
    _check_network(network)
    _check_schedule(schedule)
    _check_target(target)
    clip_x0 = _check_clip(clip_x0)
    if n is None and x is None and labels is not None and np.ndim(labels) == 1:
        n = len(labels)  # one image per label
    x, seed = _start(network, n, x, seed, argument)
    labels, guided = _check_labels(network, labels, int(x.shape[0]), guidance)
    return clip_x0, x, seed, labels, guided


# ---------------------------------------------------------------------------------------------------
# DDPM: Ho et al. 2020, Algorithm 2
# ---------------------------------------------------------------------------------------------------


def _ddpm_update(x_t, eps_hat, x_0_hat, previous_x_0, coefficients, noise):
    """One step of Ho et al. 2020, Algorithm 2, written with the posterior mean (Eq. 7)."""
    coefficient_x_0, coefficient_x_t, sigma = tf.unstack(coefficients)
    # 4a. mu = mu_tilde(x_t, x_0_hat) = coef1 x_0_hat + coef2 x_t   (Eq. 7; equal to Alg. 2's
    #     1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) when x_0_hat is unclipped)
    mean = coefficient_x_0 * x_0_hat + coefficient_x_t * x_t
    # 4b. x_{t-1} = mu + sigma_t z with z ~ N(0, I) (line 3; sigma is 0 in the last step, z = 0 at t = 1)
    return mean + sigma * noise


def ddpm_sample(
    network,
    schedule,
    n=None,
    *,
    target="epsilon",
    variance="beta_tilde",
    clip_x0=True,
    labels=None,
    guidance=1.0,
    x_T=None,
    seed=0,
    return_trajectory=False,
    progress=False,
):
    """Ancestral sampling through all T steps (Ho et al. 2020, Algorithm 2).

    Each step samples ``x_{t-1} ~ N(mu_tilde(x_t, x_0_hat), sigma_t^2 I)``, where ``mu_tilde`` is the
    mean of the forward posterior q(x_{t-1} | x_t, x_0) (Eq. 7) evaluated at the predicted clean image.
    For an epsilon network and no clipping this is exactly Algorithm 2's
    ``x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) + sigma_t z``; going
    through x_0_hat makes it work for every prediction target and lets ``clip_x0`` act.

    Ho et al. (Sec. 3.2) found two variances equally good: ``sigma_t^2 = beta_t`` (``"beta"``, the
    upper bound, optimal for x_0 ~ N(0, I)) and ``sigma_t^2 = beta_tilde_t`` (``"beta_tilde"``, the
    posterior variance of Eq. 7, optimal for a single x_0). The last step adds no noise (Alg. 2 line 3).

    Args:
        network: a Keras network following the package's call convention (module docstring).
        schedule: a DDPM schedule (``schedules.linear``, ``cosine``, ``sigmoid`` or custom betas).
        n: number of images: when None, as many as ``x_T`` holds, or one per label of a ``labels``
            array, or 64. Given with ``x_T``, it must match.
        target: what the network predicts: ``"epsilon"``, ``"x0"`` or ``"v"``.
        variance: ``"beta"`` or ``"beta_tilde"``.
        clip_x0: clip the predicted x_0 to [-1, 1] before each step (Ho et al.'s released code does).
            On by default: MNIST lives in [-1, 1], and near t = T of the cosine schedule an epsilon
            prediction divided by sqrt(alpha_bar) ~ 5e-5 would otherwise amplify small errors ~1000x.
        labels: class labels for a conditional network, an int or an int array of shape (n,).
        guidance: classifier-free guidance weight w (1: plain conditional, 0: unconditional).
        x_T: optional starting noise ``(n, 32, 32, 1)``; drawn from ``seed`` when None.
        seed: int (or ``keras.random.SeedGenerator``/None) for x_T and the per-step noise.
        return_trajectory: return a ``SampleResult`` with every x_t and x_0 prediction.
        progress: show a ``keras.utils.Progbar``.

    Returns:
        float32 NumPy images ``(n, 32, 32, 1)`` in model space, or a ``SampleResult``.

    Example:

    >>> images = ddpm_sample(network, schedules.linear(T=1000), n=16, seed=0)  # doctest: +SKIP
    """
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"variance must be one of {DDPM_VARIANCES}; received {variance!r}.")
    # 1. x_T ~ N(0, I) (drawn from seed unless given)
    clip_x0, x, seed, labels, guided = _common(
        network, schedule, target, clip_x0, n, labels, guidance, x_T, seed
    )
    # 2. for t = T, ..., 1  (0-based indices T-1, ..., 0)
    steps_t = np.arange(schedule.T - 1, -1, -1)
    sigma_squared = schedule.numpy("betas" if variance == "beta" else "posterior_variance")
    sigma = np.sqrt(sigma_squared)
    sigma[0] = 0.0  # 3. z = 0 when t = 1
    coefficients = np.stack(
        [schedule.numpy("posterior_mean_coef1"), schedule.numpy("posterior_mean_coef2"), sigma], axis=1
    )[steps_t]
    # 3-4. per step: predict x_0 (compiled _predict), then the update (_ddpm_update); 6. return x_0
    return _run(
        network, schedule, x, steps_t, coefficients, _ddpm_update,
        target=target, clip_x0=clip_x0, labels=labels, guided=guided, guidance=guidance, seed=seed,
        stochastic=True, return_trajectory=return_trajectory, progress=progress,
    )


# ---------------------------------------------------------------------------------------------------
# DDIM: Song et al. 2021, Eqs. 12 and 16
# ---------------------------------------------------------------------------------------------------


def _ddim_update(x_t, eps_hat, x_0_hat, previous_x_0, coefficients, noise):
    """One step of Song et al. 2021, Eq. 12."""
    sqrt_alpha_bar_prev, direction_scale, sigma = tf.unstack(coefficients)
    # 5. Eq. 12: x_{t-1} = sqrt(alpha_{t-1}) "predicted x_0" (x_0_hat, from step 4 in _predict)
    #                    + sqrt(1 - alpha_{t-1} - sigma_t^2) eps_theta  ("direction pointing to x_t")
    x_prev = sqrt_alpha_bar_prev * x_0_hat + direction_scale * eps_hat
    # 6.                 + sigma_t eps_t                                ("random noise")
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev


def _check_eta(eta):
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.number)) or not 0.0 <= eta <= 1.0:
        raise ValueError(
            f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like); received {eta!r}."
        )
    return float(eta)


def ddim_sample(
    network,
    schedule,
    steps=50,
    n=None,
    *,
    target="epsilon",
    eta=0.0,
    spacing="trailing",
    clip_x0=True,
    labels=None,
    guidance=1.0,
    x_T=None,
    seed=0,
    start_t=None,
    return_trajectory=False,
    progress=False,
):
    """DDIM sampling in any number of steps (Song et al. 2021, Eq. 12 with sigma from Eq. 16).

    DDIM keeps the training marginals q(x_t | x_0) but replaces the Markov chain by a family of
    processes indexed by ``eta``. A step from timestep tau_i to tau_{i-1} (Song's alpha = our
    alpha_bar) is

        x_{tau_{i-1}} = sqrt(alpha_bar_prev) x_0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z
        sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) sqrt(1 - alpha_bar / alpha_bar_prev)

    ``eta = 0`` is deterministic (an Euler step of the probability-flow ODE, Eq. 14); ``eta = 1`` with
    all T steps is DDPM with ``sigma^2 = beta_tilde``, and with the same seed it gives the same images
    as ``ddpm_sample(variance="beta_tilde")``. After the last timestep, alpha_bar_prev = 1 (x_0).

    Args:
        network, schedule, n, target, clip_x0, labels, guidance, x_T, seed, return_trajectory,
            progress: as in ``ddpm_sample``.
        steps: number of network evaluations, in [1, T].
        eta: in [0, 1], the amount of fresh noise.
        spacing: ``"trailing"`` (default), ``"leading"`` or ``"linspace"``; see ``timesteps``.
        start_t: start from timestep index ``start_t`` instead of ``T - 1``: ``x_T`` is then an image
            at that noise level (e.g. a noised real digit, as SDEdit does) and the ``steps`` timesteps
            are spaced over ``[0, start_t]``. None starts from pure noise at ``T - 1``.

    Returns:
        float32 NumPy images ``(n, 32, 32, 1)`` in model space, or a ``SampleResult``.

    Example:

    >>> images = ddim_sample(network, schedule, steps=50, n=16, eta=0.0)  # doctest: +SKIP
    """
    eta = _check_eta(eta)
    _check_schedule(schedule)
    # 1. the sub-sequence tau_S > ... > tau_1 (Sec. 4.2) and x_{tau_S} ~ N(0, I)
    if start_t is None:
        start_t = schedule.T - 1
    elif not _is_int(start_t) or not 0 <= start_t < schedule.T:
        raise ValueError(f"start_t must be None or a timestep index in [0, {schedule.T - 1}]; received {start_t!r}.")
    tau = timesteps(int(start_t) + 1, steps, spacing)  # over [0, start_t]; start_t = T - 1 is the usual case
    clip_x0, x, seed, labels, guided = _common(
        network, schedule, target, clip_x0, n, labels, guidance, x_T, seed
    )
    # 2. alpha at each step and at the step it moves to; the last step lands on x_0 (alpha = 1)
    alpha_bar = schedule.numpy("alpha_bar")[tau]
    alpha_bar_prev = np.append(schedule.numpy("alpha_bar")[tau[1:]], 1.0)
    # 3. sigma_tau_i(eta) (Eq. 16)
    sigma = eta * np.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))
    direction_scale = np.sqrt(np.maximum(1.0 - alpha_bar_prev - sigma**2, 0.0))  # rounding at eta = 1
    coefficients = np.stack([np.sqrt(alpha_bar_prev), direction_scale, sigma], axis=1)
    # 4. per step, predict eps_theta and x_0 (_predict); 5-6. Eq. 12 (_ddim_update)
    return _run(
        network, schedule, x, tau, coefficients, _ddim_update,
        target=target, clip_x0=clip_x0, labels=labels, guided=guided, guidance=guidance, seed=seed,
        stochastic=eta > 0, return_trajectory=return_trajectory, progress=progress,
    )


def _ddim_inversion_update(x_t, eps_hat, x_0_hat, previous_x_0, coefficients, noise):
    """One forward step of the DDIM ODE (Song et al. 2021, Eq. 13/14, Euler, eta = 0)."""
    signal_scale_now, noise_scale_now, signal_scale_next, noise_scale_next = tf.unstack(coefficients)
    # 1. the clean image implied by the current point and eps_hat (Eq. 12, "predicted x_0")
    x_0_now = (x_t - noise_scale_now * eps_hat) / signal_scale_now
    # 2. move to the next, noisier level along the same eps_hat
    return signal_scale_next * x_0_now + noise_scale_next * eps_hat


def ddim_invert(
    network,
    schedule,
    x_0,
    steps=50,
    *,
    target="epsilon",
    spacing="trailing",
    labels=None,
    guidance=1.0,
    return_trajectory=False,
    progress=False,
):
    """Deterministic DDIM inversion: encode images into the latent x_T that DDIM (eta = 0) decodes.

    The eta = 0 DDIM update is an Euler step of an ODE (Song et al. 2021, Eq. 14), so it can be run
    forwards: from x_0 through the same timesteps ``ddim_sample`` uses, in increasing order,
    ``x_next = sqrt(alpha_bar_next) x_0_hat + sqrt(1 - alpha_bar_next) eps_hat`` with
    ``x_0_hat = (x - sqrt(1 - alpha_bar_now) eps_hat) / sqrt(alpha_bar_now)``. ``eps_hat`` is
    evaluated at the current point but at the *next* timestep, the one at which ``ddim_sample`` will
    evaluate the network when it comes back; the small mismatch (the network sees x at a slightly
    lower noise level) is the error of inversion. For an exact ODE it shrinks with more steps; with a
    trained network on the cosine schedule it need not (notebook 04 measures it), because the first
    decoding step divides by sqrt(alpha_bar) ~ 5e-5 at t = T - 1 and amplifies any mismatch: decode
    inverted latents with ``clip_x0=True`` (the default). Clipping is never applied during inversion:
    it is not invertible.

    Args:
        network, schedule, target, labels, guidance, progress: as in ``ddim_sample``.
        x_0: images ``(n, 32, 32, 1)`` float in model space [-1, 1].
        steps, spacing: the timesteps; use the same values in ``ddim_sample`` to decode.
        return_trajectory: return a ``SampleResult`` whose ``images`` are the latents.

    Returns:
        float32 NumPy latents x_T ``(n, 32, 32, 1)``, or a ``SampleResult``.

    Example:

    >>> latents = ddim_invert(network, schedule, digits, steps=100)                # doctest: +SKIP
    >>> again = ddim_sample(network, schedule, steps=100, x_T=latents, eta=0.0)  # doctest: +SKIP
    """
    _check_schedule(schedule)
    tau = timesteps(schedule.T, steps, spacing)[::-1]  # increasing: tau_1 < ... < tau_S
    _, x, seed, labels, guided = _common(
        network, schedule, target, False, None, labels, guidance, x_0, 0, "x_0"
    )
    alpha_bar_next = schedule.numpy("alpha_bar")[tau]
    alpha_bar_now = np.append(1.0, alpha_bar_next[:-1])  # we start from x_0 itself (alpha_bar = 1)
    coefficients = np.stack(
        [
            np.sqrt(alpha_bar_now), np.sqrt(1.0 - alpha_bar_now),
            np.sqrt(alpha_bar_next), np.sqrt(1.0 - alpha_bar_next),
        ],
        axis=1,
    )
    return _run(
        network, schedule, x, tau, coefficients, _ddim_inversion_update,
        target=target, clip_x0=False, labels=labels, guided=guided, guidance=guidance, seed=seed,
        stochastic=False, return_trajectory=return_trajectory, progress=progress,
    )


# ---------------------------------------------------------------------------------------------------
# DPM-Solver++(2M): Lu et al. 2022, Algorithm 2
# ---------------------------------------------------------------------------------------------------


def _dpm_solver_pp_update(x_t, eps_hat, x_0_hat, previous_x_0, coefficients, noise):
    """One step of DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2)."""
    sigma_ratio, data_scale, second_order_weight = tf.unstack(coefficients)
    # 5. D_i = (1 + 1/(2 r_i)) x_theta(x_{t_{i-1}}) - 1/(2 r_i) x_theta(x_{t_{i-2}})
    #    (the first step and the last use D_i = x_theta(x_{t_{i-1}}): second_order_weight = 0)
    data = (1.0 + second_order_weight) * x_0_hat - second_order_weight * previous_x_0
    # 6. x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i
    return sigma_ratio * x_t + data_scale * data


def dpm_solver_pp_2m_sample(
    network,
    schedule,
    steps=20,
    n=None,
    *,
    target="epsilon",
    order=2,
    spacing="trailing",
    clip_x0=True,
    labels=None,
    guidance=1.0,
    x_T=None,
    seed=0,
    return_trajectory=False,
    progress=False,
):
    """DPM-Solver++(2M): a multistep second-order solver of the diffusion ODE (Lu et al. 2022, Alg. 2).

    It integrates the probability-flow ODE written for the data prediction x_theta in the time variable
    ``lambda = log(alpha / sigma)`` (Lu's alpha, sigma = our sqrt(alpha_bar), sqrt(1 - alpha_bar)),
    where the linear part is solved exactly and x_theta is extrapolated linearly from the current and
    the previous step's prediction: one network call per step, second-order accurate, good images in
    10-20 steps. With ``order=1`` it is DPM-Solver++(1), which is exactly DDIM with eta = 0.

    The last step lands on x_0, where sigma = 0 and lambda is infinite; there ``r_i = 0`` and the
    second-order correction is undefined, so the last step is always first order (it returns x_theta).
    This is the same choice as the "lower order final" step of common implementations.

    Args:
        network, schedule, n, target, clip_x0, labels, guidance, x_T, seed, return_trajectory,
            progress: as in ``ddpm_sample``.
        steps: number of network evaluations, in [1, T].
        order: 1 or 2.
        spacing: see ``timesteps``.

    Returns:
        float32 NumPy images ``(n, 32, 32, 1)`` in model space, or a ``SampleResult``.

    Example:

    >>> images = dpm_solver_pp_2m_sample(network, schedule, steps=15, n=16)  # doctest: +SKIP
    """
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2; received {order!r}.")
    _check_schedule(schedule)
    # 1. time steps t_0 > t_1 > ... > t_M, where t_M is x_0 itself, and x_{t_0} = x_T
    tau = timesteps(schedule.T, steps, spacing)  # t_0, ..., t_{M-1}: where the network is evaluated
    clip_x0, x, seed, labels, guided = _common(
        network, schedule, target, clip_x0, n, labels, guidance, x_T, seed
    )
    alpha_bar = schedule.numpy("alpha_bar")[tau]
    alpha_bar_next = np.append(alpha_bar[1:], 1.0)  # t_M is x_0 itself
    signal_scale, noise_scale = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)  # Lu's alpha_t, sigma_t
    signal_scale_next, noise_scale_next = np.sqrt(alpha_bar_next), np.sqrt(1.0 - alpha_bar_next)
    with np.errstate(divide="ignore"):  # lambda = +inf at x_0
        log_signal_to_noise = np.log(signal_scale) - np.log(noise_scale)
        log_signal_to_noise_next = np.log(signal_scale_next) - np.log(noise_scale_next)
    # 2. h_i = lambda_{t_i} - lambda_{t_{i-1}}
    h = log_signal_to_noise_next - log_signal_to_noise
    sigma_ratio = noise_scale_next / noise_scale
    data_scale = -signal_scale_next * np.expm1(-h)  # -alpha_{t_i} (e^{-h_i} - 1); expm1(-inf) = -1
    second_order_weight = np.zeros(steps)
    if order == 2 and steps > 2:
        # 3. r_i = h_{i-1} / h_i, from the second step on, and never in the final (infinite h) step
        r = h[:-2] / h[1:-1]
        second_order_weight[1:-1] = 1.0 / (2.0 * r)
    coefficients = np.stack([sigma_ratio, data_scale, second_order_weight], axis=1)
    # 4. per step, x_theta(x_{t_{i-1}}, t_{i-1}) (_predict; the buffer Q is previous_x_0); 5-6. update
    return _run(
        network, schedule, x, tau, coefficients, _dpm_solver_pp_update,
        target=target, clip_x0=clip_x0, labels=labels, guided=guided, guidance=guidance, seed=seed,
        stochastic=False, return_trajectory=return_trajectory, progress=progress,
    )


# ---------------------------------------------------------------------------------------------------
# Dispatcher, interpolation, benchmark
# ---------------------------------------------------------------------------------------------------

_SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpm_solver_pp_2m": dpm_solver_pp_2m_sample}


def sample(network, schedule, sampler="ddim", steps=None, n=None, seed=0, target="epsilon", **kwargs):
    """Sample ``n`` images with the sampler called ``sampler``.

    Args:
        network: a network following the package's call convention.
        schedule: the DDPM schedule the network was trained with.
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm_solver_pp_2m"``.
        steps: network evaluations. None means all T for ``"ddpm"`` (the only value it accepts),
            ``min(50, T)`` for ``"ddim"`` and ``min(20, T)`` for ``"dpm_solver_pp_2m"``.
        n: number of images (64 when None, or the batch of ``x_T`` when given).
        seed: int seed; the same seed gives the same images.
        target: what the network predicts: ``"epsilon"``, ``"x0"`` or ``"v"``.
        **kwargs: the sampler's own keywords (``eta``, ``spacing``, ``variance``, ``order``,
            ``clip_x0``, ``labels``, ``guidance``, ``x_T``, ``return_trajectory``, ``progress``).

    Returns:
        What the sampler returns: images ``(n, 32, 32, 1)`` or a ``SampleResult``.

    Example:

    >>> images = sample(network, schedule, "dpm_solver_pp_2m", steps=15, n=16)  # doctest: +SKIP
    """
    if sampler not in _SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLER_NAMES}; received {sampler!r}.")
    _check_schedule(schedule)
    if sampler == "ddpm":
        if steps is not None and steps != schedule.T:
            raise ValueError(
                f"the ddpm sampler runs all T = {schedule.T} steps; received steps={steps!r}. Pass "
                "steps=None, or use sampler='ddim' (eta=1 is DDPM-like) for fewer steps."
            )
        return ddpm_sample(network, schedule, n, target=target, seed=seed, **kwargs)
    default = 50 if sampler == "ddim" else 20
    steps = min(default, schedule.T) if steps is None else steps
    return _SAMPLERS[sampler](network, schedule, steps, n, target=target, seed=seed, **kwargs)


def slerp(z0, z1, fraction):
    """Spherical linear interpolation between two latents (Shoemake 1985).

    Gaussian latents of dimension d lie near a sphere of radius sqrt(d); a straight line between two of
    them passes through the low-norm interior that the sampler never saw, which gives washed-out
    images. Slerp keeps the norm: ``sin((1 - f) theta) / sin(theta) z0 + sin(f theta) / sin(theta) z1``
    with theta the angle between the flattened latents. Nearly parallel latents fall back to a straight
    line.

    Args:
        z0, z1: latents of the same shape, e.g. ``(32, 32, 1)``; each is treated as one vector.
        fraction: a number or 1-D array of numbers, 0 gives z0 and 1 gives z1.

    Returns:
        float32 array of shape ``z0.shape`` for a scalar fraction, ``(len(fraction),) + z0.shape``
        otherwise.

    Example:

    >>> path = slerp(latents[0], latents[1], np.linspace(0, 1, 8))  # doctest: +SKIP
    """
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape; received {z0.shape} and {z1.shape}.")
    fractions = np.asarray(fraction, np.float64)
    if fractions.ndim > 1:
        raise ValueError(f"fraction must be a number or a 1-D array; received shape {fractions.shape}.")
    cosine = np.dot(z0.ravel(), z1.ravel()) / (np.linalg.norm(z0) * np.linalg.norm(z1))
    theta = np.arccos(np.clip(cosine, -1.0, 1.0))
    f = fractions.reshape(fractions.shape + (1,) * z0.ndim)
    if np.sin(theta) < 1e-6:
        result = (1.0 - f) * z0 + f * z1
    else:
        result = (np.sin((1.0 - f) * theta) * z0 + np.sin(f * theta) * z1) / np.sin(theta)
    return result.astype(np.float32)


def _warm_up(network, schedule, name, x_T, target, labels, guided, guidance):
    """Trace the compiled step of sampler ``name`` with one dummy step (the values do not matter)."""
    update, stochastic = {
        "ddpm": (_ddpm_update, True),
        "ddim": (_ddim_update, False),  # the benchmark runs the default eta = 0
        "dpm_solver_pp_2m": (_dpm_solver_pp_update, False),
    }[name]
    _run(
        network, schedule, x_T, np.array([schedule.T - 1]), np.zeros((1, 3)), update,
        target=target, clip_x0=False, labels=labels, guided=guided, guidance=guidance, seed=0,
        stochastic=stochastic, return_trajectory=False, progress=False,
    )


def bench_samplers(
    network,
    schedule,
    *,
    target="epsilon",
    samplers=SAMPLER_NAMES,
    steps=(10, 20, 50, 1000),
    n=64,
    repeats=3,
    labels=None,
    guidance=1.0,
):
    """Measure each sampler's throughput and its overhead over the bare network evaluations.

    ``overhead = sampler_seconds / (steps * evaluation_seconds) - 1``, where ``evaluation_seconds`` is
    one compiled network call on the same batch (doubled under guidance). It counts everything a
    sampler adds: the update arithmetic, conversions, noise and the Python loop. On a shared machine
    the speed drifts, so each sampler run is paired with a loop of ``steps`` bare evaluations timed
    right before it, and the reported numbers are medians over ``repeats`` such pairs, after one
    untimed step that pays for tracing. ``"ddpm"`` runs only at ``steps == T``, and step counts larger
    than T are skipped.

    Args:
        network, schedule, target, labels, guidance: as in the samplers.
        samplers: names from ``SAMPLER_NAMES``.
        steps: step counts to try.
        n: batch size.
        repeats: timed pairs per measurement (median).

    Returns:
        A list of dicts with keys ``sampler``, ``steps``, ``seconds``, ``images_per_second``,
        ``evaluation_ms`` and ``overhead``, ready for ``bench.format_table``.

    Example:

    >>> rows = bench_samplers(network, schedules.linear(), steps=(10, 20))  # doctest: +SKIP
    """
    for name in samplers:
        if name not in _SAMPLERS:
            raise ValueError(f"samplers must hold names from {SAMPLER_NAMES}; received {name!r}.")
    _check_schedule(schedule)
    x_T, _ = _start(network, n, None, 0, "x_T")
    label_array, guided = _check_labels(network, labels, n, guidance)
    batch = 2 * n if guided else n
    inputs = [tf.concat([x_T, x_T], 0) if guided else x_T, tf.fill([batch], schedule.T // 2)]
    if label_array is not None:
        inputs.append(tf.constant(np.resize(label_array, batch).astype(np.int32)))
    evaluate = tf.function(lambda inputs: network(inputs), autograph=False)
    evaluate(inputs).numpy()  # trace

    def evaluations(count):
        for _ in range(count):
            output = evaluate(inputs)
        output.numpy()

    rows = []
    for name in samplers:
        for count in steps:
            if count > schedule.T or (name == "ddpm" and count != schedule.T):
                continue
            _warm_up(network, schedule, name, x_T, target, label_array, guided, guidance)
            sampler_times, evaluation_times = [], []
            for _ in range(repeats):
                evaluation_times.append(median_seconds(lambda: evaluations(count), 1, warmup=0) / count)
                sampler_times.append(median_seconds(
                    lambda: sample(network, schedule, name, None if name == "ddpm" else count, n, seed=0,
                                   target=target, labels=labels, guidance=guidance),
                    1, warmup=0,
                ))
            ratios = [s / (count * e) for s, e in zip(sampler_times, evaluation_times)]
            seconds = statistics.median(sampler_times)
            rows.append({
                "sampler": name,
                "steps": count,
                "seconds": seconds,
                "images_per_second": n / seconds,
                "evaluation_ms": 1000.0 * statistics.median(evaluation_times),
                "overhead": statistics.median(ratios) - 1.0,
            })
    return rows
