"""Tests of diffusion_keras.model: real training steps on real MNIST, EMA, saving, distribution, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from diffusion_keras import data, networks, schedules
from diffusion_keras.model import DiffusionModel, min_snr_weights

REPOSITORY = Path(__file__).resolve().parent.parent
SHORT_SCHEDULE = {"name": "linear", "T": 100}  # fewer steps: same code paths, smaller tables


def _fixed_evaluation_batch(images, T, seed=0):
    """Timesteps and noise drawn once, so losses before and after training compare like with like."""
    generator = np.random.default_rng(seed)
    t = generator.integers(0, T, len(images)).astype("int32")
    noise = generator.standard_normal(images.shape).astype("float32")
    return t, noise


def _mean_loss(model, images, t, noise, labels=None, network=None):
    per_example_loss = model.compute_per_example_loss(images, t, noise, labels, network=network)
    return float(np.mean(np.asarray(per_example_loss)))


@pytest.fixture(scope="module")
def trained(mnist):
    """A tiny unconditional U-Net trained for 48 steps on 256 real digits (epsilon target)."""
    (x_train, _), _ = mnist
    images = data.to_model_range(x_train[:256])
    keras.utils.set_random_seed(0)
    model = DiffusionModel(networks.build_network("tiny"), schedule="linear", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    t, noise = _fixed_evaluation_batch(images, model.schedule.T)
    before = _mean_loss(model, images, t, noise)
    traces = []  # one entry per Python call of train_step, i.e. per trace of fit's tf.function
    train_step = model.train_step
    model.train_step = lambda batch: traces.append(1) or train_step(batch)
    history = model.fit(data.make_dataset(batch_size=32, subset=256, seed=0), epochs=6, verbose=0)
    del model.train_step
    after = _mean_loss(model, images, t, noise)
    return SimpleNamespace(model=model, images=images, before=before, after=after, history=history.history,
                           traces=len(traces))


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


def test_loss_goes_down_on_real_digits(trained):
    # Same 256 images, same t and noise, before and after: an honest comparison.
    assert trained.before == pytest.approx(1.0, abs=0.05)  # zero-initialised head predicts eps = 0
    assert trained.after < 0.5 * trained.before
    losses = trained.history["loss"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert trained.model.optimizer.iterations.numpy() == 48
    # traced once: the optimizer is built before tracing (a step that creates variables is traced twice)
    assert trained.traces == 1


def test_evaluate_reports_network_and_ema_losses(trained):
    results = trained.model.evaluate(data.make_dataset(batch_size=32, subset=64), verbose=0, return_dict=True)
    assert set(results) == {"loss", "ema_loss"}
    # with ema_decay=0.999 the average of 48 steps is still close to the untrained network
    assert results["loss"] < results["ema_loss"]


@pytest.mark.parametrize(
    "target, min_snr_gamma, num_classes, log_snr_normal",
    [("x0", None, None, None), ("v", 5.0, 10, None), ("v", None, None, (0.0, 2.0))],
    ids=["x0", "v-min-snr-conditional", "v-log-snr-normal"],
)
def test_other_prediction_targets_train(mnist, target, min_snr_gamma, num_classes, log_snr_normal):
    (x_train, y_train), _ = mnist
    images, labels = data.to_model_range(x_train[:256]), y_train[:256].astype("int32")
    keras.utils.set_random_seed(1)
    # two levels instead of three: fewer layers to trace, the same code paths
    network = networks.UNet(widths=(8, 16), attention=False, num_classes=num_classes, num_timesteps=100)
    model = DiffusionModel(
        network, SHORT_SCHEDULE, target=target, min_snr_gamma=min_snr_gamma, log_snr_normal=log_snr_normal, seed=1
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    conditional = num_classes is not None
    t, noise = _fixed_evaluation_batch(images, 100)
    evaluation_labels = labels if conditional else None
    before = _mean_loss(model, images, t, noise, evaluation_labels)
    dataset = data.make_dataset(batch_size=32, subset=256, labels=conditional, seed=1)
    model.fit(dataset, epochs=4, verbose=0)
    after = _mean_loss(model, images, t, noise, evaluation_labels)
    print(f"{target}: fixed-batch loss {before:.4f} -> {after:.4f}")
    assert np.isfinite(after)
    assert after < 0.7 * before


def test_timesteps_cover_all_steps_and_noise_is_standard_normal():
    network = networks.build_network("tiny", num_timesteps=10)
    model = DiffusionModel(network, {"name": "linear", "T": 10}, seed=3)
    images = np.zeros((20_000, 2, 2, 1), "float32")
    t, noise = model.draw_timesteps_and_noise(images)
    counts = np.bincount(np.asarray(t), minlength=10)
    assert len(counts) == 10  # nothing outside [0, T-1]
    assert counts.min() > 1_800 and counts.max() < 2_200  # uniform: 2000 +- 200 (4.7 sigma)
    noise = np.asarray(noise)
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1.0) < 0.01


def test_log_snr_normal_timesteps_follow_their_probabilities(tmp_path):
    model = DiffusionModel(networks.build_network("tiny"), "cosine", target="v", log_snr_normal=(2.4, 2.4), seed=3)
    images = np.zeros((40_000, 2, 2, 1), "float32")
    t = np.asarray(model.draw_timesteps_and_noise(images)[0])
    assert t.dtype == np.int32 and t.min() >= 0 and t.max() <= 999
    probabilities = schedules.log_snr_normal_probabilities(model.schedule, 2.4, 2.4)
    frequencies = np.bincount(t, minlength=1000) / len(t)
    # Kolmogorov-Smirnov bound at 0.1% false alarms
    assert np.abs(np.cumsum(frequencies) - np.cumsum(probabilities)).max() < 1.95 / np.sqrt(len(t))
    # EDM's noise levels: the drawn log-SNRs have mean 2.4 (standard error 2.4 / 200 = 0.012)
    assert np.mean(model.schedule.numpy("log_snr")[t]) == pytest.approx(2.4, abs=0.05)
    # saved and reloaded, the model keeps the option and draws the same timesteps from the same state
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert loaded.log_snr_normal == [2.4, 2.4] == loaded.get_config()["log_snr_normal"]
    np.testing.assert_array_equal(
        np.asarray(loaded.draw_timesteps_and_noise(images[:64])[0]),
        np.asarray(model.draw_timesteps_and_noise(images[:64])[0]),
    )


def test_same_seed_same_draws():
    def draws(seed):
        model = DiffusionModel(networks.build_network("tiny"), seed=seed)
        t, noise = model.draw_timesteps_and_noise(np.zeros((8, 32, 32, 1), "float32"))
        return np.asarray(t), np.asarray(noise)

    first, again, other = draws(7), draws(7), draws(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])


# ----------------------------------------------------------------------------------------------------
# EMA, min-SNR, label dropout: against hand computations
# ----------------------------------------------------------------------------------------------------


def test_ema_update_matches_hand_computation():
    model = DiffusionModel(networks.build_network("tiny"), ema_decay=0.9, seed=0)
    for ema_weight, weight in zip(model.ema_network.weights, model.network.weights):
        np.testing.assert_array_equal(np.asarray(ema_weight), np.asarray(weight))  # starts as a copy
    assert not model.ema_network.trainable_weights  # the optimizer never touches it

    generator = np.random.default_rng(0)
    weights = [generator.normal(size=w.shape).astype("float32") for w in model.network.weights]
    averages = [generator.normal(size=w.shape).astype("float32") for w in model.ema_network.weights]
    model.network.set_weights(weights)
    model.ema_network.set_weights(averages)
    model.update_ema()
    for ema_weight, average, weight in zip(model.ema_network.weights, averages, weights):
        np.testing.assert_allclose(np.asarray(ema_weight), 0.9 * average + 0.1 * weight, rtol=1e-6, atol=1e-6)


def test_ema_warmup_decay_follows_the_step_count(digits):
    """With ema_warmup the decay at step n is min(ema_decay, (1 + n) / (10 + n)): 2/11 after step 1."""
    model = DiffusionModel(networks.build_network("tiny"), ema_decay=0.999, ema_warmup=True, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before_ema = [np.asarray(w) for w in model.ema_network.weights]
    model.fit(digits[:8], epochs=1, batch_size=8, verbose=0)
    decay = 2.0 / 11.0  # n = 1 after the first optimizer step
    for ema_weight, old, weight in zip(model.ema_network.weights, before_ema, model.network.weights):
        np.testing.assert_allclose(np.asarray(ema_weight), decay * old + (1 - decay) * np.asarray(weight),
                                   rtol=1e-5, atol=1e-6)
    # the flag round-trips through the config
    assert DiffusionModel.from_config(model.get_config()).ema_warmup is True


def test_min_snr_weights_match_hand_computation():
    snr = schedules.get("cosine", T=1000).numpy("snr")
    gamma = 5.0
    expected = {
        "epsilon": np.minimum(snr, gamma) / snr,
        "x0": np.minimum(snr, gamma),
        "v": np.minimum(snr, gamma) / (snr + 1.0),
    }
    for target, hand in expected.items():
        np.testing.assert_allclose(np.asarray(min_snr_weights(snr, gamma, target)), hand, rtol=1e-5)
    # epsilon: weight 1 while snr <= gamma (noisy steps), gamma / snr for the nearly clean ones
    assert np.asarray(min_snr_weights(snr, gamma))[-1] == pytest.approx(1.0)


def test_min_snr_weighted_loss_is_weight_times_plain_loss(digits):
    keras.utils.set_random_seed(4)
    network = networks.build_network("tiny")
    plain = DiffusionModel(network, "cosine", target="v")
    weighted = DiffusionModel(network, "cosine", target="v", min_snr_gamma=5.0)
    t = np.array([0, 100, 500, 999], "int32")
    noise = np.random.default_rng(0).standard_normal((4, 32, 32, 1)).astype("float32")
    snr = plain.schedule.numpy("snr")[t]
    hand_weights = np.minimum(snr, 5.0) / (snr + 1.0)
    np.testing.assert_allclose(
        np.asarray(weighted.compute_per_example_loss(digits[:4], t, noise)),
        hand_weights * np.asarray(plain.compute_per_example_loss(digits[:4], t, noise)),
        rtol=1e-5,
    )


def test_label_dropout_rate():
    model = DiffusionModel(networks.build_network("tiny", num_classes=10), label_dropout=0.1, seed=0)
    labels = np.full(100_000, 3, "int32")
    dropped = np.asarray(model.drop_labels(labels))
    assert set(np.unique(dropped)) == {3, 10}  # a label is kept or becomes the null label
    assert np.mean(dropped == 10) == pytest.approx(0.1, abs=0.005)  # sigma ~ 0.001
    never = DiffusionModel(networks.build_network("tiny", num_classes=10), label_dropout=0.0, seed=0)
    np.testing.assert_array_equal(np.asarray(never.drop_labels(labels)), labels)


# ----------------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------------


def _predictions(network, images):
    t = np.linspace(0, 999, len(images)).astype("int32")
    return np.asarray(network([images, t]))


def test_keras_file_round_trip(trained, tmp_path):
    model, images = trained.model, trained.images[:8]
    path = tmp_path / "diffusion.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, DiffusionModel)
    assert loaded.get_config() == model.get_config()
    assert loaded.schedule.get_config() == model.schedule.get_config()
    for original, restored in ((model.network, loaded.network), (model.ema_network, loaded.ema_network)):
        expected = _predictions(original, images)
        assert np.abs(expected).max() > 1e-3  # a trained network, not zeros
        np.testing.assert_allclose(_predictions(restored, images), expected, atol=1e-5)
    # the optimizer and random states come back too, so training resumes where it stopped
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy()
    np.testing.assert_array_equal(np.asarray(loaded.seed_generator.state), np.asarray(model.seed_generator.state))
    # the model's own call goes through the network
    np.testing.assert_allclose(
        np.asarray(loaded([images, np.zeros(8, "int32")])),
        np.asarray(model.network([images, np.zeros(8, "int32")])),
        atol=1e-5,
    )


def test_weights_file_round_trip(trained, tmp_path):
    path = tmp_path / "diffusion.weights.h5"
    trained.model.save_weights(path)
    fresh = DiffusionModel(networks.build_network("tiny"), schedule="linear", seed=0)
    fresh.load_weights(path)
    images = trained.images[:8]
    pairs = ((fresh.network, trained.model.network), (fresh.ema_network, trained.model.ema_network))
    for restored, original in pairs:
        np.testing.assert_allclose(_predictions(restored, images), _predictions(original, images), atol=1e-5)


def test_sampling_network_saves_and_loads_alone(trained, tmp_path):
    sampling_network = trained.model.sampling_network()
    assert sampling_network is trained.model.ema_network
    path = tmp_path / "ema_network.keras"
    sampling_network.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, networks.UNet) and loaded.num_classes is None
    images = trained.images[:8]
    expected = _predictions(sampling_network, images)
    np.testing.assert_allclose(_predictions(loaded, images), expected, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# Precision, XLA and distribution
# ----------------------------------------------------------------------------------------------------


def _train_briefly(model, **compile_arguments):
    model.compile(optimizer=keras.optimizers.Adam(2e-3), **compile_arguments)
    history = model.fit(data.make_dataset(batch_size=16, subset=64, seed=0), epochs=1, verbose=0)
    return history.history["loss"]


def test_mixed_bfloat16_trains_without_nan():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(5)
        network = networks.UNet(widths=(8, 16, 16), attention=True, num_timesteps=100)
        model = DiffusionModel(network, SHORT_SCHEDULE, seed=0)
        assert network.get_layer("input_conv").compute_dtype == "bfloat16"
        assert network.get_layer("timestep_embedding").compute_dtype == "float32"
        losses = _train_briefly(model)
        output = model.network([np.zeros((2, 32, 32, 1), "float32"), np.array([0, 99], "int32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert output.dtype == tf.float32
    assert np.all(np.isfinite(losses))
    assert all(np.all(np.isfinite(np.asarray(w))) for w in model.network.weights + model.ema_network.weights)
    assert all(w.dtype == "float32" for w in model.network.weights)  # bfloat16 compute, float32 weights


def test_jit_compile_trains_without_nan():
    keras.utils.set_random_seed(6)
    # XLA compiles the whole step (random draws, loss, optimizer, EMA merge_call); a two-level
    # network keeps the compile time short
    network = networks.UNet(widths=(8, 16), attention=False, num_timesteps=100)
    model = DiffusionModel(network, SHORT_SCHEDULE, seed=0)
    losses = _train_briefly(model, jit_compile=True)
    assert model.jit_compile is True
    assert np.all(np.isfinite(losses))
    assert all(np.all(np.isfinite(np.asarray(w))) for w in model.network.weights)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    # Two logical CPUs; this must happen before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np
    from keras import ops

    from diffusion_keras import data, networks
    from diffusion_keras.model import DiffusionModel

    SCHEDULE = {"name": "linear", "T": 100}


    class FixedDrawModel(DiffusionModel):
        # t and noise are functions of each image, so a replica draws what one device would
        def draw_timesteps_and_noise(self, images):
            pixel_sums = ops.sum(images, axis=(1, 2, 3))
            t = ops.cast(ops.mod(ops.abs(ops.round(pixel_sums * 7.0)), self.schedule.T), "int32")
            noise = ops.sin(images * 37.0 + ops.reshape(pixel_sums, (-1, 1, 1, 1)))
            return t, noise


    (x_train, _), _ = data.load_mnist()
    images = data.to_model_range(x_train[:16])
    keras.utils.set_random_seed(0)
    initial_weights = networks.build_network("tiny", num_timesteps=100).get_weights()


    def one_step(strategy):
        with strategy.scope():
            network = networks.build_network("tiny", num_timesteps=100)
            network.set_weights(initial_weights)
            model = FixedDrawModel(network, SCHEDULE, ema_decay=0.5, seed=0)
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(16)  # one global batch of 16
        history = model.fit(dataset, epochs=1, verbose=0)
        return model, history.history["loss"][0]


    single, single_loss = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, mirrored_loss = one_step(mirrored_strategy)


    def deltas(model):
        pairs = zip(model.network.get_weights(), initial_weights)
        return np.concatenate([(after - before).ravel() for after, before in pairs])


    single_delta, mirrored_delta = deltas(single), deltas(mirrored)
    ema_rule_error = max(
        float(np.abs(ema - (0.5 * before + 0.5 * after)).max())
        for ema, before, after in zip(
            mirrored.ema_network.get_weights(), initial_weights, mirrored.network.get_weights()
        )
    )

    # With the real draws, the two replicas must not use the same noise.
    with mirrored_strategy.scope():
        drawing = DiffusionModel(networks.build_network("tiny", num_timesteps=100), SCHEDULE, seed=3)


    @tf.function
    def draw_on_replicas(batch):
        return mirrored_strategy.run(drawing.draw_timesteps_and_noise, args=(batch,))


    distributed = mirrored_strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(images).batch(16)
    )
    _, noise = draw_on_replicas(next(iter(distributed)))
    noise_0, noise_1 = (np.asarray(v) for v in mirrored_strategy.experimental_local_results(noise))
    print(json.dumps({
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "single_loss": single_loss,
        "mirrored_loss": mirrored_loss,
        "update_ratio": float(mirrored_delta @ single_delta / (single_delta @ single_delta)),
        "max_update_difference": float(np.abs(mirrored_delta - single_delta).max()),
        "max_update": float(np.abs(single_delta).max()),
        "ema_rule_error": ema_rule_error,
        "replica_noise_equal": bool(np.allclose(noise_0, noise_1)),
    }))
    """
)


