"""Command line: ``python -m diffusion_keras <command> [options]``.

Each command is a pair of functions: ``_add_<command>(subparsers)`` declares its arguments and
``_run_<command>(args)`` does the work, importing heavy modules only when it runs.
"""

import argparse
import sys
from pathlib import Path


def _add_figures(subparsers):
    parser = subparsers.add_parser(
        "figures", help="render the noise-schedule and forward-noising figures (notebooks 01-02)"
    )
    parser.add_argument("--out", default="figures", help="output folder (default: figures)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    return parser


def _run_figures(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_keras import data, plotting, schedules

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    schedule_list = [schedules.get(name) for name in ("linear", "cosine", "sigmoid", "article")]
    figure = plotting.plot_schedules(schedule_list, "log_snr")
    figure.axes[0].set_title("log SNR(t) of each schedule")
    figure.savefig(out / "log_snr.png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    (x_train, _), _ = data.load_mnist()
    digit = data.to_model_range(x_train[:1])[0]
    figure = plotting.plot_noising(digit, schedule_list, seed=args.seed)
    figure.savefig(out / "noising.png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    for name in ("log_snr.png", "noising.png"):
        print(f"wrote {out / name}")
    return 0


COMMANDS = {
    "figures": (_add_figures, _run_figures),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_keras", description="Diffusion models on MNIST with Keras 3."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for add, _ in COMMANDS.values():
        add(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as error:
        # Bad input gets one clear line, not a stack trace from deep inside TensorFlow.
        print(f"error: {error}", file=sys.stderr)
        return 2
