"""Training runs: learning-rate schedule, callbacks and the ``train`` command.

A run writes everything into one output folder::

    out/
      config.json            the arguments of the run (a resumed run must use the same ones, except
                             the speed options mixed_precision, jit_compile and micro_batch_size)
      log.csv                one row of losses per epoch (keras.callbacks.CSVLogger, appended on resume)
      samples/epoch_005.png  a grid of EMA samples every ``--sample-every`` epochs
      backup/                BackupAndRestore state: weights, optimizer, EMA, RNG and epoch counter
      time.json              seconds trained so far, with --max-minutes (a resumed run spends what is left)
      checkpoint.keras       the whole DiffusionModel after the last finished epoch (ModelCheckpoint)
      ema_network.keras      the EMA network alone, what the samplers load
      model.keras            the whole DiffusionModel at the end

``init_from`` warm-starts a new run from another model's weights, e.g. a conditional network from the
shipped unconditional one: every layer of the source is copied into the layer of the same name, and the
layers the source lacks (the label embedding) start at zero, so the new network begins as exactly the
source network and learns only what is new. The source fixes the architecture: the shipped unconditional
model (``mnist``) has the defaults' network, the shipped conditional one needs ``--size small --image-size 32``.

Running the same command again after an interruption resumes from ``backup/`` at the last finished
epoch and ends with the same number of optimizer steps as an uninterrupted run.
"""

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras import data, plotting, schedules


@keras.saving.register_keras_serializable(package="diffusion_keras")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``learning_rate`` over ``warmup_steps``, then cosine decay (Loshchilov & Hutter 2017).

    After warm-up, with ``progress = (step - warmup_steps) / (total_steps - warmup_steps)`` clipped to
    [0, 1]:

        lr = learning_rate * (final_fraction + (1 - final_fraction) * (1 + cos(pi * progress)) / 2)

    The same values as ``keras.optimizers.schedules.CosineDecay`` with ``warmup_target``, written as
    plain arithmetic rather than a ``tf.cond``: AdamW evaluates the schedule once per variable for its
    weight decay, and a cond for each of the network's ~200 variables made every training step's
    trace that much longer.

    Args:
        learning_rate: the peak learning rate, > 0.
        total_steps: optimizer steps of the whole run, > warmup_steps.
        warmup_steps: steps of linear warm-up from 0.
        final_fraction: the learning rate at the end, as a fraction of the peak.
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0, final_fraction=0.0):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; received {learning_rate!r}.")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps) = [0, {total_steps}); received {warmup_steps!r}."
            )
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"final_fraction must be in [0, 1]; received {final_fraction!r}.")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = self.learning_rate * step / max(self.warmup_steps, 1)
        progress = keras.ops.clip((step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 0.0, 1.0)
        cosine = 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        decayed = self.learning_rate * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
        return keras.ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_fraction": self.final_fraction,
        }


def warmup_cosine(learning_rate, total_steps, warmup_steps=0, final_fraction=0.0):
    """``WarmupCosine(...)``: the learning-rate schedule of ``train`` and of notebook 03."""
    return WarmupCosine(learning_rate, total_steps, warmup_steps, final_fraction)


