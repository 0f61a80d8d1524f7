"""Tests for diffusion_keras.editing (SDEdit, inpainting, interpolation) and the warm start of training.

The arithmetic is checked on a real but tiny, untrained conditional U-Net with T = 20; what editing is
for (a 3 turned into an 8, a digit completed from its upper half) is checked on the shipped
conditional model in ``test_pretrained.py``.
"""

import numpy as np
import pytest
import tensorflow as tf

import diffusion_keras as dk
from diffusion_keras import editing, forward, networks, training

T = 20


@pytest.fixture(scope="module")
def schedule():
    return dk.schedules.cosine(T=T)


@pytest.fixture(scope="module")
def network():
    return networks.build_network("tiny", num_classes=10, num_timesteps=T)


@pytest.fixture(scope="module")
def images(mnist):
    (x_train, y_train), _ = mnist
    return dk.data.to_model_range(x_train[:6])


def test_strength_to_timestep():
    assert editing.strength_to_timestep(0.0, 1000) is None
    assert editing.strength_to_timestep(1.0, 1000) == 999
    assert editing.strength_to_timestep(0.5, 1000) == 499
    assert editing.strength_to_timestep(0.0001, 1000) == 0  # the smallest edit still denoises once
    with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\]; received 1.5"):
        editing.strength_to_timestep(1.5, 1000)


def test_sdedit_at_strength_zero_returns_the_input(network, schedule, images):
    edited = editing.sdedit(network, schedule, images, 0.0, labels=3, guidance=2.0)
    assert edited.dtype == np.float32 and np.array_equal(edited, images)
    assert edited is not images


def test_sdedit_runs_from_the_noised_image(network, schedule, images):
    """Strength s starts DDIM at ceil(s T) - 1 and spends round(steps * s) evaluations."""
    result = editing.sdedit(network, schedule, images, 0.5, steps=10, labels=8, return_trajectory=True)
    assert result.timesteps.tolist() == [9, 7, 5, 3, 1]  # 5 steps over [0, 9]
    assert result.images.shape == images.shape and np.isfinite(result.images).all()
    # the starting point is the real image noised to t = 9 (Ho et al. Eq. 4) with the seed's noise
    noise = tf.random.stateless_normal(images.shape, seed=tf.constant([0, 2**32], tf.int64)).numpy()
    alpha_bar = schedule.numpy("alpha_bar")[9]
    expected = np.sqrt(alpha_bar) * images + np.sqrt(1.0 - alpha_bar) * noise
    np.testing.assert_allclose(result.x_t_trajectory[0], expected, atol=1e-6)


def test_inpainting_keeps_the_known_pixels_exactly(network, schedule, images):
    mask = editing.lower_half_mask()  # the upper half is known
    for resample in (1, 3):
        filled = editing.inpaint(network, schedule, images, mask, steps=5, resample=resample, labels=[1] * 6)
        np.testing.assert_array_equal(filled[:, :16], images[:, :16])
        assert not np.allclose(filled[:, 16:], images[:, 16:], atol=0.05)  # the rest was generated
        assert np.isfinite(filled).all() and filled.min() >= -1.0 - 1e-5 and filled.max() <= 1.0 + 1e-5


def test_inpainting_with_resampling_changes_the_result_and_is_seeded(network, schedule, images):
    mask = editing.lower_half_mask(known="lower")
    plain = editing.inpaint(network, schedule, images, mask, steps=4, seed=1)
    resampled = editing.inpaint(network, schedule, images, mask, steps=4, resample=2, seed=1)
    again = editing.inpaint(network, schedule, images, mask, steps=4, resample=2, seed=1)
    np.testing.assert_array_equal(resampled, again)
    assert not np.array_equal(plain[:, :16], resampled[:, :16])
    np.testing.assert_array_equal(resampled[:, 16:], images[:, 16:])


def test_resampling_schedule_moves():
    # U = 2, jump 2 over 5 steps: blocks [0, 2) and [2, 4) twice each, the last step (onto x_0) once
    moves = editing._resampling_schedule(5, 2, 2)
    downs = [position for position, direction in moves if direction == "down"]
    assert downs == [0, 1, 0, 1, 2, 3, 2, 3, 4]
    assert [position for position, direction in moves if direction == "up"] == [2, 4]
    assert editing._resampling_schedule(4, 1, 3) == [(k, "down") for k in range(4)]  # U = 1: plain


def test_inpainting_with_jumps_keeps_known_pixels_and_differs_from_single_steps(network, schedule, images):
    mask = editing.lower_half_mask()
    single = editing.inpaint(network, schedule, images, mask, steps=6, resample=2, jump=1, seed=2)
    jumped = editing.inpaint(network, schedule, images, mask, steps=6, resample=2, jump=3, seed=2)
    np.testing.assert_array_equal(jumped[:, :16], images[:, :16])
    assert not np.array_equal(single, jumped)


