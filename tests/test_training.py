"""Training runs from the command line: outputs, resume after a real kill, argument checks."""

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras

import numpy as np
import pytest

import diffusion_keras  # noqa: F401  (registers the classes load_model needs)
from diffusion_keras import training

ROOT = Path(__file__).resolve().parent.parent
EPOCHS, STEPS = 4, 3
COMMAND = [
    sys.executable, "-m", "diffusion_keras", "train", "--size", "tiny", "--timesteps", "50",
    "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS), "--batch-size", "16", "--subset", "128",
    "--warmup-steps", "2", "--sample-steps", "2", "--sample-every", "2", "--verbose", "2",
]


def finished_epochs(out):
    metadata = out / "backup" / "training_metadata.json"
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_killed_run_resumes_and_ends_with_the_same_number_of_steps(tmp_path):
    out = tmp_path / "run"
    command = COMMAND + ["--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while finished_epochs(out) < 1 and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)  # no clean-up: as if the machine went away
    process.wait()
    killed_at = finished_epochs(out)
    assert 1 <= killed_at < EPOCHS, f"the kill should land mid-run; backup says epoch {killed_at}"
    assert not (out / "model.keras").exists()

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    model = keras.saving.load_model(out / "model.keras")
    assert int(model.optimizer.iterations) == EPOCHS * STEPS
    rows = (out / "log.csv").read_text().strip().splitlines()
    epochs_logged = [int(row.split(",")[0]) for row in rows[1:]]
    assert sorted(set(epochs_logged)) == list(range(EPOCHS))
    assert (out / "samples" / "epoch_004.png").exists() and (out / "samples" / "epoch_002.png").exists()
    # the samplers' file: the EMA network alone, loadable with safe_mode=True
    ema = keras.saving.load_model(out / "ema_network.keras", safe_mode=True)
    size = training.DEFAULTS["image_size"]  # the command leaves --image-size at its default
    assert ema.image_shape == (size, size, 1)
    prediction = ema([np.zeros((2, size, size, 1), np.float32), np.array([0, 49], np.int32)])
    assert prediction.shape == (2, size, size, 1)


def test_resuming_with_other_arguments_is_refused(tmp_path):
    training._run_config(tmp_path, {**training.DEFAULTS})
    with pytest.raises(ValueError, match=r"holds a run with other arguments \(batch_size: 32 -> 64\)"):
        training._run_config(tmp_path, {**training.DEFAULTS, "batch_size": 64})
    # the speed options may change, e.g. a run resumed on a machine without native bfloat16
    training._run_config(tmp_path, {**training.DEFAULTS, "mixed_precision": False, "jit_compile": True,
                                    "micro_batch_size": 0})


def test_a_run_from_before_a_new_option_still_resumes(tmp_path):
    """config.json of an older version lacks keys added since; they count as what that version trained with."""
    import json

    absent = ("ema_warmup", "max_minutes", "image_size", "log_snr_normal")
    older = {key: value for key, value in training.DEFAULTS.items() if key not in absent}
    (tmp_path / "config.json").write_text(json.dumps(older))
    training._run_config(tmp_path, {**training.DEFAULTS, "ema_warmup": False, "image_size": 32,
                                    "log_snr_normal": None})  # no error
    # ema_warmup is on by default now, but a run written before the option existed trained without it;
    # the default digits are unpadded now, but a run written before image_size existed trained on padded ones;
    # t is drawn from a log-SNR density now, but uniformly before log_snr_normal existed
    changed = r"image_size: 32 -> 28, .*log_snr_normal: None -> \[0.0, 1.5\], .*ema_warmup: False -> True"
    with pytest.raises(ValueError, match=changed):
        training._run_config(tmp_path, {**training.DEFAULTS})


def test_ema_warmup_is_on_by_default_and_can_be_switched_off():
    import argparse

    parser = training.add_train_arguments(argparse.ArgumentParser())
    assert parser.parse_args([]).ema_warmup is True
    assert parser.parse_args(["--no-ema-warmup"]).ema_warmup is False


@pytest.mark.parametrize(
    "cpu_flags, gpus, native",
    [
        ({"avx2", "fma"}, [], False),  # AMD Zen 3: bfloat16 emulated
        ({"avx2", "avx512f", "avx512_bf16"}, [], True),  # AMD Zen 4, Intel Cooper Lake
        ({"avx512f", "amx_bf16", "amx_tile"}, [], True),  # Intel Sapphire Rapids
        ({"avx512_bf16"}, [(7, 5)], False),  # a T4 trains, whatever the CPU has
        (set(), [(8, 0)], True),  # A100
        (set(), [(9, 0), (7, 0)], False),  # one old GPU slows every replica
    ],
)
def test_auto_mixed_precision_is_on_only_with_native_bfloat16(cpu_flags, gpus, native):
    assert training.native_bfloat16(cpu_flags, gpus) is native
    assert training.resolve_mixed_precision("auto", cpu_flags, gpus) is native
    assert training.resolve_mixed_precision(True, cpu_flags, gpus) is True
    assert training.resolve_mixed_precision(False, cpu_flags, gpus) is False


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n"
        "bugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nflags\t\t: fpu sse2\n"
    )
    flags = training._cpu_flags(cpuinfo)
    assert flags == {"fpu", "sse2", "avx2", "fma", "avx512f", "avx512_bf16"}
    assert training.native_bfloat16(flags, []) is True
    assert training._cpu_flags(tmp_path / "missing") == set()  # not Linux: nothing known, so float32


