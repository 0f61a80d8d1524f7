"""Image editing with a trained diffusion model: SDEdit, inpainting and latent interpolation.

All three reuse the samplers' compiled network step; none needs any training of its own.

* ``sdedit``: image-to-image (Meng et al. 2022, "SDEdit"). Noise a real digit part of the way, to
  timestep ``t0``, with the forward process (Ho et al. 2020, Eq. 4), then run the reverse process from
  there. The network keeps what the noise did not destroy (pose, thickness, position) and redraws the
  rest, towards another class if the network is conditional and ``labels`` say so. The ``strength``
  in [0, 1] chooses ``t0``: 0 returns the input, 1 starts from (almost) pure noise.
* ``inpaint``: regenerate the unknown part of an image so that it fits the known part. At every step
  the known pixels are replaced by the real image noised to the same level, so the network sees a
  consistent x_t; with ``resample > 1`` each step is undone (re-noised) and redone, which lets the
  generated region harmonize with the known one (Lugmayr et al. 2022, "RePaint", Algorithm 1).
* ``interpolate``: DDIM-invert two real digits to their latents, interpolate the latents spherically
  and decode every point (Song et al. 2021, Sec. 5.4 and 5.5).

Images are model-space float arrays ``(n, H, W, 1)`` in [-1, 1], the network's image shape: 28×28 for
the shipped unconditional model, 32×32 (padded) for networks built with ``image_size=32``
(``data.to_model_range(digits, H)`` converts MNIST digits). Masks are 1 where a pixel is known (kept)
and 0 where it is to be generated.

Example::

    from diffusion_keras import data, editing, load_pretrained

    model = load_pretrained("mnist-conditional")
    threes = data.to_model_range(threes_uint8, model.image_shape[0])   # (n, 28, 28) uint8 -> model space
    eights = editing.sdedit(model.ema_network, model.schedule, threes, strength=0.6, labels=8, guidance=3,
                            target=model.target)
    mask = editing.lower_half_mask(model.image_shape)
    filled = editing.inpaint(model.ema_network, model.schedule, threes, mask, resample=5, target=model.target)
"""

import math

import numpy as np
import tensorflow as tf

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras import forward, samplers


def _check_images(network, images, argument="images"):
    """Float32 ``(n, h, w, c)`` images in [-1, 1] matching the network, or a clear error."""
    shape = samplers._image_shape(network)
    values = np.asarray(images)
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(
            f"{argument} must be a float array in [-1, 1] (model space; data.to_model_range converts "
            f"MNIST digits); received dtype {values.dtype}."
        )
    if values.ndim != 4 or values.shape[1:] != shape or values.shape[0] < 1:
        raise ValueError(f"{argument} must have shape (n,) + {shape}; received shape {values.shape}.")
    if not np.isfinite(values).all() or values.min() < -1.001 or values.max() > 1.001:
        raise ValueError(
            f"{argument} must hold finite values in [-1, 1] (model space); received values from "
            f"{values.min()} to {values.max()}. Use data.to_model_range on [0, 255] or [0, 1] images."
        )
    return values.astype(np.float32)


