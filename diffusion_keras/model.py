"""The diffusion trainer: a Keras model with a custom ``train_step``, an EMA network and min-SNR weights.

Notation (code name -> paper symbol, Ho et al. 2020 "Denoising Diffusion Probabilistic Models"):

=======================  ========================  ===============================================
code                     symbol                    meaning
=======================  ========================  ===============================================
``images``, ``x_0``      x_0                       clean images, (batch, 32, 32, 1) in [-1, 1]
``t``                    t - 1                     0-based timestep in [0, T-1] (see ``schedules``)
``noise``                epsilon                   standard normal noise with the shape of x_0
``x_t``                  x_t                       ``signal_scale[t] x_0 + noise_scale[t] eps``
``target``               eps, x_0 or v             what the network is trained to predict
``snr``                  alpha_bar / (1-alpha_bar) signal-to-noise ratio of x_t
=======================  ========================  ===============================================

One training step follows Ho et al. 2020, Algorithm 1: draw x_0 from the data, ``t`` uniformly over
all T timesteps (or, with ``log_snr_normal``, so that its log-SNR follows a normal density) and
``eps ~ N(0, I)``; build x_t in closed form (Eq. 4); take a gradient step on the squared error
between the network's prediction and the target. For the epsilon target that is the simplified
objective ``L_simple = E ||eps - eps_theta(x_t, t)||^2`` (Eq. 14). The x_0 and v targets
(Salimans & Ho 2022) are the same objective reweighted over timesteps; ``min_snr_gamma`` reweights
them further (Hang et al. 2023).

Samplers need only a network and a schedule: ``model.sampling_network()`` returns the EMA network
and ``model.schedule`` the schedule.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras import forward, schedules

PACKAGE = "diffusion_keras"
SEED_STATE_KEY = "seed_generator_state"  # where save_own_variables keeps the random state


def min_snr_weights(snr, gamma, target="epsilon"):
    """Per-timestep loss weights of Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy", Sec. 3.4 and Eq. 9).

    The idea: weight the x_0 loss of every timestep by ``min(snr, gamma)``, so that the nearly clean,
    high-SNR timesteps (easy, but with huge natural weights) stop dominating the gradient. Written for
    the target the network actually predicts, the same weighting is

    * x0:      ``min(snr, gamma)``
    * epsilon: ``min(snr, gamma) / snr``        (because ``||eps error||^2 = snr ||x_0 error||^2``)
    * v:       ``min(snr, gamma) / (snr + 1)``  (because ``||v error||^2 = (snr + 1) ||x_0 error||^2``)

    The v formula assumes a variance-preserving schedule (``signal^2 + noise^2 = 1``).

    Args:
        snr: signal-to-noise ratios, any shape (NumPy array or tensor), > 0.
        gamma: the clamp, > 0. Hang et al. use 5.
        target: ``"epsilon"``, ``"x0"`` or ``"v"``.

    Returns:
        A float32 tensor of weights with the shape of ``snr``.

    Example:

    >>> import numpy as np
    >>> np.round(np.asarray(min_snr_weights(np.array([0.5, 5.0, 50.0]), 5.0)), 3)
    array([1. , 1. , 0.1], dtype=float32)
    """
    forward.check_target(target)
    if gamma is None or not gamma > 0:
        raise ValueError(f"gamma must be a number > 0 (Hang et al. use 5); received {gamma!r}.")
    snr = ops.cast(ops.convert_to_tensor(snr), "float32")
    clamped = ops.minimum(snr, gamma)
    if target == "epsilon":
        return clamped / snr
    if target == "x0":
        return clamped
    return clamped / (snr + 1.0)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _network_image_shape(network):
    shape = getattr(network, "image_shape", None)
    if shape is None:
        shape = tuple(network.inputs[0].shape[1:])
    return tuple(shape)


def batch_gradients(per_example_loss, inputs, variables, micro_batch_size=None, scale_loss=None):
    """Gradients of ``sum(per_example_loss(*inputs)) / global_batch``, ``micro_batch_size`` images at a time.

    ``global_batch`` is the batch times the replicas of the distribution strategy, so that the
    optimizer's sum over replicas gives the gradient of the global mean (what
    ``tf.nn.compute_average_loss`` does). With ``micro_batch_size`` the batch is split into equal
    micro-batches whose gradients are computed one after the other and summed: the same gradient up
    to float rounding, but each forward and backward pass touches half (or less) of the memory, which
    on a CPU can keep it in cache (README, Performance). The split needs a batch size known when the
    step is traced and divisible by ``micro_batch_size``; otherwise the whole batch goes at once.

    Args:
        per_example_loss: function of ``*inputs`` returning a float32 (batch,) tensor.
        inputs: tensors with the batch as first axis, or None (passed through as None).
        variables: what to differentiate with respect to.
        micro_batch_size: images per micro-batch, or None for the whole batch at once.
        scale_loss: applied to the loss before differentiating (``optimizer.scale_loss``), or None.

    Returns:
        ``(mean_loss, gradients)``: the mean per-example loss of this replica's batch and the gradients.
    """
    batch = inputs[0].shape[0]
    micro_batches = 1
    if micro_batch_size and batch and batch % micro_batch_size == 0:
        micro_batches = batch // micro_batch_size
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    global_batch = tf.cast(tf.shape(inputs[0])[0] * replicas, "float32")

    def loss_and_gradients(part):
        with tf.GradientTape() as tape:
            losses = per_example_loss(*part)
            loss = tf.reduce_sum(losses) / global_batch
            scaled = scale_loss(loss) if scale_loss is not None else loss
        return tf.reduce_sum(losses), tape.gradient(scaled, variables)

    if micro_batches == 1:
        total, gradients = loss_and_gradients(inputs)
        # Dense, as the micro-batch sum is: Keras' Adam squares a sparse (IndexedSlices) embedding gradient
        # slice by slice, so a label that occurs k times in the batch adds k g^2 to the second moment
        # instead of (k g)^2 and takes too large a step. The label embedding is small; dense costs nothing.
        gradients = [None if gradient is None else tf.convert_to_tensor(gradient) for gradient in gradients]
    else:
        # (micro_batches, micro_batch_size, ...): a static shape for every slice, which XLA needs too
        parts = [None if x is None else tf.reshape(x, (micro_batches, micro_batch_size) + tuple(x.shape[1:]))
                 for x in inputs]

        def accumulate(index, total, gradients):
            part_total, part_gradients = loss_and_gradients([None if x is None else x[index] for x in parts])
            gradients = [
                gradient if new is None else gradient + tf.convert_to_tensor(new)
                for gradient, new in zip(gradients, part_gradients)
            ]
            return index + 1, total + part_total, gradients

        # one micro-batch after the other (parallel_iterations=1): overlapping them would undo the saving
        start = (tf.constant(0), tf.constant(0.0), [tf.zeros_like(variable) for variable in variables])
        _, total, gradients = tf.while_loop(
            lambda index, *_: index < micro_batches, accumulate, start, parallel_iterations=1
        )
    return total / tf.cast(tf.shape(inputs[0])[0], "float32"), gradients


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiffusionModel(keras.Model):
    """Train a denoising network on the diffusion objective, keeping an EMA copy for sampling.

    The model owns the network being trained, a noise schedule (``diffusion_keras.schedules``), an
    exponential moving average (EMA) of the network's weights and a ``SeedGenerator`` for all its
    randomness. ``fit`` runs ``train_step``: one step of Ho et al. 2020, Algorithm 1, then the EMA
    update ``ema = ema_decay * ema + (1 - ema_decay) * weights`` (as in Ho et al.'s released code;
    sampling from the averaged weights gives cleaner images than the last iterate).

    ``evaluate`` (and ``fit``'s validation) runs ``test_step``: the same loss, without the update,
    for both networks on the same t and noise, reported as ``loss`` (the trained network) and
    ``ema_loss`` (the EMA network, which is what samplers use). Expect ``ema_loss`` to lag early in
    training: with ``ema_decay=0.999`` the average spans the last ~1000 steps.

    Distribution: under ``tf.distribute.MirroredStrategy`` each replica averages its per-example
    losses over the *global* batch (``tf.nn.compute_average_loss``) because Keras' optimizer sums the
    replicas' gradients; each replica also folds its id into the random seed, so replicas never
    draw the same noise.

    Mixed precision: set ``keras.mixed_precision.set_global_policy("mixed_bfloat16")`` before
    building the network; the networks return float32 and the loss is computed in float32.

    Args:
        network: a denoiser following the call convention of ``diffusion_keras.networks``
            (``network([x_t, t])`` or ``network([x_t, t, labels])``), e.g. ``build_network("small")``.
        schedule: a schedule object, a name (``"linear"``, ``"cosine"``, ...) or a config dict for
            ``schedules.get``.
        target: what the network predicts: ``"epsilon"`` (Ho et al.), ``"x0"`` or ``"v"``
            (Salimans & Ho 2022). ``networks.ArticleMLP`` outputs values in [-1, 1] and suits only
            ``"x0"``.
        ema_decay: decay of the weight average, in [0, 1). 0 copies the weights every step.
        ema_warmup: if True, the decay at optimizer step n is ``min(ema_decay, (1 + n) / (10 + n))``
            (the ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``), so early on the
            average follows the weights closely instead of keeping the random initialization for
            thousands of steps; short runs need it.
        min_snr_gamma: None (plain MSE) or the gamma of Min-SNR weighting (Hang et al. 2023; 5 is
            their choice). See ``min_snr_weights``.
        log_snr_normal: None (t uniform over all T timesteps, Ho et al.) or ``(mean, std)``: draw t so
            that its log-SNR follows ``N(mean, std^2)``, e.g. ``(2.4, 2.4)``, the noise levels of Karras
            et al. 2022. See ``schedules.log_snr_normal_probabilities``.
        label_dropout: for a conditional network, the probability of replacing a label with the null
            label during training (classifier-free guidance, Ho & Salimans 2022). Ignored otherwise.
        micro_batch_size: None, or split each batch into micro-batches of this many images whose
            gradients are computed one after the other and summed (``batch_gradients``): the same step,
            faster on a CPU whose caches hold a micro-batch but not the batch (the ``train`` command
            picks ``training.CPU_MICRO_BATCH_SIZE`` on a CPU; README, Performance). Used only when it
            divides the batch size.
        seed: int or None, the seed of the model's ``SeedGenerator`` (timesteps, noise, label dropout).
        name: the model's name.

    Call arguments:
        inputs: ``[x_t, t]`` or ``[x_t, t, labels]``, passed to the network.
        training: passed to the network.

    Example:

    >>> from diffusion_keras import data, networks
    >>> model = DiffusionModel(networks.build_network("tiny"), schedule="linear", seed=0)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> history = model.fit(data.make_dataset(batch_size=32, subset=64), epochs=1, verbose=0)
    >>> sampler_network = model.sampling_network()
    """

    def __init__(
        self,
        network,
        schedule="linear",
        target="epsilon",
        ema_decay=0.999,
        ema_warmup=False,
        min_snr_gamma=None,
        log_snr_normal=None,
        label_dropout=0.1,
        micro_batch_size=None,
        seed=None,
        name="diffusion_model",
        **kwargs,
    ):
        if not isinstance(network, keras.Model):
            raise ValueError(
                "network must be a keras.Model called as network([x_t, t]) or network([x_t, t, labels]), "
                f"e.g. diffusion_keras.networks.build_network('small'); received {type(network).__name__}."
            )
        schedule = schedules.get(schedule)
        forward.check_target(target)
        if not _is_number(ema_decay) or not 0.0 <= ema_decay < 1.0:
            raise ValueError(
                f"ema_decay must be a number in [0, 1), e.g. 0.999; received {ema_decay!r}. 1 would never "
                "update the average."
            )
        if min_snr_gamma is not None and (not _is_number(min_snr_gamma) or not min_snr_gamma > 0):
            raise ValueError(
                f"min_snr_gamma must be None (off) or a number > 0, e.g. 5; received {min_snr_gamma!r}."
            )
        log_snr_normal = schedules.check_log_snr_normal(log_snr_normal)
        if not _is_number(label_dropout) or not 0.0 <= label_dropout <= 1.0:
            raise ValueError(f"label_dropout must be a probability in [0, 1]; received {label_dropout!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be None or an integer; received {seed!r}.")
        if micro_batch_size is not None and (
            isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, int) or micro_batch_size < 1
        ):
            raise ValueError(
                f"micro_batch_size must be None (whole batch) or an integer >= 1, e.g. 64; received "
                f"{micro_batch_size!r}."
            )
        network_timesteps = getattr(network, "num_timesteps", None)
        if (
            network_timesteps is not None
            and getattr(network, "use_timestep", True)
            and network_timesteps != schedule.T
        ):
            raise ValueError(
                f"The network was built for num_timesteps={network_timesteps} but the schedule has "
                f"T={schedule.T} steps ({schedule!r}). Build the network with "
                f"num_timesteps={schedule.T} so that its timestep embedding spans the whole process."
            )

        super().__init__(name=name, **kwargs)
        self.network = network
        self.schedule = schedule
        self.target = target
        self.ema_decay = float(ema_decay)
        self.ema_warmup = bool(ema_warmup)
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.log_snr_normal = log_snr_normal
        # t = how many entries of the cumulative distribution are <= u, for u ~ Uniform[0, 1)
        self._timestep_cdf = None if log_snr_normal is None else tf.constant(
            np.cumsum(schedules.log_snr_normal_probabilities(schedule, *log_snr_normal)), tf.float32
        )
        self.label_dropout = float(label_dropout)
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.num_classes = getattr(network, "num_classes", None)
        self.image_shape = _network_image_shape(network)

        # The EMA network is a clone (same class, same config) that starts from the same weights.
        ema_config = network.get_config()
        ema_config["name"] = f"ema_{network.name}"
        self.ema_network = network.__class__.from_config(ema_config)
        self.ema_network.set_weights(network.get_weights())
        self.ema_network.trainable = False  # updated by averaging, never by the optimizer

        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ema_loss_tracker = keras.metrics.Mean(name="ema_loss")
        self.built = True  # both networks already hold all their weights

    # ------------------------------------------------------------------------------------------------
    # The pieces of a step, public so that notebooks can show them one at a time
    # ------------------------------------------------------------------------------------------------

    def _replica_seeds(self, count):
        """``count`` stateless seeds for this step, different on every replica."""
        seed = self.seed_generator.next()  # (2,) int64, the same on every replica
        context = tf.distribute.get_replica_context()
        replica_id = 0 if context is None else context.replica_id_in_sync_group
        # Without the fold-in every replica of a MirroredStrategy would draw the same t and noise.
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
        return tf.random.experimental.stateless_split(seed, num=count)  # (count, 2)

    def draw_timesteps_and_noise(self, images):
        """Draw ``t ~ Uniform{0, ..., T-1}`` and ``noise ~ N(0, I)`` (Ho et al. 2020, Alg. 1, lines 3-4).

        With ``log_snr_normal`` set, ``t`` is drawn from ``schedules.log_snr_normal_probabilities``
        instead, by inverting its cumulative distribution.

        Args:
            images: the clean batch, (batch, 32, 32, 1); only its shape and dtype are used.

        Returns:
            ``(t, noise)``: int32 (batch,) and float noise with the shape of ``images``.
        """
        seeds = self._replica_seeds(2)
        batch_size = ops.shape(images)[0]
        if self._timestep_cdf is None:
            # maxval is exclusive: every one of the T timesteps, 0..T-1, is equally likely
            t = tf.random.stateless_uniform(
                (batch_size,), seed=seeds[0], minval=0, maxval=self.schedule.T, dtype=tf.int32
            )
        else:
            u = tf.random.stateless_uniform((batch_size,), seed=seeds[0])
            t = tf.searchsorted(self._timestep_cdf, u, side="right", out_type=tf.int32)
            t = tf.minimum(t, self.schedule.T - 1)  # u above a cumulative sum rounded below 1
        noise = tf.random.stateless_normal(ops.shape(images), seed=seeds[1], dtype=images.dtype)
        return t, noise

    def drop_labels(self, labels):
        """Replace each label by the null label ``num_classes`` with probability ``label_dropout``.

        Training on both labelled and "unlabelled" examples gives one network that can be asked for a
        conditional and an unconditional prediction: classifier-free guidance (Ho & Salimans 2022,
        Algorithm 1).
        """
        if self.num_classes is None:
            raise ValueError(
                "drop_labels needs a conditional network (num_classes set); this one is unconditional."
            )
        labels = ops.cast(labels, "int32")
        seed = self._replica_seeds(1)[0]
        draws = tf.random.stateless_uniform(ops.shape(labels), seed=seed)
        return ops.where(draws < self.label_dropout, self.num_classes, labels)

    def compute_per_example_loss(self, x_0, t, noise, labels=None, network=None, training=False):
        """The (weighted) squared error of each image: Ho et al. 2020, Eq. 14 for the epsilon target.

        Args:
            x_0: clean images, (batch, 32, 32, 1).
            t: int32 timesteps, (batch,).
            noise: the noise of ``q_sample``, shape of ``x_0``.
            labels: int32 labels for a conditional network, else None.
            network: which network predicts; the trained one by default (``self.ema_network`` for
                the EMA one).
            training: passed to the network.

        Returns:
            float32 tensor (batch,): the mean over pixels of ``(prediction - target)^2``, times the
            min-SNR weight of ``t`` when ``min_snr_gamma`` is set.
        """
        network = self.network if network is None else network
        t = ops.convert_to_tensor(t)
        labels = None if labels is None else ops.convert_to_tensor(labels)
        # 1. noisy input in closed form, x_t = signal_scale[t] x_0 + noise_scale[t] eps (Eq. 4)
        x_t = forward.q_sample(x_0, t, noise, self.schedule)
        # 2. the network's prediction of eps, x_0 or v
        inputs = [x_t, t] if labels is None else [x_t, t, labels]
        prediction = ops.cast(network(inputs, training=training), "float32")
        # 3. the regression target for the same t and noise
        target = ops.cast(forward.prediction_target(x_0, noise, t, self.schedule, self.target), "float32")
        # 4. squared error per image, then the per-timestep weight
        per_example_loss = ops.mean(ops.square(prediction - target), axis=tuple(range(1, len(x_0.shape))))
        if self.min_snr_gamma is not None:
            snr = ops.take(self.schedule.snr, t)
            per_example_loss = per_example_loss * min_snr_weights(snr, self.min_snr_gamma, self.target)
        return per_example_loss

    def update_ema(self):
        """``ema = ema_decay * ema + (1 - ema_decay) * weights`` for every weight of the network.

        Runs in cross-replica context (``merge_call``), where a mirrored variable may be assigned
        once for all replicas; inside one replica it could not be.
        """
        decay = self.ema_decay
        if self.ema_warmup:
            steps = ops.cast(self.optimizer.iterations, "float32")  # already counts this step
            decay = ops.minimum(decay, (1.0 + steps) / (10.0 + steps))

        def average(ema_weight, weight):
            return ema_weight.assign(decay * ema_weight + (1.0 - decay) * weight)

        def update_all(strategy):
            for ema_weight, weight in zip(self.ema_network.weights, self.network.weights):
                strategy.extended.update(ema_weight.value, average, args=(weight.value,), group=False)

        context = tf.distribute.get_replica_context()
        if context is None:  # already in cross-replica context
            update_all(tf.distribute.get_strategy())
        else:
            context.merge_call(update_all)

    def sampling_network(self):
        """The network to sample with: the EMA network (same architecture and call convention)."""
        return self.ema_network

    # ------------------------------------------------------------------------------------------------
    # Keras hooks
    # ------------------------------------------------------------------------------------------------

    def _unpack_batch(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("DiffusionModel does not use sample weights; pass images or (images, labels).")
        if isinstance(images, (list, tuple)):
            raise ValueError(
                f"Batches must be images or (images, labels); received a nested structure of "
                f"{len(images)} tensors as images."
            )
        images = ops.convert_to_tensor(images)
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images must have shape (batch, {', '.join(map(str, self.image_shape))}); received "
                f"shape {tuple(images.shape)}. Use diffusion_keras.data.make_dataset, which pads MNIST "
                "to 32x32 in [-1, 1]."
            )
        if not keras.backend.standardize_dtype(images.dtype).startswith(("float", "bfloat")):
            raise ValueError(
                f"images must be float in [-1, 1]; received dtype {images.dtype}. Convert uint8 digits "
                "with diffusion_keras.data.to_model_range."
            )
        if self.num_classes is None and labels is not None:
            raise ValueError(
                f"The network {self.network.name!r} is unconditional (num_classes=None) but the batches "
                "hold (images, labels). Use data.make_dataset(labels=False), or build the network "
                "with num_classes=10."
            )
        if self.num_classes is not None:
            if labels is None:
                raise ValueError(
                    f"The network {self.network.name!r} is conditional (num_classes={self.num_classes}) "
                    "but the batches hold only images. Use data.make_dataset(labels=True)."
                )
            labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        return images, labels

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def make_train_function(self, force=False):
        # Without a distribution strategy Keras builds the optimizer inside the first traced train step,
        # and a tf.function that creates variables is traced twice, which doubled the start-up of every
        # fit (tests/test_model.py counts the traces). Both networks hold their weights already, so the
        # optimizer's slots can be made before tracing.
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force=force)

    def train_step(self, data):
        images, labels = self._unpack_batch(data)
        # 1. t ~ Uniform{0..T-1} (or log_snr_normal), eps ~ N(0, I); labels sometimes hidden
        #    (classifier-free guidance)
        t, noise = self.draw_timesteps_and_noise(images)
        if labels is not None:
            labels = self.drop_labels(labels)
        # 2. squared error of the prediction (Ho et al. 2020, Eq. 14) and its gradient; the loss is the
        #    sum over the batch / the global batch size: each replica holds batch/replicas images and the
        #    optimizer sums the replicas' gradients, so this gives the gradient of the global mean
        loss, gradients = batch_gradients(
            lambda *part: self.compute_per_example_loss(*part, training=True),
            [images, t, noise, labels], self.trainable_variables, self.micro_batch_size, self.optimizer.scale_loss,
        )
        # 3. gradient step, then the weight average
        self.optimizer.apply(gradients, self.trainable_variables)
        self.update_ema()
        self.loss_tracker.update_state(loss, sample_weight=ops.shape(images)[0])
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        images, labels = self._unpack_batch(data)
        t, noise = self.draw_timesteps_and_noise(images)
        # the same t and noise for both networks, so their losses are directly comparable
        self.loss_tracker.update_state(self.compute_per_example_loss(images, t, noise, labels))
        self.ema_loss_tracker.update_state(
            self.compute_per_example_loss(images, t, noise, labels, network=self.ema_network)
        )
        return {metric.name: metric.result() for metric in self.metrics}

    def save_own_variables(self, store):
        # The SeedGenerator's state is no layer weight, so Keras would not save it; with it, a run
        # resumed from a saved model draws the same timesteps and noise as an uninterrupted one.
        super().save_own_variables(store)
        store[SEED_STATE_KEY] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        keys = list(store.keys())
        if SEED_STATE_KEY in keys:
            self.seed_generator.state.assign(store[SEED_STATE_KEY])
        super().load_own_variables({key: store[key] for key in keys if key != SEED_STATE_KEY})

    @property
    def metrics(self):
        return [self.loss_tracker, self.ema_loss_tracker]

    def get_config(self):
        return {
            "name": self.name,
            "network": keras.saving.serialize_keras_object(self.network),
            "schedule": self.schedule.get_config(),
            "target": self.target,
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
            "min_snr_gamma": self.min_snr_gamma,
            "log_snr_normal": self.log_snr_normal,
            "label_dropout": self.label_dropout,
            "micro_batch_size": self.micro_batch_size,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(network=network, **config)