def test_mixed_precision_option_reaches_the_network():
    import argparse

    parser = training.add_train_arguments(argparse.ArgumentParser())
    assert parser.parse_args([]).mixed_precision == "auto" == training.DEFAULTS["mixed_precision"]
    assert parser.parse_args(["--mixed-precision"]).mixed_precision is True
    assert parser.parse_args(["--no-mixed-precision"]).mixed_precision is False
    native = "bfloat16" if training.native_bfloat16() else "float32"
    for value, compute_dtype in [("auto", native), (True, "bfloat16"), (False, "float32")]:
        config = {**training.DEFAULTS, "size": "tiny", "subset": 64, "batch_size": 16, "mixed_precision": value}
        model, _, _ = training.build_training(config)
        assert model.network.get_layer("input_conv").compute_dtype == compute_dtype, value
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build


def test_warmup_cosine_shape():
    schedule = training.warmup_cosine(1e-3, total_steps=100, warmup_steps=10)
    values = np.array([float(schedule(step)) for step in (0, 5, 10, 55, 100)])
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    with pytest.raises(ValueError, match=r"warmup_steps must be in \[0, total_steps\) = \[0, 100\); received 100"):
        training.warmup_cosine(1e-3, total_steps=100, warmup_steps=100)


@pytest.mark.parametrize("warmup_steps, final_fraction", [(10, 0.0), (0, 0.0), (25, 0.1)])
def test_warmup_cosine_matches_keras_cosine_decay(warmup_steps, final_fraction):
    """The cond-free schedule gives the values of Keras' CosineDecay with warm-up, before and after the end."""
    ours = training.warmup_cosine(2e-3, total_steps=100, warmup_steps=warmup_steps, final_fraction=final_fraction)
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else 2e-3, decay_steps=100 - warmup_steps, alpha=final_fraction,
        warmup_target=2e-3 if warmup_steps else None, warmup_steps=warmup_steps,
    )
    for step in (0, 1, 5, 9, 10, 11, 24, 25, 26, 50, 99, 100, 150):
        assert float(ours(step)) == pytest.approx(float(keras_schedule(step)), rel=1e-5, abs=1e-10), step
    restored = training.WarmupCosine.from_config(ours.get_config())
    assert float(restored(37)) == float(ours(37))
    with pytest.raises(ValueError, match=r"final_fraction must be in \[0, 1\]; received 2"):
        training.warmup_cosine(1e-3, total_steps=100, final_fraction=2)


