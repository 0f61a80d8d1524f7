"""Tests of diffusion_keras.networks: shapes, the call convention, layers against NumPy, FLOPs, saving."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from diffusion_keras import networks


def _randomize_output_head(network, seed=0):
    """Zero-initialised layers (output head, attention outputs) get random weights, so outputs differ."""
    generator = np.random.default_rng(seed)
    for layer in network.layers:
        if layer.name == "output_conv" or isinstance(layer, networks.SelfAttention2D):
            for weight in layer.weights:
                weight.assign(generator.normal(0.0, 0.1, weight.shape).astype("float32"))


def _inputs(digits, batch_size=4, T=1000, labels=None):
    x_t = digits[:batch_size]
    t = np.linspace(0, T - 1, batch_size).astype("int32")
    if labels is None:
        return [x_t, t]
    return [x_t, t, np.asarray(labels, dtype="int32")]


# ----------------------------------------------------------------------------------------------------
# Shapes, dtypes and the call convention
# ----------------------------------------------------------------------------------------------------


def test_unet_shapes_and_dtype_unconditional(digits):
    network = networks.build_network("tiny")
    output = network(_inputs(digits))
    assert network.num_classes is None
    assert network.image_shape == (32, 32, 1)
    assert tuple(output.shape) == (4, 32, 32, 1)
    assert output.dtype == tf.float32
    # zero-initialised head: an untrained network predicts 0 (the mean of the noise)
    np.testing.assert_array_equal(np.asarray(output), 0.0)


def test_unet_conditional_uses_labels_and_null_label(digits):
    keras.utils.set_random_seed(1)
    network = networks.UNet(widths=(8, 16, 16), attention=True, num_classes=10)
    _randomize_output_head(network)
    x_t, t = _inputs(digits, batch_size=2)
    with_class = np.asarray(network([x_t, t, np.array([3, 3], "int32")]))
    with_null = np.asarray(network([x_t, t, np.array([10, 10], "int32")]))  # index num_classes = null
    assert with_class.shape == (2, 32, 32, 1)
    assert np.all(np.isfinite(with_null))
    assert np.abs(with_class - with_null).max() > 1e-4
    # the label embedding has a row for the null label
    assert network.get_layer("label_embedding").embeddings.shape == (11, 4 * 8)


def test_unet_timestep_changes_output(digits):
    keras.utils.set_random_seed(2)
    network = networks.build_network("tiny")
    _randomize_output_head(network)
    x_t = digits[:2]
    early = np.asarray(network([x_t, np.array([0, 0], "int32")]))
    late = np.asarray(network([x_t, np.array([900, 900], "int32")]))
    assert np.abs(early - late).max() > 1e-4


def test_presets_sizes_span_the_documented_range():
    counts = {size: networks.build_network(size).count_params() for size in networks.network_presets}
    assert counts["tiny"] < 200_000
    assert 300_000 <= counts[networks.DEFAULT_PRESET] <= 1_000_000
    assert counts["tiny"] < counts["small"] < counts["medium"] < counts["base"] <= 2_500_000
    assert counts["lean"] < counts["small"]


def test_narrow_upsampling_and_unpadded_digits_cut_the_flops_not_the_shapes(digits):
    small, lean = networks.build_network("small"), networks.build_network("lean")
    # the convolution after each upsampling outputs the width of the level it enters
    assert small.get_layer("up_1_upsample_conv").output.shape[-1] == 48
    assert lean.get_layer("up_1_upsample_conv").output.shape[-1] == 24
    assert lean.get_layer("up_2_upsample_conv").output.shape[-1] == 48
    assert networks.count_flops(lean) / networks.count_flops(small) == pytest.approx(0.83, abs=0.01)
    unpadded = networks.build_network("lean", image_size=28)
    assert unpadded.image_shape == (28, 28, 1)
    # every layer's work scales with its pixels: 28 * 28 / (32 * 32)
    assert networks.count_flops(unpadded) / networks.count_flops(lean) == pytest.approx(784 / 1024, rel=0.01)
    assert networks.count_flops(unpadded) == _flops_from_tensorflow_graph(unpadded, 2, image_size=28)
    x_t, t = _inputs(digits, batch_size=2)
    assert tuple(unpadded([x_t[:, 2:-2, 2:-2], t]).shape) == (2, 28, 28, 1)


def test_article_mlp_predicts_in_model_range_and_ignores_t(digits):
    keras.utils.set_random_seed(3)
    network = networks.ArticleMLP(hidden_units=(64,))
    x_t = digits[:3]
    output = np.asarray(network([x_t, np.array([0, 10, 49], "int32")]))
    assert output.shape == (3, 32, 32, 1) and output.dtype == np.float32
    # 2 * sigmoid - 1 is inside (-1, 1)
    assert output.min() > -1.0 and output.max() < 1.0
    # as in the article, the denoiser is not told the timestep
    same_images_other_t = np.asarray(network([x_t, np.array([49, 0, 5], "int32")]))
    np.testing.assert_allclose(output, same_images_other_t)
    assert network.num_classes is None

    timed = networks.ArticleMLP(hidden_units=(64,), use_timestep=True, num_timesteps=50)
    first = np.asarray(timed([x_t, np.array([0, 0, 0], "int32")]))
    second = np.asarray(timed([x_t, np.array([49, 49, 49], "int32")]))
    assert np.abs(first - second).max() > 1e-5


# ----------------------------------------------------------------------------------------------------
# Layers against independent NumPy computations
# ----------------------------------------------------------------------------------------------------


def test_sinusoidal_embedding_matches_formula():
    layer = networks.SinusoidalEmbedding(8, timestep_scale=20.0)  # e.g. T = 50 -> 1000 / 50
    t = np.array([0, 1, 49], dtype="int32")
    half = 4
    frequencies = 10000.0 ** (-np.arange(half) / half)
    angles = (t[:, None] * 20.0) * frequencies[None, :]
    expected = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    np.testing.assert_allclose(np.asarray(layer(t)), expected, rtol=1e-5, atol=1e-5)


def test_unet_scales_timesteps_to_1000_steps():
    network = networks.UNet(widths=(8, 16), attention=False, num_timesteps=50)
    assert network.get_layer("timestep_embedding").timestep_scale == pytest.approx(20.0)


def _group_norm(x, groups, gamma, beta, epsilon):
    batch, height, width, channels = x.shape
    grouped = x.reshape(batch, height, width, groups, channels // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    variance = grouped.var(axis=(1, 2, 4), keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(variance + epsilon)).reshape(x.shape)
    return normalized * gamma + beta


def test_self_attention_matches_numpy():
    keras.utils.set_random_seed(4)
    layer = networks.SelfAttention2D(groups=4)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    layer(x)  # build
    layer.output_projection.kernel.assign(np.random.default_rng(1).normal(size=(8, 8)).astype("float32"))
    h = _group_norm(x, 4, np.asarray(layer.norm.gamma), np.asarray(layer.norm.beta), layer.norm.epsilon)

    def project(dense, values):
        return values @ np.asarray(dense.kernel) + np.asarray(dense.bias)

    q, k, v = (project(d, h).reshape(2, 16, 8) for d in (layer.query, layer.key, layer.value))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(8)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = x + project(layer.output_projection, (weights @ v).reshape(2, 4, 4, 8))
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_group_normalization_matches_keras_values_and_gradients(center, scale):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (3, 8, 8, 16)).astype(np.float32))  # an offset mean, not unit scale
    ours = networks.GroupNormalization(groups=4, center=center, scale=scale)
    reference = keras.layers.GroupNormalization(groups=4, center=center, scale=scale)
    for layer in (ours, reference):
        layer.build(x.shape)
    weights = [rng.normal(1.0, 0.5, w.shape).astype(np.float32) for w in reference.get_weights()]
    ours.set_weights(weights)
    reference.set_weights(weights)
    outputs, gradients = [], []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y))  # a non-linear loss, so that every gradient term matters
        outputs.append(y.numpy())
        gradients.append([g.numpy() for g in tape.gradient(loss, [x] + layer.trainable_weights)])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-5)
    for mine, theirs in zip(*gradients):
        np.testing.assert_allclose(mine, theirs, atol=1e-4)


def test_group_normalization_loads_weights_saved_by_the_keras_layer(tmp_path):
    # Models saved before the package had its own layer hold keras.layers.GroupNormalization weights.
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 8)).astype(np.float32)
    saved = keras.Sequential([keras.Input((4, 4, 8)), keras.layers.GroupNormalization(groups=2)])
    saved.layers[0].set_weights([np.arange(8, dtype=np.float32), -np.arange(8, dtype=np.float32)])
    saved.save_weights(tmp_path / "old.weights.h5")
    loaded = keras.Sequential([keras.Input((4, 4, 8)), networks.GroupNormalization(groups=2)])
    loaded.load_weights(tmp_path / "old.weights.h5")
    np.testing.assert_allclose(loaded(x), saved(x), atol=2e-5)


def test_group_normalization_under_mixed_precision_matches_float32():
    x = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, (2, 4, 4, 4)), tf.bfloat16)
    mixed = networks.GroupNormalization(groups=2, dtype="mixed_bfloat16")
    y = mixed(x)
    assert y.dtype == tf.bfloat16
    expected = keras.layers.GroupNormalization(groups=2)(tf.cast(x, tf.float32)).numpy()
    # only the bfloat16 rounding of the output (8 significant bits) separates the two
    np.testing.assert_allclose(y.numpy().astype(np.float32), expected, rtol=1e-2, atol=1e-2)


def _conv_values_and_gradients(layer, x, weights):
    layer.build(x.shape)
    layer.set_weights(weights)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.sin(y))  # a non-linear loss, so that dy differs at every position
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x] + layer.trainable_weights)]


@pytest.mark.parametrize(
    "height, channels, filters, kernel_size, strides, padding",
    [
        (16, 3, 5, 3, 1, "same"),
        (8, 4, 6, 3, 1, "same"),  # the U-Net's smallest maps
        (1, 2, 3, 3, 1, "same"),  # a map smaller than the kernel
        (16, 2, 3, 5, 1, "same"),  # a 5x5 kernel
        (16, 2, 3, (3, 5), 1, "same"),  # a kernel of two sizes
        (32, 1, 4, 3, 1, "same"),  # one input channel, like the U-Net's input convolution
        (16, 4, 1, 3, 1, "same"),  # one output channel, like its output convolution
        (16, 6, 4, 1, 1, "valid"),  # 1x1, like the residual blocks' skip projections: a matmul
        (8, 5, 7, 1, 1, "same"),  # 1x1 'same' is the same matmul
        (16, 3, 4, 3, 2, "same"),  # strided: Keras' own path
    ],
)
def test_conv2d_matches_keras_values_and_gradients(height, channels, filters, kernel_size, strides, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, height, height, channels)).astype(np.float32))
    ours = networks.Conv2D(filters, kernel_size, strides=strides, padding=padding)
    reference = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding)
    kernel_shape = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    kernel = rng.normal(size=(*kernel_shape, channels, filters)).astype(np.float32)
    weights = [kernel, rng.normal(size=filters).astype(np.float32)]
    for mine, theirs in zip(_conv_values_and_gradients(ours, x, weights), _conv_values_and_gradients(reference, x, weights)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)


def _gradient_op_types(layer, x):
    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return tape.gradient(y, [x, layer.kernel])

    return {op.type for op in gradients.get_concrete_function(x).graph.get_operations()}


def test_conv2d_computes_its_gradients_with_forward_convolutions_only_where_it_should():
    x = tf.zeros((2, 16, 16, 3))
    fast = _gradient_op_types(networks.Conv2D(4, 3, padding="same"), x)
    assert "Conv2DBackpropInput" not in fast and "Conv2DBackpropFilter" not in fast
    pointwise = _gradient_op_types(networks.Conv2D(4, 1), x)  # the skip projections: matmuls, no convolution
    assert "MatMul" in pointwise and not {op for op in pointwise if op.startswith("Conv2D")}
    strided = _gradient_op_types(networks.Conv2D(4, 3, strides=2, padding="same"), x)
    assert {"Conv2DBackpropInput", "Conv2DBackpropFilter"} <= strided
    mixed = networks.Conv2D(4, 3, padding="same", dtype="mixed_bfloat16")
    assert "Conv2DBackpropInput" in _gradient_op_types(mixed, tf.zeros((2, 16, 16, 3), tf.bfloat16))


def test_conv2d_loads_weights_saved_by_the_keras_layer(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    saved = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same")])
    saved.save_weights(tmp_path / "old.weights.h5")
    loaded = keras.Sequential([keras.Input((8, 8, 3)), networks.Conv2D(4, 3, padding="same")])
    loaded.load_weights(tmp_path / "old.weights.h5")
    np.testing.assert_allclose(loaded(x), saved(x), atol=1e-5)


def test_count_flops_hand_count():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 outputs x 4 channels x 3*3*3 MACs
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(x)  # 4*4 x 6 x 3*3*4
    x = keras.layers.Dense(5)(x)  # applied at 4*4 positions: 6 -> 5
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2)(x)  # 80 -> 2
    model = keras.Model(inputs, outputs)
    hand_count = 2 * (8 * 8 * 4 * 27 + 4 * 4 * 6 * 36 + 16 * 6 * 5 + 80 * 2)
    assert networks.count_flops(model) == hand_count
    assert networks.count_flops(model, batch_size=3) == 3 * hand_count

    mlp = networks.ArticleMLP(hidden_units=(64, 32))
    assert networks.count_flops(mlp) == 2 * (1024 * 64 + 64 * 32 + 32 * 1024)


def _flops_from_tensorflow_graph(network, num_inputs, image_size=32):
    """An independent count: walk the ops TensorFlow actually traces for one image."""
    specs = [tf.TensorSpec((1, image_size, image_size, 1), tf.float32)] + [tf.TensorSpec((1,), tf.int32)] * (num_inputs - 1)
    function = tf.function(lambda *inputs: network(list(inputs), training=False))
    graph = function.get_concrete_function(*specs).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kernel_height, kernel_width, in_channels, _ = op.inputs[1].shape
            total += 2 * math.prod(op.outputs[0].shape) * kernel_height * kernel_width * in_channels
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            left = op.inputs[0].shape
            total += 2 * math.prod(op.outputs[0].shape) * (left[-2] if transposed else left[-1])
    return total


def test_count_flops_matches_tensorflow_graph():
    network = networks.UNet(widths=(8, 16, 16), attention=True, num_classes=10)
    assert networks.count_flops(network) == _flops_from_tensorflow_graph(network, 3)


def test_count_flops_rejects_subclassed_models():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="functional API"):
        networks.count_flops(model)


# ----------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unet", "unet_narrow_28", "article_mlp"])
def test_network_keras_file_round_trip(tmp_path, digits, kind):
    keras.utils.set_random_seed(5)
    if kind == "unet":
        network = networks.UNet(widths=(8, 16, 16), attention=True, num_classes=10, num_timesteps=50)
        _randomize_output_head(network)
        inputs = _inputs(digits, T=50, labels=[0, 4, 9, 10])
    elif kind == "unet_narrow_28":
        network = networks.UNet(widths=(8, 16, 16), narrow_upsampling=True, image_size=28, num_timesteps=50)
        _randomize_output_head(network)
        x_t, t = _inputs(digits, T=50)
        inputs = [x_t[:, 2:-2, 2:-2], t]
    else:
        network = networks.ArticleMLP(hidden_units=(32,), use_timestep=True, num_timesteps=50)
        inputs = _inputs(digits, T=50)
    path = tmp_path / f"{kind}.keras"
    network.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(network)
    assert loaded.get_config() == network.get_config()
    np.testing.assert_allclose(np.asarray(loaded(inputs)), np.asarray(network(inputs)), atol=1e-6)
    assert np.abs(np.asarray(network(inputs))).max() > 1e-4  # the comparison is not 0 == 0


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


def test_call_errors_name_the_argument(digits):
    unconditional = networks.build_network("tiny")
    conditional = networks.build_network("tiny", num_classes=10)
    x_t, t = _inputs(digits, batch_size=2)
    labels = np.array([1, 2], "int32")
    cases = [
        (unconditional, [x_t, t, labels], "unconditional"),
        (conditional, [x_t, t], r"\[x_t, t, labels\]"),
        (unconditional, [x_t[:, 2:30, 2:30], t], r"x_t must have shape \(batch, 32, 32, 1\)"),
        (unconditional, [x_t[..., 0], t], "x_t must have shape"),
        (unconditional, [x_t, t.astype("float32")], "t must be an integer"),
        (unconditional, [x_t, t[:, None]], r"t must have shape \(batch,\)"),
        (unconditional, [x_t, t[:1]], "one entry per image"),
        (conditional, [x_t, t, labels.astype("float32")], "labels must be an integer"),
        (unconditional, x_t, "must be called on a list"),
    ]
    for network, inputs, message in cases:
        with pytest.raises(ValueError, match=message):
            network(inputs)


def test_constructor_errors():
    with pytest.raises(ValueError, match="size must be one of"):
        networks.build_network("huge")
    with pytest.raises(ValueError, match="divisible by norm_groups"):
        networks.UNet(widths=(12, 24))
    with pytest.raises(ValueError, match="image_size=32 must be divisible"):
        networks.UNet(widths=(8, 8, 8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="num_classes must be None"):
        networks.UNet(num_classes=0)
    with pytest.raises(ValueError, match="narrow_upsampling must be True or False; received 'yes'"):
        networks.UNet(narrow_upsampling="yes")
    with pytest.raises(ValueError, match="embedding_dim must be even"):
        networks.SinusoidalEmbedding(7)
    with pytest.raises(ValueError, match="hidden_units"):
        networks.ArticleMLP(hidden_units=(0,))
