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


def _add_train(subparsers):
    from diffusion_keras.training import add_train_arguments

    return add_train_arguments(subparsers)


def _run_train(args):
    from diffusion_keras.training import run_train

    return run_train(args)


def _add_bench(subparsers):
    from diffusion_keras.bench import add_bench_arguments

    return add_bench_arguments(subparsers)


def _run_bench(args):
    from diffusion_keras.bench import run_bench

    return run_bench(args)


def _add_train_classifier(subparsers):
    from diffusion_keras.evaluate_cli import add_train_classifier_arguments

    parser = subparsers.add_parser("train-classifier", help="train the MNIST classifier behind the evaluator")
    return add_train_classifier_arguments(parser)


def _run_train_classifier(args):
    from diffusion_keras.evaluate_cli import run_train_classifier

    return run_train_classifier(args)


def _add_evaluate(subparsers):
    from diffusion_keras.evaluate_cli import add_evaluate_arguments

    parser = subparsers.add_parser("evaluate", help="FID, KID and label scores of generated digits")
    return add_evaluate_arguments(parser)


def _run_evaluate(args):
    from diffusion_keras.evaluate_cli import run_evaluate

    return run_evaluate(args)


def _add_sample(subparsers):
    from diffusion_keras.sample_cli import add_sample_arguments

    parser = subparsers.add_parser("sample", help="draw digits from a trained model into a grid PNG")
    return add_sample_arguments(parser)


def _run_sample(args):
    from diffusion_keras.sample_cli import run_sample

    return run_sample(args)


COMMANDS = {
    "figures": (_add_figures, _run_figures),
    "sample": (_add_sample, _run_sample),
    "train": (_add_train, _run_train),
    "bench": (_add_bench, _run_bench),
    "train-classifier": (_add_train_classifier, _run_train_classifier),
    "evaluate": (_add_evaluate, _run_evaluate),
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
