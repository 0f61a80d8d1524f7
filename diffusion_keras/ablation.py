"""The recipe ablation: ``python -m diffusion_keras ablate``.

Every row trains one recipe for the same wall-clock budget on this machine, then samples its EMA network
and scores the digits with the package evaluator. Equal *time*, not equal steps, is the fair comparison
for a CPU user: a bigger network or batch sees fewer images in the same minutes.

Each of our rows changes one training argument from ``training.DEFAULTS``, or from ``--base`` (e.g.
``--base target=epsilon`` re-runs rows that were measured before the default target became v, and
``--base size=small,image_size=32,learning_rate=0.002`` those measured before the lean default). Each
row's learning rate follows the clock (``training.time_cosine``: warm-up over the first 10% of the
budget, cosine decay to zero at its end), so every recipe gets a whole schedule in its minutes whatever
its step rate. (The first rows, up to commit 7d1cb7f, sized a schedule over steps from a probe of the
step rate instead; the model card says which rows.) Each row trains in its own folder under ``--out``
with ``training.train`` (resumable, and a resumed row spends what is left of its budget), and every
finished row is appended to ``ablation.json`` there, so an interrupted ablation re-run skips what is done.

The ``keras-io`` row is the anchor every recipe must beat: the well-known keras.io "Denoising Diffusion
Implicit Models" example as described in its text, re-implemented here for this comparison only:

* a continuous-time cosine-angle schedule: for ``t ~ U(0, 1)``, ``angle = acos(0.95) + t (acos(0.02) -
  acos(0.95))``, signal rate ``cos(angle)``, noise rate ``sin(angle)`` (so the signal rate runs from 0.95
  down to 0.02);
* the network is conditioned on the noise *variance* (noise rate squared), through a sinusoidal embedding
  upsampled to the image and concatenated to it;
* a residual U-Net with widths 32, 64, 96 (and 128 at the bottom), two blocks per level, and
  ``BatchNormalization(center=False, scale=False)``;
* mean absolute error on the predicted noise, AdamW at 1e-3 with weight decay 1e-4, EMA 0.999, batch 64;
* deterministic DDIM sampling over equally spaced diffusion times.
"""

import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras import data, networks, training

# name -> (what it changes, training arguments on top of training.DEFAULTS); None marks the keras.io row
ROWS = {
    "default": ("our default recipe: lean U-Net on 28x28 digits, cosine, v, log-SNR ~ N(0, 1.5^2), batch 32, lr 4e-3, "
                "EMA warm-up", {}),
    "small-padded": ("size small on padded 32x32 digits (the shipped conditional model's network, the default before lean)",
                     {"size": "small", "image_size": 32}),
    "tiny": ("size tiny (121k parameters)", {"size": "tiny"}),
    "medium": ("size medium (1.4M parameters: widths 32-64-96, one block per level)", {"size": "medium"}),
    "base": ("size base (2.2M parameters)", {"size": "base"}),
    "lean": ("size lean (small with narrow upsampling, 17% fewer FLOPs)", {"size": "lean"}),
    "unpadded": ("28x28 digits, unpadded (24% fewer FLOPs)", {"image_size": 28}),
    "lean-unpadded": ("size lean on 28x28 digits (37% fewer FLOPs)", {"size": "lean", "image_size": 28}),
    "linear": ("linear schedule", {"schedule": "linear"}),
    "epsilon": ("epsilon prediction", {"target": "epsilon"}),
    "min-snr": ("Min-SNR-5 loss weighting", {"min_snr_gamma": 5.0}),
    "no-ema-warmup": ("plain EMA 0.999, no warm-up", {"ema_warmup": False}),
    "uniform-t": ("t uniform (Ho et al. 2020), the default before log-SNR ~ N(0, 2^2)", {"log_snr_normal": None}),
    "log-snr-edm": ("t drawn so that log-SNR ~ N(2.4, 2.4^2), the noise levels of Karras et al. 2022",
                    {"log_snr_normal": [2.4, 2.4]}),
    "log-snr-sd3": ("t drawn so that log-SNR ~ N(0, 2^2), the logit-normal(0, 1) of Esser et al. 2024",
                    {"log_snr_normal": [0.0, 2.0]}),
    "log-snr-noisier": ("t drawn so that log-SNR ~ N(-1, 2^2): N(0, 2^2) moved towards noise",
                        {"log_snr_normal": [-1.0, 2.0]}),
    "log-snr-narrow": ("t drawn so that log-SNR ~ N(0, 1.5^2): N(0, 2^2), narrower (today's default)",
                       {"log_snr_normal": [0.0, 1.5]}),
    "log-snr-narrower": ("t drawn so that log-SNR ~ N(0, 1^2): the default's density, narrower still",
                         {"log_snr_normal": [0.0, 1.0]}),
    "lr-1e-3": ("learning rate 1e-3", {"learning_rate": 1e-3}),
    "lr-2e-3": ("learning rate 2e-3", {"learning_rate": 2e-3}),
    "lr-4e-3": ("learning rate 4e-3", {"learning_rate": 4e-3}),
    "lr-8e-3": ("learning rate 8e-3", {"learning_rate": 8e-3}),
    "batch-16": ("batch 16", {"batch_size": 16}),
    "batch-64": ("batch 64", {"batch_size": 64}),
    "batch-128": ("batch 128", {"batch_size": 128}),
    "batch-256": ("batch 256", {"batch_size": 256}),
    "keras-io": ("keras.io DDIM recipe (anchor)", None),
}
# The rows `ablate` runs without --rows: all but those that change nothing on today's defaults (e.g. lean,
# measured when small on 32x32 digits was the default; --base size=small,image_size=32 re-runs them so).
DEFAULT_ROWS = tuple(
    name for name, (_, changes) in ROWS.items()
    if not changes or any(training.DEFAULTS[key] != value for key, value in changes.items())
)


