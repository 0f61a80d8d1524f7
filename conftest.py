"""Test-session set-up shared by the unit tests and the nbval notebook runs.

Environment variables set here are inherited by the notebook kernels that nbval starts.
"""

import os

# Notebooks run in their small CI profile unless the caller asked for another one.
os.environ.setdefault("DIFFUSION_KERAS_PROFILE", "ci")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")


def _without_stderr(outputs):
    return [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


def pytest_collection_modifyitems(items):
    """Ignore stderr when nbval compares a checked cell: TensorFlow writes start-up logs there."""
    for item in items:
        compare = getattr(item, "compare_outputs", None)
        if compare is None or getattr(compare, "_skips_stderr", False):
            continue

        def compare_without_stderr(test, ref, skip_compare=None, _compare=compare):
            return _compare(_without_stderr(test), _without_stderr(ref), skip_compare)

        compare_without_stderr._skips_stderr = True
        item.compare_outputs = compare_without_stderr