def _check_fraction(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{argument} must be a number in [0, 1]; received {value!r}.")
    return float(value)


# Editing draws its own noise under keys from 2**32 on, apart from the samplers' per-step keys (seed, t + 1).
_KEY_OFFSET = 2**32


def _noise(shape, seed, key):
    return tf.random.stateless_normal(shape, seed=tf.constant([seed, _KEY_OFFSET + key], tf.int64))


# ---------------------------------------------------------------------------------------------------
# SDEdit
# ---------------------------------------------------------------------------------------------------


def strength_to_timestep(strength, T):
    """The timestep index SDEdit starts from: ``ceil(strength * T) - 1``, or None for strength 0."""
    strength = _check_fraction(strength, "strength")
    return None if strength == 0 else math.ceil(strength * T) - 1


def sdedit(network, schedule, images, strength, steps=50, *, target="epsilon", labels=None, guidance=1.0,
           seed=0, clip_x0=True, return_trajectory=False):
    """Edit ``images`` by noising them to ``strength`` and denoising with DDIM (eta = 0).

    With ``t0 = ceil(strength * T) - 1``: ``x_t0 = sqrt(alpha_bar_t0) x + sqrt(1 - alpha_bar_t0) eps``
    (Ho et al. Eq. 4), then ``round(steps * strength)`` DDIM steps (at least 1) spaced over
    ``[0, t0]``, so a full-strength edit costs ``steps`` network evaluations and a weaker one less.

    Args:
        network, schedule, target, labels, guidance, clip_x0: as in ``samplers.ddim_sample``; with a
            conditional network, ``labels`` is the class to edit towards (None: the null label).
        images: ``(n, H, W, 1)`` float in [-1, 1].
        strength: in [0, 1]. 0 returns a copy of ``images``; about 0.3 keeps the digit and cleans it;
            0.5-0.7 keeps pose and thickness but can change the class; 1 ignores the input.
        steps: DDIM steps of a full-strength edit.
        seed: the noise of the forward jump.
        return_trajectory: return the ``SampleResult`` of the denoising part.

    Returns:
        float32 ``(n, H, W, 1)`` edited images (or a ``SampleResult``).
    """
    images = _check_images(network, images)
    start_t = strength_to_timestep(strength, schedule.T)
    if start_t is None:
        samplers._check_labels(network, labels, len(images), guidance)  # still reject bad labels
        return images.copy()
    samplers._check_steps(steps, schedule.T)
    seed = samplers._resolve_seed(seed)
    count = min(max(1, round(steps * float(strength))), start_t + 1)
    t = tf.fill([len(images)], start_t)
    x_t = forward.q_sample(tf.constant(images), t, _noise(images.shape, seed, 0), schedule)
    return samplers.ddim_sample(
        network, schedule, count, target=target, eta=0.0, clip_x0=clip_x0, labels=labels,
        guidance=guidance, x_T=x_t.numpy(), seed=seed, start_t=start_t, return_trajectory=return_trajectory,
    )


# ---------------------------------------------------------------------------------------------------
# Inpainting: replacement with RePaint resampling
# ---------------------------------------------------------------------------------------------------


def lower_half_mask(shape=(32, 32, 1), known="upper"):
    """A mask ``shape`` that keeps the upper half (``known="upper"``) or the lower half of an image.

    The cut is at row ``shape[0] // 2``: 14 of a 28×28 digit, 16 of a 32×32 one padded by 2 pixels, the
    middle of the digit either way.
    """
    if known not in ("upper", "lower"):
        raise ValueError(f"known must be 'upper' or 'lower'; received {known!r}.")
    mask = np.zeros(shape, np.float32)
    half = shape[0] // 2
    if known == "upper":
        mask[:half] = 1.0
    else:
        mask[half:] = 1.0
    return mask


def _check_mask(mask, images):
    values = np.asarray(mask)
    if values.dtype != np.bool_ and not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"mask must be a boolean or 0/1 array; received dtype {values.dtype}.")
    if values.shape == images.shape[1:]:
        values = np.broadcast_to(values, images.shape)
    if values.shape != images.shape:
        raise ValueError(
            f"mask must have the shape of one image {images.shape[1:]} or of all images {images.shape} "
            f"(1 = known, 0 = generate); received shape {values.shape}."
        )
    values = values.astype(np.float32)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("mask must hold only 0 (generate) and 1 (known); received other values.")
    return values


def _resampling_schedule(count, resample, jump):
    """The moves of RePaint's resampling over ``count`` reverse steps, as ``(position, direction)``.

    ``("down", k)`` takes the step from x_{tau_k} to x_{tau_(k+1)} (position ``count`` is x_0);
    ``("up", k)`` re-noises x_{tau_k} back to x_{tau_(k - jump)}. Blocks of ``jump`` steps are taken
    ``resample`` times each, except the block that ends on x_0.

    >>> [move for move in _resampling_schedule(3, 2, 1)]  # doctest: +NORMALIZE_WHITESPACE
    [(0, 'down'), (1, 'up'), (0, 'down'), (1, 'down'), (2, 'up'), (1, 'down'), (2, 'down')]
    """
    moves = []
    for start in range(0, count, jump):
        end = min(start + jump, count)
        repeats = resample if end < count else 1
        for repeat in range(repeats):
            moves.extend((position, "down") for position in range(start, end))
            if repeat < repeats - 1:
                moves.append((end, "up"))
    return moves


def _reconstruction_guided_step(network, schedule, target, clip_x0, guided, conditional, known, keep, weight):
    """A stochastic DDIM step whose x_0 prediction is corrected by the reconstruction gradient (see
    ``inpaint``); same arguments and results as the steps of ``samplers._compiled_step``."""
    alpha_bar = tf.constant(schedule.numpy("alpha_bar"), tf.float32)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(x_t, t, coefficients, previous_x_0, seed, labels, guidance):
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            _, x_0_hat = samplers._predict(
                network, schedule, target, clip_x0, guided, x_t, t, labels if conditional else None, guidance
            )
            mismatch = tf.reduce_sum(tf.where(keep, tf.square(known - x_0_hat), 0.0))
        gradient = tape.gradient(mismatch, x_t)  # images do not interact: one sum serves the batch
        scale = tf.sqrt(alpha_bar[t])
        x_0_hat = x_0_hat - tf.where(keep, 0.0, 0.5 * weight * scale * gradient)
        if clip_x0:
            x_0_hat = tf.clip_by_value(x_0_hat, -1.0, 1.0)
        t_batch = tf.fill([tf.shape(x_t)[0]], t)
        eps_hat = forward.convert_prediction(x_0_hat, x_t, t_batch, schedule, "x0", "epsilon")
        noise = samplers._step_noise(x_t, seed, t)
        return samplers._ddim_update(x_t, eps_hat, x_0_hat, previous_x_0, coefficients, noise), x_0_hat

    return step


