"""Command-line pieces of the evaluator: ``train-classifier``, ``evaluate`` and ``synthetic-data``.

Each command is two functions, ``add_<command>_arguments(parser)`` to declare its options on an
``argparse`` parser and ``run_<command>(args)`` to do the work; ``diffusion_keras.cli`` mounts them::

    python -m diffusion_keras train-classifier --epochs 8 --seed 0 --out my.weights.h5
    python -m diffusion_keras evaluate --npz samples.npz --json result.json
    python -m diffusion_keras evaluate                         # 10,000 DDIM digits of the shipped model
    python -m diffusion_keras evaluate --weights run/model.keras --sampler dpm_solver_pp_2m --steps 20
    python -m diffusion_keras evaluate --sweep --out-dir sweep # FID vs network evaluations
    python -m diffusion_keras evaluate --guidance 3            # the conditional model, labels 0-9
    python -m diffusion_keras evaluate --guidance-sweep 0,1,2,3 --n 2000
    python -m diffusion_keras synthetic-data --n 10000         # CAS: train on generated, test on real

Where the images come from:

- ``--npz PATH``: read them from an ``.npz``: the array named ``images`` (or the only array in the file)
  and, if present, ``labels``. Images may be uint8 0..255 or float in [0, 1] or [-1, 1], 28x28 or the
  model's padded 32x32 (see ``diffusion_keras.evaluation``).
- otherwise they are sampled: from ``--weights PATH`` (a ``.keras`` file, as for ``sample``) or, without
  it, from the shipped pretrained model. ``--npz`` and ``--weights`` are mutually exclusive. Sampling runs
  in chunks of ``--batch-size`` images; chunk ``i`` uses the noise seed ``seed * 1_000_003 + i``, so the
  same ``--seed`` and ``--batch-size`` give the same digits.

``--sweep`` measures FID against the number of network evaluations (NFE): DDIM (eta = 0) and
DPM-Solver++(2M) at each of ``--sweep-steps`` on ``--sweep-n`` digits, and DDPM (all T steps, the
expensive baseline) on ``--sweep-ddpm-n`` digits. Each FID is shown next to the real-data floor at the
same sample count, because FID depends on N. It writes ``sweep.json`` and ``sweep.png`` to ``--out-dir``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from diffusion_keras.samplers import SAMPLER_NAMES


def add_train_classifier_arguments(parser):
    """Declare ``train-classifier``'s options (--epochs, --seed, --out, --batch-size) on ``parser``."""
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training set (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="initialization/shuffling/augmentation seed")
    parser.add_argument(
        "--out",
        default="mnist_classifier.weights.h5",
        help="where to write the weights, a .weights.h5 path (default: ./mnist_classifier.weights.h5; "
        "the shipped file is data/pretrained/mnist_classifier.weights.h5)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per training step")
    return parser


def run_train_classifier(args):
    """Train the evaluation classifier, save its weights and print accuracy, wall time and sha256."""
    from diffusion_keras import evaluation

    result = evaluation.train_classifier(
        epochs=args.epochs, seed=args.seed, out=args.out, batch_size=args.batch_size, verbose=2
    )
    print(f"test accuracy: {result['test_accuracy']:.4f}")
    print(f"training time: {result['seconds']:.0f} s")
    print(f"wrote {result['path']} (sha256 {result['sha256']})")
    print(
        "Use it with evaluation.load_classifier(path=...) or "
        f"{evaluation.CLASSIFIER_ENV_VARIABLE}={result['path']}."
    )
    return 0


DEFAULT_SWEEP_STEPS = (10, 20, 50, 100)
CHUNK_SEED_STRIDE = 1_000_003  # chunk i of --seed s draws its noise with seed s * stride + i


def _comma_separated(convert, minimum, example, kind):
    """An argparse ``type``: comma-separated values of ``convert``, each >= ``minimum``."""

    def parse(text):
        try:
            values = tuple(convert(part) for part in str(text).split(",") if part.strip())
        except ValueError:
            values = ()
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind} >= {minimum}, e.g. {example}; received {text!r}."
            )
        return values

    return parse


