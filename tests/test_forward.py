"""Forward noising on real MNIST digits: closed form, iterated process and prediction conversions."""

import numpy as np
import pytest

from diffusion_keras import forward, schedules


def test_q_sample_is_the_closed_form(digits, rng):
    schedule = schedules.linear()
    t = np.array([0, 250, 500, 999] * 16, dtype=np.int32)
    noise = rng.standard_normal(digits.shape).astype(np.float32)
    x_t = np.asarray(forward.q_sample(digits, t, noise, schedule))
    alpha_bar = schedule.numpy("alpha_bar")[t][:, None, None, None]
    expected = np.sqrt(alpha_bar) * digits + np.sqrt(1 - alpha_bar) * noise  # Ho et al. 2020, Eq. 4
    np.testing.assert_allclose(x_t, expected, atol=2e-6)


@pytest.mark.parametrize("name, t", [("linear", 5), ("cosine", 60), ("article", 49)])
def test_closed_form_and_iterated_process_agree_in_distribution(digits, name, t):
    """Many draws of x_t from one digit: same per-pixel mean and variance from both routes."""
    schedule = schedules.get(name, T=100) if name != "article" else schedules.article()
    draws = 4000
    x_0 = np.repeat(digits[3:4], draws, axis=0)  # (draws, 32, 32, 1), one digit repeated
    steps = np.full(draws, t, dtype=np.int32)
    iterated = np.asarray(forward.q_sample_stepwise(x_0, steps, schedule, seed=1))
    noise = np.random.default_rng(2).standard_normal(x_0.shape).astype(np.float32)
    closed = np.asarray(forward.q_sample(x_0, steps, noise, schedule))
    signal, sigma = schedule.numpy("signal_scale")[t], schedule.numpy("noise_scale")[t]
    # standard error of a per-pixel mean over `draws` samples is sigma / sqrt(draws)
    tolerance = 5 * sigma / np.sqrt(draws)
    for samples in (iterated, closed):
        mean_error = np.abs(samples.mean(axis=0) - signal * digits[3])
        assert np.mean(mean_error) < tolerance
        # the per-image pooled variance of the noise part matches sigma^2 within 3 %
        assert np.var(samples - signal * digits[3]) == pytest.approx(sigma**2, rel=0.03)
    assert np.abs(iterated.mean(axis=0) - closed.mean(axis=0)).max() < 10 * sigma / np.sqrt(draws)


def test_stepwise_gives_each_image_its_own_number_of_steps(digits):
    schedule = schedules.linear(T=50)
    t = np.array([0, 49], dtype=np.int32)
    x = np.asarray(forward.q_sample_stepwise(digits[:2], t, schedule, seed=0))
    # one step keeps the digit nearly intact; 50 steps of linear betas leave much less of it
    correlation = [np.corrcoef(x[i].ravel(), digits[i].ravel())[0, 1] for i in range(2)]
    assert correlation[0] > 0.95 > correlation[1]


def test_stepwise_is_seeded(digits):
    schedule = schedules.cosine(T=20)
    t = np.full(4, 19, dtype=np.int32)
    first = forward.q_sample_stepwise(digits[:4], t, schedule, seed=7)
    second = forward.q_sample_stepwise(digits[:4], t, schedule, seed=7)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


@pytest.mark.parametrize("name", ["linear", "cosine", "article"])
@pytest.mark.parametrize("source", forward.PREDICTION_TARGETS)
@pytest.mark.parametrize("target", forward.PREDICTION_TARGETS)
def test_conversions_recover_the_truth(digits, rng, name, source, target):
    """Exact eps/x0/v computed from (x_0, noise) convert into each other exactly."""
    schedule = schedules.get(name)
    t = rng.integers(0, schedule.T, size=len(digits)).astype(np.int32)
    noise = rng.standard_normal(digits.shape).astype(np.float32)
    x_t = forward.q_sample(digits, t, noise, schedule)
    truth = {key: forward.prediction_target(digits, noise, t, schedule, key) for key in forward.PREDICTION_TARGETS}
    converted = forward.convert_prediction(truth[source], x_t, t, schedule, source, target)
    # eps -> x0 divides by signal_scale, tiny near t = T for cosine: compare where it is well conditioned
    signal = schedule.numpy("signal_scale")[t]
    noise_scale = schedule.numpy("noise_scale")[t]
    keep = (signal > 0.05) & (noise_scale > 0.05)
    np.testing.assert_allclose(np.asarray(converted)[keep], np.asarray(truth[target])[keep], atol=2e-4)


def test_v_is_defined_as_in_salimans_and_ho(digits, rng):
    schedule = schedules.cosine()
    t = np.full(len(digits), 300, dtype=np.int32)
    noise = rng.standard_normal(digits.shape).astype(np.float32)
    v = np.asarray(forward.prediction_target(digits, noise, t, schedule, "v"))
    alpha, sigma = schedule.numpy("sqrt_alpha_bar")[300], schedule.numpy("sqrt_one_minus_alpha_bar")[300]
    np.testing.assert_allclose(v, alpha * noise - sigma * digits, atol=1e-6)


def test_bad_inputs_raise_clear_errors(digits):
    schedule = schedules.linear(T=10)
    noise = np.zeros_like(digits)
    t = np.zeros(len(digits), dtype=np.int32)
    with pytest.raises(ValueError, match=r"t must be in \[0, T-1\] = \[0, 9\].*received values from 0 to 10"):
        forward.q_sample(digits, np.full(len(digits), 10, np.int32) * (np.arange(len(digits)) % 2), noise, schedule)
    with pytest.raises(ValueError, match="t must be an integer tensor"):
        forward.q_sample(digits, t.astype(np.float32), noise, schedule)
    with pytest.raises(ValueError, match=r"t must have shape \(batch,\) = \(64,\), one timestep per image; received shape \(3,\)"):
        forward.q_sample(digits, t[:3], noise, schedule)
    with pytest.raises(ValueError, match=r"noise must have the same shape as x_0"):
        forward.q_sample(digits, t, noise[:, :28], schedule)
    with pytest.raises(ValueError, match="x_0 must be a float tensor.*received dtype uint8"):
        forward.q_sample(digits.astype(np.uint8), t, noise, schedule)
    with pytest.raises(ValueError, match="target must be one of"):
        forward.prediction_target(digits, noise, t, schedule, "score")
    with pytest.raises(ValueError, match="source must be one of"):
        forward.convert_prediction(noise, digits, t, schedule, "noise", "x0")