def inpaint(network, schedule, images, mask, steps=50, *, resample=1, jump=1, reconstruction_guidance=0.0,
            target="epsilon", labels=None, guidance=1.0, seed=0, clip_x0=True):
    """Regenerate the pixels of ``images`` where ``mask`` is 0, consistently with those where it is 1.

    The reverse process runs over ``steps`` timesteps ``tau_S > ... > tau_1`` with stochastic DDIM
    steps (eta = 1, the DDPM posterior on the sub-sequence). After each step from tau_i to
    tau_{i-1} the known region is overwritten with the real image noised to tau_{i-1}
    (Lugmayr et al. 2022, Algorithm 1, lines 5-8):

        x_{i-1} = m * (sqrt(alpha_bar_{i-1}) x + sqrt(1 - alpha_bar_{i-1}) eps) + (1 - m) * x_{i-1}^gen

    The replacement alone lets the two regions disagree: the generated part only sees the known part
    through the noise. With ``resample = U > 1`` the process goes down ``jump = j`` steps, is re-noised
    back up those j steps in one draw of the forward kernel
    ``q(x_{tau_k} | x_{tau_{k+j}}) = N(sqrt(alpha_bar_k / alpha_bar_{k+j}) x, (1 - alpha_bar_k /
    alpha_bar_{k+j}) I)`` (line 10) and goes down again, U times in all, before moving on to the next
    j steps (the "jumps" of Lugmayr et al. 2022, Sec. 4.2). ``jump = 1`` repeats every single step U
    times; longer jumps give the network several steps in a row to harmonise the two regions before
    the known region is imposed again. The last block of steps, which ends on x_0, is not repeated.
    The cost is about ``steps * resample`` network evaluations whatever the jump.

    Replacement only tells the network about the known region through noisy pixels. With
    ``reconstruction_guidance = w_r > 0`` every step also asks how the generated region should change
    for the network's prediction of the *known* region to match the real pixels (reconstruction-guided
    sampling, Ho et al. 2022, "Video Diffusion Models", Eq. 7):

        x_0_hat^unknown <- x_0_hat^unknown - (w_r sqrt(alpha_bar_t) / 2) grad_{x_t} || m * (x - x_0_hat(x_t)) ||^2

    and the step continues from the corrected x_0_hat (epsilon_hat re-derived from it). The gradient
    runs back through the network, so a guided step costs about three network evaluations.

    The last step lands on x_0 with no noise, where the known pixels are copied exactly: the output
    equals ``images`` wherever ``mask`` is 1.

    Args:
        network, schedule, target, labels, guidance, clip_x0: as in ``samplers.ddim_sample``.
        images: ``(n, H, W, 1)`` float in [-1, 1]; the pixels under ``mask == 0`` are ignored.
        mask: 1 = known, 0 = generate; the shape of one image or of ``images``.
        steps: reverse steps, in [1, T].
        resample: U, how many times each block of steps is taken (1: replacement only).
        jump: j, the length in steps of the blocks that are resampled, in [1, steps].
        reconstruction_guidance: w_r >= 0, the weight of the reconstruction gradient (0: off).
        seed: every noise draw.

    Returns:
        float32 ``(n, H, W, 1)`` images.
    """
    images = _check_images(network, images)
    mask = _check_mask(mask, images)
    if isinstance(resample, bool) or not isinstance(resample, (int, np.integer)) or resample < 1:
        raise ValueError(f"resample must be an integer >= 1 (1: no resampling); received {resample!r}.")
    if isinstance(reconstruction_guidance, bool) or not isinstance(
        reconstruction_guidance, (int, float, np.number)
    ) or not 0.0 <= reconstruction_guidance < np.inf:
        raise ValueError(
            f"reconstruction_guidance must be a finite number >= 0 (0: off); received {reconstruction_guidance!r}."
        )
    clip_x0, x, seed, labels, guided = samplers._common(
        network, schedule, target, clip_x0, None, labels, guidance, images, seed, "images"
    )
    tau = samplers.timesteps(schedule.T, steps, "trailing")  # checks steps
    if isinstance(jump, bool) or not isinstance(jump, (int, np.integer)) or not 1 <= jump <= steps:
        raise ValueError(f"jump must be an integer in [1, steps={steps}]; received {jump!r}.")
    alpha_bar_all = schedule.numpy("alpha_bar")
    alpha_bar = alpha_bar_all[tau]
    alpha_bar_prev = np.append(alpha_bar_all[tau[1:]], 1.0)
    # DDIM with eta = 1 (Song et al. Eq. 16): the DDPM posterior for a jump from tau_i to tau_{i-1}
    sigma = np.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))
    direction = np.sqrt(np.maximum(1.0 - alpha_bar_prev - sigma**2, 0.0))
    coefficients = np.stack([np.sqrt(alpha_bar_prev), direction, sigma], axis=1).astype(np.float32)

    conditional = labels is not None
    known = tf.constant(images)
    keep = tf.constant(mask) > 0.5
    if reconstruction_guidance:
        step = _reconstruction_guided_step(
            network, schedule, target, clip_x0, guided, conditional, known, keep, float(reconstruction_guidance)
        )
    else:
        step = samplers._compiled_step(
            network, schedule, target, clip_x0, guided, conditional, samplers._ddim_update, True
        )
    labels_tensor = tf.constant(labels if conditional else np.zeros(len(images), np.int32))
    guidance_tensor = tf.constant(samplers._check_guidance(guidance), tf.float32)
    previous_x_0 = tf.zeros_like(known)
    shape = images.shape
    # x_T: pure noise in the unknown region, the noised image in the known one (Alg. 1, line 1)
    x = tf.where(keep, forward.q_sample(known, tf.fill([shape[0]], int(tau[0])), _noise(shape, seed, 0),
                                        schedule), _noise(shape, seed, 1))
    draw = 2
    visits = np.zeros(len(tau), np.int64)  # how often each step has been taken: its noise seed
    for position, direction in _resampling_schedule(len(tau), resample, jump):
        if direction == "up":  # re-noise from x_{tau_position} back to x_{tau_(position - jump)}
            ratio = alpha_bar[position - jump] / alpha_bar[position]
            x = math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * _noise(shape, seed, draw)
            draw += 1
            continue
        # a fresh seed per visit, so a redone step draws new noise (samplers key it by (seed, t))
        step_seed = tf.constant((seed + 7919 * int(visits[position])) % 2**31, tf.int64)
        visits[position] += 1
        x, previous_x_0 = step(
            x, tf.constant(int(tau[position]), tf.int32), tf.constant(coefficients[position]), previous_x_0,
            step_seed, labels_tensor, guidance_tensor,
        )
        if position == len(tau) - 1:
            known_prev = known
        else:
            known_prev = (
                math.sqrt(alpha_bar_prev[position]) * known
                + math.sqrt(1.0 - alpha_bar_prev[position]) * _noise(shape, seed, draw)
            )
            draw += 1
        x = tf.where(keep, known_prev, x)
    return x.numpy()