class SampleGrid(keras.callbacks.Callback):
    """Write a grid of samples from the EMA network every ``every`` epochs (and after the last one).

    Args:
        folder: where ``epoch_XXX.png`` files go.
        every: epochs between grids, >= 1.
        n: digits per grid.
        steps: sampler steps (DDIM, eta = 0).
        seed: the same seed every time, so grids from different epochs are comparable.
    """

    def __init__(self, folder, every=1, n=36, steps=20, seed=0):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1; received {every!r}.")
        self.folder = Path(folder)
        self.every, self.n, self.steps, self.seed = every, n, steps, seed

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        from diffusion_keras import samplers

        images = samplers.sample(
            self.model.ema_network, self.model.schedule, sampler="ddim", steps=self.steps,
            n=self.n, seed=self.seed, target=self.model.target,
            labels=_grid_labels(self.model.ema_network, self.n),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        plotting.save_grid(images, self.folder / f"epoch_{epoch + 1:03d}.png")


def _grid_labels(network, n):
    """For a conditional network, label the grid 0, 1, ..., 9, 0, 1, ... so each column is one digit."""
    if getattr(network, "num_classes", None):
        return np.arange(n, dtype=np.int32) % network.num_classes
    return None


class SaveEMANetwork(keras.callbacks.Callback):
    """Save the EMA network alone (``.keras``) after every epoch, so an interrupted run still has one."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        self.model.ema_network.save(self.path)


def seconds_trained(state_path):
    """The seconds of training that ``TimeBudget`` recorded in ``state_path`` (0 without one)."""
    if state_path is None or not Path(state_path).is_file():
        return 0.0
    return float(json.loads(Path(state_path).read_text())["seconds_trained"])


class TimeBudget(keras.callbacks.Callback):
    """Stop training once ``minutes`` of wall-clock training time have passed.

    The check runs after every batch; the epoch in progress ends early and its end-of-epoch callbacks
    (log, checkpoint, EMA network, backup) still run, so nothing is lost. With ``state_path`` the time
    trained so far is written there after every epoch and read back when ``fit`` starts, so a resumed run
    spends what was left of the budget rather than a new one.
    """

    def __init__(self, minutes, state_path=None):
        super().__init__()
        self.seconds = 60.0 * minutes
        self.state_path = Path(state_path) if state_path else None
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter() - seconds_trained(self.state_path)

    def elapsed(self):
        """Seconds of training so far, this run and the ones it resumed."""
        return time.perf_counter() - self.start

    def on_train_batch_end(self, batch, logs=None):
        if self.elapsed() > self.seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.state_path:
            self.state_path.write_text(json.dumps({"seconds_trained": self.elapsed()}) + "\n")


TIME_WARMUP_FRACTION = 0.1


def time_cosine(learning_rate, fraction, warmup_fraction=TIME_WARMUP_FRACTION):
    """The learning rate after ``fraction`` (0 to 1) of a wall-clock budget: linear warm-up over the
    first ``warmup_fraction``, then cosine decay to 0 at the end (Loshchilov & Hutter 2017)."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < warmup_fraction:
        return learning_rate * fraction / warmup_fraction
    return learning_rate * 0.5 * (1.0 + math.cos(math.pi * (fraction - warmup_fraction) / (1.0 - warmup_fraction)))


class TimeCosineLearningRate(TimeBudget):
    """A ``TimeBudget`` whose learning rate follows ``time_cosine`` of the elapsed fraction of the budget.

    A schedule over steps must guess how many steps fit in the budget, and a wrong guess either cuts the
    decay short or ends it early (the ablation's step-rate probe was off by up to 37%). Driving the
    schedule by the clock ends the decay exactly when the budget does, whatever the step rate.
    """

    def __init__(self, learning_rate, minutes, state_path=None):
        super().__init__(minutes, state_path)
        self.learning_rate = learning_rate

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = time_cosine(self.learning_rate, self.elapsed() / self.seconds)


DEFAULTS = {
    "schedule": "cosine",
    "timesteps": 1000,
    # lean on 28x28 digits: 0.63x the FLOPs per image of small on padded 32x32 ones, trained 1.6x as many
    # images in the same minutes, and scored better at 30 minutes in three back-to-back pairs (model card:
    # DDIM-50 FID 5.33 against 6.53 at lr 2e-3; 4.53 against 5.20 and 3.50 against 5.22, two
    # seeds, at 4e-3). The shipped unconditional model is this default trained for 3 hours; the shipped
    # conditional one is small on 32x32 digits (train --conditional --size small --image-size 32).
    "size": "lean",
    # 28: the digits unpadded (a U-Net of three widths halves 28 twice); 32: padded with the background
    "image_size": 28,
    # the 15-minute recipe ablation (model card): v prediction DDIM-50 FID 7.0, epsilon 16.8
    "target": "v",
    "min_snr_gamma": None,
    # (mean, std): t drawn so that its log-SNR ~ N(mean, std^2); None: t uniform (model.DiffusionModel,
    # log_snr_normal). At 30 minutes (model card, DDIM-50 FID): N(0, 2^2), the logit-normal(0, 1) of Esser et
    # al. 2024, beat uniform t (3.22 against 4.39 at seed 0, 2.83 against 3.50 at seed 1; EDM's N(2.4, 2.4^2)
    # 7.70), and N(0, 1.5^2) beat N(0, 2^2) (2.58 against 2.98 at seed 0, 2.60 against 2.83 at seed 1)
    "log_snr_normal": [0.0, 1.5],
    "ema_decay": 0.999,
    # the 15-minute recipe ablation (model card): with warm-up DDIM-50 FID 16.8, without it 86.6, because a
    # plain 0.999 average still holds ~10% of the random initialisation after 2,300 steps
    "ema_warmup": True,
    "conditional": False,
    "label_dropout": 0.1,
    "epochs": 10,
    "steps_per_epoch": None,
    # the 30-minute rows (model card, small on 32x32): batch 32 DDIM-50 FID 7.75, 64 9.03, 128 11.58 at about
    # 120k images each, 16 5.99 against 32's 5.23; on lean 28x28, 16 4.53 against 32's 4.39. The shipped
    # conditional model was trained at 128, the unconditional one at 32
    "batch_size": 32,
    "subset": None,
    # the recipe ablation (model card): at 15 minutes peak 2e-3 DDIM-50 FID 4.6, 1e-3 7.0; at 30 minutes
    # 4e-3 5.02 against 2e-3 5.23 (small, 32x32), the lean rows above ran at 4e-3, and on lean 28x28
    # 8e-3 scored 4.61 against 4e-3's 4.39 at equal images
    "learning_rate": 4e-3,
    "lr_schedule": "warmup_cosine",
    "warmup_steps": 500,
    "weight_decay": 1e-4,
    "seed": 0,
    "sample_every": 1,
    "sample_steps": 20,
    # "auto": mixed_bfloat16 only where the hardware computes in bfloat16 natively (native_bfloat16):
    # it trained the small U-Net 11% faster than float32 on a Zen 4 CPU (AVX512-BF16; `bench`), but 7-8x
    # slower on a Zen 3 (AVX2 only), which emulates it (README, Performance). XLA (jit_compile) was slower
    # in both precisions on the Zen 4, so it stays off.
    "mixed_precision": "auto",
    "jit_compile": False,
    # "auto": on a CPU, each batch in micro-batches of CPU_MICRO_BATCH_SIZE images, one after the other
    # (the same gradient, faster where their activations stay in cache; README, Performance); on a GPU,
    # where this was not measured, the whole batch at once
    "micro_batch_size": "auto",
    "init_from": None,
    "max_minutes": None,
}
LR_SCHEDULES = ("constant", "warmup_cosine", "time_cosine")
# Options that change how fast a step runs, not what it computes (beyond rounding): a resumed run may
# change them, e.g. when it resumes on another machine.
_SPEED_OPTIONS = ("mixed_precision", "jit_compile", "micro_batch_size")
# Options whose default changed after runs had been written without them: a config.json that lacks the
# key was trained with this value (ema_warmup existed as an off switch before it became the default;
# image_size was added at 32, the padded digits, and became 28 with the lean default; log_snr_normal was added
# with t uniform, None, and became N(0, 2^2), then N(0, 1.5^2)).
_VALUE_WHEN_ABSENT = {"ema_warmup": False, "image_size": 32, "log_snr_normal": None}


def warm_start(network, source):
    """Copy the weights of ``source`` into ``network``, layer by layer, matched by name.

    Args:
        network: the network to initialize (e.g. a freshly built conditional U-Net).
        source: a network, a ``DiffusionModel`` (its EMA network is used), the path of a ``.keras``
            file holding either, or the name of a shipped model (``"mnist"``).

    Every layer of ``source`` that has weights must exist in ``network`` with the same weight shapes.
    Layers of ``network`` that ``source`` lacks are set to zero, so that an added embedding changes
    nothing at first. Returns the names of those layers.
    """
    if isinstance(source, (str, Path)):
        from diffusion_keras.pretrained import PRETRAINED, pretrained_path

        path = pretrained_path(source) if source in PRETRAINED else Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"init_from={str(source)!r} does not exist; expected a .keras file.")
        source = keras.saving.load_model(path, safe_mode=True)
    source = getattr(source, "ema_network", source)
    # convolutions have the same weights at any image size, so only the declared shapes tell them apart
    source_shape, network_shape = getattr(source, "image_shape", None), getattr(network, "image_shape", None)
    if source_shape is not None and network_shape is not None and source_shape != network_shape:
        raise ValueError(
            f"init_from: the source network takes images of shape {source_shape}, the new one {network_shape}; "
            f"train with the source's --image-size ({source_shape[0]})."
        )
    targets = {layer.name: layer for layer in network.layers}
    copied = set()
    for layer in source.layers:
        if not layer.weights:
            continue
        target = targets.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if target is None or [tuple(w.shape) for w in target.weights] != shapes:
            raise ValueError(
                f"init_from: layer {layer.name!r} with weight shapes {shapes} has no counterpart of the "
                "same shapes in the new network; the source must be the same architecture (--size) with "
                "at most some layers missing."
            )
        target.set_weights(layer.get_weights())
        copied.add(layer.name)
    zeroed = [layer.name for layer in network.layers if layer.weights and layer.name not in copied]
    for name in zeroed:
        targets[name].set_weights([np.zeros(w.shape, w.dtype) for w in targets[name].weights])
    return zeroed


