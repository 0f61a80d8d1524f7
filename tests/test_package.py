"""Package-level behaviour: backend check, profile switch and the command line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import diffusion_keras as dk

ROOT = Path(__file__).resolve().parent.parent


def run_python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **env}, timeout=300,
    )


def test_other_backends_are_refused_with_a_clear_error():
    # refused before Keras is imported: Keras itself would fail obscurely when JAX is absent
    result = run_python("import diffusion_keras", KERAS_BACKEND="numpy")
    assert result.returncode != 0
    assert "supports only the TensorFlow backend" in result.stderr
    assert "KERAS_BACKEND='numpy'" in result.stderr


def test_profile_switch(monkeypatch):
    monkeypatch.setenv("DIFFUSION_KERAS_PROFILE", "ci")
    assert dk.is_ci_profile()
    monkeypatch.setenv("DIFFUSION_KERAS_PROFILE", "full")
    assert dk.profile() == "full" and not dk.is_ci_profile()
    monkeypatch.setenv("DIFFUSION_KERAS_PROFILE", "huge")
    with pytest.raises(ValueError, match="DIFFUSION_KERAS_PROFILE='huge' is not a known profile"):
        dk.profile()


def test_cli_figures_writes_pngs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "diffusion_keras", "figures", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ("log_snr.png", "noising.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "diffusion_keras", "figures", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "DIFFUSION_KERAS_MNIST": str(tmp_path / "missing.npz")},
    )
    assert result.returncode == 2
    assert "error: DIFFUSION_KERAS_MNIST=" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_command_prints_both_tables():
    result = subprocess.run(
        [sys.executable, "-m", "diffusion_keras", "bench", "--sizes", "tiny", "--variants", "fp32", "--repeats", "1",
         "--samplers", "--sampler-steps", "2", "--sampler-n", "4", "--image-size", "28"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "matmul 2048x2048 at start: fp32" in result.stdout and "matmul GFLOP/s" in result.stdout and "native bfloat16: " in result.stdout
    assert "train img/s" in result.stdout and "step overhead" in result.stdout
    rows = [line.split() for line in result.stdout.split("samplers,")[0].splitlines() if line.split()[:1] == ["tiny"]]
    assert [row[:3] for row in rows] == [["tiny", "28", "fp32"]]  # size, image size, variant
    # the training rows time the batch size that `train` uses by default
    from diffusion_keras.training import DEFAULTS

    assert f"training steps: batch {DEFAULTS['batch_size']}," in result.stdout
    assert "overhead" in result.stdout.split("samplers,")[1]


def test_bench_rejects_unknown_variants(capsys):
    from diffusion_keras import cli

    assert cli.main(["bench", "--variants", "fp64"]) == 2
    assert "--variants must be some of ['bf16', 'bf16+jit', 'fp32', 'fp32+jit']; received ['fp64']" in capsys.readouterr().err


def test_bench_leaves_emulated_bfloat16_out_unless_asked():
    from diffusion_keras import bench

    assert bench.default_variants(True) == ["fp32", "bf16", "fp32+jit", "bf16+jit"]
    assert bench.default_variants(False) == ["fp32", "fp32+jit"]


def test_bench_builds_presets_and_width_lists():
    from diffusion_keras import bench

    assert bench.build_sized_network("tiny").widths == (8, 16, 32)
    assert bench.build_sized_network("16-32-32").widths == (16, 32, 32)
    assert bench.build_sized_network("16-32-32", image_size=28).image_shape == (28, 28, 1)
    with pytest.raises(ValueError, match="size must be a preset .* or widths like '32-64-96'; received 'huge'"):
        bench.build_sized_network("huge")
