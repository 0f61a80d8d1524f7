"""Command-line pieces of the evaluator: ``train-classifier`` and ``evaluate``.

Each command is two functions, ``add_<command>_arguments(parser)`` to declare its options on an
``argparse`` parser and ``run_<command>(args)`` to do the work; ``diffusion_keras.cli`` mounts them::

    python -m diffusion_keras train-classifier --epochs 8 --seed 0 --out my.weights.h5
    python -m diffusion_keras evaluate --npz samples.npz --json result.json
    python -m diffusion_keras evaluate                         # 10,000 DDIM digits of the shipped model
    python -m diffusion_keras evaluate --weights run/model.keras --sampler dpm_solver_pp_2m --steps 20
    python -m diffusion_keras evaluate --sweep --out-dir sweep # FID vs network evaluations

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


def _step_list(text):
    """Parse ``--sweep-steps``: comma-separated integers >= 1, e.g. ``10,20,50,100``."""
    try:
        steps = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        steps = ()
    if not steps or min(steps) < 1:
        raise ValueError(
            f"--sweep-steps must be comma-separated integers >= 1, e.g. 10,20,50,100; received {text!r}."
        )
    return tuple(sorted(set(steps)))


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
                     progress=None):
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

    Returns:
        ``(images, seconds)``: float32 ``(n, 32, 32, 1)`` in [-1, 1] and the wall time of sampling.
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
                progress=progress, **options,
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
    sampling = None
    if images is None and args.npz is not None:
        images, labels = load_npz_images(args.npz, args.images_key, args.labels_key, args.n)
    elif images is None:
        from diffusion_keras.sample_cli import load_for_sampling

        network, schedule, target = load_for_sampling(args.weights, args.schedule, args.T, args.target)
        n = 10000 if args.n is None else args.n
        if n > 60000:  # checked before sampling: the floor draws as many real training digits
            raise ValueError(f"--n must be at most 60,000 (the MNIST training digits); received {n}.")
        images, seconds = sample_in_chunks(
            network, schedule, target, args.sampler, n=n, steps=args.steps, seed=args.seed,
            batch_size=args.batch_size,
        )
        sampling = {
            "weights": args.weights or "shipped pretrained model (data/pretrained)",
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
        print(
            f"sampled {result['n_samples']} digits with {sampling['sampler']} "
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
