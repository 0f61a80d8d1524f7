"""Tests for diffusion_keras.samplers: mathematical identities between samplers, on real networks.

The network is a tiny but real Keras model (two convolutions plus timestep and label embeddings) that
follows the package's call convention; it is untrained, which is all the identities below need. The
schedules come from the package's real constructors with a small T so that the file runs in about a
minute on two CPU cores.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import diffusion_keras as dk
from diffusion_keras import samplers

T = 50


@keras.saving.register_keras_serializable(package="diffusion_keras_tests")
class TinyDenoiser(keras.Model):
    """A small, smooth denoiser: ``network([x_t, t])`` or ``network([x_t, t, labels])``.

    It counts its executions in a variable (``calls``) and remembers the last batch size, so tests
    can see how often the compiled sampler steps really evaluate it.
    """

    def __init__(self, T=T, num_classes=None, width=8, **kwargs):
        super().__init__(**kwargs)
        self.T, self.num_classes, self.width = T, num_classes, width
        small = keras.initializers.RandomNormal(stddev=0.05, seed=1)
        self.time_embedding = keras.layers.Embedding(T, width, embeddings_initializer=small)
        self.label_embedding = (
            None if num_classes is None else keras.layers.Embedding(num_classes + 1, width)
        )
        self.hidden = keras.layers.Conv2D(
            width, 3, padding="same", kernel_initializer=keras.initializers.GlorotUniform(seed=2)
        )
        self.out = keras.layers.Conv2D(
            1, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=3)
        )
        self.calls = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="calls"
        )
        self.last_batch = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="last_batch"
        )

    def call(self, inputs):
        x_t, t = inputs[0], inputs[1]
        condition = self.time_embedding(t)  # (batch, width)
        if self.label_embedding is not None:
            condition = condition + self.label_embedding(inputs[2])
        hidden = keras.ops.tanh(self.hidden(x_t) + condition[:, None, None, :])
        self.calls.assign_add(1)
        self.last_batch.assign(keras.ops.cast(keras.ops.shape(x_t)[0], "int32"))
        return self.out(hidden) + 0.9 * x_t  # keeps x_0 predictions of this untrained net in range

    def get_config(self):
        return {**super().get_config(), "T": self.T, "num_classes": self.num_classes, "width": self.width}


@pytest.fixture(scope="module")
def schedule():
    return dk.schedules.linear(T=T, beta_start=1e-3, beta_end=0.2)


def built(network):
    """Call the network once so that its variables exist before any compiled sampler step."""
    inputs = [np.zeros((1, 32, 32, 1), np.float32), np.zeros(1, np.int32)]
    network(inputs + ([np.zeros(1, np.int32)] if network.num_classes else []))
    return network


@pytest.fixture(scope="module")
def network():
    return built(TinyDenoiser())


@pytest.fixture(scope="module")
def conditional_network():
    return built(TinyDenoiser(num_classes=10))


# --- timesteps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "T_, steps, spacing, expected",
    [
        (50, 7, "leading", [42, 35, 28, 21, 14, 7, 0]),
        (50, 7, "trailing", [49, 42, 35, 28, 20, 13, 6]),
        (50, 7, "linspace", [49, 41, 33, 24, 16, 8, 0]),  # 24.5 rounds half to even
        (1000, 10, "leading", [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]),
        (1000, 10, "trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
        (1000, 10, "linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
        (10, 4, "leading", [6, 4, 2, 0]),
        (10, 4, "trailing", [9, 7, 4, 1]),  # 7.5 -> 8 and 2.5 -> 2 (half to even), minus 1
        (10, 4, "linspace", [9, 6, 3, 0]),
        (10, 1, "trailing", [9]),
    ],
)
def test_timestep_spacings_match_their_definitions(T_, steps, spacing, expected):
    assert samplers.timesteps(T_, steps, spacing).tolist() == expected


@pytest.mark.parametrize("steps", [5, 8, 10, 15, 16, 20, 25, 50, 100, 250, 1000])
def test_timestep_spacings_match_the_floating_point_forms_for_usual_step_counts(steps):
    T_ = 1000
    trailing = np.round(np.arange(T_, 0, -T_ / steps)) - 1
    linspace = np.round(np.linspace(0, T_ - 1, steps))[::-1]
    leading = (np.arange(0, steps) * (T_ // steps))[::-1]
    np.testing.assert_array_equal(samplers.timesteps(T_, steps, "trailing"), trailing)
    np.testing.assert_array_equal(samplers.timesteps(T_, steps, "linspace"), linspace)
    np.testing.assert_array_equal(samplers.timesteps(T_, steps, "leading"), leading)


def test_exact_ties_round_half_to_even():
    # 50 - 3 * 50 / 12 = 37.5 -> 38 - 1 = 37 whatever the floating-point error of 50 / 12 says
    assert samplers.timesteps(50, 12, "trailing")[3] == 37
    assert len(samplers.timesteps(50, 29, "trailing")) == 29  # arange(50, 0, -50 / 29) has 30 values


@pytest.mark.parametrize("spacing", samplers.TIMESTEP_SPACINGS)
def test_all_steps_visit_every_timestep(spacing):
    assert samplers.timesteps(T, T, spacing).tolist() == list(range(T - 1, -1, -1))


# --- identities between samplers ---------------------------------------------------------------------


def test_ddim_eta_one_over_all_steps_is_ddpm_with_posterior_variance(network, schedule):
    # Same seed -> same x_T and the same noise at every timestep, so the two chains must coincide.
    ddpm = samplers.ddpm_sample(network, schedule, clip_x0=False, n=4, variance="beta_tilde", seed=3)
    ddim = samplers.ddim_sample(network, schedule, clip_x0=False, steps=T, n=4, eta=1.0, seed=3)
    np.testing.assert_allclose(ddim, ddpm, rtol=1e-5, atol=1e-5)
    # ...and the other DDPM variance is a different chain.
    other = samplers.ddpm_sample(network, schedule, clip_x0=False, n=4, variance="beta", seed=3)
    assert np.abs(other - ddpm).max() > 1e-2


def test_ddpm_step_is_algorithm_2(network, schedule):
    """The posterior-mean form equals Ho et al.'s Algorithm 2 line 4 for an epsilon network."""
    result = samplers.ddpm_sample(network, schedule, clip_x0=False, n=2, seed=5, return_trajectory=True)
    betas, alphas = schedule.numpy("betas"), schedule.numpy("alphas")
    alpha_bar, variance = schedule.numpy("alpha_bar"), schedule.numpy("posterior_variance")
    for index in (0, T // 2, T - 2):  # steps leaving t = T-1, ..., check a few
        t = T - 1 - index
        x_t = result.x_t_trajectory[index].astype(np.float64)
        eps = network([tf.constant(x_t, tf.float32), tf.fill([2], t)]).numpy().astype(np.float64)
        mean = (x_t - betas[t] / np.sqrt(1 - alpha_bar[t]) * eps) / np.sqrt(alphas[t])
        z = tf.random.stateless_normal(x_t.shape, seed=tf.constant([5, t + 1], tf.int64)).numpy()
        expected = mean + np.sqrt(variance[t]) * z
        np.testing.assert_allclose(result.x_t_trajectory[index + 1], expected, atol=5e-5)


class GaussianOracle(keras.Model):
    """The exact x_0 predictor for data x_0 ~ N(0, c^2 I): E[x_0 | x_t] = a c^2 x_t / (a^2 c^2 + s^2).

    For this data the probability-flow ODE is solved in closed form: x_t / sqrt(a_t^2 c^2 + s_t^2)
    stays constant, so deterministic samplers can be compared against the exact answer.
    """

    num_classes = None

    def __init__(self, schedule, spread, **kwargs):
        super().__init__(**kwargs)
        self.alpha_bar = schedule.numpy("alpha_bar").astype(np.float32)
        self.spread = spread

    def call(self, inputs):
        x_t, t = inputs[0], inputs[1]
        alpha_bar = keras.ops.reshape(keras.ops.take(self.alpha_bar, t), (-1, 1, 1, 1))
        variance = self.spread**2
        return keras.ops.sqrt(alpha_bar) * variance * x_t / (alpha_bar * variance + 1.0 - alpha_bar)


def test_dpm_solver_pp_2m_is_second_order_on_an_exact_ode():
    """Halving the step size halves DDIM's error (first order) and quarters DPM-Solver++(2M)'s.

    "linspace" spacing ends at t = 0, so the final jump to x_0 adds almost no error of its own.
    Measured max errors (cosine T=1000, c=0.5): order 1: 0.073 -> 0.036, order 2: 0.049 -> 0.012.
    """
    schedule, spread = dk.schedules.cosine(T=1000), 0.5
    oracle = GaussianOracle(schedule, spread)
    x_T = np.random.default_rng(1).standard_normal((2, 32, 32, 1)).astype(np.float32)
    alpha_bar_start = schedule.numpy("alpha_bar")[-1]
    exact = spread * x_T / np.sqrt(alpha_bar_start * spread**2 + 1.0 - alpha_bar_start)
    errors = {}
    for order in (1, 2):
        for steps in (40, 80):
            images = samplers.dpm_solver_pp_2m_sample(
                oracle, schedule, steps, x_T=x_T, target="x0", order=order, spacing="linspace", clip_x0=False
            )
            errors[order, steps] = np.abs(images - exact).max()
    assert 0.4 < errors[1, 80] / errors[1, 40] < 0.6
    assert errors[2, 80] / errors[2, 40] < 0.3


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_first_order_dpm_solver_pp_is_ddim_eta_zero(network, schedule, spacing):
    ddim = samplers.ddim_sample(network, schedule, clip_x0=False, steps=10, n=4, eta=0.0, spacing=spacing, seed=1)
    first = samplers.dpm_solver_pp_2m_sample(
        network, schedule, steps=10, n=4, order=1, spacing=spacing, seed=1, clip_x0=False
    )
    np.testing.assert_allclose(first, ddim, rtol=1e-5, atol=1e-5)
    second = samplers.dpm_solver_pp_2m_sample(
        network, schedule, steps=10, n=4, order=2, spacing=spacing, seed=1, clip_x0=False
    )
    assert np.all(np.isfinite(second)) and np.abs(second - first).max() > 1e-4


def test_ddim_inversion_round_trip(network, schedule, digits):
    """Invert 4 real digits and decode them again: the error is first order in the step size.

    Tolerance: max |error| < 0.1 on [-1, 1] images with all 50 steps (measured 0.079; mean 0.038), and
    halving the step count roughly doubles it (measured 0.16 at 25 steps). With T = 1000 and 1000
    steps the same network measures 0.0033.
    """
    images = digits[:4]
    errors = {}
    for steps in (T // 2, T):
        latents = samplers.ddim_invert(network, schedule, images, steps=steps)
        assert np.abs(latents - images).max() > 0.5  # it really went somewhere noisy
        again = samplers.ddim_sample(network, schedule, clip_x0=False, steps=steps, x_T=latents, eta=0.0)
        errors[steps] = np.abs(again - images).max()
    assert errors[T] < 0.1
    assert errors[T] < 0.6 * errors[T // 2]


def test_ddim_inversion_is_exact_for_a_network_that_ignores_x(schedule, digits):
    """With eps independent of x_t the ODE's Euler steps are exact in both directions."""

    class ConstantNoise(keras.Model):
        num_classes = None

        def call(self, inputs):
            return keras.ops.zeros_like(inputs[0]) + 0.3

    images = digits[:2]
    constant = ConstantNoise()
    latents = samplers.ddim_invert(constant, schedule, images, steps=10)
    again = samplers.ddim_sample(constant, schedule, steps=10, x_T=latents)
    np.testing.assert_allclose(again, images, atol=1e-4)


# --- determinism, targets, trajectories --------------------------------------------------------------


def test_same_seed_same_images(network, schedule):
    first = samplers.ddim_sample(network, schedule, steps=5, n=3, eta=0.5, seed=11)
    second = samplers.ddim_sample(network, schedule, steps=5, n=3, eta=0.5, seed=11)
    other = samplers.ddim_sample(network, schedule, steps=5, n=3, eta=0.5, seed=12)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - other).max() > 1e-2
    # an explicit x_T equal to the seeded one gives the same deterministic run
    x_T = samplers.ddim_sample(
        network, schedule, steps=1, n=3, seed=11, return_trajectory=True
    ).x_t_trajectory[0]
    a = samplers.ddim_sample(network, schedule, steps=5, x_T=x_T, n=None, seed=0)
    b = samplers.ddim_sample(network, schedule, steps=5, n=3, seed=11)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("target", dk.forward.PREDICTION_TARGETS)
@pytest.mark.parametrize("sampler", samplers.SAMPLER_NAMES)
def test_every_target_runs(network, schedule, target, sampler):
    images = samplers.sample(network, schedule, sampler, steps=None if sampler == "ddpm" else 4, n=2,
                             target=target, clip_x0=True)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32
    assert np.all(np.abs(images) <= 1.0 + 1e-5)  # the last step returns the clipped x_0 prediction


def test_trajectory_shapes(network, schedule, capsys):
    result = samplers.dpm_solver_pp_2m_sample(
        network, schedule, steps=6, n=2, return_trajectory=True, progress=True
    )
    assert result.x_t_trajectory.shape == (7, 2, 32, 32, 1)
    assert result.x0_trajectory.shape == (6, 2, 32, 32, 1)
    assert result.timesteps.tolist() == samplers.timesteps(T, 6).tolist()
    np.testing.assert_array_equal(result.images, result.x_t_trajectory[-1])
    np.testing.assert_allclose(result.images, result.x0_trajectory[-1], atol=1e-6)  # last step lands on x_0
    assert "6/6" in capsys.readouterr().out  # the Keras progress bar reached the last step


# --- guidance -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["epsilon", "x0"])
def test_guidance_matches_hand_computation_in_one_batched_call(conditional_network, schedule, target):
    network, n, w = conditional_network, 3, 2.5
    labels = np.array([1, 4, 7], np.int32)
    x_T = np.random.default_rng(0).standard_normal((n, 32, 32, 1)).astype(np.float32)
    calls_before = int(network.calls.numpy())
    images = samplers.ddim_sample(network, schedule, clip_x0=False, steps=1, x_T=x_T, n=None, labels=labels,
                                  guidance=w, target=target)
    assert int(network.calls.numpy()) - calls_before == 1  # conditional + unconditional in one call
    assert int(network.last_batch.numpy()) == 2 * n
    # By hand: a one-step trailing DDIM evaluates at t = T-1 and returns the guided x_0 prediction.
    t = np.full(n, T - 1, np.int32)
    conditional = network([x_T, t, labels]).numpy().astype(np.float64)
    unconditional = network([x_T, t, np.full(n, 10, np.int32)]).numpy().astype(np.float64)
    a, s = np.sqrt(schedule.numpy("alpha_bar")[T - 1]), np.sqrt(1 - schedule.numpy("alpha_bar")[T - 1])
    if target == "epsilon":
        eps = unconditional + w * (conditional - unconditional)
        expected = (x_T - s * eps) / a
    else:  # mixing x_0 predictions with the same weights is the same (the conversions are affine)
        expected = unconditional + w * (conditional - unconditional)
    np.testing.assert_allclose(images, expected, atol=1e-4)


def test_guidance_one_is_a_single_conditional_batch(conditional_network, schedule):
    samplers.ddim_sample(conditional_network, schedule, steps=2, n=3, labels=5)
    assert int(conditional_network.last_batch.numpy()) == 3
    samplers.ddim_sample(conditional_network, schedule, steps=2, n=3)  # null label: unconditional
    assert int(conditional_network.last_batch.numpy()) == 3


# --- speed: tracing -----------------------------------------------------------------------------------


def test_each_step_is_traced_once(schedule):
    network = TinyDenoiser()
    samplers.ddim_sample(network, schedule, steps=5, n=2, seed=0)
    (function,) = [entry[1] for entry in samplers._step_cache[network].values()]
    assert function.experimental_get_tracing_count() == 1
    calls = int(network.calls.numpy())
    samplers.ddim_sample(network, schedule, steps=17, n=2, seed=4)
    assert function.experimental_get_tracing_count() == 1  # 22 steps over two calls, one trace
    assert int(network.calls.numpy()) - calls == 17


# --- helpers --------------------------------------------------------------------------------------------


def test_slerp_keeps_endpoints_and_norm():
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal((2, 32, 32, 1))
    path = samplers.slerp(z0, z1, np.linspace(0, 1, 5))
    assert path.shape == (5, 32, 32, 1)
    np.testing.assert_allclose(path[0], z0, atol=1e-6)
    np.testing.assert_allclose(path[-1], z1, atol=1e-6)
    norms = np.linalg.norm(path.reshape(5, -1), axis=1)
    assert norms.min() > 0.95 * min(np.linalg.norm(z0), np.linalg.norm(z1))
    np.testing.assert_allclose(samplers.slerp(z0, z0, 0.3), z0, atol=1e-6)


def test_bench_samplers_reports_overhead():
    schedule = dk.schedules.linear(T=8, beta_start=1e-3, beta_end=0.2)
    network = TinyDenoiser(T=8)
    rows = samplers.bench_samplers(network, schedule, steps=(4, 8, 1000), n=2, repeats=1)
    assert [(row["sampler"], row["steps"]) for row in rows] == [
        ("ddpm", 8), ("ddim", 4), ("ddim", 8), ("dpm_solver_pp_2m", 4), ("dpm_solver_pp_2m", 8)
    ]
    for row in rows:
        assert row["images_per_second"] > 0 and np.isfinite(row["overhead"])


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda n, s: samplers.ddim_sample(n, s, steps=0), "steps must be an integer in \\[1, T\\]"),
        (lambda n, s: samplers.ddim_sample(n, s, steps=T + 1), "received 51"),
        (lambda n, s: samplers.ddim_sample(n, s, steps=2.5), "steps"),
        (lambda n, s: samplers.ddim_sample(n, s, eta=-0.1), "eta must be a number in \\[0, 1\\]"),
        (lambda n, s: samplers.ddim_sample(n, s, eta=1.5), "received 1.5"),
        (lambda n, s: samplers.ddim_sample(n, s, spacing="uniform"), "spacing must be one of"),
        (lambda n, s: samplers.sample(n, s, "euler"), "sampler must be one of \\('ddpm', 'ddim'"),
        (lambda n, s: samplers.sample(n, s, "ddpm", steps=10), "runs all T = 50 steps"),
        (lambda n, s: samplers.ddim_sample(n, s, labels=[1, 2]), "this network is unconditional"),
        (
            lambda n, s: samplers.ddim_sample(n, s, x_T=np.zeros((2, 28, 28, 1), np.float32)),
            "x_T must have shape",
        ),
        (lambda n, s: samplers.ddim_sample(n, s, n=3, x_T=np.zeros((2, 32, 32, 1), np.float32)), "n=3"),
        (lambda n, s: samplers.ddim_sample(n, s, target="score"), "target must be one of"),
        (lambda n, s: samplers.ddpm_sample(n, s, variance="large"), "variance must be one of"),
        (lambda n, s: samplers.dpm_solver_pp_2m_sample(n, s, order=3), "order must be 1 or 2"),
        (lambda n, s: samplers.ddim_sample(n, s, guidance=2.0), "needs labels"),
        (lambda n, s: samplers.ddim_sample(n, dk.schedules.article(), steps=5), "variance-preserving"),
        (lambda n, s: samplers.ddim_sample(n, s, n=0), "n must be an integer >= 1"),
        (lambda n, s: samplers.ddim_sample(n, s, seed=-1), "seed must be"),
    ],
)
def test_bad_input_raises_clear_errors(network, schedule, call, message):
    with pytest.raises(ValueError, match=message):
        call(network, schedule)


