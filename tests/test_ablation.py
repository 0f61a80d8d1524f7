"""The recipe ablation (``python -m diffusion_keras ablate``), end to end on a tiny budget."""

import argparse
import json

import numpy as np
import pytest

from diffusion_keras import ablation, training
from diffusion_keras.cli import main as cli_main


def test_cosine_angle_schedule_endpoints():
    noise, signal = ablation.cosine_angle_rates(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(np.asarray(signal)[[0, 2]], [ablation.MAX_SIGNAL_RATE, ablation.MIN_SIGNAL_RATE])
    np.testing.assert_allclose(np.asarray(noise) ** 2 + np.asarray(signal) ** 2, 1.0, rtol=1e-6)
    assert np.all(np.diff(np.asarray(signal)) < 0)


def test_keras_io_network_shapes():
    network = ablation.build_keras_io_network()
    output = network([np.zeros((2, 32, 32, 1), np.float32), np.full((2, 1, 1, 1), 0.5, np.float32)])
    assert output.shape == (2, 32, 32, 1)
    batch_norms = [layer for layer in network.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert batch_norms and not any(layer.center or layer.scale for layer in batch_norms)


def test_keras_io_sampler_denoises_in_batches_of_any_size():
    """Scoring draws 10,000 digits: they go through the network in batches, the same digits for any size."""
    model = ablation.KerasIODiffusion(ablation.build_keras_io_network(), seed=0)
    whole = model.generate(5, steps=3, seed=2, batch_size=5)
    assert whole.shape == (5, 32, 32, 1) and whole.dtype == np.float32
    assert np.all(np.abs(whole) <= 1.0) and np.ptp(whole) > 0
    np.testing.assert_allclose(model.generate(5, steps=3, seed=2, batch_size=2), whole, atol=1e-5)
    assert not np.allclose(model.generate(5, steps=3, seed=3, batch_size=5), whole, atol=1e-3)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; received 0"):
        model.generate(5, steps=3, batch_size=0)


def test_ablation_runs_end_to_end_and_resumes(tmp_path, capsys, monkeypatch):
    """Two real rows (ours and the keras.io anchor), trained for seconds and scored on 20 digits."""
    out = tmp_path / "ablation"
    assert cli_main(["ablate", "--out", str(out), "--rows", "tiny,keras-io", "--minutes", "0.15",
                     "--score-n", "20", "--verbose", "0", "--base", "target=epsilon"]) == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert [row["row"] for row in rows] == ["tiny", "keras-io"]
    # --base goes under our row (its run trained epsilon, not the default v) and not under the anchor
    assert rows[0]["base"] == {"target": "epsilon"} and rows[1]["base"] == {}
    # each row of ours records its whole recipe, defaults filled in
    assert rows[0]["recipe"]["target"] == "epsilon" and rows[0]["recipe"]["size"] == "tiny"
    assert rows[0]["recipe"]["learning_rate"] == training.DEFAULTS["learning_rate"] and rows[1]["recipe"] is None
    config = json.loads((out / "tiny@target=epsilon" / "config.json").read_text())
    assert config["target"] == "epsilon" and config["lr_schedule"] == "time_cosine"
    # the row trained until its 9 s budget was spent (tracing included), and time.json says so for a resume
    assert json.loads((out / "tiny@target=epsilon" / "time.json").read_text())["seconds_trained"] >= 9.0
    for row in rows:
        assert row["images_seen"] > 0 and row["parameters"] > 0
        assert row["scores"]["ddim_50"]["fid"] > 0 and row["scores"]["ddim_50"]["floor_fid"] > 0
    assert "dpm_solver_pp_2m_20" in rows[0]["scores"] and "dpm_solver_pp_2m_20" not in rows[1]["scores"]
    assert (out / "tiny@target=epsilon" / "ema_network.keras").is_file()
    assert (out / "keras-io" / "ema_network.keras").is_file()
    printed = capsys.readouterr().out
    assert "| keras-io | keras.io DDIM recipe (anchor) |" in printed
    # A second run finds both rows done and trains nothing.
    before = (out / "ablation.json").stat().st_mtime_ns
    assert cli_main(["ablate", "--out", str(out), "--rows", "tiny,keras-io", "--minutes", "0.15",
                     "--score-n", "20", "--base", "target=epsilon"]) == 0
    assert (out / "ablation.json").stat().st_mtime_ns == before
    # Another training seed is another row, in its own folder, scored with the same evaluation seed: the
    # same real digits make its floor, so its FID ratio is comparable with seed 0's.
    assert cli_main(["ablate", "--out", str(out), "--rows", "tiny", "--minutes", "0.15", "--score-n", "20",
                     "--verbose", "0", "--base", "target=epsilon", "--seed", "1"]) == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert [(row["row"], row["seed"], row["eval_seed"]) for row in rows] == [
        ("tiny", 0, 0), ("keras-io", 0, 0), ("tiny", 1, 0)]
    assert json.loads((out / "tiny@seed=1,target=epsilon" / "config.json").read_text())["seed"] == 1
    assert rows[2]["scores"]["ddim_50"]["floor_fid"] == rows[0]["scores"]["ddim_50"]["floor_fid"]
    assert rows[2]["scores"]["ddim_50"]["fid"] != rows[0]["scores"]["ddim_50"]["fid"]
    assert "| tiny | size tiny (121k parameters) (on target=epsilon) (seed 1) |" in capsys.readouterr().out
    # After a default changes, the row trained under the old one is not done: its folder refuses to resume
    # with the new recipe and says what changed.
    monkeypatch.setitem(training.DEFAULTS, "learning_rate", 0.01)
    old_rate = rows[0]["recipe"]["learning_rate"]
    with pytest.raises(ValueError, match=rf"holds a run with other arguments \(learning_rate: {old_rate!r} -> 0.01\)"):
        ablation.ablate(out, ("tiny",), minutes=0.15, score_n=20, verbose=0, base={"target": "epsilon"})


def test_ablation_bad_arguments(tmp_path, capsys):
    assert cli_main(["ablate", "--out", str(tmp_path), "--rows", "default,huge"]) == 2
    assert "--rows must be names from" in capsys.readouterr().err
    assert cli_main(["ablate", "--out", str(tmp_path), "--rows", "tiny", "--base", "colour=red"]) == 2
    assert "--base must be key=value pairs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--minutes must be > 0"):
        ablation.ablate(tmp_path, ("tiny",), minutes=0)
    # keys the ablation sets itself would be overridden in silence, so they are refused
    assert cli_main(["ablate", "--out", str(tmp_path), "--rows", "tiny", "--base", "seed=1,lr_schedule=constant"]) == 2
    assert ("--base cannot set ['lr_schedule', 'seed']: the ablation sets them for every row (the seed with --seed, "
            "the budget with --minutes); received 'lr_schedule=constant,seed=1'.") in capsys.readouterr().err
    assert not (tmp_path / "tiny@lr_schedule=constant,seed=1").exists()


def test_base_arguments_parse_and_bad_ones_are_named():
    assert ablation.parse_base("target=epsilon, learning_rate=2e-3,ema_warmup=false") == {
        "target": "epsilon", "learning_rate": 2e-3, "ema_warmup": False}
    assert ablation.parse_base("") == {}
    # the sections of the model card that ran with t uniform re-run on today's code with this
    assert ablation.parse_base("log_snr_normal=null") == {"log_snr_normal": None}
    assert ablation.base_label({"target": "epsilon", "batch_size": 64}) == "batch_size=64,target=epsilon"
    for bad in ("target", "colour=red"):
        with pytest.raises(ValueError, match=f"--base must be key=value pairs .*received {bad!r}"):
            ablation.parse_base(bad)


def test_default_rows_are_the_rows_that_change_something():
    """Without --rows, ablate skips rows that would train today's default again under another name."""
    # today's default (lean on 28x28 digits at 4e-3, log-SNR ~ N(0, 1.5^2)) under other names; every other row
    # changes something
    assert set(ablation.ROWS) - set(ablation.DEFAULT_ROWS) == {
        "lean", "unpadded", "lean-unpadded", "lr-4e-3", "log-snr-narrow"}
    assert {"default", "keras-io", "small-padded", "lr-8e-3", "uniform-t", "log-snr-edm", "log-snr-sd3",
            "log-snr-noisier", "log-snr-narrower"} <= set(ablation.DEFAULT_ROWS)
    # --help says which rows run by default, and names the others apart
    help_text = " ".join(ablation.add_ablate_arguments(argparse.ArgumentParser()).format_help().split())
    default_part, others = help_text.split("(default: default,")[1].split("; also:")
    assert "lean-unpadded" not in default_part and "small-padded" in default_part and "lean-unpadded" in others
    # the recipe a row records is the defaults with its change; the anchor has none of ours
    recipe = ablation.row_recipe("small-padded", 30.0, seed=1, base={"learning_rate": 0.002})
    assert (recipe["size"], recipe["image_size"], recipe["learning_rate"], recipe["seed"]) == ("small", 32, 0.002, 1)
    assert recipe["max_minutes"] == 30.0 and "micro_batch_size" not in recipe
    assert ablation.row_recipe("keras-io", 30.0) is None