# ---------------------------------------------------------------------------------------------------
# Interpolation of DDIM latents
# ---------------------------------------------------------------------------------------------------


def interpolate(network, schedule, first, second, frames=8, steps=50, *, target="epsilon", labels=None,
                guidance=1.0, clip_x0=True):
    """Decode ``frames`` points on the great circle between the DDIM latents of two real digits.

    Both images are inverted with ``samplers.ddim_invert`` (deterministic DDIM run forwards), their
    latents joined by ``samplers.slerp``, and every point decoded with ``samplers.ddim_sample``
    (eta = 0) over the same timesteps. The first and last frames are the reconstructions of the two
    inputs (close to them, not equal: inversion is approximate, see ``ddim_invert``).

    Args:
        network, schedule, target, guidance, clip_x0: as in ``samplers.ddim_sample``.
        first, second: one image each, ``(H, W, 1)`` float in [-1, 1].
        frames: number of images, >= 2, both ends included.
        steps: DDIM steps of the inversion and of the decoding.
        labels: for a conditional network, one label for the whole path (None: the null label).

    Returns:
        float32 ``(frames, H, W, 1)``.
    """
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"frames must be an integer >= 2; received {frames!r}.")
    pair = _check_images(network, np.stack([np.asarray(first), np.asarray(second)]), "first and second")
    pair_labels = None if labels is None else np.full(2, labels)
    latents = samplers.ddim_invert(
        network, schedule, pair, steps, target=target, labels=pair_labels, guidance=guidance
    )
    path = samplers.slerp(latents[0], latents[1], np.linspace(0.0, 1.0, frames))
    path_labels = None if labels is None else np.full(frames, labels)
    return samplers.ddim_sample(
        network, schedule, steps, target=target, eta=0.0, x_T=path, labels=path_labels,
        guidance=guidance, clip_x0=clip_x0,
    )