@pytest.mark.parametrize(
    "labels, guidance, message",
    [
        ([0, 10], 1.0, "labels must be class indices in \\[0, 9\\]"),
        ([0, -1], 2.0, "received values from -1"),
        ([0, 1, 2], 1.0, "labels must have shape \\(n,\\) = \\(2,\\)"),
        ([0.5, 1.0], 1.0, "labels must be integers"),
        ([0, 1], -1.0, "guidance must be a finite number >= 0"),
    ],
)
def test_bad_labels_raise_clear_errors(conditional_network, schedule, labels, guidance, message):
    with pytest.raises(ValueError, match=message):
        samplers.ddim_sample(conditional_network, schedule, steps=2, n=2, labels=labels, guidance=guidance)


# --- the sample command ---------------------------------------------------------------------------------


def _sample_args(*argv):
    import argparse

    from diffusion_keras import sample_cli

    return sample_cli.add_sample_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_sample_command_writes_grid_and_arrays(tmp_path, conditional_network):
    from diffusion_keras import sample_cli

    weights = tmp_path / "network.keras"
    conditional_network.save(weights)
    args = _sample_args(
        "--weights", str(weights), "--schedule", "linear", "--T", "20", "--target", "v", "--n", "4",
        "--sampler", "dpm_solver_pp_2m", "--steps", "3", "--label", "7", "--guidance", "2",
        "--out", str(tmp_path / "grid.png"), "--npz", str(tmp_path / "digits.npz"),
    )
    assert sample_cli.run_sample(args) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    arrays = np.load(tmp_path / "digits.npz")
    assert arrays["images"].shape == (4, 28, 28) and arrays["images"].dtype == np.uint8
    assert arrays["images_float"].shape == (4, 32, 32, 1)
    assert arrays["labels"].tolist() == [7, 7, 7, 7]


