"""Tests of the MNIST evaluator: the shipped classifier, FID, KID, the reference ladder, input handling.

Everything runs on the real MNIST arrays in data/ and the shipped classifier weights; sample counts are
as small as each property allows so the file runs in a few minutes on two CPU cores.
"""

import argparse
import json
import shutil

import keras
import numpy as np
import pytest

from diffusion_keras import data, evaluation
from diffusion_keras.cli import main as cli_main


@pytest.fixture(scope="module")
def extractor():
    """The shipped classifier (sha256-checked) as a feature extractor."""
    return evaluation.FeatureExtractor()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A cache shared by this module's tests, so the test set's features are computed once."""
    return tmp_path_factory.mktemp("evaluation_cache")


@pytest.fixture(scope="module")
def test_set(extractor, cache_dir):
    """Features, probabilities and labels of all 10,000 MNIST test digits."""
    return evaluation.reference_features(10000, extractor, cache_dir)


# ---------------------------------------------------------------------------------------------------
# The shipped classifier
# ---------------------------------------------------------------------------------------------------
def test_shipped_weights_match_recorded_sha256():
    assert data.sha256_of(evaluation.CLASSIFIER_PATH) == evaluation.CLASSIFIER_SHA256


def test_shipped_classifier_accuracy_on_full_test_set(test_set):
    _, probabilities, labels = test_set
    accuracy = np.mean(np.argmax(probabilities, axis=1) == labels)
    assert accuracy >= 0.992, f"test accuracy {accuracy:.4f} < 0.992"


def test_features_are_penultimate_layer_float64(test_set):
    features, probabilities, _ = test_set
    assert features.shape == (10000, evaluation.FEATURE_DIM) and features.dtype == np.float64
    assert probabilities.shape == (10000, 10) and probabilities.dtype == np.float64
    assert features.min() >= 0.0  # after ReLU


def test_classifier_round_trips_through_keras_file_with_safe_mode(extractor, tmp_path, mnist):
    path = tmp_path / "classifier.keras"
    extractor.classifier.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    images = evaluation.prepare_images(mnist[1][0][:16])
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), extractor.classifier.predict(images, verbose=0), atol=1e-6
    )


def test_corrupt_weights_file_is_a_clear_error(tmp_path, monkeypatch):
    corrupt = tmp_path / "mnist_classifier.weights.h5"
    shutil.copy(evaluation.CLASSIFIER_PATH, corrupt)
    contents = bytearray(corrupt.read_bytes())
    contents[len(contents) // 2] ^= 0xFF  # flip one byte in the middle of the weights
    corrupt.write_bytes(bytes(contents))
    actual = data.sha256_of(corrupt)
    monkeypatch.setattr(evaluation, "CLASSIFIER_PATH", corrupt)
    monkeypatch.delenv(evaluation.CLASSIFIER_ENV_VARIABLE, raising=False)
    with pytest.raises(ValueError) as error:
        evaluation.load_classifier()
    message = str(error.value)
    assert str(corrupt) in message and actual in message and evaluation.CLASSIFIER_SHA256 in message
    # An explicit path with an expected hash is checked the same way.
    with pytest.raises(ValueError, match=actual):
        evaluation.load_classifier(corrupt, expected_sha256=evaluation.CLASSIFIER_SHA256)


def test_missing_weights_file_says_where_it_looked(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "mnist_classifier.weights.h5"
    monkeypatch.setattr(evaluation, "CLASSIFIER_PATH", missing)
    monkeypatch.delenv(evaluation.CLASSIFIER_ENV_VARIABLE, raising=False)
    with pytest.raises(FileNotFoundError, match="train-classifier") as error:
        evaluation.load_classifier()
    assert str(missing) in str(error.value)
    with pytest.raises(FileNotFoundError, match="path="):
        evaluation.load_classifier(missing)


# ---------------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------------
def test_fid_of_a_set_with_itself_is_zero(test_set):
    features = test_set[0][:2000]
    assert evaluation.fid(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_diagonal_gaussians_has_closed_form():
    # For diagonal covariances the trace term is sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    variances_a, variances_b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(variances_a) - np.sqrt(variances_b)) ** 2)
    actual = evaluation.frechet_distance(mean_a, np.diag(variances_a), mean_b, np.diag(variances_b))
    assert actual == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm(test_set):
    linalg = pytest.importorskip("scipy.linalg")
    features_a, features_b = test_set[0][:1500], test_set[0][1500:3000] * 1.1 + 0.05
    mean_a, mean_b = features_a.mean(0), features_b.mean(0)
    covariance_a, covariance_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    # The textbook formula with a general matrix square root, as an independent reference.
    product_sqrt = linalg.sqrtm(covariance_a @ covariance_b).real
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(covariance_a + covariance_b - 2 * product_sqrt)
    assert evaluation.fid(features_a, features_b) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------
def test_unbiased_mmd_matches_a_brute_force_double_loop():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 4)), rng.normal(0.3, 1.0, size=(7, 4))
    kernel = lambda x, y: (x @ y / 4 + 1.0) ** 3  # noqa: E731
    m = len(a)
    within = sum(kernel(a[i], a[j]) + kernel(b[i], b[j]) for i in range(m) for j in range(m) if i != j)
    between = sum(kernel(a[i], b[j]) for i in range(m) for j in range(m))
    expected = within / (m * (m - 1)) - 2 * between / m**2
    assert evaluation.mmd_squared_unbiased(a, b) == pytest.approx(expected, rel=1e-12)


def test_kid_is_unbiased_on_two_halves_of_the_test_set(test_set):
    # Random halves: the first and last 5,000 MNIST test digits come from different writers.
    order = np.random.default_rng(0).permutation(10000)
    half_a, half_b = test_set[0][order[:5000]], test_set[0][order[5000:]]
    result = evaluation.kid(half_a, half_b, subsets=50, subset_size=1000, seed=0)
    assert abs(result.mean) < 2 * result.std, result


def test_kid_is_deterministic_for_a_seed(test_set):
    features = test_set[0]
    first = evaluation.kid(features[:600], features[600:1200], subsets=5, subset_size=300, seed=3)
    second = evaluation.kid(features[:600], features[600:1200], subsets=5, subset_size=300, seed=3)
    assert first == second


# ---------------------------------------------------------------------------------------------------
# The reference ladder and the full evaluation
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ladder(extractor, cache_dir):
    return evaluation.reference_ladder(
        n_samples=2000, n_reference=10000, extractor=extractor, cache_dir=cache_dir, kid_subsets=20
    )


def test_fid_and_kid_rise_along_the_degradation_ladder(ladder):
    fid = {name: rung["fid"] for name, rung in ladder.items()}
    kid = {name: rung["kid_mean"] for name, rung in ladder.items()}
    for scores in (fid, kid):
        assert scores["floor"] < scores["noise_0.1"] < scores["noise_0.3"] < scores["mean_digit"], scores
        assert scores["floor"] < scores["blur_1.0"] < scores["mean_digit"], scores
        assert scores["floor"] < scores["class_mean_digit"] < scores["mean_digit"], scores
    # Real training digits are as good as it gets: KID of the floor is zero within its spread.
    assert abs(ladder["floor"]["kid_mean"]) < 2 * ladder["floor"]["kid_std"]


def test_ladder_is_cached_under_the_classifier_sha256(ladder, extractor, cache_dir):
    files = list((cache_dir / "evaluation").glob(f"ladder_{extractor.sha256[:16]}_n2000_*.json"))
    assert len(files) == 1
    again = evaluation.reference_ladder(
        n_samples=2000, n_reference=10000, extractor=extractor, cache_dir=cache_dir, kid_subsets=20
    )
    assert again == ladder
    assert (cache_dir / "evaluation" / f"test_features_{extractor.sha256[:16]}.npz").is_file()


def test_evaluate_images_reports_metrics_next_to_the_floor(extractor, cache_dir, mnist):
    (x_train, y_train), _ = mnist
    # A random subset: contiguous slices of MNIST come from few writers and score worse than the floor.
    rows = np.random.default_rng(123).choice(len(x_train), 1000, replace=False)
    images = data.to_model_range(x_train[rows])  # model space: (n, 32, 32, 1) in [-1, 1]
    result = evaluation.evaluate_images(
        images, labels=y_train[rows], extractor=extractor, cache_dir=cache_dir, kid_subsets=20,
        include_ladder=False,  # the ladder has its own tests; here only the floor is needed
    )
    # Other random real digits are as good as the floor's.
    assert 0.5 < result["fid_ratio"] < 2.0
    assert result["label_accuracy"] > 0.98 and result["mean_max_probability"] > 0.97
    assert result["class_balance_kl"] < 0.02
    assert list(result["ladder"]) == ["floor"]
    table = evaluation.format_table(result)
    assert f"{result['floor']['fid']:.3f}" in table and "FID / floor FID" in table
    json.dumps(result)  # JSON-ready


def test_evaluate_command_writes_json(tmp_path, cache_dir, mnist, capsys):
    _, (x_test, y_test) = mnist
    samples = tmp_path / "samples.npz"
    np.savez(samples, images=x_test[:400], labels=y_test[:400])
    output = tmp_path / "out.json"
    status = cli_main(
        [
            "evaluate", "--npz", str(samples), "--json", str(output), "--n", "300",
            "--cache-dir", str(cache_dir), "--kid-subsets", "10",
        ]
    )
    assert status == 0
    result = json.loads(output.read_text())
    assert result["n_samples"] == 300 and result["label_accuracy"] > 0.95
    printed = capsys.readouterr().out
    assert "real floor" in printed and "mean_digit" in printed  # the table and the ladder
    assert cli_main(["evaluate", "--npz", str(tmp_path / "missing.npz")]) == 2


# ---------------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------------
def test_every_accepted_format_gives_the_same_features(extractor, mnist):
    _, (x_test, _) = mnist
    digits = x_test[:200]
    unit = digits.astype(np.float32) / 255.0
    model_space = data.to_model_range(digits)  # (200, 32, 32, 1) in [-1, 1]
    variants = {
        "uint8 (n, 28, 28)": digits,
        "uint8 (n, 28, 28, 1)": digits[..., None],
        "uint8 (n, 32, 32)": np.pad(digits, ((0, 0), (2, 2), (2, 2))),
        "float [0, 1] (n, 28, 28)": unit,
        "float64 [0, 1] (n, 32, 32, 1)": np.pad(unit, ((0, 0), (2, 2), (2, 2)))[..., None].astype(np.float64),
        "float [-1, 1] (n, 28, 28)": unit * 2.0 - 1.0,
        "float [-1, 1] (n, 32, 32, 1)": model_space,
        "float [-1, 1] (n, 32, 32)": model_space[..., 0],
    }
    reference = extractor(digits)
    for name, images in variants.items():
        np.testing.assert_allclose(extractor(images), reference, atol=1e-4, err_msg=name)
    fid_reference = evaluation.fid(reference[:100], reference[100:])
    fid_model_space = evaluation.fid(extractor(model_space[:100]), extractor(unit[100:]))
    assert fid_model_space == pytest.approx(fid_reference, rel=1e-4, abs=1e-6)


def test_explicit_value_range_overrides_auto():
    all_white_model_space = np.ones((2, 28, 28), np.float32)  # in [-1, 1] yet no negative value
    auto = evaluation.prepare_images(all_white_model_space)
    explicit = evaluation.prepare_images(np.zeros((2, 28, 28), np.float32), value_range="[-1, 1]")
    np.testing.assert_allclose(auto, 1.0)
    np.testing.assert_allclose(explicit, 0.5)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        evaluation.prepare_images(-np.ones((2, 28, 28), np.float32), value_range="[0, 1]")


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((4, 27, 27), np.uint8), r"images must be .* received shape \(4, 27, 27\)"),
        (np.zeros((28, 28), np.uint8), "Add a batch axis"),
        (np.zeros((4, 28, 28, 3), np.uint8), r"received shape \(4, 28, 28, 3\)"),
        (np.zeros((0, 28, 28), np.uint8), "at least one image"),
        (np.full((2, 28, 28), 1.5, np.float32), r"float values in \[1\.5, 1\.5\]"),
        (np.full((2, 28, 28), -1.2, np.float32), r"outside \[-1, 1\]"),
        (np.full((2, 28, 28), np.nan, np.float32), "NaN"),
        (np.full((2, 28, 28), 300, np.int32), r"values in \[300, 300\]"),
        (np.zeros((2, 28, 28), bool), "received dtype bool"),
        (np.zeros((2, 28, 28), complex), "received dtype complex128"),
        (np.full((2, 28, 28), "a"), "received dtype <U1"),
    ],
)
def test_bad_images_are_clear_errors(images, match):
    with pytest.raises(ValueError, match=match):
        evaluation.prepare_images(images)


def test_tiny_rounding_outside_the_range_is_accepted():
    images = np.full((2, 28, 28), 1.0 + 0.5 * evaluation.RANGE_TOLERANCE, np.float32)
    assert evaluation.prepare_images(images).max() == 1.0


def test_bad_metric_arguments_are_clear_errors(test_set):
    features = test_set[0][:50]
    with pytest.raises(ValueError, match="features_a must be a 2-D"):
        evaluation.fid(features[0], features)
    with pytest.raises(ValueError, match="same feature dimension"):
        evaluation.fid(features, features[:, :10])
    with pytest.raises(ValueError, match=r"subset_size must be .* = \[2, 50\]"):
        evaluation.kid(features, features, subset_size=100)
    with pytest.raises(ValueError, match="labels must be a 1-D integer array of 3"):
        evaluation.label_accuracy(np.zeros((3, 28, 28), np.uint8), [1, 2])
    with pytest.raises(ValueError, match="value_range must be one of"):
        evaluation.features(np.zeros((3, 28, 28), np.uint8), value_range="0..1")


# ---------------------------------------------------------------------------------------------------
# Label metrics and CAS
# ---------------------------------------------------------------------------------------------------
def test_confidence_and_class_balance_on_known_probabilities(test_set):
    collapsed = np.eye(10)[np.full(50, 4)]
    assert evaluation.class_balance(collapsed) == pytest.approx(np.log(10))
    assert evaluation.class_balance(np.eye(10)) == pytest.approx(0.0)
    assert evaluation.confidence(np.full((3, 10), 0.1)) == (pytest.approx(0.1), 0.0)
    _, probabilities, _ = test_set
    assert evaluation.class_balance(probabilities) < 0.01  # MNIST is nearly balanced
    assert evaluation.confidence(probabilities).share_confident > 0.97


def test_degradations_and_mean_digit(mnist):
    (x_train, _), _ = mnist
    mean_digit = evaluation.mean_digit_images(3)
    np.testing.assert_allclose(mean_digit[0], x_train.mean(axis=0) / 255.0, atol=1e-5)
    assert np.all(mean_digit == mean_digit[:1])
    noisy = evaluation.add_pixel_noise(x_train[:10], 0.3, seed=1)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    np.testing.assert_array_equal(noisy, evaluation.add_pixel_noise(x_train[:10], 0.3, seed=1))


def test_gaussian_blur_matches_scipy(mnist):
    ndimage = pytest.importorskip("scipy.ndimage")
    images = mnist[0][0][:5].astype(np.float32) / 255.0
    expected = ndimage.gaussian_filter(images, sigma=(0, 1.0, 1.0), mode="constant", truncate=3.0)
    np.testing.assert_allclose(evaluation.gaussian_blur(images, 1.0), expected, atol=1e-5)


def test_label_accuracy_of_real_digits(extractor, mnist):
    _, (x_test, y_test) = mnist
    assert evaluation.label_accuracy(x_test[:500], y_test[:500], extractor=extractor) > 0.98


def test_classification_accuracy_score_separates_good_from_shuffled_labels(mnist):
    (x_train, y_train), _ = mnist
    # 1,500 digits x 3 epochs / batch 64 = 72 steps: enough to learn, small enough for CI.
    good = evaluation.classification_accuracy_score(x_train[:1500], y_train[:1500], epochs=3, n_test=1000)
    shuffled = np.random.default_rng(0).permutation(y_train[:1500])
    bad = evaluation.classification_accuracy_score(x_train[:1500], shuffled, epochs=3, n_test=1000)
    assert good > 0.85 and bad < 0.4, (good, bad)


def test_fit_classifier_learns_other_images_than_whole_digits(mnist):
    # notebook 06 trains it on upper halves; here on left halves, scored on left halves of test digits
    (x_train, y_train), (x_test, y_test) = mnist
    left = lambda images: np.where(np.arange(28)[None, None, :] < 14, images, 0)  # noqa: E731
    classifier = evaluation.fit_classifier(left(x_train[:1500]), y_train[:1500], epochs=3, batch_size=64,
                                           norm_momentum=0.9)
    probabilities = classifier.predict(evaluation.prepare_images(left(x_test[:500])), verbose=0)
    assert np.mean(probabilities.argmax(axis=1) == y_test[:500]) > 0.6
    with pytest.raises(ValueError, match=r"labels must be digits in 0..9; received values in \[0, 10\]"):
        evaluation.fit_classifier(x_train[:3], np.array([0, 5, 10]))


# ---------------------------------------------------------------------------------------------------
# The evaluate command sampling from a model, and the sweep
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A tiny untrained DiffusionModel (T = 20) saved as a .keras file: real code paths, seconds to run."""
    from diffusion_keras import model, networks

    network = networks.build_network("tiny", num_timesteps=20)
    diffusion = model.DiffusionModel(network, schedule={"name": "linear", "T": 20}, target="epsilon", seed=0)
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.keras"
    diffusion.save(path)
    return path