def _step_list(text):
    """Parse ``--sweep-steps``: comma-separated integers >= 1, e.g. ``10,20,50,100``; sorted, unique."""
    return tuple(sorted(set(_comma_separated(int, 1, "10,20,50,100", "integers")(text))))


_guidance_list = _comma_separated(float, 0, "0,1,2,3", "numbers")  # --guidance-sweep, in the given order


def balanced_labels(n):
    """``(n,)`` int32 labels 0, 1, ..., 9, 0, 1, ...: every digit equally often (to within one)."""
    return np.arange(n, dtype=np.int32) % 10


def add_evaluate_arguments(parser):
    """Declare ``evaluate``'s options (--npz or --weights, --json, --n, --sweep, ...) on ``parser``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--npz", default=None,
        help=".npz with an 'images' array (and optional 'labels'); without it the images are sampled",
    )
    source.add_argument(
        "--weights", default=None,
        help="sample from this .keras file (a DiffusionModel, or a network with --schedule/--target); "
        "default when --npz is absent: the shipped pretrained MNIST model",
    )
    parser.add_argument("--json", default=None, help="also write every number to this JSON file")
    parser.add_argument(
        "--n", type=int, default=None,
        help="images to evaluate: the first N of --npz (default: all), or N samples (default: 10000)",
    )
    parser.add_argument(
        "--guidance", type=float, default=None,
        help="sample a conditional model with balanced labels 0-9 and this guidance weight w (0: its "
        "unconditional mode); implies the shipped 'mnist-conditional' model without --weights",
    )
    parser.add_argument(
        "--guidance-sweep", type=_guidance_list, default=None,
        help="instead of one evaluation, evaluate each comma-separated guidance weight, e.g. 0,1,2,3 "
        "(--n samples each)",
    )
    parser.add_argument(
        "--sampler", default="ddim", choices=SAMPLER_NAMES,
        help="sampler when sampling (default: ddim with eta=0)",
    )
    parser.add_argument(
        "--steps", type=int, default=50,
        help="network evaluations per image for ddim/dpm_solver_pp_2m (default: 50; ddpm always runs all T)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=500,
        help="images sampled at once; bounds memory (default: 500)",
    )
    parser.add_argument(
        "--schedule", default=None, help="schedule of a --weights file holding a network alone"
    )
    parser.add_argument("--T", type=int, default=None, help="schedule length for --schedule")
    parser.add_argument(
        "--target", default=None, choices=("epsilon", "x0", "v"),
        help="what a network-alone --weights file predicts",
    )
    parser.add_argument("--images-key", default="images", help="name of the images array (default: images)")
    parser.add_argument(
        "--labels-key", default="labels", help="name of the labels array, if any (default: labels)"
    )
    parser.add_argument(
        "--value-range", default="auto", choices=("auto", "[0, 1]", "[-1, 1]"),
        help="range of float images; auto reads any value below -0.01 as [-1, 1]",
    )
    parser.add_argument("--n-reference", type=int, default=10000, help="real test digits to compare with")
    parser.add_argument("--cas-epochs", type=int, default=None, help="also compute CAS (needs labels)")
    parser.add_argument("--classifier", default=None, help="weights of another classifier (.weights.h5)")
    parser.add_argument("--cache-dir", default=None, help="cache of reference features (default: ~/.cache)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the sampling noise, KID subsets and the floor's digits"
    )
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
    sweep = parser.add_argument_group("sweep: FID against network evaluations")
    sweep.add_argument(
        "--sweep", action="store_true",
        help="instead of one evaluation, sweep DDIM and DPM-Solver++ over --sweep-steps and run DDPM once",
    )
    sweep.add_argument("--sweep-n", type=int, default=2000, help="samples per DDIM/DPM-Solver++ point (2000)")
    sweep.add_argument(
        "--sweep-ddpm-n", type=int, default=500,
        help="samples for the DDPM point (default: 500; 0 skips DDPM, which costs T evaluations per image)",
    )
    sweep.add_argument(
        "--sweep-steps", type=_step_list, default=DEFAULT_SWEEP_STEPS,
        help="comma-separated step counts (default: 10,20,50,100)",
    )
    sweep.add_argument(
        "--out-dir", default="sweep", help="folder for sweep.json and sweep.png (default: sweep)"
    )
    return parser


def load_npz_images(path, images_key="images", labels_key="labels", n=None):
    """Read ``(images, labels or None)`` from an ``.npz`` written by a sampler or by ``np.savez``.

    Args:
        path: the ``.npz`` file.
        images_key: name of the images array; if the file holds exactly one array, that one is used.
        labels_key: name of the optional labels array.
        n: keep only the first ``n`` images (and labels).

    Returns:
        ``(images, labels)``; ``labels`` is None when the file has none.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"--npz {str(path)!r} does not exist or is not a file; expected an .npz of images."
        )
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = list(arrays.files)
            if images_key in names:
                images = arrays[images_key]
            elif len(names) == 1:
                images = arrays[names[0]]
            else:
                raise ValueError(
                    f"--npz {path} has no array named {images_key!r}; it holds {names}. Pass --images-key."
                )
            labels = arrays[labels_key] if labels_key in names and labels_key != images_key else None
    except (OSError, EOFError) as error:
        raise ValueError(f"--npz {path} could not be read as an .npz ({error}).") from error
    if n is not None:
        if n < 2 or n > len(images):
            raise ValueError(f"--n must be in [2, {len(images)}] (the images in {path}); received {n}.")
        images = images[:n]
        labels = None if labels is None else labels[:n]
    return images, labels