def _run_config(out, config):
    """Write ``config.json``, or check that a resumed run uses the same arguments."""
    path = Path(out) / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        # a key added to DEFAULTS after the run started takes the value the run was trained with, so
        # older runs still resume, and resume as they started
        previous = {**DEFAULTS, **_VALUE_WHEN_ABSENT, **previous}
        changed = {
            key: (previous.get(key), value) for key, value in config.items()
            if previous.get(key) != value and key not in _SPEED_OPTIONS
        }
        if changed:
            details = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
            raise ValueError(
                f"out={str(out)!r} holds a run with other arguments ({details}). Resume it with the same "
                "arguments, or choose a new --out folder."
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")


def _check_config(arguments):
    """``DEFAULTS`` updated with ``arguments``, each checked."""
    unknown = sorted(set(arguments) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown training arguments {unknown}; expected some of {sorted(DEFAULTS)}.")
    config = {**DEFAULTS, **arguments}
    if config["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}; received {config['lr_schedule']!r}.")
    for key in ("epochs", "batch_size", "sample_every"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be an integer >= 1; received {config[key]!r}.")
    resolve_micro_batch_size(config["micro_batch_size"], gpus=0)  # checks the value
    config["image_size"] = data.check_image_size(config["image_size"])
    # a list, as config.json stores it, so a resumed run compares equal
    config["log_snr_normal"] = schedules.check_log_snr_normal(config["log_snr_normal"])
    if config["max_minutes"] is not None and not config["max_minutes"] > 0:
        raise ValueError(f"max_minutes must be None or a number > 0; received {config['max_minutes']!r}.")
    if config["lr_schedule"] == "time_cosine" and config["max_minutes"] is None:
        raise ValueError("lr_schedule='time_cosine' follows the --max-minutes budget; received max_minutes=None.")
    resolve_mixed_precision(config["mixed_precision"], cpu_flags=set(), gpu_capabilities=[])  # checks the value
    return config


# CPU flags (Linux /proc/cpuinfo) of instructions that compute bfloat16 products natively: AVX512-BF16
# (Intel Cooper Lake and Sapphire Rapids on, AMD Zen 4 on) and AMX (Intel Sapphire Rapids on).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The feature flags of the first CPU listed in ``cpuinfo``; none where that file is missing."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:  # not Linux: no flags known, so float32
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _gpu_capabilities():
    import tensorflow as tf

    return [
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def native_bfloat16(cpu_flags=None, gpu_capabilities=None):
    """Whether the device that trains computes in bfloat16 natively, so ``mixed_bfloat16`` pays off.

    With a GPU, TensorFlow trains on it: bfloat16 needs NVIDIA compute capability 8.0 (Ampere) or newer.
    Without one, the CPU needs AVX512-BF16 or AMX; other CPUs emulate bfloat16 through float32, which
    trains the small U-Net 7-8x slower than plain float32 (measured on an AMD Zen 3).

    Args:
        cpu_flags: the CPU's feature flags; default: read from ``/proc/cpuinfo`` (none elsewhere).
        gpu_capabilities: ``(major, minor)`` compute capabilities of the visible GPUs; default: asked
            of TensorFlow.
    """
    gpus = _gpu_capabilities() if gpu_capabilities is None else list(gpu_capabilities)
    if gpus:
        return all(tuple(capability) >= (8, 0) for capability in gpus)
    flags = _cpu_flags() if cpu_flags is None else set(cpu_flags)
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def resolve_mixed_precision(value, cpu_flags=None, gpu_capabilities=None):
    """``True``/``False`` as given; ``"auto"``: ``native_bfloat16()`` on this machine."""
    if value == "auto":
        return native_bfloat16(cpu_flags, gpu_capabilities)
    if isinstance(value, bool):
        return value
    raise ValueError(f"mixed_precision must be True, False or 'auto'; received {value!r}.")


# Images per micro-batch that micro_batch_size="auto" picks on a CPU: on the 2-core Zen 3, `bench` trained
# the small U-Net fastest at 32 of 0 (the whole batch), 32 and 64 (README, Performance).
CPU_MICRO_BATCH_SIZE = 32


def resolve_micro_batch_size(value, gpus=None):
    """Images per micro-batch for ``DiffusionModel(micro_batch_size=...)``: ``None`` for the whole batch.

    ``"auto"``: ``CPU_MICRO_BATCH_SIZE`` without a GPU, the whole batch with one (``gpus``: how many are
    visible; default: asked of TensorFlow). ``0`` or ``None``: the whole batch; an integer >= 1 as given.
    """
    if value == "auto":
        if gpus is None:
            gpus = len(_gpu_capabilities())
        return None if gpus else CPU_MICRO_BATCH_SIZE
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value or None
    raise ValueError(
        f"micro_batch_size must be 'auto', None or an integer >= 0 (0 or None: the whole batch); received {value!r}."
    )


def _micro_batch_size_argument(text):
    """``--micro-batch-size``: 'auto' or an integer >= 0."""
    if text == "auto" or text.isdecimal():
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0; received {text!r}")


def _log_snr_normal_label(value):
    """How ``--log-snr-normal`` writes ``value``."""
    return "none" if value is None else ",".join(f"{number:g}" for number in value)


def _log_snr_normal_argument(text):
    """``--log-snr-normal``: ``MEAN,STD``, two numbers, or ``none`` for t uniform."""
    if text == "none":
        return None
    try:
        return schedules.check_log_snr_normal([float(part) for part in text.split(",")], "--log-snr-normal")
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected MEAN,STD with STD > 0, e.g. 0,2, or none; received {text!r}"
        ) from error


@contextlib.contextmanager
def mixed_precision_policy(name):
    """Set Keras' global dtype policy to ``name`` inside the block, and restore the previous one after.

    Layers take the policy in force when they are built and keep it, so a network built inside the block
    computes in ``name`` while, e.g., the evaluator's classifier built later stays float32.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_training(config):
    """Build and compile the ``DiffusionModel`` and the MNIST dataset that ``config`` describes.

    Args:
        config: a full ``DEFAULTS``-like dict (see ``train``).

    Returns:
        ``(model, dataset, steps_per_epoch)``: the compiled model, an endless shuffled dataset and the
        optimizer steps per epoch; the learning-rate schedule spans ``steps_per_epoch * epochs`` steps.
    """
    from diffusion_keras import model as model_module
    from diffusion_keras import networks

    keras.utils.set_random_seed(config["seed"])
    schedule = schedules.get(config["schedule"], T=config["timesteps"])
    num_classes = 10 if config["conditional"] else None
    with mixed_precision_policy("mixed_bfloat16" if resolve_mixed_precision(config["mixed_precision"]) else "float32"):
        # the layers keep this policy; the global one is restored for whatever the process does next
        network = networks.build_network(
            config["size"], num_classes=num_classes, num_timesteps=schedule.T, image_size=config["image_size"]
        )
        if config["init_from"]:
            warm_start(network, config["init_from"])  # before the EMA copy is made, so both start there
        model = model_module.DiffusionModel(
            network, schedule=schedule, target=config["target"], ema_decay=config["ema_decay"],
            ema_warmup=config["ema_warmup"], min_snr_gamma=config["min_snr_gamma"],
            log_snr_normal=config["log_snr_normal"], label_dropout=config["label_dropout"],
            micro_batch_size=resolve_micro_batch_size(config["micro_batch_size"]), seed=config["seed"],
        )
    dataset = data.make_dataset(
        batch_size=config["batch_size"], subset=config["subset"], labels=config["conditional"],
        seed=config["seed"], image_size=config["image_size"],
    )
    steps_per_epoch = config["steps_per_epoch"] or int(dataset.cardinality())
    total_steps = steps_per_epoch * config["epochs"]
    if config["lr_schedule"] == "warmup_cosine":
        learning_rate = warmup_cosine(
            config["learning_rate"], total_steps, min(config["warmup_steps"], total_steps // 2)
        )
    else:
        learning_rate = config["learning_rate"]
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=learning_rate, weight_decay=config["weight_decay"], global_clipnorm=1.0
        ),
        jit_compile=config["jit_compile"],
    )
    return model, dataset.repeat(), steps_per_epoch


def train(out, verbose=1, **arguments):
    """Train a ``DiffusionModel`` on MNIST; resume from ``out/backup`` if a previous run was interrupted.

    Args:
        out: the run's output folder (see the module docstring for what goes in it).
        verbose: Keras ``fit`` verbosity (1: progress bar, 2: one line per epoch, 0: silent).
        **arguments: any key of ``DEFAULTS``; the rest take their default value.

    Returns:
        The trained ``DiffusionModel``.
    """
    config = _check_config(arguments)
    out = Path(out)
    _run_config(out, config)
    if config["max_minutes"] and seconds_trained(out / "time.json") >= 60.0 * config["max_minutes"]:
        # The budget was spent before: fit would still run one batch and log it as an epoch. The last
        # checkpoint holds everything trained (time.json is written after it).
        model = keras.saving.load_model(out / "checkpoint.keras", safe_mode=True)
        model.save(out / "model.keras")
        return model
    model, dataset, steps_per_epoch = build_training(config)
    callbacks = [
        keras.callbacks.CSVLogger(out / "log.csv", append=True),
        keras.callbacks.ModelCheckpoint(out / "checkpoint.keras"),
        SaveEMANetwork(out / "ema_network.keras"),
        SampleGrid(out / "samples", every=config["sample_every"], steps=config["sample_steps"], seed=config["seed"]),
        # After the others, so that once the backup says "epoch N done", every other output of epoch N is written.
        keras.callbacks.BackupAndRestore(out / "backup", delete_checkpoint=False),
    ]
    # The budget's time.json goes last: a kill just before it leaves the time short, and the resumed run
    # trains a few seconds past its budget rather than finding it spent with an older checkpoint.
    if config["lr_schedule"] == "time_cosine":
        callbacks.append(TimeCosineLearningRate(config["learning_rate"], config["max_minutes"], out / "time.json"))
    elif config["max_minutes"]:
        callbacks.append(TimeBudget(config["max_minutes"], out / "time.json"))
    # shuffle=False: the dataset shuffles itself; Keras would only warn that it cannot.
    model.fit(
        dataset, epochs=config["epochs"], steps_per_epoch=steps_per_epoch, callbacks=callbacks,
        verbose=verbose, shuffle=False,
    )
    model.save(out / "model.keras")  # ema_network.keras was written by SaveEMANetwork after the last epoch
    return model


def add_train_arguments(parser):
    """Declare the ``train`` options on ``parser``; each defaults to ``DEFAULTS``."""
    parser.add_argument("--out", default="runs/mnist", help="output folder (default: runs/mnist)")
    parser.add_argument("--schedule", default=DEFAULTS["schedule"], help="linear, cosine or sigmoid")
    parser.add_argument("--timesteps", type=int, default=DEFAULTS["timesteps"], help="T of the schedule")
    parser.add_argument("--size", default=DEFAULTS["size"],
                        help=f"network preset: tiny, small, lean, medium or base (default: {DEFAULTS['size']}; "
                        "the shipped models: lean, unconditional; small, conditional)")
    parser.add_argument("--image-size", type=int, default=DEFAULTS["image_size"], choices=data.IMAGE_SIZES,
                        help=f"28: the digits unpadded, 32: padded with background (default: {DEFAULTS['image_size']}; "
                        "the shipped models: 28, unconditional; 32, conditional)")
    parser.add_argument("--target", default=DEFAULTS["target"], help="epsilon, x0 or v (default: v)")
    parser.add_argument("--min-snr-gamma", type=float, default=None, help="Min-SNR weighting gamma (off)")
    parser.add_argument("--log-snr-normal", type=_log_snr_normal_argument, default=DEFAULTS["log_snr_normal"],
                        metavar="MEAN,STD", help="draw t so that its log-SNR follows N(MEAN, STD^2), e.g. 0,2 "
                        "(Esser et al. 2024) or 2.4,2.4 (Karras et al. 2022); none: t uniform (default: "
                        f"{_log_snr_normal_label(DEFAULTS['log_snr_normal'])})")
    parser.add_argument("--ema-decay", type=float, default=DEFAULTS["ema_decay"])
    parser.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=DEFAULTS["ema_warmup"],
                        help="EMA decay min(ema_decay, (1 + n) / (10 + n)) at step n (default: on)")
    parser.add_argument("--conditional", action="store_true", help="class-conditional network")
    parser.add_argument("--label-dropout", type=float, default=DEFAULTS["label_dropout"])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                        help="images per training step (default: %(default)s)")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N digits only")
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"])
    parser.add_argument("--lr-schedule", default=DEFAULTS["lr_schedule"], choices=LR_SCHEDULES,
                        help="warmup_cosine over the run's steps (default), constant, or time_cosine over "
                        "the --max-minutes budget by the clock (warm-up: its first 10%%)")
    parser.add_argument("--warmup-steps", type=int, default=DEFAULTS["warmup_steps"])
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--sample-every", type=int, default=DEFAULTS["sample_every"], help="epochs between grids")
    parser.add_argument("--sample-steps", type=int, default=DEFAULTS["sample_steps"])
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=DEFAULTS["mixed_precision"],
                        help="mixed_bfloat16 policy (default: auto, on only where the CPU has AVX512-BF16/AMX "
                        "or the GPU is compute capability >= 8.0; emulated bfloat16 is slower, see `bench`)")
    parser.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step")
    parser.add_argument("--micro-batch-size", type=_micro_batch_size_argument, default=DEFAULTS["micro_batch_size"],
                        help="compute each batch's gradient this many images at a time, one part after the "
                        "other: the same step, faster where the part fits the CPU's caches (default: auto, "
                        f"{CPU_MICRO_BATCH_SIZE} on a CPU and the whole batch on a GPU; 0: the whole batch at once; "
                        "used only when it divides --batch-size)")
    parser.add_argument("--init-from", default=None,
                        help="warm-start from this .keras model or shipped name, e.g. mnist (same --size and "
                        "--image-size: the defaults for mnist, small and 32 for mnist-conditional); layers it lacks start at zero")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this many minutes of training, counted across resumes (the epoch in "
                        "progress ends early)")
    parser.add_argument("--verbose", type=int, default=1, help="1: progress bar, 2: a line per epoch")
    return parser


def run_train(args):
    arguments = {key: getattr(args, key) for key in DEFAULTS}
    train(args.out, verbose=args.verbose, **arguments)
    print(f"wrote {Path(args.out) / 'ema_network.keras'} (EMA network for the samplers)")
    return 0