# ---------------------------------------------------------------------------------------------------
# The keras.io recipe, re-implemented from its description
# ---------------------------------------------------------------------------------------------------
MIN_SIGNAL_RATE, MAX_SIGNAL_RATE = 0.02, 0.95


def cosine_angle_rates(diffusion_times):
    """``(noise_rates, signal_rates)`` of the continuous cosine-angle schedule at times in [0, 1]."""
    start, end = math.acos(MAX_SIGNAL_RATE), math.acos(MIN_SIGNAL_RATE)
    angles = start + diffusion_times * (end - start)
    return ops.sin(angles), ops.cos(angles)


@keras.saving.register_keras_serializable(package="diffusion_keras")
class VarianceEmbedding(layers.Layer):
    """Sinusoidal embedding of the noise variance, 16 log-spaced frequencies from 1 to 1000."""

    def __init__(self, dims=32, **kwargs):
        super().__init__(**kwargs)
        self.dims = dims

    def call(self, variance):  # (batch, 1, 1, 1)
        frequencies = ops.exp(ops.linspace(math.log(1.0), math.log(1000.0), self.dims // 2))
        angular = 2.0 * math.pi * ops.cast(frequencies, variance.dtype)
        return ops.concatenate([ops.sin(angular * variance), ops.cos(angular * variance)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


def _residual_block(x, width):
    # networks.Conv2D: Keras' layer with the faster CPU gradients our U-Net gets, so that the anchor and our
    # rows are compared at equal CPU time on equal footing
    skip = x if x.shape[-1] == width else layers.Conv2D(width, 1)(x)
    x = layers.BatchNormalization(center=False, scale=False)(x)
    x = networks.Conv2D(width, 3, padding="same", activation="swish")(x)
    x = networks.Conv2D(width, 3, padding="same")(x)
    return layers.Add()([x, skip])


def build_keras_io_network(image_size=32, widths=(32, 64, 96, 128), block_depth=2):
    """The keras.io residual U-Net: ``network([noisy_images, noise_variances])`` predicts the noise."""
    images = keras.Input((image_size, image_size, 1), name="noisy_images")
    variances = keras.Input((1, 1, 1), name="noise_variances")
    embedding = layers.UpSampling2D(image_size, interpolation="nearest")(VarianceEmbedding()(variances))
    x = layers.Concatenate()([layers.Conv2D(widths[0], 1)(images), embedding])
    skips = []
    for width in widths[:-1]:
        for _ in range(block_depth):
            x = _residual_block(x, width)
            skips.append(x)
        x = layers.AveragePooling2D(2)(x)
    for _ in range(block_depth):
        x = _residual_block(x, widths[-1])
    for width in reversed(widths[:-1]):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        for _ in range(block_depth):
            x = _residual_block(layers.Concatenate()([x, skips.pop()]), width)
    outputs = layers.Conv2D(1, 1, kernel_initializer="zeros")(x)
    return keras.Model([images, variances], outputs, name="keras_io_unet")


@keras.saving.register_keras_serializable(package="diffusion_keras")
class KerasIODiffusion(keras.Model):
    """The keras.io training step (MAE on the noise, EMA 0.999) and its deterministic DDIM sampler."""

    def __init__(self, network, ema_decay=0.999, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.ema_network = keras.models.clone_model(network)
        self.ema_network.set_weights(network.get_weights())
        self.ema_decay = ema_decay
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def denoise(self, network, noisy, noise_rates, signal_rates, training=False):
        predicted_noise = ops.cast(network([noisy, noise_rates**2], training=training), "float32")
        return predicted_noise, (noisy - noise_rates * predicted_noise) / signal_rates

    def train_step(self, images):
        batch = ops.shape(images)[0]
        noise = keras.random.normal(ops.shape(images), seed=self.seed_generator)
        times = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
        noise_rates, signal_rates = cosine_angle_rates(times)
        noisy = signal_rates * images + noise_rates * noise
        with tf.GradientTape() as tape:
            predicted_noise, _ = self.denoise(self.network, noisy, noise_rates, signal_rates, training=True)
            loss = ops.mean(ops.abs(noise - predicted_noise))
        gradients = tape.gradient(loss, self.network.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.network.trainable_weights))
        for weight, ema_weight in zip(self.network.weights, self.ema_network.weights):
            ema_weight.assign(self.ema_decay * ema_weight + (1.0 - self.ema_decay) * weight)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def generate(self, n, steps=50, seed=0, batch_size=500):
        """Deterministic DDIM from t = 1 to 0 in ``steps`` equal steps; float32 (n, 32, 32, 1) in [-1, 1].

        The starting noise is drawn for all ``n`` digits at once, then denoised ``batch_size`` digits at a
        time, so memory stays flat in ``n`` and the digits do not depend on ``batch_size``."""
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")
        start = tf.random.stateless_normal((n, 32, 32, 1), seed=[seed, 0])
        chunks = []
        for first in range(0, n, batch_size):
            noisy = images = start[first:first + batch_size]
            times = ops.ones((ops.shape(noisy)[0], 1, 1, 1))
            for step in range(steps):
                noise_rates, signal_rates = cosine_angle_rates(times - step / steps)
                noise, images = self.denoise(self.ema_network, noisy, noise_rates, signal_rates)
                next_noise_rates, next_signal_rates = cosine_angle_rates(times - (step + 1) / steps)
                noisy = next_signal_rates * images + next_noise_rates * noise
            chunks.append(ops.convert_to_numpy(images))
        return np.clip(np.concatenate(chunks), -1.0, 1.0)


def train_keras_io(out, minutes, seed=0, batch_size=64, verbose=2):
    """Train the keras.io recipe for ``minutes`` of wall-clock time; return the model and images seen."""
    keras.utils.set_random_seed(seed)
    with training.mixed_precision_policy("float32"):  # the recipe trains in float32
        model = KerasIODiffusion(build_keras_io_network(), seed=seed)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4))
    dataset = data.make_dataset(batch_size=batch_size, seed=seed).repeat()
    model.fit(dataset, epochs=10_000, steps_per_epoch=100, callbacks=[training.TimeBudget(minutes)],
              verbose=verbose, shuffle=False)
    Path(out).mkdir(parents=True, exist_ok=True)
    model.ema_network.save(Path(out) / "ema_network.keras")
    return model, int(model.optimizer.iterations.numpy()) * batch_size


# ---------------------------------------------------------------------------------------------------
# Running and scoring rows
# ---------------------------------------------------------------------------------------------------


def _is_anchor(name):
    """The keras.io row: its own recipe, which ``--base`` does not touch."""
    return ROWS[name][1] is None


def _row_base(name, base):
    """The ``--base`` arguments that row ``name`` trains on: none for the anchor."""
    return {} if _is_anchor(name) else dict(base or {})


def base_label(base):
    """``base`` as ``key=value`` pairs joined by commas ("" for none), as ``--base`` takes it."""
    return ",".join(f"{key}={value}" for key, value in sorted(base.items()))


def parse_base(text):
    """``"target=epsilon,learning_rate=2e-3"`` -> ``{"target": "epsilon", "learning_rate": 0.002}``."""
    base = {}
    for pair in (part.strip() for part in text.split(",") if part.strip()):
        key, separator, value = pair.partition("=")
        if not separator or key.strip() not in training.DEFAULTS:
            raise ValueError(
                f"--base must be key=value pairs with keys from {sorted(training.DEFAULTS)}; received {pair!r}."
            )
        try:
            base[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            base[key.strip()] = value.strip()  # a bare word such as epsilon
    return base


# Training arguments the ablation sets for every row of ours (with "seed" from --seed and "max_minutes" from
# --minutes): the learning rate follows the clock, and the epochs only pace the log and the checkpoints.
ROW_SETTINGS = {"lr_schedule": "time_cosine", "epochs": 100_000, "steps_per_epoch": 100, "sample_every": 100_000}


def row_folder(out, name, base, seed=0):
    """Row ``name``'s run folder under ``out``: ``name``, then ``@`` and its ``--base`` arguments and its
    training seed where that is not 0 (``default@seed=1,target=epsilon``)."""
    label = base_label({**base, "seed": seed} if seed else base)
    return Path(out) / (f"{name}@{label}" if label else name)


def row_arguments(name, minutes, seed=0, base=None):
    """The training arguments of row ``name`` (None for the anchor): ``base``, the row's change, its seed,
    budget and ``ROW_SETTINGS``; the rest are ``training.DEFAULTS``."""
    if _is_anchor(name):
        return None
    # the learning rate warms up and decays by the clock, so the schedule ends exactly with the budget
    return {**_row_base(name, base), **ROWS[name][1], "seed": seed, "max_minutes": minutes, **ROW_SETTINGS}


def row_recipe(name, minutes, seed=0, base=None):
    """Every training argument of row ``name`` with the defaults filled in, less the speed options (None
    for the anchor), as JSON stores it: what ``ablation.json`` records, so that a row trained under other
    defaults is not taken for done after a default changed."""
    arguments = row_arguments(name, minutes, seed, base)
    if arguments is None:
        return None
    config = training._check_config(arguments)
    return json.loads(json.dumps({key: value for key, value in config.items() if key not in training._SPEED_OPTIONS}))


def run_row(name, out, minutes, seed=0, verbose=2, base=None):
    """Train row ``name`` (its change on top of ``base``, training arguments that replace ``DEFAULTS``)
    for ``minutes`` with training seed ``seed``; return ``(sample function, facts, seconds)`` for scoring,
    where ``sample(n, sampler, steps, seed)`` draws ``n`` digits from the row's EMA network."""
    if name not in ROWS:
        raise ValueError(f"row must be one of {sorted(ROWS)}; received {name!r}.")
    base = _row_base(name, base)
    folder = row_folder(out, name, base, seed)
    start = time.perf_counter()
    if _is_anchor(name):
        model, images_seen = train_keras_io(folder, minutes, seed=seed, verbose=verbose)
        facts = {"parameters": int(model.network.count_params()), "images_seen": int(images_seen)}
        return (lambda n, sampler, steps, seed: model.generate(n, steps, seed=seed)), facts, time.perf_counter() - start
    arguments = row_arguments(name, minutes, seed, base)
    model = training.train(folder, verbose=verbose, **arguments)
    batch = arguments.get("batch_size", training.DEFAULTS["batch_size"])
    facts = {
        "parameters": int(model.network.count_params()),
        "images_seen": int(model.optimizer.iterations.numpy()) * batch,
    }

    def sample(n, sampler, steps, seed):
        from diffusion_keras import evaluate_cli

        images, _ = evaluate_cli.sample_in_chunks(
            model.ema_network, model.schedule, model.target, sampler, n=n, steps=steps, seed=seed,
            progress=False,
        )
        return images

    return sample, facts, time.perf_counter() - start


def score(sample, n, samplers=(("ddim", 50), ("dpm_solver_pp_2m", 20)), seed=0, keras_io=False):
    """FID and the label metrics of ``n`` digits per sampler (the keras.io row only has its own DDIM).

    ``seed`` is the evaluation seed: it draws the samplers' starting noise, the real training digits of
    the floor and KID's subsets, so rows scored with one seed share one floor whatever their training seed.
    """
    from diffusion_keras import evaluation

    results = {}
    for sampler, steps in samplers:
        if keras_io and sampler != "ddim":
            continue
        result = evaluation.evaluate_images(sample(n, sampler, steps, seed), seed=seed, include_ladder=False)
        results[f"{sampler}_{steps}"] = {
            "fid": result["fid"], "floor_fid": result["floor"]["fid"], "fid_ratio": result["fid_ratio"],
            "mean_max_probability": result["mean_max_probability"],
            "class_balance_kl": result["class_balance_kl"],
        }
    return results


def ablate(out, rows=DEFAULT_ROWS, minutes=15.0, score_n=10000, seed=0, verbose=2, base=None, eval_seed=0):
    """Run and score every row not yet in ``out/ablation.json``; return the list of row results.

    ``seed`` seeds the training (initial weights, data order, noise); ``eval_seed`` the scoring (see
    ``score``). Kept apart, rows trained with other seeds are scored against the same floor, and their
    spread is the training's alone. A row is done when one with the same name, budget, base and both
    seeds is in ``ablation.json``; rows written before the seeds were recorded count as seed 0 and, as
    they were scored then, evaluation seed = training seed.

    ``base`` (training arguments, e.g. ``{"target": "epsilon"}``) replaces the defaults under every row of
    ours, so that rows measured against an earlier default can be re-run after the default changed. Each
    row records its whole recipe (``row_recipe``), and a row trained with another one is not done: its
    folder then refuses to resume with the new arguments, and the error names them."""
    out = Path(out)
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        raise ValueError(f"--rows must be names from {list(ROWS)}; received {unknown}.")
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0; received {minutes!r}.")
    if not isinstance(score_n, int) or score_n < 2:
        raise ValueError(f"--score-n must be an integer >= 2; received {score_n!r}.")
    base = base or {}
    fixed = sorted(set(base) & {"seed", "max_minutes", *ROW_SETTINGS})
    if fixed:
        # they would be overridden for every row without a word
        raise ValueError(
            f"--base cannot set {fixed}: the ablation sets them for every row (the seed with --seed, the "
            f"budget with --minutes); received {base_label(base)!r}."
        )
    path = out / "ablation.json"
    done = json.loads(path.read_text()) if path.exists() else []

    recipes = {name: row_recipe(name, minutes, seed, base) for name in rows}

    def wanted(row, name):
        row_seed = row.get("seed", 0)
        # rows written before recipes were recorded match by name, budget, base and seeds alone
        return (row["row"] == name and row["minutes"] == minutes and row.get("base", {}) == _row_base(name, base)
                and row_seed == seed and row.get("eval_seed", row_seed) == eval_seed
                and row.get("recipe", recipes[name]) == recipes[name])

    for name in rows:
        if any(wanted(row, name) for row in done):
            continue
        sample, facts, seconds = run_row(name, out, minutes, seed=seed, verbose=verbose, base=base)
        row = {
            "row": name, "description": ROWS[name][0], "arguments": ROWS[name][1],
            "base": _row_base(name, base), "recipe": recipes[name], "minutes": minutes, "seed": seed,
            "eval_seed": eval_seed,
            "train_seconds": seconds, "score_n": score_n, **facts,
            "scores": score(sample, score_n, seed=eval_seed, keras_io=_is_anchor(name)),
        }
        done.append(row)
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(done, indent=2) + "\n")
        print(format_ablation([row], header=False) if len(done) > 1 else format_ablation([row]), flush=True)
    return [row for row in done if any(wanted(row, name) for name in rows)]


def _cell(row, sampler, field, spec):
    value = row["scores"].get(sampler, {}).get(field)
    return "-" if value is None else format(value, spec)


def format_ablation(rows, header=True):
    """The ablation as a Markdown table (what the model card shows)."""
    lines = [
        "| row | recipe | parameters | minutes | images seen | FID DDIM 50 | FID/floor | FID DPM++ 20 | "
        "confidence | class KL |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ] if header else []
    for row in rows:
        cells = [
            row["row"], row["description"] + (f" (on {base_label(row['base'])})" if row.get("base") else "")
            + (f" (seed {row['seed']})" if row.get("seed") else ""),
            f"{row['parameters']:,}", f"{row['minutes']:g}",
            f"{row['images_seen']:,}", _cell(row, "ddim_50", "fid", ".2f"),
            _cell(row, "ddim_50", "fid_ratio", ".1f") + "x", _cell(row, "dpm_solver_pp_2m_20", "fid", ".2f"),
            _cell(row, "ddim_50", "mean_max_probability", ".3f"), _cell(row, "ddim_50", "class_balance_kl", ".3f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_ablate_arguments(parser):
    """Declare the ``ablate`` options on ``parser``."""
    parser.add_argument("--out", default="runs/ablation", help="folder of the runs and ablation.json")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                        help=f"comma-separated rows (default: {', '.join(DEFAULT_ROWS)}; also: "
                        f"{', '.join(name for name in ROWS if name not in DEFAULT_ROWS)}, which equal today's "
                        "default unless --base changes it)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per row (default: 15)")
    parser.add_argument("--score-n", type=int, default=10000, help="digits scored per sampler (default: 10000)")
    parser.add_argument("--base", default="",
                        help="training arguments under every row of ours, e.g. target=epsilon (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument("--eval-seed", type=int, default=0,
                        help="scoring seed: samplers' noise, the floor's real digits, KID subsets (default: 0)")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (default: 2)")
    return parser


def run_ablate(args):
    rows = tuple(part.strip() for part in args.rows.split(",") if part.strip())
    results = ablate(args.out, rows, minutes=args.minutes, score_n=args.score_n, seed=args.seed,
                     verbose=args.verbose, base=parse_base(args.base), eval_seed=args.eval_seed)
    print()
    print(format_ablation(results))
    return 0