def sample_in_chunks(network, schedule, target, sampler="ddim", n=10000, steps=50, seed=0, batch_size=500,
                     progress=None, labels=None, guidance=1.0):
    """Sample ``n`` digits in chunks of ``batch_size``; return ``(images, seconds)``.

    Args:
        network, schedule, target: as returned by ``sample_cli.load_for_sampling``.
        sampler: ``"ddim"`` (eta = 0), ``"ddpm"`` (all T steps; ``steps`` is ignored) or
            ``"dpm_solver_pp_2m"``.
        n: number of images, >= 2.
        steps: network evaluations per image for ``ddim`` and ``dpm_solver_pp_2m``.
        seed: chunk ``i`` is sampled with the seed ``seed * 1_000_003 + i``.
        batch_size: images per chunk; memory grows with it, not with ``n``.
        progress: show the samplers' progress bars; ``None`` shows them only when stdout is a terminal.
        labels, guidance: for a conditional network, ``(n,)`` labels (cut into the same chunks) and the
            guidance weight w; None samples with the null label.

    Returns:
        ``(images, seconds)``: float32 ``(n, H, W, 1)`` (the network's image shape) in [-1, 1] and the wall
        time of sampling.
    """
    from diffusion_keras import samplers

    if sampler not in SAMPLER_NAMES:
        raise ValueError(f"--sampler must be one of {SAMPLER_NAMES}; received {sampler!r}.")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"--n must be an integer >= 2 (FID needs 2 images); received {n!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1; received {batch_size!r}.")
    if sampler != "ddpm" and (not isinstance(steps, (int, np.integer)) or not 1 <= steps <= schedule.T):
        raise ValueError(
            f"--steps must be an integer in [1, T = {schedule.T}] for {sampler}; received {steps!r}."
        )
    if progress is None:
        progress = sys.stdout.isatty()
    options = {"eta": 0.0} if sampler == "ddim" else {}
    chunks = []
    start = time.perf_counter()
    for index, first in enumerate(range(0, n, batch_size)):
        chunks.append(
            samplers.sample(
                network, schedule, sampler, steps=None if sampler == "ddpm" else int(steps),
                n=min(batch_size, n - first), seed=int(seed) * CHUNK_SEED_STRIDE + index, target=target,
                progress=progress, guidance=guidance,
                labels=None if labels is None else labels[first:first + batch_size], **options,
            )
        )
    return np.concatenate(chunks), time.perf_counter() - start


def _extractor(args):
    from diffusion_keras import evaluation

    if not args.classifier:
        return None
    classifier, sha256 = evaluation.load_classifier(args.classifier)
    return evaluation.FeatureExtractor(classifier, sha256)


def _write_json(path, result):
    json_path = Path(path).expanduser()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    print(f"wrote {json_path}")


