"""Command line: ``python -m diffusion_keras <command> [options]``.

Each command is a pair of functions in the module that owns it: one declares its options on an
``argparse`` parser, the other does the work (see ``COMMANDS``).
"""

import argparse
import importlib
import sys
from pathlib import Path


def _add_figures(parser):
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


# command -> (module, function declaring its options on a parser, function running it, help)
COMMANDS = {
    "sample": ("diffusion_keras.sample_cli", "add_sample_arguments", "run_sample",
               "draw digits from a trained model into a grid PNG"),
    "train": ("diffusion_keras.training", "add_train_arguments", "run_train",
              "train a diffusion model on MNIST (resumable)"),
    "evaluate": ("diffusion_keras.evaluate_cli", "add_evaluate_arguments", "run_evaluate",
                 "FID, KID and label scores of generated digits"),
    "synthetic-data": ("diffusion_keras.evaluate_cli", "add_synthetic_arguments", "run_synthetic",
                       "train a classifier on generated digits only and test it on real ones (CAS)"),
    "ablate": ("diffusion_keras.ablation", "add_ablate_arguments", "run_ablate",
               "train and score recipes at an equal wall-clock budget (the model card's ablation)"),
    "bench": ("diffusion_keras.bench", "add_bench_arguments", "run_bench",
              "measure training, evaluation and sampling throughput"),
    "train-classifier": ("diffusion_keras.evaluate_cli", "add_train_classifier_arguments", "run_train_classifier",
                         "train the MNIST classifier behind the evaluator"),
    "figures": ("diffusion_keras.cli", "_add_figures", "_run_figures",
                "render the noise-schedule and forward-noising figures (notebooks 01-02)"),
}


def _function(command, index):
    module = importlib.import_module(COMMANDS[command][0])
    return getattr(module, COMMANDS[command][index])


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_keras", description="Diffusion models on MNIST with Keras 3."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command, (_, _, _, help_text) in COMMANDS.items():
        _function(command, 1)(subparsers.add_parser(command, help=help_text))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _function(args.command, 2)(args)
    except (ValueError, FileNotFoundError) as error:
        # Bad input gets one clear line, not a stack trace from deep inside TensorFlow.
        print(f"error: {error}", file=sys.stderr)
        return 2
