"""Denoising networks: a small U-Net, the origin article's dense MLP, and a FLOP counter.

Every network here follows one call convention, which the trainer (``model.DiffusionModel``) and the
samplers rely on:

    prediction = network([x_t, t])            # unconditional (network.num_classes is None)
    prediction = network([x_t, t, labels])    # conditional   (network.num_classes == 10, say)

==========  ==============================  ==================================================
argument    shape, dtype                    meaning
==========  ==============================  ==================================================
``x_t``     (batch, 32, 32, 1), float32     noisy images in model space
``t``       (batch,), int32                 0-based timesteps in [0, T-1] (see ``schedules``)
``labels``  (batch,), int32                 class in [0, num_classes - 1], or ``num_classes``
                                            for the learned "null" label (no class given)
output      (batch, 32, 32, 1), float32     the prediction (eps, x_0 or v: the trainer decides)
==========  ==============================  ==================================================

The output is float32 even under a ``mixed_bfloat16`` policy, so losses and samplers never see
bfloat16 numbers.

The networks know nothing of the noise schedule except its length T (``num_timesteps``), which sets
the scale of the timestep embedding. They are Keras functional models wrapped in registered
``keras.Model`` subclasses: ``network.summary()`` shows every layer, ``get_config`` holds only the
constructor arguments, and a saved ``.keras`` file loads with ``safe_mode=True`` (no ``Lambda``).
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from diffusion_keras import _backend  # noqa: F401

PACKAGE = "diffusion_keras"
# The embedding is computed as if the process had this many steps, whatever T is (see
# SinusoidalEmbedding): it is the T of Ho et al. 2020, whose U-Net our sizes follow.
REFERENCE_TIMESTEPS = 1000
# Self-attention is added at feature maps of this side length or smaller (8x8 for 32x32 inputs).
ATTENTION_RESOLUTION = 8

# Named U-Net sizes; parameters and forward FLOPs per image (``count_flops``) are in ``build_network``'s
# docstring. "tiny" exists for tests and CI. "small" is the default: in the 15-minute recipe ablation
# (model card) it beat "medium", which sees half as many images in the same CPU time.
network_presets = {
    "tiny": {"widths": (8, 16, 32), "blocks_per_level": 1, "attention": False},
    "small": {"widths": (24, 48, 64), "blocks_per_level": 1, "attention": True},
    # "small" with narrow upsampling: 17% fewer FLOPs per image, all of them in the decoder
    "lean": {"widths": (24, 48, 64), "blocks_per_level": 1, "attention": True, "narrow_upsampling": True},
    "medium": {"widths": (32, 64, 96), "blocks_per_level": 1, "attention": True},
    "base": {"widths": (32, 64, 96), "blocks_per_level": 2, "attention": True},
}
DEFAULT_PRESET = "small"  # the shipped conditional model's preset; train's default is "lean" (training.DEFAULTS)


# ----------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
class SinusoidalEmbedding(layers.Layer):
    """Embed integer timesteps as sines and cosines of geometrically spaced frequencies.

    This is the Transformer position encoding (Vaswani et al. 2017, "Attention Is All You Need",
    Sec. 3.5) used for diffusion timesteps by Ho et al. 2020 (Appendix B). For frequency index
    ``i = 0 .. embedding_dim/2 - 1``:

        frequency_i = max_period ** (-i / (embedding_dim / 2))
        embedding(t) = [sin(s * t * frequency_i) ..., cos(s * t * frequency_i) ...]

    where ``s = timestep_scale``. The U-Net sets ``s = 1000 / T``, so a 50-step process and a
    1000-step process span the same range of angles (0 to ~1000 radians at the fastest frequency).

    The layer computes in float32 whatever the global dtype policy is: in bfloat16 a timestep of 999
    rounds to 1000 and its sine is meaningless.

    Args:
        embedding_dim: even integer, the output size.
        max_period: the slowest wavelength, in (scaled) timesteps. 10000 as in Vaswani et al.
        timestep_scale: positive float ``s`` multiplied into ``t`` before the sines.

    Call arguments:
        t: integer tensor of shape (batch,).

    Returns:
        float32 tensor of shape (batch, embedding_dim).

    Example:

    >>> layer = SinusoidalEmbedding(32)
    >>> layer(ops.convert_to_tensor([0, 10, 999], "int32")).shape
    TensorShape([3, 32])
    """

    def __init__(self, embedding_dim, max_period=10000.0, timestep_scale=1.0, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 2:
            raise ValueError(f"embedding_dim must be an even integer >= 2; received {embedding_dim!r}.")
        if embedding_dim % 2:
            raise ValueError(
                f"embedding_dim must be even (half sines, half cosines); received {embedding_dim}."
            )
        if not max_period > 1:
            raise ValueError(f"max_period must be a number > 1; received {max_period!r}.")
        if not timestep_scale > 0:
            raise ValueError(f"timestep_scale must be a number > 0; received {timestep_scale!r}.")
        self.embedding_dim = embedding_dim
        self.max_period = float(max_period)
        self.timestep_scale = float(timestep_scale)

    def call(self, t):
        half = self.embedding_dim // 2
        exponents = ops.arange(half, dtype="float32") / half
        frequencies = ops.exp(-math.log(self.max_period) * exponents)  # (half,)
        scaled_t = ops.cast(t, "float32") * self.timestep_scale
        angles = scaled_t[:, None] * frequencies[None, :]  # (batch, half)
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "max_period": self.max_period,
                "timestep_scale": self.timestep_scale,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupNormalization(layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` (Wu & He 2018, Eq. 1-3 with the groups of Sec. 3.1), computed
    in fewer passes over memory for channels-last images.

    The channels are split into ``groups`` groups; every image's group is normalised by its own mean
    and variance over height, width and the group's channels, then each channel gets a learned scale
    ``gamma`` and shift ``beta``:

        y = gamma * (x - mean_g) / sqrt(var_g + epsilon) + beta

    Same arguments, weights and results as the Keras layer; only ``call`` differs. Keras reshapes x
    to (batch, height, width, groups, channels per group) and normalises that 5-D tensor; here the
    statistics come from per-channel means of x and x^2 (one reduction each over height and width),
    averaged within each group, with var = E[x^2] - E[x]^2, and the output is one multiply-add with a
    per-image, per-channel factor and offset broadcast over (height, width). On the 2-core CPU this
    speeds a training step of the default U-Net up (README, Performance). The class keeps Keras' name
    so that models saved with the Keras layer load into this one and the other way round. The
    statistics are computed in float32 under mixed precision, as Keras does.
    """

    def call(self, inputs):
        if len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return super().call(inputs)  # the general case, e.g. channels-first or 1-D inputs
        channels = inputs.shape[-1]
        group_shape = (-1, self.groups, channels // self.groups)
        x = ops.cast(inputs, "float32")

        def group_mean(values):  # (batch, height, width, channels) -> (batch, groups, 1)
            return ops.mean(ops.reshape(ops.mean(values, axis=(1, 2)), group_shape), axis=2, keepdims=True)

        mean = group_mean(x)
        variance = ops.maximum(group_mean(ops.square(x)) - ops.square(mean), 0.0)
        per_channel = (1, self.groups, channels // self.groups)
        gamma = ops.reshape(ops.cast(self.gamma, "float32"), per_channel) if self.scale else ops.ones(per_channel)
        beta = ops.reshape(ops.cast(self.beta, "float32"), per_channel) if self.center else ops.zeros(per_channel)
        scale = gamma * ops.rsqrt(variance + self.epsilon)  # (batch, groups, channels per group)
        offset = beta - mean * scale
        scale = ops.reshape(scale, (-1, 1, 1, channels))
        offset = ops.reshape(offset, (-1, 1, 1, channels))
        return ops.cast(x * scale + offset, self.compute_dtype)


def _conv2d_input_gradient(dy, kernel):
    """Gradient of a unit-stride, 'same', odd-sized convolution with respect to its input.

    The transpose of such a convolution is the same convolution with the kernel turned 180 degrees and
    its input and output channels swapped (Dumoulin & Visin 2016, "A guide to convolution arithmetic
    for deep learning", Sec. 4: half padding, transposed). ``dy``: (batch, height, width, out),
    ``kernel``: (k, k, in, out); returns (batch, height, width, in).
    """
    return tf.nn.conv2d(dy, tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2]), 1, "SAME")