def test_evaluate_command_samples_from_weights_in_chunks(tiny_weights, tmp_path, cache_dir, capsys):
    output = tmp_path / "sampled.json"
    arguments = [
        "evaluate", "--weights", str(tiny_weights), "--n", "32", "--steps", "2", "--batch-size", "12",
        "--seed", "3", "--json", str(output), "--cache-dir", str(cache_dir), "--kid-subsets", "5",
        "--n-reference", "500",
    ]
    assert cli_main(arguments) == 0
    result = json.loads(output.read_text())
    assert result["n_samples"] == 32
    sampling = result["sampling"]
    assert sampling["sampler"] == "ddim" and sampling["network_evaluations"] == 2
    assert sampling["batch_size"] == 12 and sampling["seconds"] > 0
    assert result["fid_ratio"] == pytest.approx(result["fid"] / result["floor"]["fid"])
    printed = capsys.readouterr().out
    assert "sampled 32 digits with ddim (2 network evaluations each)" in printed
    assert "FID / floor FID" in printed and "real floor" in printed


def test_chunked_sampling_is_reproducible_and_chunks_differ(tiny_weights):
    from diffusion_keras import evaluate_cli, sample_cli

    network, schedule, target = sample_cli.load_for_sampling(str(tiny_weights))
    first, _ = evaluate_cli.sample_in_chunks(network, schedule, target, "dpm_solver_pp_2m", n=10, steps=2,
                                             seed=1, batch_size=4, progress=False)
    again, _ = evaluate_cli.sample_in_chunks(network, schedule, target, "dpm_solver_pp_2m", n=10, steps=2,
                                             seed=1, batch_size=4, progress=False)
    assert first.shape == (10, 32, 32, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[:4], first[4:8])  # every chunk draws its own noise
    ddpm, _ = evaluate_cli.sample_in_chunks(network, schedule, target, "ddpm", n=3, steps=None, seed=0,
                                            batch_size=8, progress=False)
    assert ddpm.shape == (3, 32, 32, 1) and np.all(np.isfinite(ddpm))


