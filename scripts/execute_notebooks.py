"""Execute notebooks in place in the full profile, then strip noisy metadata but keep the outputs.

The committed notebooks carry their outputs so that readers on GitHub see the figures, and nbval compares
the cells marked ``# NBVAL_CHECK_OUTPUT`` against them. Those outputs must come from the full profile, so this
script runs every cell with ``DIFFUSION_KERAS_PROFILE=full`` (whatever the caller's environment says) in a
kernel whose working directory is ``notebooks/``, exactly as nbval does.

After execution it removes what changes from run to run without telling the reader anything: per-cell
``execution`` timestamps, ``metadata.widgets``, the Python patch version in ``language_info`` and TensorFlow's
C++ start-up log lines on stderr, and it merges the chunks in which the kernel flushed one cell's prints (nbval
merges them the same way before comparing). Outputs and execution counts stay.

Usage::

    python scripts/execute_notebooks.py notebooks/01_noise_schedules.ipynb notebooks/02_forward_noising.ipynb
    python scripts/execute_notebooks.py            # every notebooks/*.ipynb
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"

# Lines that TensorFlow/absl write to stderr while loading, whatever TF_CPP_MIN_LOG_LEVEL says, e.g.
# "I0000 00:00:1795652432.916684    8262 port.cc:153] oneDNN custom operations are on. ..."
TF_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)$"
)
CELL_METADATA_NOISE = ("execution", "ExecuteTime", "collapsed", "scrolled")
NOTEBOOK_METADATA_NOISE = ("widgets", "varInspector", "toc", "vscode")


def kernel_environment(profile):
    """Environment for the kernel: the requested profile, quiet TensorFlow, inline figures."""
    os.environ["DIFFUSION_KERAS_PROFILE"] = profile
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # A non-interactive MPLBACKEND (the test suite sets Agg) would make plt.show() draw nothing, and the
    # committed notebooks would lose their figures; the kernel then picks its inline backend itself.
    if os.environ.get("MPLBACKEND", "").lower() == "agg":
        del os.environ["MPLBACKEND"]


def clean_streams(outputs):
    """Merge consecutive stream outputs (the kernel flushes prints in chunks) and drop TensorFlow's
    start-up log lines from stderr; a stderr stream left empty is dropped."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output.get("output_type") == "stream"
            and previous is not None
            and previous.get("output_type") == "stream"
            and previous.get("name") == output.get("name")
        ):
            previous["text"] += output["text"]
        else:
            merged.append(output)
    kept = []
    for output in merged:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            lines = output["text"].splitlines(keepends=True)
            lines = [line for line in lines if not TF_LOG_LINE.match(line.rstrip("\n"))]
            if not "".join(lines).strip():
                continue
            output["text"] = "".join(lines)
        kept.append(output)
    return kept


def strip_noise(notebook):
    """Remove run-to-run noise from an executed notebook, in place; keep outputs and execution counts."""
    for key in NOTEBOOK_METADATA_NOISE:
        notebook.metadata.pop(key, None)
    language_info = notebook.metadata.get("language_info")
    if language_info is not None:
        language_info.pop("version", None)  # the kernel's Python patch version
    for cell in notebook.cells:
        for key in CELL_METADATA_NOISE:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = clean_streams(cell.outputs)
    return notebook


def execute(path, timeout, kernel_name):
    """Execute the notebook at ``path`` in place; return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    preprocessor = ExecutePreprocessor(
        timeout=timeout, kernel_name=kernel_name, record_timing=False, allow_errors=False
    )
    start = time.perf_counter()
    preprocessor.preprocess(notebook, {"metadata": {"path": str(NOTEBOOK_DIR)}})
    seconds = time.perf_counter() - start
    strip_noise(notebook)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--profile", default="full", choices=("full", "ci"),
                        help="run profile; commit only full-profile outputs (default: full)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default: 1800)")
    parser.add_argument("--kernel-name", default="python3", help="Jupyter kernel (default: python3)")
    args = parser.parse_args(argv)

    paths = args.notebooks or sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb"))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    kernel_environment(args.profile)
    failed = []
    for path in paths:
        print(f"executing {path} (profile {args.profile}) ...", flush=True)
        try:
            seconds = execute(path, args.timeout, args.kernel_name)
        except CellExecutionError as error:
            # the file on disk is left as it was: a half-run notebook must not be committed
            print(f"FAILED {path}:\n{error}", file=sys.stderr)
            failed.append(path)
            continue
        print(f"  done in {seconds:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