def test_sample_command_errors(tmp_path, network, monkeypatch):
    from diffusion_keras import sample_cli

    from diffusion_keras import pretrained

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "pretrained")
    with pytest.raises(FileNotFoundError, match="pretrained model 'mnist' should be at .*does not exist"):
        sample_cli.run_sample(_sample_args())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sample_cli.run_sample(_sample_args("--weights", str(tmp_path / "nowhere.keras")))
    weights = tmp_path / "network.keras"
    network.save(weights)
    with pytest.raises(ValueError, match="network alone.*--schedule"):
        sample_cli.run_sample(_sample_args("--weights", str(weights)))
    with pytest.raises(ValueError, match="this network is unconditional"):
        sample_cli.run_sample(_sample_args("--weights", str(weights), "--schedule", "linear", "--T", "50",
                                           "--target", "epsilon", "--label", "3", "--n", "2"))


def test_sample_command_with_a_whole_diffusion_model(tmp_path):
    """A saved DiffusionModel brings its schedule and target; its EMA U-Net is sampled with guidance."""
    from diffusion_keras import model, networks, sample_cli

    network = networks.build_network("tiny", num_classes=10, num_timesteps=20)
    diffusion = model.DiffusionModel(network, schedule={"name": "cosine", "T": 20}, target="v", seed=0)
    weights = tmp_path / "model.keras"
    diffusion.save(weights)
    loaded_network, schedule, target = sample_cli.load_for_sampling(weights)
    assert (schedule.T, schedule.name, target, loaded_network.num_classes) == (20, "cosine", "v", 10)
    args = _sample_args("--weights", str(weights), "--n", "2", "--steps", "2", "--label", "3",
                        "--guidance", "2.5", "--out", str(tmp_path / "grid.png"))
    assert sample_cli.run_sample(args) == 0 and (tmp_path / "grid.png").exists()
    with pytest.raises(ValueError, match="--schedule is only for a file holding a network alone"):
        sample_cli.run_sample(_sample_args("--weights", str(weights), "--schedule", "linear"))


def test_n_defaults_to_one_image_per_label(conditional_network, schedule):
    images = samplers.ddim_sample(conditional_network, schedule, steps=2, labels=np.array([3, 1, 4]))
    assert images.shape == (3, 32, 32, 1)
    with pytest.raises(ValueError, match=r"labels must have shape \(n,\) = \(2,\)"):
        samplers.ddim_sample(conditional_network, schedule, steps=2, n=2, labels=np.array([3, 1, 4]))