@pytest.fixture(scope="module")
def live_network():
    """An unconditional tiny U-Net whose zero-initialised output layer is made random, so that its
    prediction depends on x_t (a fresh network predicts 0 everywhere, with a zero gradient)."""
    network = networks.build_network("tiny", num_timesteps=T)
    output = network.get_layer("output_conv")
    output.kernel.assign(np.random.default_rng(1).normal(0.0, 0.05, output.kernel.shape).astype(np.float32))
    return network


def test_reconstruction_guidance_keeps_known_pixels_and_changes_the_generated_ones(live_network, schedule, images):
    network = live_network
    mask = editing.lower_half_mask()
    plain = editing.inpaint(network, schedule, images, mask, steps=4, seed=3)
    off = editing.inpaint(network, schedule, images, mask, steps=4, reconstruction_guidance=0.0, seed=3)
    guided = editing.inpaint(network, schedule, images, mask, steps=4, reconstruction_guidance=8.0, seed=3)
    np.testing.assert_array_equal(off, plain)
    np.testing.assert_array_equal(guided[:, :16], images[:, :16])
    assert np.isfinite(guided).all() and guided.min() >= -1.0 - 1e-5 and guided.max() <= 1.0 + 1e-5
    assert np.abs(guided[:, 16:] - plain[:, 16:]).mean() > 1e-3


def test_reconstruction_gradient_matches_a_finite_difference(live_network, schedule, images):
    # The guided step's correction is -(w sqrt(alpha_bar) / 2) d/dx_t ||m (x - x_0_hat(x_t))||^2 on the
    # unknown pixels; check the gradient it uses against a central difference on one pixel.
    network = live_network
    mask = editing.lower_half_mask()
    known, keep = tf.constant(images), tf.constant(mask) > 0.5
    t, weight = 10, 2.0
    step = editing._reconstruction_guided_step(network, schedule, "epsilon", False, False, False, known, keep, weight)
    x_t = tf.constant(np.random.default_rng(0).normal(size=images.shape).astype(np.float32))

    def x_0_hat(x):
        steps = tf.fill([len(images)], t)
        return forward.convert_prediction(network([x, steps]), x, steps, schedule, "epsilon", "x0").numpy()

    def mismatch(x):
        # summed in float64: the sum is about 10^4 and a float32 one rounds it to about 10^-3, a tenth of
        # what the bump below changes it by
        return np.sum(np.where(mask > 0.5, np.square(images - x_0_hat(x).astype(np.float64)), 0.0))

    _, guided_x_0 = step(x_t, tf.constant(t), tf.constant([0.0, 0.0, 0.0]), tf.zeros_like(x_t),
                         tf.constant(0, tf.int64), tf.zeros(len(images), tf.int32), tf.constant(1.0))
    x_0 = x_0_hat(x_t)
    h = 1e-2
    bump = np.zeros(images.shape, np.float32)
    bump[0, 24, 16, 0] = h
    numeric = (mismatch(x_t + bump) - mismatch(x_t - bump)) / (2 * h)
    scale = np.sqrt(schedule.numpy("alpha_bar")[t])
    correction = x_0[0, 24, 16, 0] - guided_x_0.numpy()[0, 24, 16, 0]
    np.testing.assert_allclose(correction, 0.5 * weight * scale * numeric, rtol=0.05, atol=1e-5)
    np.testing.assert_allclose(guided_x_0.numpy()[:, :16], x_0[:, :16], atol=1e-5)  # known region untouched


