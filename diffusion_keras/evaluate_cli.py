"""Command-line pieces of the evaluator: ``train-classifier`` and ``evaluate``.

Each command is two functions, ``add_<command>_arguments(parser)`` to declare its options on an
``argparse`` parser and ``run_<command>(args)`` to do the work; ``diffusion_keras.cli`` mounts them::

    python -m diffusion_keras train-classifier --epochs 8 --seed 0 --out my.weights.h5
    python -m diffusion_keras evaluate --npz samples.npz --json result.json

``evaluate`` reads images from an ``.npz``: the array named ``images`` (or the only array in the file)
and, if present, ``labels``. Images may be uint8 0..255 or float in [0, 1] or [-1, 1], 28x28 or the
model's padded 32x32 (see ``diffusion_keras.evaluation``).
"""

import json
from pathlib import Path

import numpy as np


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


def add_evaluate_arguments(parser):
    """Declare ``evaluate``'s options (--npz, --json, --n, ...) on ``parser``."""
    parser.add_argument("--npz", required=True, help=".npz with an 'images' array (and optional 'labels')")
    parser.add_argument("--json", default=None, help="also write every number to this JSON file")
    parser.add_argument("--n", type=int, default=None, help="evaluate only the first N images")
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
    parser.add_argument("--seed", type=int, default=0, help="seed of KID subsets and the floor's digits")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
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


def run_evaluate(args, images=None, labels=None):
    """Evaluate images from ``--npz`` (or the ``images``/``labels`` given), print the table, write JSON.

    Args:
        args: parsed options from ``add_evaluate_arguments``.
        images, labels: optional arrays that replace reading ``--npz`` (a future ``--weights`` sampling
            path can hand its samples over here).

    Returns:
        0, the process exit status.
    """
    from diffusion_keras import evaluation

    if images is None:
        images, labels = load_npz_images(args.npz, args.images_key, args.labels_key, args.n)
    extractor = None
    if args.classifier:
        classifier, sha256 = evaluation.load_classifier(args.classifier)
        extractor = evaluation.FeatureExtractor(classifier, sha256)
    result = evaluation.evaluate_images(
        images,
        labels=labels,
        n_reference=args.n_reference,
        value_range=args.value_range,
        extractor=extractor,
        cache_dir=args.cache_dir,
        seed=args.seed,
        kid_subsets=args.kid_subsets,
        cas_epochs=args.cas_epochs,
    )
    print(evaluation.format_table(result))
    if args.json:
        json_path = Path(args.json).expanduser()
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        print(f"wrote {json_path}")
    return 0