def _weights(args):
    """``--weights``, or the shipped model the options call for: the conditional one under guidance."""
    wants_conditional = args.guidance is not None or bool(getattr(args, "guidance_sweep", None))
    return args.weights or ("mnist-conditional" if wants_conditional else "mnist")


def _weights_name(args):
    return args.weights or f"shipped pretrained model {_weights(args)!r} (data/pretrained)"


def _load_model(args):
    """``(network, schedule, target)`` from ``_weights(args)``."""
    from diffusion_keras.sample_cli import load_for_sampling

    return load_for_sampling(_weights(args), args.schedule, args.T, args.target)


def _conditioning(network, guidance, n):
    """``(labels, guidance)`` for sampling ``n`` digits: balanced labels under ``--guidance``."""
    if guidance is None:
        return None, 1.0
    if getattr(network, "num_classes", None) is None:
        raise ValueError(
            f"--guidance {guidance:g} needs a conditional model (trained with train --conditional); "
            "the --weights model is unconditional."
        )
    return balanced_labels(n), float(guidance)


def run_evaluate(args, images=None, labels=None):
    """Evaluate images from ``--npz``, or sampled from ``--weights``/the shipped model; print and save.

    Args:
        args: parsed options from ``add_evaluate_arguments``.
        images, labels: optional arrays that replace reading ``--npz`` or sampling.

    Returns:
        0, the process exit status.
    """
    from diffusion_keras import evaluation

    if args.npz is not None and args.weights is not None:  # argparse forbids it; callers of run_* too
        raise ValueError(
            "--npz and --weights are mutually exclusive: evaluate saved images or sample, not both."
        )
    if getattr(args, "sweep", False):
        if args.npz is not None:
            raise ValueError("--sweep samples its own images; drop --npz (use --weights to pick the model).")
        return run_sweep(args)
    if getattr(args, "guidance_sweep", None):
        if args.npz is not None:
            raise ValueError("--guidance-sweep samples its own images; drop --npz.")
        return run_guidance_sweep(args)
    sampling = None
    if images is None and args.npz is not None:
        images, labels = load_npz_images(args.npz, args.images_key, args.labels_key, args.n)
    elif images is None:
        network, schedule, target = _load_model(args)
        n = 10000 if args.n is None else args.n
        if n > 60000:  # checked before sampling: the floor draws as many real training digits
            raise ValueError(f"--n must be at most 60,000 (the MNIST training digits); received {n}.")
        labels, guidance = _conditioning(network, args.guidance, n)
        images, seconds = sample_in_chunks(
            network, schedule, target, args.sampler, n=n, steps=args.steps, seed=args.seed,
            batch_size=args.batch_size, labels=labels, guidance=guidance,
        )
        if guidance == 0.0:
            labels = None  # the unconditional mode: the labels steered nothing
        sampling = {
            "weights": _weights_name(args),
            "guidance": None if args.guidance is None else guidance,
            "sampler": args.sampler,
            "network_evaluations": schedule.T if args.sampler == "ddpm" else args.steps,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "seconds": seconds,
            "images_per_second": n / seconds if seconds > 0 else None,
        }
    result = evaluation.evaluate_images(
        images,
        labels=labels,
        n_reference=args.n_reference,
        value_range=args.value_range,
        extractor=_extractor(args),
        cache_dir=args.cache_dir,
        seed=args.seed,
        kid_subsets=args.kid_subsets,
        cas_epochs=args.cas_epochs,
    )
    if sampling is not None:
        result["sampling"] = sampling
        guided = "" if sampling["guidance"] is None else f", guidance w = {sampling['guidance']:g}"
        print(
            f"sampled {result['n_samples']} digits{guided} with {sampling['sampler']} "
            f"({sampling['network_evaluations']} network evaluations each) from {sampling['weights']} "
            f"in {sampling['seconds']:.1f} s ({sampling['images_per_second']:.1f} images/s)"
        )
    print(evaluation.format_table(result))
    if args.json:
        _write_json(args.json, result)
    return 0