def test_a_mask_per_image(network, schedule, images):
    mask = np.zeros(images.shape, bool)
    mask[0, :, :8] = True  # only image 0 keeps anything: its left quarter
    filled = editing.inpaint(network, schedule, images, mask, steps=3)
    np.testing.assert_array_equal(filled[0, :, :8], images[0, :, :8])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda n, s, x: editing.inpaint(n, s, x, np.ones((28, 28, 1))),
         r"mask must have the shape of one image \(32, 32, 1\) or of all images \(6, 32, 32, 1\).*\(28, 28, 1\)"),
        (lambda n, s, x: editing.inpaint(n, s, x, np.full((32, 32, 1), 0.5)), "mask must hold only 0"),
        (lambda n, s, x: editing.inpaint(n, s, x, editing.lower_half_mask(), resample=0),
         "resample must be an integer >= 1"),
        (lambda n, s, x: editing.inpaint(n, s, x, editing.lower_half_mask(), reconstruction_guidance=-1.0),
         r"reconstruction_guidance must be a finite number >= 0 \(0: off\); received -1.0"),
        (lambda n, s, x: editing.inpaint(n, s, x, editing.lower_half_mask(), steps=5, jump=6),
         r"jump must be an integer in \[1, steps=5\]; received 6"),
        (lambda n, s, x: editing.inpaint(n, s, x, editing.lower_half_mask(), labels=10),
         r"labels must be class indices in \[0, 9\]"),
        (lambda n, s, x: editing.sdedit(n, s, x, 0.0, labels=-1), r"labels must be class indices in \[0, 9\]"),
        (lambda n, s, x: editing.sdedit(n, s, (x + 1) * 127.5, 0.3),
         r"images must hold finite values in \[-1, 1\].*to_model_range"),
        (lambda n, s, x: editing.sdedit(n, s, x[:, 2:30, 2:30], 0.3),
         r"images must have shape \(n,\) \+ \(32, 32, 1\); received shape \(6, 28, 28, 1\)"),
        (lambda n, s, x: editing.sdedit(n, s, x.astype(np.uint8), 0.3), "images must be a float array"),
        (lambda n, s, x: editing.sdedit(n, s, x, -0.1), r"strength must be a number in \[0, 1\]"),
        (lambda n, s, x: editing.interpolate(n, s, x[0], x[1], frames=1), "frames must be an integer >= 2"),
    ],
)
def test_bad_editing_inputs_raise_clear_errors(network, schedule, images, call, message):
    with pytest.raises(ValueError, match=message):
        call(network, schedule, images)


def test_guidance_needs_a_conditional_network(schedule, images):
    unconditional = networks.build_network("tiny", num_timesteps=T)
    with pytest.raises(ValueError, match="this network is unconditional"):
        editing.sdedit(unconditional, schedule, images, 0.5, steps=10, labels=8, guidance=3.0)
    with pytest.raises(ValueError, match="needs labels to guide towards"):
        editing.inpaint(unconditional, schedule, images, editing.lower_half_mask(), steps=10, guidance=3.0)


def test_interpolation_frames(network, schedule, images):
    frames = editing.interpolate(network, schedule, images[0], images[1], frames=4, steps=5, labels=2)
    assert frames.shape == (4, 32, 32, 1) and np.isfinite(frames).all()
    assert not np.allclose(frames[0], frames[-1])


# --- warm start ------------------------------------------------------------------------------------------


def test_warm_start_copies_every_layer_and_zeroes_the_new_embedding(tmp_path, images):
    source = networks.build_network("tiny", num_timesteps=T)
    diffusion = dk.DiffusionModel(source, schedule={"name": "cosine", "T": T}, seed=0)
    diffusion.ema_network.set_weights([w * 0.5 for w in source.get_weights()])  # a different EMA
    path = tmp_path / "source.keras"
    diffusion.save(path)
    target = networks.build_network("tiny", num_classes=10, num_timesteps=T)
    assert training.warm_start(target, path) == ["label_embedding"]
    t = np.arange(6, dtype=np.int32)
    expected = diffusion.ema_network([images, t])  # a DiffusionModel file gives its EMA network
    for label in (0, 7, 10):
        np.testing.assert_array_equal(target([images, t, np.full(6, label, np.int32)]), expected)


def test_warm_start_refuses_another_architecture(tmp_path):
    target = networks.build_network("tiny", num_classes=10, num_timesteps=T)
    with pytest.raises(ValueError, match="has no counterpart of the same shapes"):
        training.warm_start(target, networks.build_network("small", num_timesteps=T))
    # the same weights fit a network for 28x28 digits, which the source was not trained on
    unpadded = networks.build_network("tiny", num_classes=10, num_timesteps=T, image_size=28)
    with pytest.raises(ValueError, match=r"shape \(32, 32, 1\), the new one \(28, 28, 1\).*--image-size \(32\)"):
        training.warm_start(unpadded, networks.build_network("tiny", num_timesteps=T))
    with pytest.raises(FileNotFoundError, match="init_from='.*missing.keras' does not exist"):
        training.warm_start(target, tmp_path / "missing.keras")


def test_warm_start_from_a_shipped_name():
    # the shipped unconditional model is train's default network (lean on 28x28 digits), so a conditional
    # network with train's defaults takes all of its weights
    target = networks.build_network("lean", num_classes=10, num_timesteps=1000, image_size=28)
    assert training.warm_start(target, "mnist") == ["label_embedding"]
    shipped = dk.load_pretrained("mnist").ema_network
    np.testing.assert_array_equal(target.get_layer("input_conv").get_weights()[0],
                                  shipped.get_layer("input_conv").get_weights()[0])
