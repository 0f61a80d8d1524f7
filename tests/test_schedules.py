"""Schedules against their published definitions, written here independently, one scalar at a time."""

import math

import numpy as np
import pytest

from diffusion_keras import schedules

# 0-based indices to probe: first, early, middle, late, last
PROBES = (0, 1, 17, 499, 998, 999)


def published_linear_beta(t, T=1000, start=1e-4, end=0.02):
    # Ho et al. 2020, Sec. 4: betas increase linearly from 1e-4 (step 1) to 0.02 (step T)
    return start + (end - start) * t / (T - 1)


def published_cosine_alpha_bar(t, T=1000, s=0.008):
    # Nichol & Dhariwal 2021, Eq. 17; index t is step t + 1
    f = lambda step: math.cos((step / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t + 1) / f(0)


def published_sigmoid_beta(t, T=1000, start=1e-4, end=0.02):
    # Xu et al. 2022 (GeoDiff): sigmoid(linspace(-6, 6, T)) * (end - start) + start
    x = -6 + 12 * t / (T - 1)
    return 1 / (1 + math.exp(-x)) * (end - start) + start


@pytest.mark.parametrize("t", PROBES)
def test_linear_matches_ho_et_al(t):
    schedule = schedules.linear()
    beta = published_linear_beta(t)
    alpha_bar = math.prod(1 - published_linear_beta(s) for s in range(t + 1))
    assert schedule.numpy("betas")[t] == pytest.approx(beta, rel=1e-12)
    assert schedule.numpy("alpha_bar")[t] == pytest.approx(alpha_bar, rel=1e-10)
    # and the float32 tensors carry the same numbers to float32 precision
    np.testing.assert_allclose(np.asarray(schedule.alpha_bar)[t], alpha_bar, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(schedule.betas)[t], beta, rtol=2e-6)


@pytest.mark.parametrize("t", PROBES)
def test_cosine_matches_nichol_and_dhariwal(t):
    schedule = schedules.cosine()
    alpha_bar = published_cosine_alpha_bar(t)
    previous = published_cosine_alpha_bar(t - 1) if t > 0 else 1.0
    beta = min(1 - alpha_bar / previous, 0.999)
    assert schedule.numpy("betas")[t] == pytest.approx(beta, rel=1e-9)
    if t < 999:  # only the last beta is clipped; before it, alpha_bar is exactly f(t)/f(0)
        assert schedule.numpy("alpha_bar")[t] == pytest.approx(alpha_bar, rel=1e-9)
        np.testing.assert_allclose(np.asarray(schedule.alpha_bar)[t], alpha_bar, rtol=2e-6)


def test_cosine_clips_only_the_last_beta():
    betas = schedules.cosine().numpy("betas")
    assert betas[-1] == 0.999
    assert np.all(betas[:-1] < 0.999)


@pytest.mark.parametrize("t", PROBES)
def test_sigmoid_matches_geodiff(t):
    schedule = schedules.sigmoid()
    assert schedule.numpy("betas")[t] == pytest.approx(published_sigmoid_beta(t), rel=1e-12)
    np.testing.assert_allclose(np.asarray(schedule.betas)[t], published_sigmoid_beta(t), rtol=2e-6)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_derived_quantities_follow_their_definitions(name):
    schedule = schedules.get(name)
    betas = schedule.numpy("betas")
    alpha_bar = schedule.numpy("alpha_bar")
    for t in PROBES[1:]:
        ab, ab_prev, beta = alpha_bar[t], alpha_bar[t - 1], betas[t]
        assert schedule.numpy("alphas")[t] == pytest.approx(1 - beta)
        assert schedule.numpy("alpha_bar_prev")[t] == pytest.approx(ab_prev)
        assert schedule.numpy("sqrt_alpha_bar")[t] == pytest.approx(math.sqrt(ab))
        assert schedule.numpy("sqrt_one_minus_alpha_bar")[t] == pytest.approx(math.sqrt(1 - ab))
        assert schedule.numpy("snr")[t] == pytest.approx(ab / (1 - ab))
        assert schedule.numpy("log_snr")[t] == pytest.approx(math.log(ab / (1 - ab)))
        # Ho et al. 2020, Eq. 7
        assert schedule.numpy("posterior_variance")[t] == pytest.approx(beta * (1 - ab_prev) / (1 - ab))
        assert schedule.numpy("posterior_mean_coef1")[t] == pytest.approx(beta * math.sqrt(ab_prev) / (1 - ab))
        assert schedule.numpy("posterior_mean_coef2")[t] == pytest.approx(
            (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab)
        )
    # the first posterior variance is 0 and its log is clipped to the second value
    assert schedule.numpy("posterior_variance")[0] == 0.0
    log_variance = schedule.numpy("posterior_log_variance_clipped")
    assert log_variance[0] == log_variance[1] == pytest.approx(math.log(schedule.numpy("posterior_variance")[1]))


def test_posterior_mean_reproduces_x_t_minus_1_from_x0_and_xt():
    """mu_tilde is the mean of q(x_{t-1}|x_t,x_0): check it against Bayes' rule on Gaussians directly."""
    schedule = schedules.linear(T=100)
    t = 40
    ab, ab_prev, beta = (schedule.numpy(k)[t] for k in ("alpha_bar", "alpha_bar_prev", "betas"))
    # q(x_{t-1}|x_0) = N(sqrt(ab_prev) x0, 1-ab_prev), q(x_t|x_{t-1}) = N(sqrt(1-beta) x_{t-1}, beta)
    x_0, x_t = 0.7, -0.3
    precision = 1 / (1 - ab_prev) + (1 - beta) / beta
    mean = (math.sqrt(ab_prev) * x_0 / (1 - ab_prev) + math.sqrt(1 - beta) * x_t / beta) / precision
    coef1, coef2 = schedule.numpy("posterior_mean_coef1")[t], schedule.numpy("posterior_mean_coef2")[t]
    assert coef1 * x_0 + coef2 * x_t == pytest.approx(mean, rel=1e-10)
    assert schedule.numpy("posterior_variance")[t] == pytest.approx(1 / precision, rel=1e-10)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "article"])