def _conv2d_kernel_gradient(x, dy, kernel):
    """Gradient of a unit-stride, 'same', odd-sized convolution with respect to its kernel.

    dK[i, j, c, o] = sum over (b, y, x) of x[b, y + i - h, x + j - h, c] * dy[b, y, x, o], with h = k // 2
    per axis and x zero outside the map. That is a convolution of dy, with its channels o as the batch
    and the images b as the input channels, by x used as a (height, width, b, c) kernel as big as the map:
    with dy padded by h on each side it has k x k outputs, and output (k - 1 - i, k - 1 - j) holds tap
    (i, j). On the 2-core CPU this ran faster than the converse arrangement (padded x as the batch, dy as
    the kernel) and than TensorFlow's kernel-gradient op, on the U-Net's maps of 8, 16 and 32 pixels.
    """
    half_height, half_width = kernel.shape[0] // 2, kernel.shape[1] // 2
    gradient = tf.nn.conv2d(
        tf.transpose(dy, [3, 1, 2, 0]),  # (out, height, width, batch)
        tf.transpose(x, [1, 2, 0, 3]),  # (height, width, batch, in)
        1,
        [[0, 0], [half_height, half_height], [half_width, half_width], [0, 0]],
    )  # (out, k, k, in), taps turned 180 degrees
    return tf.transpose(tf.reverse(gradient, [1, 2]), [1, 2, 3, 0])