def test_mirrored_strategy_matches_one_device(tmp_path):
    """Two replicas on one global batch take the same step as one device on that batch.

    Keras' optimizer sums the replicas' gradients, so each replica must divide its summed loss by the
    global batch size; dividing by its own batch size would double the step (update_ratio 2).
    """
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    python_path = os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])
    environment = {**os.environ, "PYTHONPATH": python_path}
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=environment
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["update_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert result["max_update_difference"] < 1e-4 * result["max_update"]
    assert result["mirrored_loss"] == pytest.approx(result["single_loss"], rel=1e-5)
    assert result["ema_rule_error"] < 1e-6
    assert not result["replica_noise_equal"]


@pytest.mark.parametrize("micro_batch_size", [None, 4, 6, 16])  # 6 does not divide 16: whole batch
def test_batch_gradients_match_the_hand_gradient(micro_batch_size):
    """loss_i = (w x_i - y_i)^2, mean over 16: dL/dw = mean(2 (w x_i - y_i) x_i), with or without micro-batches."""
    from diffusion_keras.model import batch_gradients

    generator = np.random.default_rng(0)
    x, y = generator.normal(size=16).astype("float32"), generator.normal(size=16).astype("float32")
    w, unused = tf.Variable(1.5), tf.Variable(3.0)
    loss, (gradient, no_gradient) = tf.function(batch_gradients)(
        lambda x_part, y_part, nothing: tf.square(w * x_part - y_part), [tf.constant(x), tf.constant(y), None],
        [w, unused], micro_batch_size,
    )
    assert float(loss) == pytest.approx(np.mean((1.5 * x - y) ** 2), rel=1e-5)
    assert float(gradient) == pytest.approx(np.mean(2 * (1.5 * x - y) * x), rel=1e-5)
    assert no_gradient is None or float(no_gradient) == 0.0  # a variable the loss does not use


def test_batch_gradients_are_dense_for_an_embedding():
    """A gathered row's gradient comes back dense with repeats summed: Keras' Adam mishandles repeated sparse rows."""
    from diffusion_keras.model import batch_gradients

    table = tf.Variable(tf.ones((3, 2)))
    labels = tf.constant([1, 1, 2, 1])
    _, (gradient,) = batch_gradients(lambda rows: tf.reduce_sum(tf.gather(table, rows), axis=1), [labels], [table])
    assert isinstance(gradient, tf.Tensor)  # not tf.IndexedSlices
    np.testing.assert_allclose(np.asarray(gradient), [[0, 0], [0.75, 0.75], [0.25, 0.25]])


def test_micro_batches_take_the_same_steps_as_the_whole_batch(mnist):
    """Same seed, weights and batches: two train steps with and without micro-batches end at the same weights."""
    (x_train, y_train), _ = mnist
    micro_batch_size = 4
    images, labels = data.to_model_range(x_train[:16]), y_train[:16].astype("int32")
    network = networks.build_network("tiny", num_classes=10, num_timesteps=100)
    models = []
    for size in (None, micro_batch_size):
        model = DiffusionModel(networks.build_network("tiny", num_classes=10, num_timesteps=100),
                               schedule=SHORT_SCHEDULE, ema_decay=0.5, label_dropout=0.5, micro_batch_size=size, seed=0)
        for copy in (model.network, model.ema_network):
            copy.set_weights(network.get_weights())  # the label embedding too
        # SGD: a step proportional to the gradient (Adam would scale rounding-level gradients up to full steps)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        step = tf.function(model.train_step)
        step((images, labels))  # the zero-initialised output layer passes no gradient back until it moved
        models.append((model, float(step((images, labels))["loss"])))
    (whole, whole_loss), (micro, micro_loss) = models
    assert micro.micro_batch_size == micro_batch_size
    assert DiffusionModel.from_config(micro.get_config()).micro_batch_size == micro_batch_size
    assert micro_loss == pytest.approx(whole_loss, rel=1e-5)
    moved = 0
    for before, a, b in zip(network.weights, whole.network.weights, micro.network.weights):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6, err_msg=a.path)
        moved += not np.allclose(np.asarray(a), np.asarray(before))
    assert moved > 20  # the step changed the weights, so equal weights mean equal gradients
    for a, b in zip(whole.ema_network.weights, micro.ema_network.weights):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