def test_signal_falls_and_snr_is_monotone(name):
    schedule = schedules.get(name)
    snr = schedule.numpy("snr")
    assert np.all(np.diff(snr) < 0)
    assert np.all(np.diff(schedule.numpy("log_snr")) < 0)
    assert np.all(np.diff(schedule.numpy("noise_scale")) > 0)
    if name != "article":
        assert np.all(np.diff(schedule.numpy("alpha_bar")) < 0)
        # variance preserving: signal^2 + noise^2 = 1
        np.testing.assert_allclose(
            schedule.numpy("signal_scale") ** 2 + schedule.numpy("noise_scale") ** 2, 1.0, rtol=1e-12
        )


def test_article_process_matches_its_definition():
    schedule = schedules.article()
    assert schedule.T == 50
    for i in (1, 2, 25, 50):  # the article's 1-based step index
        step_size = 0.01 * math.exp(-(i - 1) / 50)
        assert schedule.numpy("step_size")[i - 1] == pytest.approx(step_size, rel=1e-12)
        assert schedule.numpy("step_noise_scale")[i - 1] == pytest.approx(math.sqrt(2 * step_size))
        variance = sum(2 * 0.01 * math.exp(-(k - 1) / 50) for k in range(1, i + 1))
        assert schedule.numpy("noise_scale")[i - 1] == pytest.approx(math.sqrt(variance), rel=1e-12)
        assert schedule.numpy("snr")[i - 1] == pytest.approx(1 / variance, rel=1e-12)
    np.testing.assert_array_equal(schedule.numpy("signal_scale"), 1.0)
    # the process never destroys the signal: SNR at the end stays above 1
    assert schedule.numpy("snr")[-1] > 1.0


def test_tensors_are_float32_and_numpy_is_float64():
    schedule = schedules.cosine(T=10)
    assert schedule.alpha_bar.dtype.name == "float32"
    assert schedule.numpy("alpha_bar").dtype == np.float64
    assert "posterior_variance" in schedule.fields


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "article"])
def test_get_config_round_trips(name):
    schedule = schedules.get(name, T=20)
    rebuilt = schedules.get(**schedule.get_config())
    for field in schedule.fields:
        np.testing.assert_array_equal(schedule.numpy(field), rebuilt.numpy(field))


