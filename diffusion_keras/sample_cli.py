"""The ``sample`` command: ``python -m diffusion_keras sample [options]``.

``add_sample_arguments(parser)`` declares the options on an argparse (sub)parser and
``run_sample(args)`` does the work; ``cli.py`` wires them in. Examples::

    python -m diffusion_keras sample --weights runs/mnist/model.keras --sampler ddim --steps 50
    python -m diffusion_keras sample --weights ema_network.keras --schedule linear --T 1000 \\
        --target epsilon --sampler dpm_solver_pp_2m --steps 15 --out digits.png --npz digits.npz
    python -m diffusion_keras sample --label 3 --guidance 3        # the shipped conditional model
    python -m diffusion_keras sample --label all --guidance 3      # 10x10 grid, one row per digit
"""

import argparse
from pathlib import Path

from diffusion_keras.forward import PREDICTION_TARGETS
from diffusion_keras.samplers import DDPM_VARIANCES, SAMPLER_NAMES, TIMESTEP_SPACINGS


def add_sample_arguments(parser):
    """Declare the ``sample`` options on ``parser`` (an ``argparse.ArgumentParser``)."""
    parser.add_argument(
        "--n", type=int, default=None, help="number of digits (default: 64, or 100 with --label all)"
    )
    parser.add_argument(
        "--sampler", default="ddim", choices=SAMPLER_NAMES, help="sampling algorithm (default: ddim)"
    )
    parser.add_argument(
        "--steps", type=int, default=None,
        help="network evaluations (default: 50 for ddim, 20 for dpm_solver_pp_2m; ddpm always runs all T)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same digits")
    parser.add_argument(
        "--eta", type=float, default=0.0, help="DDIM noise, 0 (deterministic) to 1 (default: 0)"
    )
    parser.add_argument(
        "--spacing", default="trailing", choices=TIMESTEP_SPACINGS,
        help="which timesteps a ddim/dpm_solver_pp_2m run visits (default: trailing)",
    )
    parser.add_argument(
        "--order", type=int, default=2, choices=(1, 2), help="DPM-Solver++ order (default: 2)"
    )
    parser.add_argument(
        "--variance", default="beta_tilde", choices=DDPM_VARIANCES,
        help="DDPM variance (default: beta_tilde)",
    )
    parser.add_argument(
        "--no-clip-x0", dest="clip_x0", action="store_false",
        help="do not clip each x_0 prediction to [-1, 1] (clipping is on by default)",
    )
    parser.add_argument("--out", default="digits.png", help="grid image to write (default: digits.png)")
    parser.add_argument("--npz", default=None, help="also write the images to this .npz file")
    parser.add_argument(
        "--weights", default=None,
        help="a .keras file (a whole DiffusionModel, whose EMA network is used, or a network alone) or "
        "a shipped model's name, 'mnist' or 'mnist-conditional' (default: 'mnist', or "
        "'mnist-conditional' with --label)",
    )
    parser.add_argument(
        "--label", type=_label, default=None,
        help="digit 0-9 for a conditional network, or 'all': a 10x10 grid with one row per digit",
    )
    parser.add_argument(
        "--guidance", type=float, default=1.0,
        help="classifier-free guidance weight w (needs --label; 1: plain conditional; default: 1)",
    )
    parser.add_argument(
        "--schedule", default=None,
        help="schedule name for a file holding a network alone (linear, cosine, sigmoid)",
    )
    parser.add_argument("--T", type=int, default=None, help="schedule length for --schedule (default: 1000)")
    parser.add_argument(
        "--target", default=None, choices=PREDICTION_TARGETS,
        help="what a network-alone file predicts (a DiffusionModel file knows it)",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _label(text):
    """Parse ``--label``: a digit 0-9 or ``all``."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be a digit 0-9 or 'all'; received {text!r}")
    return value


def load_for_sampling(weights=None, schedule=None, T=None, target=None):
    """Load a saved network and find the schedule and target it was trained with.

    Args:
        weights: path of a ``.keras`` file: a whole ``DiffusionModel`` (detected by its
            ``ema_network``, ``schedule`` and ``target`` attributes; the EMA network is returned) or a
            network alone; or the name of a shipped model (``pretrained.PRETRAINED``). None means the
            shipped unconditional model, ``"mnist"``.
        schedule, T: for a network alone, the schedule name and length (``schedules.get(schedule, T=T)``).
        target: for a network alone, what it predicts.

    Returns:
        ``(network, schedule, target)``.
    """
    import keras

    from diffusion_keras import forward, schedules  # importing the package registered every class
    from diffusion_keras.pretrained import PRETRAINED, pretrained_path

    if weights is None:
        weights = "mnist"
    if weights in PRETRAINED:
        weights = pretrained_path(weights)  # sha256-checked
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"--weights file {str(path)!r} does not exist.")
    if path.suffix != ".keras":
        raise ValueError(f"--weights must be a .keras file saved by Keras 3; received {str(path)!r}.")
    loaded = keras.saving.load_model(path)  # safe_mode=True: every class is registered
    if all(hasattr(loaded, name) for name in ("ema_network", "schedule", "target")):
        for argument, value in (("--schedule", schedule), ("--T", T), ("--target", target)):
            if value is not None:
                raise ValueError(
                    f"{argument} is only for a file holding a network alone; {path.name} is a whole "
                    "DiffusionModel and knows its own schedule and target. Drop the option."
                )
        network = loaded.sampling_network() if hasattr(loaded, "sampling_network") else loaded.ema_network
        return network, loaded.schedule, loaded.target
    if schedule is None or target is None:
        raise ValueError(
            f"{path.name} holds a network alone, which does not record its noise schedule or "
            "prediction target; pass --schedule NAME (and --T if not 1000) and --target "
            "(epsilon, x0 or v), as used in training."
        )
    forward.check_target(target, "--target")
    built = schedules.get(schedule, **({} if T is None else {"T": T}))
    return loaded, built, target


def run_sample(args):
    """Sample digits as ``args`` says and write the grid (and the arrays, with ``--npz``)."""
    import numpy as np

    from diffusion_keras import data, plotting, samplers

    if args.label is None and args.guidance != 1.0:
        raise ValueError(f"--guidance {args.guidance} needs --label to guide towards a digit.")
    weights = args.weights
    if weights is None and args.label is not None:
        weights = "mnist-conditional"
    network, schedule, target = load_for_sampling(weights, args.schedule, args.T, args.target)
    options = {"clip_x0": args.clip_x0, "progress": args.progress}
    n, ncols = (64 if args.n is None else args.n), None
    if args.label == "all":
        # one row per digit: n rounds down to a multiple of 10 (at least 10)
        per_digit = 10 if args.n is None else max(1, args.n // 10)
        n, ncols = 10 * per_digit, per_digit
        labels = np.repeat(np.arange(10, dtype=np.int32), per_digit)
        options.update(labels=labels, guidance=args.guidance)
    elif args.label is not None:
        labels = np.full(n, args.label, np.int32)
        options.update(labels=labels, guidance=args.guidance)
    if args.sampler == "ddim":
        options.update(eta=args.eta, spacing=args.spacing)
    elif args.sampler == "dpm_solver_pp_2m":
        options.update(order=args.order, spacing=args.spacing)
    else:
        options.update(variance=args.variance)
    images = samplers.sample(
        network, schedule, args.sampler, steps=args.steps, n=n, seed=args.seed, target=target, **options
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plotting.save_grid(images, out, ncols=ncols)
    print(f"wrote {out} ({len(images)} digits, {args.sampler}, seed {args.seed})")
    if args.npz:
        npz = Path(args.npz)
        npz.parent.mkdir(parents=True, exist_ok=True)
        saved_labels = np.full(len(images), -1, np.int64) if args.label is None else labels.astype(np.int64)
        np.savez_compressed(
            npz, images=data.to_uint8(images), images_float=images, labels=saved_labels,
            sampler=args.sampler, steps=-1 if args.steps is None else args.steps, seed=args.seed,
        )
        print(f"wrote {npz} (images: uint8 (n, 28, 28); images_float: float32 (n, 32, 32, 1))")
    return 0