def test_constructor_errors_name_the_argument():
    network = networks.build_network("tiny")
    cases = [
        ({"ema_decay": 1.0}, r"ema_decay must be a number in \[0, 1\).*received 1.0"),
        ({"ema_decay": -0.1}, "ema_decay"),
        ({"target": "noise"}, r"target must be one of \('epsilon', 'x0', 'v'\); received 'noise'"),
        ({"schedule": "quadratic"}, "Unknown schedule name 'quadratic'"),
        ({"min_snr_gamma": 0}, "min_snr_gamma must be None"),
        ({"label_dropout": 1.5}, "label_dropout must be a probability"),
        ({"log_snr_normal": (2.4, -1.0)}, r"log_snr_normal must be None \(t uniform\) or \(mean, std\).*received \(2.4, -1.0\)"),
        ({"seed": 1.5}, "seed must be None or an integer"),
        ({"micro_batch_size": 0}, r"micro_batch_size must be None \(whole batch\) or an integer >= 1.*received 0"),
        ({"schedule": {"name": "article", "T": 50}}, "num_timesteps=1000 but the schedule has T=50"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            DiffusionModel(network, **arguments)
    with pytest.raises(ValueError, match="network must be a keras.Model"):
        DiffusionModel("small")
    with pytest.raises(ValueError, match="gamma must be a number > 0"):
        min_snr_weights(np.ones(3), None)


def test_batch_errors_are_clear(mnist):
    (x_train, y_train), _ = mnist
    images, labels = data.to_model_range(x_train[:8]), y_train[:8].astype("int32")
    unconditional = DiffusionModel(networks.build_network("tiny"), seed=0)
    conditional = DiffusionModel(networks.build_network("tiny", num_classes=10), seed=0)
    for model in (unconditional, conditional):
        model.compile(optimizer="adam")
    batches = tf.data.Dataset.from_tensor_slices
    cases = [
        (unconditional, batches((images, labels)).batch(4), r"unconditional.*make_dataset\(labels=False\)"),
        (conditional, batches(images).batch(4), r"is conditional.*make_dataset\(labels=True\)"),
        (unconditional, batches(images[:, 2:30, 2:30]).batch(4), r"must have shape \(batch, 32, 32, 1\)"),
        (unconditional, batches(np.zeros((8, 32, 32, 1), "uint8")).batch(4), "images must be float"),
    ]
    for model, dataset, message in cases:
        with pytest.raises(ValueError, match=message):
            model.fit(dataset, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.drop_labels(labels)