def test_evaluate_sweep_writes_table_json_and_plot(tiny_weights, tmp_path, cache_dir, capsys):
    out_dir = tmp_path / "sweep"
    arguments = [
        "evaluate", "--sweep", "--weights", str(tiny_weights), "--sweep-steps", "1,2", "--sweep-n", "16",
        "--sweep-ddpm-n", "8", "--batch-size", "16", "--out-dir", str(out_dir), "--cache-dir", str(cache_dir),
        "--kid-subsets", "5", "--n-reference", "500",
    ]
    assert cli_main(arguments) == 0
    sweep = json.loads((out_dir / "sweep.json").read_text())
    points = [
        (point["sampler"], point["network_evaluations"], point["n_samples"]) for point in sweep["points"]
    ]
    assert points == [
        ("ddim", 1, 16), ("ddim", 2, 16), ("dpm_solver_pp_2m", 1, 16), ("dpm_solver_pp_2m", 2, 16),
        ("ddpm", 20, 8),
    ]
    assert all(point["fid"] > 0 and point["floor_fid"] > 0 for point in sweep["points"])
    assert (out_dir / "sweep.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "FID/floor" in printed and "NFE" in printed


def test_evaluate_command_errors(tmp_path, tiny_weights, capsys, monkeypatch):
    from diffusion_keras import evaluate_cli, pretrained

    # --npz and --weights together: argparse refuses with a message naming both.
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--npz", "a.npz", "--weights", str(tiny_weights)])
    assert "not allowed with argument" in capsys.readouterr().err
    # Missing weights: one clear line on stderr and exit status 2.
    assert cli_main(["evaluate", "--weights", str(tmp_path / "nowhere.keras"), "--n", "4"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # The shipped model missing: a FileNotFoundError that says where it should be.
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "pretrained")
    parser = evaluate_cli.add_evaluate_arguments(argparse.ArgumentParser())
    with pytest.raises(FileNotFoundError, match="pretrained model 'mnist' should be at"):
        evaluate_cli.run_evaluate(parser.parse_args(["--n", "4"]))
    for arguments, match in (
        (["--weights", str(tiny_weights), "--n", "1"], "--n must be an integer >= 2"),
        (["--weights", str(tiny_weights), "--n", "70000"], "at most 60,000"),
        (["--weights", str(tiny_weights), "--n", "4", "--steps", "50"], r"--steps must be .* T = 20"),
        (["--weights", str(tiny_weights), "--n", "4", "--batch-size", "0"], "--batch-size"),
        (["--weights", str(tiny_weights), "--sweep", "--sweep-steps", "5,40"], "exceed the schedule's T"),
    ):
        with pytest.raises(ValueError, match=match):
            evaluate_cli.run_evaluate(parser.parse_args(arguments))
    with pytest.raises(SystemExit):
        parser.parse_args(["--sweep-steps", "ten"])


# ---------------------------------------------------------------------------------------------------
# Conditional models: evaluate --guidance, --guidance-sweep, the synthetic-data study, sample --label all
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_conditional_weights(tmp_path_factory):
    """A tiny untrained conditional DiffusionModel (T = 20) saved as a .keras file."""
    from diffusion_keras import model, networks

    network = networks.build_network("tiny", num_classes=10, num_timesteps=20)
    diffusion = model.DiffusionModel(network, schedule={"name": "cosine", "T": 20}, seed=0)
    path = tmp_path_factory.mktemp("tiny_conditional") / "tiny_conditional.keras"
    diffusion.save(path)
    return path


def test_evaluate_with_guidance_samples_balanced_labels(tiny_conditional_weights, tmp_path, cache_dir, capsys):
    output = tmp_path / "guided.json"
    assert cli_main([
        "evaluate", "--weights", str(tiny_conditional_weights), "--guidance", "2", "--n", "20", "--steps", "2",
        "--batch-size", "8", "--json", str(output), "--cache-dir", str(cache_dir), "--kid-subsets", "5",
        "--n-reference", "500",
    ]) == 0
    result = json.loads(output.read_text())
    assert result["sampling"]["guidance"] == 2.0
    assert 0.0 <= result["label_accuracy"] <= 1.0  # labels were passed: 0, 1, ..., 9, 0, ...
    assert "guidance w = 2" in capsys.readouterr().out
    # w = 0 is the unconditional mode: no label accuracy
    assert cli_main([
        "evaluate", "--weights", str(tiny_conditional_weights), "--guidance", "0", "--n", "10", "--steps", "1",
        "--json", str(output), "--cache-dir", str(cache_dir), "--kid-subsets", "5", "--n-reference", "500",
    ]) == 0
    assert json.loads(output.read_text())["label_accuracy"] is None


def test_balanced_labels_and_chunked_labels(tiny_conditional_weights):
    from diffusion_keras import evaluate_cli, sample_cli

    assert evaluate_cli.balanced_labels(12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    network, schedule, target = sample_cli.load_for_sampling(str(tiny_conditional_weights))
    labels = evaluate_cli.balanced_labels(10)
    chunked, _ = evaluate_cli.sample_in_chunks(network, schedule, target, "ddim", n=10, steps=2, seed=0,
                                               batch_size=4, progress=False, labels=labels, guidance=3.0)
    from diffusion_keras import samplers

    first_chunk = samplers.ddim_sample(network, schedule, 2, 4, labels=labels[:4], guidance=3.0,
                                       seed=0 * evaluate_cli.CHUNK_SEED_STRIDE)
    second_chunk = samplers.ddim_sample(network, schedule, 2, 4, labels=labels[4:8], guidance=3.0,
                                        seed=1)
    np.testing.assert_allclose(chunked[:4], first_chunk, atol=1e-6)
    np.testing.assert_allclose(chunked[4:8], second_chunk, atol=1e-6)


def test_guidance_sweep_prints_one_row_per_weight(tiny_conditional_weights, tmp_path, cache_dir, capsys):
    output = tmp_path / "sweep.json"
    assert cli_main([
        "evaluate", "--weights", str(tiny_conditional_weights), "--guidance-sweep", "0,1,3", "--n", "10",
        "--steps", "1", "--json", str(output), "--cache-dir", str(cache_dir), "--kid-subsets", "5",
        "--n-reference", "500",
    ]) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [row["guidance"] for row in rows] == [0.0, 1.0, 3.0]
    assert rows[0]["label_accuracy"] is None and rows[2]["label_accuracy"] is not None
    printed = capsys.readouterr().out
    assert printed.count("guidance sweep") == 1 and "label acc" in printed


def test_guidance_with_an_unconditional_model_is_a_clear_error(tiny_weights, capsys):
    assert cli_main(["evaluate", "--weights", str(tiny_weights), "--guidance", "2", "--n", "4"]) == 2
    assert "--guidance 2 needs a conditional model" in capsys.readouterr().err
    assert cli_main(["synthetic-data", "--weights", str(tiny_weights), "--n", "10"]) == 2
    assert "needs a conditional model" in capsys.readouterr().err


def test_synthetic_data_study_end_to_end(tiny_conditional_weights, tmp_path, capsys):
    """Real sampling, two real classifier trainings and a real test-set score, all tiny."""
    output = tmp_path / "synthetic.json"
    assert cli_main([
        "synthetic-data", "--weights", str(tiny_conditional_weights), "--n", "100", "--steps", "1",
        "--epochs", "1", "--n-test", "300", "--json", str(output),
    ]) == 0
    result = json.loads(output.read_text())
    assert result["n"] == 100 and result["guidance"] == 2.0
    for key in ("real_accuracy", "generated_accuracy", "label_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert "real MNIST training digits" in capsys.readouterr().out
    assert cli_main(["synthetic-data", "--weights", str(tiny_conditional_weights), "--n", "5"]) == 2


def test_sample_label_all_draws_one_row_per_digit(tiny_conditional_weights, tmp_path):
    from PIL import Image

    out, npz = tmp_path / "grid.png", tmp_path / "grid.npz"
    assert cli_main([
        "sample", "--weights", str(tiny_conditional_weights), "--label", "all", "--n", "30", "--steps", "1",
        "--out", str(out), "--npz", str(npz),
    ]) == 0
    assert np.load(npz)["labels"].tolist() == [d for d in range(10) for _ in range(3)]
    width, height = Image.open(out).size  # 3 columns x 10 rows of 28-pixel digits (scale 3, 2-px gutters)
    assert (width, height) == (3 * (3 * 28 + 2 * 2), 3 * (10 * 28 + 9 * 2))
