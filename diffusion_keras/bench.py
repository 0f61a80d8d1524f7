"""Throughput measurements behind ``python -m diffusion_keras bench``.

How we measure (project guide, Sec. 5): throughput in images per second, and as a ratio of achieved
FLOP/s (counted FLOPs of the network x images/s, x3 for a training step: forward + backward) over the
measured matmul FLOP/s of the same machine in the same process. Every number is the median of several
timed repeats after a warm-up call that pays for tracing and compilation. A row's timings (training
step, bare step, evaluation and the matmul it is compared with) take turns, one repeat of each per
round, so that a shared machine that slows down for a minute slows all of them alike.
"""

import statistics
import time

import numpy as np
import tensorflow as tf

from diffusion_keras import _backend  # noqa: F401
from diffusion_keras.data import IMAGE_SIZE, IMAGE_SIZES


def median_seconds(function, repeats=5, warmup=1):
    """Median wall time of ``function()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(functions, repeats=5):
    """Median wall time of each of ``functions`` (a dict of name: callable), timed in turns.

    Each function is called once untimed, then ``repeats`` rounds call every function once in order, so
    that a slow spell of the machine falls on all of them rather than on one.
    """
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


MATMUL_SIZE = 2048


def matmul_function(dtype="float32", size=MATMUL_SIZE):
    """A traced ``size x size`` TensorFlow matmul in ``dtype`` (2 n^3 FLOPs per call), returned as a callable."""
    a = tf.random.normal((size, size), dtype="float32", seed=0)
    b = tf.random.normal((size, size), dtype="float32", seed=1)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    return tf.function(lambda: tf.matmul(a, b))


def matmul_gflops(dtype="float32", size=MATMUL_SIZE, repeats=5):
    """Measured GFLOP/s of a ``size x size`` TensorFlow matmul in ``dtype``."""
    product = matmul_function(dtype, size)
    seconds = median_seconds(lambda: product().numpy(), repeats=repeats)
    return 2.0 * size**3 / seconds / 1e9


def format_table(rows, columns):
    """Render a list of dicts as a fixed-width text table with the given column order."""
    header = [str(column) for column in columns]
    body = [[_format_cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(columns))]
    lines = ["  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in [header] + body]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _format_cell(value):
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def machine_summary():
    """One line naming the CPU count and TensorFlow/Keras versions, printed with every benchmark."""
    import os

    import keras

    return (
        f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"NumPy {np.__version__}"
    )


def build_sized_network(size, image_size=IMAGE_SIZE):
    """A preset name (``"small"``) or widths joined by dashes (``"32-64-96"``: the small preset's other
    settings with these widths), so that ``bench`` can measure sizes that are not presets yet."""
    from diffusion_keras import networks

    if size in networks.network_presets:
        return networks.build_network(size, image_size=image_size)
    try:
        widths = tuple(int(width) for width in size.split("-"))
    except ValueError:
        raise ValueError(
            f"size must be a preset {tuple(networks.network_presets)} or widths like '32-64-96'; "
            f"received {size!r}."
        ) from None
    return networks.build_network(networks.DEFAULT_PRESET, widths=widths, image_size=image_size)


def network_throughput(size="small", policy="float32", jit_compile=False, train_batch=None,
                       eval_batch=256, repeats=3, steps_per_repeat=5, micro_batch_size=None, image_size=IMAGE_SIZE):
    """Measure one network preset: training images/s (full ``train_step`` and a bare step), eval images/s,
    and the matmul GFLOP/s of the policy's compute precision, all timed in turns (``interleaved_median_seconds``).

    The bare step is what any Keras training of this network costs: forward, MSE against a fixed
    target, backward and the same AdamW update. ``train_step`` adds drawing t and the noise,
    ``q_sample``, the loss bookkeeping and the EMA update; its overhead is ``bare_s / step_s`` - 1
    in reverse (``train_step`` seconds over bare seconds, minus 1). With ``micro_batch_size``,
    ``train_step`` splits its batch (``model.batch_gradients``) and the bare step does too.
    ``train_batch`` defaults to the batch size of ``train`` (``training.DEFAULTS``); ``image_size`` is
    32 (padded MNIST, the default) or 28 (``train --image-size 28``).
    """
    import keras

    from diffusion_keras import model as model_module
    from diffusion_keras import networks
    from diffusion_keras.training import DEFAULTS

    if train_batch is None:
        train_batch = DEFAULTS["batch_size"]
    keras.mixed_precision.set_global_policy(policy)
    try:
        network = build_sized_network(size, image_size)
        diffusion = model_module.DiffusionModel(network, schedule="cosine", seed=0, micro_batch_size=micro_batch_size)
        diffusion.compile(optimizer=keras.optimizers.AdamW(1e-4))
        diffusion.optimizer.build(diffusion.trainable_variables)  # fit would do it (make_train_function)
        images = tf.random.uniform((train_batch, *network.image_shape), -1.0, 1.0, seed=0)
        train_step = tf.function(diffusion.train_step, jit_compile=jit_compile)
        train_step(images)

        bare_network = build_sized_network(size, image_size)
        bare_optimizer = keras.optimizers.AdamW(1e-4)
        bare_optimizer.build(bare_network.trainable_variables)
        t = tf.random.uniform((train_batch,), 0, 1000, dtype=tf.int32, seed=1)
        target = tf.random.normal(images.shape, seed=2)

        def squared_errors(images_part, t_part, target_part):
            prediction = tf.cast(bare_network([images_part, t_part], training=True), "float32")
            return tf.reduce_mean(tf.square(prediction - target_part), axis=(1, 2, 3))

        @tf.function(jit_compile=jit_compile)
        def bare_step():
            loss, gradients = model_module.batch_gradients(
                squared_errors, [images, t, target], bare_network.trainable_variables, micro_batch_size
            )
            bare_optimizer.apply(gradients, bare_network.trainable_variables)
            return loss

        bare_step()
        eval_images = tf.random.uniform((eval_batch, *network.image_shape), -1.0, 1.0, seed=3)
        eval_t = tf.random.uniform((eval_batch,), 0, 1000, dtype=tf.int32, seed=4)
        evaluate = tf.function(lambda: network([eval_images, eval_t]), jit_compile=jit_compile)
        evaluate()

        product = matmul_function("bfloat16" if policy == "mixed_bfloat16" else "float32")

        def repeated(function, count=steps_per_repeat):
            return lambda: [function() for _ in range(count)][-1].numpy()

        seconds = interleaved_median_seconds(
            {
                "train": repeated(lambda: train_step(images)["loss"]),
                "bare": repeated(bare_step),
                "eval": repeated(evaluate),
                "matmul": repeated(product, 2 * steps_per_repeat),
            },
            repeats=repeats,
        )
        step_seconds, bare_seconds, eval_seconds = (seconds[name] / steps_per_repeat for name in ("train", "bare", "eval"))
        matmul = 2.0 * MATMUL_SIZE**3 / (seconds["matmul"] / (2 * steps_per_repeat)) / 1e9
        flops = networks.count_flops(network)
        train_gflops = 3 * flops * train_batch / step_seconds / 1e9
        return {
            "size": size,
            "image": image_size,
            "policy": policy,
            "jit": jit_compile,
            "params": network.count_params(),
            "GFLOP/img": flops / 1e9,
            "train img/s": train_batch / step_seconds,
            "train GFLOP/s": train_gflops,
            "matmul GFLOP/s": matmul,
            "train/matmul": train_gflops / matmul,
            "bare img/s": train_batch / bare_seconds,
            "step overhead": step_seconds / bare_seconds - 1.0,
            "eval img/s": eval_batch / eval_seconds,
            "eval GFLOP/s": flops * eval_batch / eval_seconds / 1e9,
        }
    finally:
        keras.mixed_precision.set_global_policy("float32")


def add_bench_arguments(parser):
    """Declare the ``bench`` options on ``parser``."""
    from diffusion_keras.training import CPU_MICRO_BATCH_SIZE, DEFAULTS, _micro_batch_size_argument

    parser.add_argument("--sizes", nargs="+", default=["small"],
                        help="network presets, or widths like 32-64-96 (default: small, the shipped conditional model's "
                        "network; train's default, and the shipped unconditional model's, is lean)")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, choices=IMAGE_SIZES,
                        help="32: padded MNIST (default, as the shipped conditional model), 28: unpadded (train's default)")
    parser.add_argument("--train-batch", type=int, default=DEFAULTS["batch_size"],
                        help=f"training batch size (default: {DEFAULTS['batch_size']}, what `train` uses)")

    parser.add_argument("--micro-batch-size", type=_micro_batch_size_argument, default="auto",
                        help="images per micro-batch of a training step (default: auto, what `train` uses: "
                        f"{CPU_MICRO_BATCH_SIZE} on a CPU, the whole batch on a GPU; 0: the whole batch at once)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="precision/XLA variants: fp32, bf16, fp32+jit, bf16+jit (default: all four where "
                        "the hardware has native bfloat16, else fp32 and fp32+jit: emulated bf16 is very slow)")
    parser.add_argument("--samplers", action="store_true", help="also time the samplers (10-1000 steps)")
    parser.add_argument("--sampler-n", type=int, default=64, help="images per sampler run")
    parser.add_argument("--sampler-steps", type=int, nargs="+", default=[10, 20, 50, 1000],
                        help="step counts to time the samplers at (default: 10 20 50 1000)")
    parser.add_argument("--no-training", dest="training", action="store_false",
                        help="skip the training/evaluation table (e.g. with --samplers alone)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    return parser


VARIANTS = {
    "fp32": ("float32", False), "bf16": ("mixed_bfloat16", False),
    "fp32+jit": ("float32", True), "bf16+jit": ("mixed_bfloat16", True),
}


def default_variants(native_bfloat16):
    """Every variant where bfloat16 is native; otherwise the float32 ones (emulated bf16 takes many minutes)."""
    return list(VARIANTS) if native_bfloat16 else [name for name in VARIANTS if not name.startswith("bf16")]


def run_bench(args):
    from diffusion_keras.training import native_bfloat16, resolve_micro_batch_size

    native = native_bfloat16()
    variants = args.variants or default_variants(native)
    micro_batch_size = resolve_micro_batch_size(args.micro_batch_size)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"--variants must be some of {sorted(VARIANTS)}; received {unknown}.")
    print(machine_summary())
    print(f"native bfloat16: {'yes' if native else 'no (emulated: train uses float32; bf16 variants only if asked for)'}")
    print(f"training steps: batch {args.train_batch}, micro-batch size {micro_batch_size or 'whole batch'} (used where it divides the batch)")
    matmul = {"fp32": matmul_gflops("float32"), "bf16": matmul_gflops("bfloat16")}
    print(f"matmul {MATMUL_SIZE}x{MATMUL_SIZE} at start: fp32 {matmul['fp32']:.1f} GFLOP/s, bf16 {matmul['bf16']:.1f} GFLOP/s\n")
    rows = []
    for size in args.sizes if args.training else []:
        for variant in variants:
            policy, jit = VARIANTS[variant]
            row = network_throughput(size, policy, jit, train_batch=args.train_batch, repeats=args.repeats,
                                     micro_batch_size=micro_batch_size, image_size=args.image_size)
            row["variant"] = variant
            rows.append(row)
    columns = ["size", "image", "variant", "params", "GFLOP/img", "train img/s", "train GFLOP/s", "matmul GFLOP/s",
               "train/matmul", "step overhead", "eval img/s", "eval GFLOP/s"]
    if rows:
        print(format_table(rows, columns))
        print(f"\nmatmul GFLOP/s is a {MATMUL_SIZE}x{MATMUL_SIZE} matmul of the row's precision, timed in turns with "
              "the row's steps; train/matmul is the ratio of the two. Step overhead is train_step (noise, q_sample, "
              "loss, EMA) over a bare forward+backward+AdamW step of the same network.")
    if args.samplers:
        _bench_samplers(args)
    return 0


def _bench_samplers(args):
    from diffusion_keras import samplers, schedules

    network = build_sized_network(args.sizes[0], args.image_size)
    rows = samplers.bench_samplers(
        network, schedules.cosine(), n=args.sampler_n, repeats=args.repeats, steps=tuple(args.sampler_steps)
    )
    print(f"\nsamplers, {args.sampler_n} images ({args.sizes[0]} network; speed does not depend on its weights)")
    print(format_table(rows, list(rows[0])))