def test_custom_betas_round_trip():
    schedule = schedules.NoiseSchedule(np.linspace(0.01, 0.2, 7))
    rebuilt = schedules.get(**schedule.get_config())
    np.testing.assert_array_equal(schedule.numpy("alpha_bar"), rebuilt.numpy("alpha_bar"))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: schedules.NoiseSchedule([0.1, 1.0]), r"every beta must be in the open interval \(0, 1\)"),
        (lambda: schedules.NoiseSchedule([0.0, 0.1]), r"every beta must be in the open interval \(0, 1\)"),
        (lambda: schedules.NoiseSchedule([]), "T >= 1"),
        (lambda: schedules.linear(T=0), "T must be an integer >= 1; received 0"),
        (lambda: schedules.cosine(T=2.5), "T must be an integer >= 1; received 2.5"),
        (lambda: schedules.linear(beta_end=1.5), r"beta_end must be in the open interval \(0, 1\); received 1.5"),
        (lambda: schedules.linear(beta_start=0.1, beta_end=0.01), "beta_start must be <= beta_end"),
        (lambda: schedules.cosine(max_beta=1.0), "max_beta"),
        (lambda: schedules.article(alpha_0=-1), "alpha_0 must be a finite number > 0; received -1"),
        (lambda: schedules.get("quadratic"), "Unknown schedule name 'quadratic'; expected one of"),
        (lambda: schedules.linear().numpy("gamma"), "name must be one of"),
        (lambda: schedules.log_snr_normal_probabilities(schedules.cosine(), 2.4, 0.0), r"std > 0.*received \(2.4, 0.0\)"),
        (lambda: schedules.log_snr_normal_probabilities(schedules.cosine(), math.nan, 1.0), "two finite numbers"),
        (lambda: schedules.check_log_snr_normal(2.4), r"log_snr_normal must be None \(t uniform\) or \(mean, std\).*received 2.4"),
        (lambda: schedules.check_log_snr_normal("2.4,2.4"), "log_snr_normal must be None"),
        (lambda: schedules.check_log_snr_normal((2.4, 2.4, 1.0)), r"received \(2.4, 2.4, 1.0\)"),
        (lambda: schedules.check_log_snr_normal((True, 1.0)), "log_snr_normal must be None"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("t, message", [(np.array([0, 10]), r"\[0, 9\]"), (np.array([-1]), "received values from -1"), (np.array([1.5]), "integer")])
def test_timesteps_outside_range_raise(t, message):
    with pytest.raises(ValueError, match=message):
        schedules.linear(T=10).check_timesteps(t)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("mean, std", [(2.4, 2.4), (0.0, 2.0), (-3.0, 0.5)])
def test_log_snr_normal_probabilities_are_the_nearest_timestep_of_a_normal_draw(name, mean, std):
    schedule = schedules.get(name)
    probabilities = schedules.log_snr_normal_probabilities(schedule, mean, std)
    assert probabilities.shape == (schedule.T,) and probabilities.min() >= 0
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    # the definition, by Monte Carlo: draw lambda ~ N(mean, std^2), take the timestep of the nearest log-SNR
    log_snr = schedule.numpy("log_snr")
    draws = np.random.default_rng(0).normal(mean, std, 200_000)
    order = np.argsort(log_snr)  # ascending, for searchsorted
    right = np.clip(np.searchsorted(log_snr[order], draws), 1, schedule.T - 1)
    nearer_left = np.abs(draws - log_snr[order][right - 1]) < np.abs(draws - log_snr[order][right])
    nearest = order[np.where(nearer_left, right - 1, right)]
    frequencies = np.bincount(nearest, minlength=schedule.T) / len(draws)
    # cumulative distributions within the Kolmogorov-Smirnov bound (1.95 / sqrt(n): 0.1% false alarms)
    assert np.abs(np.cumsum(frequencies) - np.cumsum(probabilities)).max() < 1.95 / math.sqrt(len(draws))


def test_log_snr_normal_inside_the_schedule_keeps_its_mean_and_std():
    # EDM's ln sigma ~ N(-1.2, 1.2^2) is lambda ~ N(2.4, 2.4^2): almost all of it lies within the cosine
    # schedule's log-SNRs (10.1 down to -19.8), so the discrete distribution keeps both moments
    schedule = schedules.cosine()
    log_snr = schedule.numpy("log_snr")
    probabilities = schedules.log_snr_normal_probabilities(schedule, 2.4, 2.4)
    mean = np.sum(probabilities * log_snr)
    assert mean == pytest.approx(2.4, abs=0.01)
    assert math.sqrt(np.sum(probabilities * (log_snr - mean) ** 2)) == pytest.approx(2.4, abs=0.01)
    # a noise level beyond the schedule's ends goes to the first or last timestep
    edge = schedules.log_snr_normal_probabilities(schedule, 30.0, 1.0)
    assert edge[0] == pytest.approx(1.0) and edge[-1] == 0.0