def test_time_cosine_shape():
    fractions = (0.0, 0.05, 0.1, 0.55, 1.0, 1.5)
    values = [training.time_cosine(1e-3, fraction, warmup_fraction=0.1) for fraction in fractions]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-12)
    # the same curve as the step schedule, with the budget's fraction in place of the step's
    steps = training.warmup_cosine(1e-3, total_steps=1000, warmup_steps=100)
    for fraction in np.linspace(0.0, 1.0, 21):
        assert training.time_cosine(1e-3, fraction) == pytest.approx(float(steps(1000 * fraction)), abs=1e-9)


def test_time_cosine_learning_rate_follows_the_clock():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(2e-3), loss="mse")
    callback = training.TimeCosineLearningRate(2e-3, minutes=10.0)
    callback.set_model(model)
    callback.on_train_begin()
    callback.start -= 0.55 * 600.0  # 55% of the budget spent: half-way through the cosine decay
    callback.on_train_batch_begin(0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3, rel=1e-3)
    callback.on_train_batch_end(0)
    assert not model.stop_training
    callback.start -= 0.5 * 600.0  # past the budget: the rate is zero and training stops
    callback.on_train_batch_begin(1)
    callback.on_train_batch_end(1)
    assert float(model.optimizer.learning_rate) == 0.0 and model.stop_training


def test_time_budget_counts_the_time_of_the_run_it_resumes(tmp_path):
    budget = training.TimeBudget(1.0, tmp_path / "time.json")
    budget.on_train_begin()
    budget.start -= 30.0  # as if 30 s of training had passed
    budget.on_epoch_end(0)
    resumed = training.TimeBudget(1.0, tmp_path / "time.json")
    resumed.on_train_begin()
    assert 30.0 <= resumed.elapsed() < 35.0
    fresh = training.TimeBudget(1.0)  # without a state file every fit starts from zero
    fresh.on_train_begin()
    assert fresh.elapsed() < 5.0


def test_a_run_whose_budget_is_spent_trains_nothing_more(tmp_path):
    """Started again after its --max-minutes were spent, a run only finishes: no extra batch, no extra epoch."""
    arguments = dict(size="tiny", timesteps=50, epochs=4, steps_per_epoch=3, batch_size=16, subset=128,
                     warmup_steps=2, sample_steps=2, sample_every=4, max_minutes=0.01)  # 0.6 s: tracing spends it
    first = training.train(tmp_path, verbose=0, **arguments)
    steps = int(first.optimizer.iterations)
    log = (tmp_path / "log.csv").read_text()
    assert steps < 4 * 3 and len(log.strip().splitlines()) == 2  # stopped inside the first epoch
    (tmp_path / "model.keras").unlink()
    again = training.train(tmp_path, verbose=0, **arguments)
    assert int(again.optimizer.iterations) == steps
    assert (tmp_path / "log.csv").read_text() == log
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert int(reloaded.optimizer.iterations) == steps
    for saved, trained in zip(reloaded.ema_network.weights, first.ema_network.weights):
        np.testing.assert_array_equal(saved.numpy(), trained.numpy())


def test_auto_micro_batches_only_on_a_cpu():
    assert training.DEFAULTS["micro_batch_size"] == "auto"
    assert training.resolve_micro_batch_size("auto", gpus=0) == training.CPU_MICRO_BATCH_SIZE
    assert training.resolve_micro_batch_size("auto", gpus=1) is None
    assert training.resolve_micro_batch_size(0) is None and training.resolve_micro_batch_size(None) is None
    assert training.resolve_micro_batch_size(16, gpus=1) == 16
    with pytest.raises(ValueError, match=r"micro_batch_size must be 'auto', None or an integer >= 0 .*received True"):
        training.resolve_micro_batch_size(True)