def run_sweep(args):
    """FID against network evaluations for DDIM, DPM-Solver++ and DDPM; write a table, JSON and a plot.

    Returns:
        0, the process exit status.
    """
    from diffusion_keras import evaluation
    from diffusion_keras.sample_cli import load_for_sampling

    for name in ("sweep_n", "sweep_ddpm_n"):
        value = getattr(args, name)
        if value < (0 if name == "sweep_ddpm_n" else 2) or value == 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be >= 2 (or 0 for --sweep-ddpm-n); received {value}."
            )
    network, schedule, target = load_for_sampling(args.weights, args.schedule, args.T, args.target)
    too_many = [steps for steps in args.sweep_steps if steps > schedule.T]
    if too_many:
        raise ValueError(f"--sweep-steps {too_many} exceed the schedule's T = {schedule.T}.")
    extractor = _extractor(args)
    runs = [
        (sampler, steps, args.sweep_n)
        for sampler in ("ddim", "dpm_solver_pp_2m")
        for steps in args.sweep_steps
    ]
    if args.sweep_ddpm_n:
        runs.append(("ddpm", schedule.T, args.sweep_ddpm_n))
    points = []
    for sampler, steps, n in runs:
        images, seconds = sample_in_chunks(
            network, schedule, target, sampler, n=n, steps=steps, seed=args.seed, batch_size=args.batch_size
        )
        result = evaluation.evaluate_images(
            images, n_reference=args.n_reference, extractor=extractor, cache_dir=args.cache_dir,
            seed=args.seed, kid_subsets=args.kid_subsets, include_ladder=False,
        )
        point = {
            "sampler": sampler, "network_evaluations": int(steps), "n_samples": n, "fid": result["fid"],
            "floor_fid": result["floor"]["fid"], "fid_ratio": result["fid_ratio"],
            "kid_mean": result["kid_mean"], "kid_std": result["kid_std"],
            "mean_max_probability": result["mean_max_probability"], "seconds": seconds,
        }
        points.append(point)
        print(
            f"{sampler:<18}{steps:>6} NFE  N={n:<6} FID {point['fid']:8.3f}  "
            f"floor {point['floor_fid']:7.3f}  "
            f"ratio {point['fid_ratio']:6.2f}x  {seconds:7.1f} s",
            flush=True,
        )
    sweep = {
        "weights": args.weights or "shipped pretrained model (data/pretrained)",
        "T": int(schedule.T), "target": target, "seed": args.seed, "n_reference": args.n_reference,
        "points": points,
    }
    print()
    print(format_sweep(sweep))
    out_dir = Path(args.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "sweep.json", sweep)
    if args.json:
        _write_json(args.json, sweep)
    figure = plot_sweep(sweep)
    figure.savefig(out_dir / "sweep.png", dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    print(f"wrote {out_dir / 'sweep.png'}")
    return 0


def run_guidance_sweep(args):
    """Evaluate a conditional model at every guidance weight of ``--guidance-sweep``: the trade-off of
    sample quality (FID) and label accuracy against diversity. Prints a table; ``--json`` saves it.

    Returns:
        0, the process exit status.
    """
    from diffusion_keras import evaluation

    network, schedule, target = _load_model(args)
    n = 2000 if args.n is None else args.n
    extractor = _extractor(args)
    rows = []
    for guidance in args.guidance_sweep:
        labels, guidance = _conditioning(network, guidance, n)
        images, seconds = sample_in_chunks(
            network, schedule, target, args.sampler, n=n, steps=args.steps, seed=args.seed,
            batch_size=args.batch_size, labels=labels, guidance=guidance,
        )
        result = evaluation.evaluate_images(
            images, labels=None if guidance == 0.0 else labels, n_reference=args.n_reference,
            extractor=extractor, cache_dir=args.cache_dir, seed=args.seed, kid_subsets=args.kid_subsets,
            include_ladder=False,
        )
        row = {
            "guidance": guidance, "n_samples": n, "fid": result["fid"], "floor_fid": result["floor"]["fid"],
            "fid_ratio": result["fid_ratio"], "label_accuracy": result["label_accuracy"],
            "mean_max_probability": result["mean_max_probability"],
            "class_balance_kl": result["class_balance_kl"], "seconds": seconds,
        }
        rows.append(row)
        print(format_guidance_sweep({"sampler": args.sampler, "steps": args.steps, "rows": [row]},
                                    header=not rows[:-1]), flush=True)
    sweep = {
        "weights": _weights_name(args), "sampler": args.sampler, "steps": args.steps, "seed": args.seed,
        "n_reference": args.n_reference, "rows": rows,
    }
    if args.json:
        _write_json(args.json, sweep)
    return 0


def format_guidance_sweep(sweep, header=True):
    """A guidance sweep (``run_guidance_sweep``'s dict) as a text table, one line per weight w."""
    lines = [
        f"guidance sweep, {sweep['sampler']} {sweep['steps']} steps, balanced labels; label accuracy = "
        "share classified as the label asked for (w = 0 is the unconditional mode)",
        f"{'w':>5}{'N':>7}{'FID':>9}{'floor':>8}{'FID/floor':>11}{'label acc':>11}{'confidence':>12}"
        f"{'class KL':>10}{'seconds':>9}",
    ] if header else []
    for row in sweep["rows"]:
        accuracy = "-" if row["label_accuracy"] is None else f"{row['label_accuracy']:.4f}"
        lines.append(
            f"{row['guidance']:>5g}{row['n_samples']:>7}{row['fid']:>9.3f}{row['floor_fid']:>8.3f}"
            f"{row['fid_ratio']:>10.2f}x{accuracy:>11}{row['mean_max_probability']:>12.4f}"
            f"{row['class_balance_kl']:>10.4f}{row['seconds']:>9.1f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# The synthetic-data study: train a classifier on generated digits only, test it on real ones
# ----------------------------------------------------------------------------------------------------


def add_synthetic_arguments(parser):
    """Declare the ``synthetic-data`` options on ``parser``."""
    parser.add_argument("--n", type=int, default=10000, help="training digits of each kind (default: 10000)")
    parser.add_argument(
        "--weights", default="mnist-conditional",
        help="a conditional .keras model or a shipped name (default: mnist-conditional)",
    )
    parser.add_argument("--guidance", type=float, default=2.0, help="guidance weight w (default: 2)")
    parser.add_argument("--sampler", default="dpm_solver_pp_2m", choices=SAMPLER_NAMES,
                        help="sampler (default: dpm_solver_pp_2m)")
    parser.add_argument("--steps", type=int, default=20, help="network evaluations per digit (default: 20)")
    parser.add_argument("--epochs", type=int, default=5, help="classifier training epochs (default: 5)")
    parser.add_argument("--batch-size", type=int, default=500, help="digits sampled at once (default: 500)")
    parser.add_argument("--n-test", type=int, default=None, help="real test digits to score on (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling, real-subset and training seed")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    return parser


def synthetic_data_study(network, schedule, target, n=10000, guidance=2.0, sampler="dpm_solver_pp_2m",
                         steps=20, epochs=5, n_test=None, seed=0, batch_size=500):
    """CAS of ``n`` generated digits next to the accuracy of the same classifier trained on ``n`` real ones.

    Both classifiers use the recipe of ``evaluation.classification_accuracy_score`` and are scored on
    the real MNIST test set. The generated digits are balanced over the ten labels; the real ones are
    ``n`` training digits drawn at random with ``seed``.

    Returns:
        A JSON-ready dict with ``generated_accuracy``, ``real_accuracy``, ``label_accuracy`` of the
        generated digits under the package classifier, and the settings.
    """
    from diffusion_keras import data, evaluation

    if not isinstance(n, (int, np.integer)) or not 10 <= n <= 60000:
        raise ValueError(f"--n must be an integer in [10, 60000]; received {n!r}.")
    labels, guidance = _conditioning(network, guidance, n)
    images, seconds = sample_in_chunks(
        network, schedule, target, sampler, n=n, steps=steps, seed=seed, batch_size=batch_size,
        labels=labels, guidance=guidance,
    )
    label_accuracy = evaluation.label_accuracy(images, labels)
    generated = evaluation.classification_accuracy_score(images, labels, epochs=epochs, seed=seed, n_test=n_test)
    (x_train, y_train), _ = data.load_mnist()
    chosen = np.random.default_rng(seed).choice(len(x_train), n, replace=False)
    real = evaluation.classification_accuracy_score(
        x_train[chosen], y_train[chosen], epochs=epochs, seed=seed, n_test=n_test
    )
    return {
        "n": int(n), "guidance": guidance, "sampler": sampler, "steps": int(steps), "epochs": int(epochs),
        "seed": int(seed), "sampling_seconds": seconds, "label_accuracy": float(label_accuracy),
        "generated_accuracy": float(generated), "real_accuracy": float(real),
    }


def format_synthetic(result):
    return "\n".join([
        f"classifier trained on {result['n']} digits, tested on real MNIST test digits "
        f"({result['epochs']} epochs, seed {result['seed']})",
        f"{'training data':<52}{'test accuracy':>14}",
        f"{'real MNIST training digits':<52}{result['real_accuracy']:>14.4f}",
        f"{'generated: ' + result['sampler'] + ' ' + str(result['steps']) + ' steps, w = ' + format(result['guidance'], 'g'):<52}"
        f"{result['generated_accuracy']:>14.4f}",
        f"generated digits classified as their label by the package classifier: {result['label_accuracy']:.4f}",
    ])


def run_synthetic(args):
    """The ``synthetic-data`` command: print CAS next to the real-data accuracy at the same N."""
    from diffusion_keras.sample_cli import load_for_sampling

    network, schedule, target = load_for_sampling(args.weights)
    result = synthetic_data_study(
        network, schedule, target, n=args.n, guidance=args.guidance, sampler=args.sampler, steps=args.steps,
        epochs=args.epochs, n_test=args.n_test, seed=args.seed, batch_size=args.batch_size,
    )
    print(format_synthetic(result))
    if args.json:
        _write_json(args.json, result)
    return 0


def format_sweep(sweep):
    """Return a sweep (``run_sweep``'s dict) as a text table, one line per sampler and step count."""
    lines = [
        f"FID vs network evaluations (NFE), {sweep['n_reference']} real test digits as reference; "
        "floor = real training digits at the same N",
        f"{'sampler':<18}{'NFE':>6}{'N':>8}{'FID':>10}{'floor FID':>11}{'FID/floor':>11}{'seconds':>10}",
    ]
    for point in sweep["points"]:
        lines.append(
            f"{point['sampler']:<18}{point['network_evaluations']:>6}{point['n_samples']:>8}"
            f"{point['fid']:>10.3f}{point['floor_fid']:>11.3f}{point['fid_ratio']:>10.2f}x"
            f"{point['seconds']:>10.1f}"
        )
    return "\n".join(lines)


def plot_sweep(sweep, axes=None):
    """Plot FID against network evaluations (log-log), one line per sampler, with the real-data floors.

    Returns:
        The matplotlib figure.
    """
    import matplotlib
    import matplotlib.ticker

    if axes is None and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # a command-line run needs no window
    import matplotlib.pyplot as plt

    if axes is None:
        figure, axes = plt.subplots(figsize=(6.5, 4.2))
    else:
        figure = axes.figure
    styles = {"ddim": ("C0", "o", "DDIM (eta = 0)"), "dpm_solver_pp_2m": ("C1", "s", "DPM-Solver++(2M)"),
              "ddpm": ("C2", "*", "DDPM (all T steps)")}
    floors = {}
    for sampler, (color, marker, label) in styles.items():
        points = [point for point in sweep["points"] if point["sampler"] == sampler]
        if not points:
            continue
        counts = sorted({point["n_samples"] for point in points})
        axes.plot(
            [point["network_evaluations"] for point in points], [point["fid"] for point in points],
            color=color, marker=marker, markersize=10 if marker == "*" else 6,
            label=f"{label}, N = {', '.join(map(str, counts))}",
        )
        for point in points:
            floors[point["n_samples"]] = point["floor_fid"]
    for index, (n, floor) in enumerate(sorted(floors.items())):
        axes.axhline(floor, color="grey", linestyle=("--", ":", "-.")[index % 3], linewidth=1,
                     label=f"real-data floor, N = {n}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    # Plain numbers on the log axes (10, 20, 50 rather than 10^1, 2 x 10^1, ...).
    axes.set_xticks(sorted({point["network_evaluations"] for point in sweep["points"]}))
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.set_xlabel("network evaluations per image (NFE)")
    axes.set_ylabel("FID (classifier features)")
    axes.set_title("Sample quality against sampling cost")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return figure