def _pointwise_conv2d(x, kernel):
    """A unit-stride 1x1 convolution as one matmul: (batch * height * width, in) @ (in, out).

    Automatic differentiation then gives matmuls for both gradients (dx = dy K^T, dK = x^T dy) instead of
    TensorFlow's convolution ops, which were slower at the U-Net's skip projections on the 2-core CPU.
    ``x``: (batch, height, width, in), ``kernel``: (1, 1, in, out).
    """
    outputs = tf.matmul(tf.reshape(x, (-1, x.shape[-1])), kernel[0, 0])
    return tf.reshape(outputs, tf.concat([tf.shape(x)[:-1], [kernel.shape[-1]]], axis=0))


@tf.custom_gradient
def _conv2d_same(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` whose two gradients are forward convolutions too."""

    def gradient(dy):
        return _conv2d_input_gradient(dy, kernel), _conv2d_kernel_gradient(x, dy, kernel)

    return tf.nn.conv2d(x, kernel, 1, "SAME"), gradient


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(layers.Conv2D):
    """``keras.layers.Conv2D`` with a faster backward pass for the U-Net's convolutions on a CPU.

    Same arguments, weights, outputs and gradients as the Keras layer. In float32 with no GPU visible:

    * a unit-stride, 'same' convolution with an odd kernel computes its two gradients as forward
      convolutions (``_conv2d_input_gradient``, ``_conv2d_kernel_gradient``): on the 2-core CPU
      TensorFlow's forward convolution is faster than its backward ops at these small channel counts;
    * a unit-stride 1x1 convolution (the residual blocks' skip projections) is one matmul over the
      channels (``_pointwise_conv2d``), whose gradients are matmuls too.

    The first made a training step of the default U-Net about 20% faster (README, Performance). The
    second is faster alone at the U-Net's five skip projections (34 -> 27 ms forward and backward for
    32 images in all), under 2% of a step and within ``bench``'s noise. Other convolutions (strided,
    bfloat16, on a GPU) use Keras' own path. Like ``GroupNormalization``, the class keeps Keras' name
    and weights, so weights saved with either layer load into the other.
    """

    def convolution_op(self, inputs, kernel):
        plain = (
            tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.data_format == "channels_last"
            and self.groups == 1
            and self.compute_dtype == "float32"
            and not tf.config.list_logical_devices("GPU")
        )
        if plain and tuple(self.kernel_size) == (1, 1):  # 'same' and 'valid' are the same for 1x1
            return _pointwise_conv2d(inputs, tf.convert_to_tensor(kernel))
        if plain and self.padding == "same" and all(size % 2 == 1 for size in self.kernel_size):
            return _conv2d_same(inputs, tf.convert_to_tensor(kernel))
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelfAttention2D(layers.Layer):
    """Single-head self-attention over the pixels of a feature map, with a residual connection.

    Every pixel attends to every other pixel, which lets the network relate distant strokes of a
    digit; it costs ``(height * width)^2`` so the U-Net uses it only at 8x8. Following Ho et al. 2020
    (Appendix B, after Wang et al. 2018 "Non-local Neural Networks"):

        h = GroupNorm(x);  q, k, v = h W_q, h W_k, h W_v          (1x1 projections)
        attention = softmax(q k^T / sqrt(channels))               (Vaswani et al. 2017, Eq. 1)
        output = x + (attention v) W_out

    ``W_out`` starts at zero, so a new block is the identity and training starts from a plain
    residual network.

    Args:
        groups: number of groups of the GroupNormalization (Wu & He 2018); must divide the channels.

    Call arguments:
        x: float tensor of shape (batch, height, width, channels).

    Example:

    >>> attention = SelfAttention2D(groups=8)
    >>> attention(keras.random.normal((2, 8, 8, 32))).shape
    TensorShape([2, 8, 8, 32])
    """

    def __init__(self, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups
        self.norm = GroupNormalization(groups=groups, name="norm")
        self.query = None  # the projections need the channel count; made in build()

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"SelfAttention2D needs channels divisible by groups={self.groups}; received input "
                f"shape {tuple(input_shape)}."
            )
        self.norm.build(input_shape)
        self.query = layers.Dense(channels, name="query")
        self.key = layers.Dense(channels, name="key")
        self.value = layers.Dense(channels, name="value")
        self.output_projection = layers.Dense(channels, kernel_initializer="zeros", name="output")
        for projection in (self.query, self.key, self.value, self.output_projection):
            projection.build(input_shape)

    def call(self, x):
        shape = ops.shape(x)
        batch, height, width, channels = shape[0], shape[1], shape[2], x.shape[-1]
        h = self.norm(x)
        q = ops.reshape(self.query(h), (batch, height * width, channels))  # (batch, pixels, channels)
        k = ops.reshape(self.key(h), (batch, height * width, channels))
        v = ops.reshape(self.value(h), (batch, height * width, channels))
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) / math.sqrt(channels)  # (batch, p, p)
        # softmax in float32: bfloat16 exponentials of large scores lose the small weights
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), v.dtype)
        attended = ops.reshape(ops.matmul(weights, v), (batch, height, width, channels))
        return x + self.output_projection(attended)

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_flops(self, input_shape):
        """Forward FLOPs for one example: 4 projections plus the two attention products."""
        pixels = input_shape[1] * input_shape[2]
        channels = input_shape[-1]
        projections = 4 * 2 * pixels * channels * channels
        products = 2 * (2 * pixels * pixels * channels)  # q k^T and attention v
        return projections + products

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config


# ----------------------------------------------------------------------------------------------------
# Shared pieces of the call convention
# ----------------------------------------------------------------------------------------------------


def _check_positive_int(value, argument):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be an integer >= 1; received {value!r}.")


def _check_num_classes(num_classes):
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(
            "num_classes must be None (unconditional) or an integer >= 1, e.g. 10 for MNIST digits; "
            f"received {num_classes!r}."
        )


def _network_inputs(image_size, channels, num_classes):
    """The Keras inputs of the call convention: [x_t, t] or [x_t, t, labels]."""
    x_t = keras.Input((image_size, image_size, channels), name="x_t")  # (batch, 32, 32, 1)
    t = keras.Input((), dtype="int32", name="t")  # (batch,)
    if num_classes is None:
        return [x_t, t]
    labels = keras.Input((), dtype="int32", name="labels")  # (batch,), num_classes = "null"
    return [x_t, t, labels]


def _dtype_name(value):
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return type(value).__name__
    return keras.backend.standardize_dtype(dtype)


def _check_call_inputs(network, inputs):
    """Validate [x_t, t(, labels)] against the network's convention, with errors that say the fix."""
    conditional = network.num_classes is not None
    expected = "[x_t, t, labels]" if conditional else "[x_t, t]"
    if not isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"{network.name} must be called on a list {expected}; received a single "
            f"{type(inputs).__name__}. Example: network([x_t, t])."
        )
    if not conditional and len(inputs) == 3:
        raise ValueError(
            f"{network.name} is unconditional (num_classes=None) but received 3 inputs "
            "[x_t, t, labels]. Call it as network([x_t, t]), or build a conditional network with "
            "num_classes=10."
        )
    if len(inputs) != (3 if conditional else 2):
        raise ValueError(
            f"{network.name} expects {expected} (num_classes={network.num_classes}); received "
            f"{len(inputs)} inputs."
        )
    x_t = inputs[0]
    image_shape = tuple(getattr(x_t, "shape", ()))
    if len(image_shape) != 4 or tuple(image_shape[1:]) != network.image_shape:
        raise ValueError(
            f"x_t must have shape (batch, {', '.join(map(str, network.image_shape))}); received shape "
            f"{image_shape}. MNIST digits become (batch, 32, 32, 1) through "
            "diffusion_keras.data.to_model_range."
        )
    if not _dtype_name(x_t).startswith(("float", "bfloat")):
        raise ValueError(f"x_t must be a float tensor; received dtype {_dtype_name(x_t)}.")
    for argument, value in zip(("t", "labels"), inputs[1:]):
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != 1:
            raise ValueError(
                f"{argument} must have shape (batch,), one integer per image; received shape {shape}."
            )
        if not _dtype_name(value).startswith(("int", "uint")):
            what = "0-based timesteps in [0, T-1]" if argument == "t" else (
                f"class labels in [0, {network.num_classes}] ({network.num_classes} = null label)"
            )
            raise ValueError(
                f"{argument} must be an integer tensor of {what}; received dtype {_dtype_name(value)}."
            )
        if shape[0] is not None and image_shape[0] is not None and shape[0] != image_shape[0]:
            raise ValueError(
                f"{argument} must have one entry per image of x_t, shape ({image_shape[0]},); "
                f"received shape {shape}."
            )


class _ConventionMixin:
    """Input checks and the ``image_shape`` property shared by the networks of this module."""

    @property
    def image_shape(self):
        """The shape of one image, ``(image_size, image_size, channels)``."""
        return (self.image_size, self.image_size, self.channels)

    def __call__(self, inputs, *args, **kwargs):
        # Keras refuses a list that mixes tensors and NumPy arrays, e.g. [x_t_tensor, np.array(t)].
        if isinstance(inputs, (list, tuple)):
            inputs = [
                ops.convert_to_tensor(value) if isinstance(value, np.ndarray) else value for value in inputs
            ]
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        _check_call_inputs(self, inputs)
        inputs = [ops.convert_to_tensor(value) for value in inputs]
        inputs = [inputs[0]] + [ops.cast(value, "int32") for value in inputs[1:]]
        return super().call(inputs, training=training, mask=mask)


# ----------------------------------------------------------------------------------------------------
# U-Net
# ----------------------------------------------------------------------------------------------------


def _residual_block(x, embedding, width, groups, dropout, name):
    """Residual block of Ho et al. 2020 (Appendix B), the timestep embedding added in the middle.

    ``out = skip(x) + conv(swish(norm(conv(swish(norm(x))) + dense(embedding))))``
    """
    skip = x if x.shape[-1] == width else Conv2D(width, 1, name=f"{name}_skip")(x)
    h = GroupNormalization(groups, name=f"{name}_norm_1")(x)
    h = layers.Activation("swish", name=f"{name}_swish_1")(h)
    h = Conv2D(width, 3, padding="same", name=f"{name}_conv_1")(h)
    # the embedding shifts every channel: it tells the block how noisy its input is
    shift = layers.Dense(width, name=f"{name}_embedding")(embedding)
    shift = layers.Reshape((1, 1, width), name=f"{name}_embedding_reshape")(shift)  # (batch, 1, 1, width)
    h = layers.Add(name=f"{name}_add_embedding")([h, shift])
    h = GroupNormalization(groups, name=f"{name}_norm_2")(h)
    h = layers.Activation("swish", name=f"{name}_swish_2")(h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_dropout")(h)
    h = Conv2D(width, 3, padding="same", name=f"{name}_conv_2")(h)
    return layers.Add(name=f"{name}_add_skip")([skip, h])


@keras.saving.register_keras_serializable(package=PACKAGE)
class UNet(_ConventionMixin, keras.Model):
    """A small U-Net denoiser for 32x32 images (after Ho et al. 2020, Appendix B).

    The encoder halves the image at each level (32 -> 16 -> 8 for three widths), the decoder doubles it
    back, and every decoder block also reads the encoder features of the same size (skip connections,
    Ronneberger et al. 2015). Each residual block normalises with GroupNorm (Wu & He 2018), uses the
    swish activation, and receives the timestep embedding: sinusoidal features of t (see
    ``SinusoidalEmbedding``) passed through a two-layer MLP. With ``num_classes`` set, a learned
    label embedding is added to the timestep embedding; label ``num_classes`` is the learned "null"
    label, so one network can be trained for classifier-free guidance (Ho & Salimans 2022).

    Timesteps enter as ``t * 1000 / num_timesteps``: the network needs to know T only for that scale,
    and nothing else about the schedule.

    The last convolution starts at zero, so an untrained network predicts 0 everywhere (the mean of
    the noise) and the epsilon loss starts at ~1.

    Args:
        widths: channels at each resolution level, e.g. ``(32, 64, 96)`` for 32x32, 16x16, 8x8.
            Each must be divisible by ``norm_groups``.
        blocks_per_level: residual blocks per level, in the encoder and in the decoder.
        attention: add ``SelfAttention2D`` at levels of 8x8 or smaller and in the middle.
        narrow_upsampling: if True, the convolution after each upsampling outputs the width of the
            level it enters (``widths[level - 1]``) instead of keeping the width of the level it
            leaves. It is the decoder's most expensive layer at full resolution, and the block after
            it then reads a narrower concatenation: 17% fewer FLOPs for ``widths=(24, 48, 64)``.
        num_classes: None for an unconditional network, or the number of classes (10 for MNIST).
        num_timesteps: T, the number of diffusion steps of the schedule it will be trained with.
        image_size: side length of the square input; must be divisible by ``2**(len(widths)-1)``.
        channels: image channels (1 for MNIST).
        norm_groups: groups of every GroupNormalization.
        dropout: dropout rate inside the residual blocks (0 turns it off).
        name: the model's name.

    Call arguments:
        inputs: ``[x_t, t]``, or ``[x_t, t, labels]`` when ``num_classes`` is set (see the module
            docstring for shapes and dtypes).
        training: whether dropout is active.

    Returns:
        float32 tensor with the shape of ``x_t``.

    Example:

    >>> network = UNet(widths=(16, 32, 48), attention=False)
    >>> x_t = keras.random.normal((2, 32, 32, 1))
    >>> network([x_t, ops.convert_to_tensor([0, 999], "int32")]).shape
    TensorShape([2, 32, 32, 1])
    """

    def __init__(
        self,
        widths=(32, 64, 96),
        blocks_per_level=1,
        attention=True,
        num_classes=None,
        num_timesteps=REFERENCE_TIMESTEPS,
        image_size=32,
        channels=1,
        norm_groups=8,
        dropout=0.0,
        narrow_upsampling=False,
        name="unet",
        **kwargs,
    ):
        widths = tuple(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of integers >= 1; received {widths!r}.")
        _check_positive_int(norm_groups, "norm_groups")
        if any(width % norm_groups for width in widths):
            raise ValueError(
                f"every width must be divisible by norm_groups={norm_groups} (GroupNorm splits the "
                f"channels into equal groups); received widths={widths}."
            )
        _check_positive_int(blocks_per_level, "blocks_per_level")
        _check_num_classes(num_classes)
        _check_positive_int(num_timesteps, "num_timesteps")
        _check_positive_int(image_size, "image_size")
        _check_positive_int(channels, "channels")
        if image_size % (2 ** (len(widths) - 1)):
            raise ValueError(
                f"image_size={image_size} must be divisible by 2**(len(widths) - 1) = "
                f"{2 ** (len(widths) - 1)}, the total downsampling of {len(widths)} levels."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); received {dropout!r}.")
        if not isinstance(narrow_upsampling, (bool, np.bool_)):
            raise ValueError(f"narrow_upsampling must be True or False; received {narrow_upsampling!r}.")

        inputs = _network_inputs(image_size, channels, num_classes)
        x_t, t = inputs[0], inputs[1]
        embedding_dim = 4 * widths[0]

        # 1. Timestep embedding: sinusoids, then an MLP (Ho et al. 2020, Appendix B).
        embedding = SinusoidalEmbedding(
            widths[0], timestep_scale=REFERENCE_TIMESTEPS / num_timesteps, name="timestep_embedding"
        )(t)
        embedding = layers.Dense(embedding_dim, activation="swish", name="embedding_dense_1")(embedding)
        embedding = layers.Dense(embedding_dim, name="embedding_dense_2")(embedding)
        # 2. Class embedding added to it; row num_classes is the learned null label.
        if num_classes is not None:
            label_embedding = layers.Embedding(num_classes + 1, embedding_dim, name="label_embedding")(
                inputs[2]
            )
            embedding = layers.Add(name="add_label_embedding")([embedding, label_embedding])
        embedding = layers.Activation("swish", name="embedding_swish")(embedding)

        # 3. Encoder: residual blocks, keeping each output for the decoder, then downsample.
        x = Conv2D(widths[0], 3, padding="same", name="input_conv")(x_t)
        skips = []
        resolution = image_size
        for level, width in enumerate(widths):
            for block in range(blocks_per_level):
                block_name = f"down_{level}_block_{block}"
                x = _residual_block(x, embedding, width, norm_groups, dropout, block_name)
                if attention and resolution <= ATTENTION_RESOLUTION:
                    x = SelfAttention2D(norm_groups, name=f"{block_name}_attention")(x)
                skips.append(x)
            if level < len(widths) - 1:
                x = Conv2D(width, 3, strides=2, padding="same", name=f"down_{level}_downsample")(x)
                resolution //= 2

        # 4. Middle: two residual blocks around self-attention at the lowest resolution.
        x = _residual_block(x, embedding, widths[-1], norm_groups, dropout, "middle_block_0")
        if attention:
            x = SelfAttention2D(norm_groups, name="middle_attention")(x)
        x = _residual_block(x, embedding, widths[-1], norm_groups, dropout, "middle_block_1")

        # 5. Decoder: each block reads the matching encoder output, then upsample.
        for level in reversed(range(len(widths))):
            width = widths[level]
            for block in range(blocks_per_level):
                block_name = f"up_{level}_block_{block}"
                x = layers.Concatenate(name=f"{block_name}_concat_skip")([x, skips.pop()])
                x = _residual_block(x, embedding, width, norm_groups, dropout, block_name)
                if attention and resolution <= ATTENTION_RESOLUTION:
                    x = SelfAttention2D(norm_groups, name=f"{block_name}_attention")(x)
            if level > 0:
                x = layers.UpSampling2D(2, interpolation="nearest", name=f"up_{level}_upsample")(x)
                upsample_width = widths[level - 1] if narrow_upsampling else width
                x = Conv2D(upsample_width, 3, padding="same", name=f"up_{level}_upsample_conv")(x)
                resolution *= 2

        # 6. Output head; zero-initialised so training starts from "predict 0".
        x = GroupNormalization(norm_groups, name="output_norm")(x)
        x = layers.Activation("swish", name="output_swish")(x)
        x = Conv2D(channels, 3, padding="same", kernel_initializer="zeros", name="output_conv")(x)
        # float32 output even under mixed precision: losses and samplers stay in float32
        outputs = layers.Activation("linear", dtype="float32", name="output_float32")(x)

        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # The checks in call() give clearer messages than Keras' generic input-spec check.
        self.input_spec = None
        self.widths = widths
        self.blocks_per_level = blocks_per_level
        self.attention = bool(attention)
        self.num_classes = num_classes
        self.num_timesteps = num_timesteps
        self.image_size = image_size
        self.channels = channels
        self.norm_groups = norm_groups
        self.dropout = float(dropout)
        self.narrow_upsampling = bool(narrow_upsampling)

    def get_config(self):
        return {
            "name": self.name,
            "widths": list(self.widths),
            "blocks_per_level": self.blocks_per_level,
            "attention": self.attention,
            "num_classes": self.num_classes,
            "num_timesteps": self.num_timesteps,
            "image_size": self.image_size,
            "channels": self.channels,
            "norm_groups": self.norm_groups,
            "dropout": self.dropout,
            "narrow_upsampling": self.narrow_upsampling,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# ----------------------------------------------------------------------------------------------------
# The origin article's denoiser
# ----------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
class ArticleMLP(_ConventionMixin, keras.Model):
    """The origin article's denoiser: a dense network on the flattened image that predicts x_0.

    The image is flattened, passed through dense layers, and the last layer has a sigmoid, so its
    natural range is [0, 1] (pixel intensities). Our data live in [-1, 1], so the sigmoid output is
    mapped back with ``x_0 = 2 * sigmoid(z) - 1`` (a ``Rescaling`` layer): the network predicts
    x_0 directly in model space and trains with ``DiffusionModel(target="x0")``. The bound is the
    point of the sigmoid: the prediction can never leave the data range.

    It is a baseline to measure, not a recommendation: it sees no spatial structure, and trained with
    MSE on x_0 from pure noise it learns the blurry mean digit.

    It takes the same inputs as ``UNet``. As in the article, the denoiser is not told the timestep
    by default (``t`` is accepted and ignored); ``use_timestep=True`` concatenates a sinusoidal
    embedding of ``t`` to the image. The hidden sizes and activation are our choice; the article
    fixes only "dense layers with a sigmoid output".

    Args:
        hidden_units: sizes of the hidden dense layers.
        activation: activation of the hidden layers.
        use_timestep: whether the network reads ``t``.
        num_timesteps: T, used to scale the timestep embedding when ``use_timestep`` is True.
        image_size: side length of the square input.
        channels: image channels.
        name: the model's name.

    Call arguments:
        inputs: ``[x_t, t]``.

    Returns:
        float32 tensor with the shape of ``x_t``, values in [-1, 1].

    Example:

    >>> network = ArticleMLP(hidden_units=(256, 256))
    >>> x_t = keras.random.normal((2, 32, 32, 1))
    >>> network([x_t, ops.convert_to_tensor([0, 49], "int32")]).shape
    TensorShape([2, 32, 32, 1])
    """

    def __init__(
        self,
        hidden_units=(512, 512),
        activation="relu",
        use_timestep=False,
        num_timesteps=REFERENCE_TIMESTEPS,
        image_size=32,
        channels=1,
        name="article_mlp",
        **kwargs,
    ):
        hidden_units = tuple(hidden_units)
        if any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in hidden_units):
            raise ValueError(
                f"hidden_units must be a sequence of integers >= 1; received {hidden_units!r}."
            )
        _check_positive_int(num_timesteps, "num_timesteps")
        _check_positive_int(image_size, "image_size")
        _check_positive_int(channels, "channels")

        inputs = _network_inputs(image_size, channels, None)
        x_t, t = inputs
        x = layers.Flatten(name="flatten")(x_t)  # (batch, 1024)
        if use_timestep:
            embedding = SinusoidalEmbedding(
                32, timestep_scale=REFERENCE_TIMESTEPS / num_timesteps, name="timestep_embedding"
            )(t)
            x = layers.Concatenate(name="concat_timestep")([x, embedding])
        for index, units in enumerate(hidden_units):
            x = layers.Dense(units, activation=activation, name=f"hidden_{index}")(x)
        pixels = image_size * image_size * channels
        x = layers.Dense(pixels, activation="sigmoid", name="output_dense")(x)  # in [0, 1]
        x = layers.Rescaling(2.0, offset=-1.0, name="to_model_range")(x)  # [0, 1] -> [-1, 1]
        x = layers.Reshape((image_size, image_size, channels), name="to_image")(x)
        outputs = layers.Activation("linear", dtype="float32", name="output_float32")(x)

        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.input_spec = None
        self.hidden_units = hidden_units
        self.activation = activation
        self.use_timestep = bool(use_timestep)
        self.num_classes = None
        self.num_timesteps = num_timesteps
        self.image_size = image_size
        self.channels = channels

    def get_config(self):
        return {
            "name": self.name,
            "hidden_units": list(self.hidden_units),
            "activation": self.activation,
            "use_timestep": self.use_timestep,
            "num_timesteps": self.num_timesteps,
            "image_size": self.image_size,
            "channels": self.channels,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# ----------------------------------------------------------------------------------------------------
# Builders and measurement
# ----------------------------------------------------------------------------------------------------


def build_network(size=DEFAULT_PRESET, num_classes=None, num_timesteps=REFERENCE_TIMESTEPS, **overrides):
    """Build a ``UNet`` from a named preset in ``network_presets``.

    ==========  =============  ======  =========  ==========  ================  ================================
    size        widths         blocks  attention  parameters  forward FLOPs     use
                                                              per image
    ==========  =============  ======  =========  ==========  ================  ================================
    ``tiny``    (8, 16, 32)    1       no         121,177     35.1 M            tests, CI
    ``small``   (24, 48, 64)   1       yes        661,353     241.7 M           shipped conditional
    ``lean``    (24, 48, 64)   1       yes        628,209     200.0 M           ``train``, shipped unconditional
    ``medium``  (32, 64, 96)   1       yes        1,376,769   463.0 M           ablation row
    ``base``    (32, 64, 96)   2       yes        2,177,857   728.3 M           largest preset
    ==========  =============  ======  =========  ==========  ================  ================================

    (Unconditional networks with T = 1000 on 32x32 inputs; ``num_classes=10`` adds ``11 * 4 * widths[0]``
    parameters. ``lean`` is ``small`` with ``narrow_upsampling``. With ``image_size=28`` every preset has the
    same parameters and about 0.76x the FLOPs: 784/1024 of the pixels.)

    "small", the preset of the shipped conditional model, is this function's default; the 15-minute recipe ablation
    (quality per CPU-minute, model card) found it better than "medium", and a 30-minute row better than
    "tiny". ``train`` uses "lean" on 28x28 digits (``image_size=28``), which beat "small" on 32x32 ones at
    30 minutes, and is the shipped unconditional model's network. Use ``count_flops``
    and ``network.count_params()`` for exact numbers.

    Args:
        size: a key of ``network_presets``.
        num_classes: None (unconditional) or the number of classes, e.g. 10.
        num_timesteps: T of the schedule the network will be trained with.
        **overrides: any other ``UNet`` argument, replacing the preset's value (e.g. ``dropout=0.1``).

    Example:

    >>> network = build_network("tiny", num_classes=10)
    >>> network.num_classes
    10
    """
    if size not in network_presets:
        raise ValueError(
            f"size must be one of {tuple(network_presets)}; received {size!r}. For the article's "
            "dense baseline use ArticleMLP()."
        )
    arguments = {**network_presets[size], "num_classes": num_classes, "num_timesteps": num_timesteps}
    arguments.update(overrides)
    return UNet(**arguments)


def count_flops(network, batch_size=1):
    """Count the forward-pass FLOPs of a functional network, analytically.

    A multiply-add counts as 2 FLOPs. Counted: every ``Conv2D`` (``2 * out_height * out_width *
    kernel_height * kernel_width * in_channels / groups * out_channels``), every ``Dense``
    (``2 * rows * in_features * units``, where rows is 1 for a vector and height * width for a feature
    map) and every layer with a ``count_flops(input_shape)`` method (``SelfAttention2D``: its
    projections and the two attention products). Bias additions, normalisations, activations and
    other elementwise work are left out; they are a few percent of the total for these networks.

    Args:
        network: a functional Keras model, e.g. ``UNet``, ``ArticleMLP`` or ``keras.Model(inputs,
            outputs)``; nested functional models are counted too.
        batch_size: number of images; the default 1 gives FLOPs per image.

    Returns:
        int, the forward FLOPs for ``batch_size`` images. A training step costs about 3x this
        (forward + backward).

    Example:

    >>> count_flops(ArticleMLP(hidden_units=(64,))) == 2 * (1024 * 64 + 64 * 1024)
    True
    """
    _check_positive_int(batch_size, "batch_size")
    return batch_size * _count_layer_flops(network)


def _count_layer_flops(model):
    if not hasattr(model, "layers"):
        raise ValueError(
            f"count_flops needs a Keras model; received {type(model).__name__}."
        )
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _count_layer_flops(layer)
            continue
        if not isinstance(layer, (layers.Conv2D, layers.Dense)) and not hasattr(layer, "count_flops"):
            continue
        try:
            input_shape, output_shape = tuple(layer.input.shape), tuple(layer.output.shape)
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"count_flops needs a network built with the functional API (UNet, ArticleMLP, "
                f"keras.Model(inputs, outputs)) so that every layer has known shapes; layer "
                f"{layer.name!r} of {model.name!r} has none ({error})."
            ) from error
        if any(size is None for size in output_shape[1:]):
            raise ValueError(
                f"count_flops needs fixed image sizes; layer {layer.name!r} has output shape "
                f"{output_shape}."
            )
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            output_positions = math.prod(output_shape[1:-1])  # pixels, or 1 for a vector
            total += 2 * output_positions * math.prod(layer.kernel.shape)
        else:
            total += int(layer.count_flops(input_shape))
    return total