def test_micro_batch_size_command_line_values(capsys):
    parser = training.add_train_arguments(argparse.ArgumentParser())
    assert parser.parse_args([]).micro_batch_size == "auto"
    assert parser.parse_args(["--micro-batch-size", "auto"]).micro_batch_size == "auto"
    assert parser.parse_args(["--micro-batch-size", "0"]).micro_batch_size == 0
    for bad in ("-1", "half"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--micro-batch-size", bad])
        assert f"expected 'auto' or an integer >= 0; received {bad!r}" in capsys.readouterr().err


def test_log_snr_normal_command_line_and_resume(tmp_path, capsys):
    parser = training.add_train_arguments(argparse.ArgumentParser())
    assert parser.parse_args([]).log_snr_normal == training.DEFAULTS["log_snr_normal"]
    assert "none: t uniform (default: 0,1.5)" in " ".join(parser.format_help().split())  # today's default, as typed
    assert parser.parse_args(["--log-snr-normal", "2.4,2.4"]).log_snr_normal == [2.4, 2.4]
    assert parser.parse_args(["--log-snr-normal=-1,0.5"]).log_snr_normal == [-1.0, 0.5]
    assert parser.parse_args(["--log-snr-normal", "none"]).log_snr_normal is None
    for bad in ("2.4", "2.4,0", "a,b", "None"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--log-snr-normal", bad])
        assert f"expected MEAN,STD with STD > 0, e.g. 0,2, or none; received {bad!r}" in capsys.readouterr().err
    # a tuple from Python and the list that config.json holds are the same run
    config = training._check_config({"log_snr_normal": (0, 2)})
    assert config["log_snr_normal"] == [0.0, 2.0]
    training._run_config(tmp_path, config)
    training._run_config(tmp_path, training._check_config({"log_snr_normal": [0.0, 2.0]}))
    with pytest.raises(ValueError, match=r"log_snr_normal: \[0.0, 2.0\] -> None"):
        training._run_config(tmp_path, training._check_config({"log_snr_normal": None}))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1; received 0"),
        ({"lr_schedule": "time_cosine"}, "lr_schedule='time_cosine' follows the --max-minutes budget"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"optimiser": "sgd"}, r"Unknown training arguments \['optimiser'\]"),
        ({"image_size": 64}, r"image_size must be 32 \(padded\) or 28 \(unpadded\); received 64"),
        ({"mixed_precision": "yes"}, "mixed_precision must be True, False or 'auto'; received 'yes'"),
        ({"micro_batch_size": -64}, r"micro_batch_size must be 'auto', None or an integer >= 0 .*received -64"),
        ({"log_snr_normal": (2.4, 0)},
         r"log_snr_normal must be None \(t uniform\) or \(mean, std\).*received \(2.4, 0\)"),
        ({"micro_batch_size": "32"}, r"micro_batch_size must be 'auto', None or an integer >= 0 .*received '32'"),
    ],
)
def test_bad_training_arguments(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        training.train(tmp_path / "run", **arguments)


def test_lean_network_trains_on_unpadded_digits_and_reloads(tmp_path):
    from diffusion_keras import samplers

    arguments = {"size": "lean", "epochs": 1, "steps_per_epoch": 2, "subset": 64, "batch_size": 16,
                 "sample_steps": 2}
    model = training.train(tmp_path / "run", verbose=0, image_size=28, **arguments)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["image_size"] == 28
    assert int(model.optimizer.iterations) == 2
    ema = keras.saving.load_model(tmp_path / "run" / "ema_network.keras", safe_mode=True)
    assert ema.image_shape == (28, 28, 1) and ema.narrow_upsampling
    images = samplers.ddim_sample(ema, model.schedule, n=2, steps=2, seed=0, target="v")
    assert images.shape == (2, 28, 28, 1) and np.all(np.isfinite(images))
    # the run's digits were unpadded; resuming it on padded ones is refused
    with pytest.raises(ValueError, match=r"image_size: 28 -> 32"):
        training.train(tmp_path / "run", verbose=0, image_size=32, **arguments)
