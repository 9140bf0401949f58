"""Training on real cached GRID clips: the loss, over-fitting, resumable runs, the two-stage recipe, the
step benchmark, the mirrored strategy, the sampler's labels and the speech target."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from realtime.grid import WORD_CLASSES
from realtime.spec import ModelSpec
from realtime.vocab import GRID_GRAMMAR, Vocabulary
from tests.conftest import TinyRun, disk_full_past
from training import model as model_module
from training.augment import UNKNOWN, AugmentOptions, Sampler
from training.benchmark import main as benchmark_main
from training.cache import LEAST_CROP, load_clips, read_crop_spec
from training.dataset import SampleMix, batches, draw_with_words, tf_dataset
from training.model import CONFIGS, build, load, read_spec
from training.recipe import main as recipe_main
from training.speech import DIMS
from training.train import averaged_weights, compile_model, improves, main

REPO = Path(__file__).resolve().parents[1]


def quick_run(cache: Path, out: Path, *extra: str) -> list[str]:
    return ["--cache", str(cache), "--out", str(out), "--config", "tiny", "--limit", "8", "--batch-size", "4",
            *extra]


def tiny_model_and_batch(cache: Path, seed: int,
                         ema: float = 0.0) -> tuple[keras.Model, np.ndarray, dict[str, np.ndarray]]:
    """An untrained `tiny` training model, compiled as training.train compiles it, and one real batch."""
    keras.utils.set_random_seed(seed)
    vocabulary, crop = Vocabulary(), read_crop_spec(cache)
    sampler = Sampler(load_clips(cache), seed=seed, vocabulary=vocabulary)
    x, y = next(batches(sampler, batch_size=4, steps=1, epoch=0, mix=SampleMix(), vocabulary=vocabulary))
    model = build(CONFIGS["tiny"], crop.height, crop.width, crop.channels, vocabulary)
    compile_model(model, vocabulary, lr=2e-3, aux_weight=0.5, char_weight=1.0, ema=ema)
    return model, x, y


def test_a_few_steps_lower_the_loss(small_cache: Path):
    model, x, y = tiny_model_and_batch(small_cache, seed=1)
    # train_on_batch reports the loss before its update: the first is the untrained model's.
    losses = [model.train_on_batch(x, y, return_dict=True) for _ in range(8)]
    assert losses[-1]["loss"] < 0.9 * losses[0]["loss"]
    assert losses[-1]["ctc_loss"] < losses[0]["ctc_loss"]


def test_steps_with_rivals_lower_the_loss_on_real_sentences(small_cache: Path):
    """Training against the sentences one word away (--sequence-weight) runs in the compiled model on
    real whole-sentence samples, and lowers the loss."""
    from training.dataset import pad_batch

    keras.utils.set_random_seed(2)
    vocabulary, crop = Vocabulary(), read_crop_spec(small_cache)
    sampler = Sampler(load_clips(small_cache), seed=2, vocabulary=vocabulary)
    x, y = pad_batch([sampler.draw("sentence") for _ in range(4)], vocabulary, with_rivals=True)
    model = build(CONFIGS["tiny"], crop.height, crop.width, crop.channels, vocabulary)
    compile_model(model, vocabulary, lr=2e-3, aux_weight=0.5, char_weight=1.0, sequence_weight=1.0)
    losses = [model.train_on_batch(x, y, return_dict=True) for _ in range(8)]
    assert losses[-1]["ctc_loss"] < 0.9 * losses[0]["ctc_loss"]


@pytest.mark.parametrize("channels", [3, 1])
def test_forward_reads_windows_of_any_length_as_keras_does(channels: int):
    """One graph for every window length (training's validation, evaluation and the parity gate read
    through it): what Keras' own predict gives, for a batch of one or more, of RGB or grey crops, with
    the weights the model holds when it is called, not when it was traced."""
    model = build(CONFIGS["tiny"], 50, 100, channels)
    read, runtime = model_module.forward(model), model_module.inference_model(model)
    rng = np.random.default_rng(0)
    for shape in ((1, 5), (2, 9), (1, 75), (3, 9)):
        x = rng.standard_normal((*shape, 50, 100, channels)).astype(np.float32)
        np.testing.assert_allclose(read(x), runtime.predict_on_batch(x), atol=1e-5)
    weights = model.get_layer("char_logits").kernel
    weights.assign(weights * 2)
    np.testing.assert_allclose(read(x), runtime.predict_on_batch(x), atol=1e-5)


def test_tiny_overfits_a_few_clips(tiny_run):
    assert tiny_run.cer[0] > 0.5  # it could not read them before training
    assert tiny_run.cer[-1] <= 0.1, f"greedy CER every 10 steps: {tiny_run.cer}"


def train_process(*argv: str) -> subprocess.CompletedProcess:
    """`python -m training.train` in a fresh process, as a run is resumed (or as TensorFlow must start
    for logical CPU devices)."""
    return subprocess.run([sys.executable, "-m", "training.train", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_resume_continues_a_run(small_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    run = tmp_path / "run"
    assert main(quick_run(small_cache, run, "--epochs", "1", "--steps", "2", "--spatial-dropout", "0.25",
                          "--weight-decay", "0.01", "--ema", "0.9")) == 0
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    best, _ = load(run / "best.keras")  # epoch 1 is the best so far: it holds the averaged weights,
    raw, _ = load(run / "last.keras", compile=True)  # and last.keras the raw ones, to resume from
    raw_weights = {variable.path: np.array(variable) for variable in raw.trainable_weights}
    with averaged_weights(raw):
        averages = {variable.path: np.array(variable) for variable in raw.trainable_weights}
    for weight in best.trainable_weights:
        np.testing.assert_array_equal(np.array(weight), averages[weight.path])
    assert any(not np.array_equal(averages[path], value) for path, value in raw_weights.items())
    split = (run / "split.json").read_text()
    capsys.readouterr()
    for flag, value, was in (("--val-fraction", "0.5", "0.06"), ("--lr", "0.5", "0.002"), ("--config", "lite", "tiny"),
                             ("--init", str(REPO / "models" / "lipstream-lite.keras"), "without --init")):
        # Not the run's: it would be ignored, so it is refused, the option's default value too (lite).
        assert main(quick_run(small_cache, run, "--epochs", "2", "--steps", "2", "--resume", flag, value)) == 2
        assert capsys.readouterr().err == (f"error: {flag} {value} is not this run's ({was}): a resumed run trains as "
                                           f"it began; to train otherwise, start another --out (--init "
                                           f"{run / 'last.keras'} starts from its weights)\n")
    resumed = train_process(*quick_run(small_cache, run, "--epochs", "2", "--steps", "2", "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2
    # stdout holds the result alone (Keras' progress goes to stderr), as state.json has it.
    assert resumed.stdout == (f"best: {run / 'best.keras'} (epoch {state['best_epoch']} of 2, "
                              f"val CER {state['best_cer']:.4f} WER {state['best_wer']:.4f})\n")
    assert b"\r" not in (run / "log.csv").read_bytes()
    assert (run / "split.json").read_text() == split  # it validates on the clips it began with
    with open(run / "log.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]
    model, spec = load(run / "best.keras")
    assert isinstance(spec, ModelSpec) and spec.config == "tiny" and spec.val_cer == state["best_cer"]
    assert model.output_shape == (None, None, Vocabulary().size)
    trained, _ = load(run / "last.keras", compile=True)  # the recipe survives the resume
    assert [trained.get_layer(f"drop{i}").rate for i in (1, 2, 3)] == [0.25] * 3
    assert trained.optimizer.weight_decay == pytest.approx(0.01)
    assert trained.optimizer.use_ema and trained.optimizer.ema_momentum == pytest.approx(0.9)

    capsys.readouterr()  # a run whose best epoch is `patience` epochs behind stopped early: a resume says so
    (run / "state.json").write_text(json.dumps({**state, "best_epoch": 1}))
    assert main(quick_run(small_cache, run, "--epochs", "9", "--steps", "2", "--resume", "--patience", "1")) == 0
    said = capsys.readouterr()
    assert "stopped early after epoch 2: no better validation reading since epoch 1" in said.err
    result = f"best: {run / 'best.keras'} (epoch 1 of 2, val CER {state['best_cer']:.4f} WER {state['best_wer']:.4f})\n"
    assert said.out == result  # its result, as a run that ends says it
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert main(quick_run(small_cache, run, "--epochs", "3", "--steps", "2")) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert json.loads((run / "state.json").read_text())["epoch"] == 2  # the refused run changed nothing
    # A bare --resume goes on to the epochs the run was last given (2), not to the option's default.
    assert main(quick_run(small_cache, run, "--steps", "2", "--resume")) == 0
    said = capsys.readouterr()
    assert said.err.splitlines()[-1] == f"{run} already trained 2 epochs" and said.out == result
    assert main(quick_run(small_cache, run, "--steps", "2", "--resume", "--seed", "1")) == 2  # finished, still told
    assert "--seed 1 is not this run's (0)" in capsys.readouterr().err
    assert json.loads((run / "args.json").read_text())["epochs"] == 2
    # Nor on crops of another cut: its weights read the crop the run began with.
    other = tmp_path / "other.h5"
    shutil.copy(small_cache, other)
    with h5py.File(other, "a") as f:
        f.attrs["crop"] = json.dumps({**json.loads(f.attrs["crop"]), "below_nose": 0.45})
    assert main(quick_run(other, run, "--epochs", "3", "--steps", "2", "--resume")) == 2
    assert "was cut with another crop than" in capsys.readouterr().err
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    recipe = json.loads((run / "args.json").read_text())  # edited by hand: one line, not a traceback
    (run / "args.json").write_text(json.dumps({**recipe, "epochs": "80"}))
    assert main(quick_run(small_cache, run, "--steps", "2", "--resume")) == 2
    assert capsys.readouterr().err == \
        f"error: {run / 'args.json'} is not a training run's recipe ('epochs' is \"80\")\n"
    for flag, value, says in (("--weight-decay", "-0.1", "must be 0 or more"),
                              ("--ema", "1", "must be from 0 up to but not 1"),
                              ("--stream-share", "1.5", "must be from 0 to 1"),
                              ("--max-window", "5", "must be 30 or more")):
        with pytest.raises(SystemExit) as refused:  # one line, before anything is loaded
            main(quick_run(small_cache, tmp_path / "refused", flag, value))
        assert refused.value.code == 2 and f"{flag}: {says}" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_a_checkpoint_interrupted_or_cut_short_leaves_a_run_to_resume(small_cache: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture):
    """A Ctrl-C while a checkpoint is written waits for it, and the epoch it records is in log.csv too, so
    the resumed run's log has every epoch once. Before that resume, the disk fills as the next epoch's
    last.keras is written, after a better best.keras was: best, last, state and log are all the first
    epoch's still (best.keras was replaced, and state.json named another best), for the same command to
    resume from."""
    run, stage = tmp_path / "run", model_module.stage

    def stage_pressing_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # lands while best.keras, last.keras and state.json are written
        return stage(*args, **kwargs)

    monkeypatch.setattr(model_module, "stage", stage_pressing_ctrl_c)
    assert main(quick_run(small_cache, run, "--epochs", "3", "--steps", "1")) == 130
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert "interrupted" in capsys.readouterr().err

    kept = {name: (run / name).read_bytes() for name in ("best.keras", "last.keras", "state.json", "log.csv")}
    state = json.loads(kept["state.json"])
    state["best_cer"] = 2.0  # the next epoch reads better than this, so it stages a best.keras first
    (run / "state.json").write_text(json.dumps(state, indent=1))
    kept["state.json"] = (run / "state.json").read_bytes()

    def stage_on_a_full_disk(model, path, spec):
        if path.name != "last.keras":
            return stage(model, path, spec)
        with disk_full_past(len(kept["last.keras"]) // 2):  # the disk fills half way through the file
            return stage(model, path, spec)

    monkeypatch.setattr(model_module, "stage", stage_on_a_full_disk)
    assert main(quick_run(small_cache, run, "--epochs", "2", "--steps", "1", "--resume")) != 0
    assert "File too large" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in kept} == kept
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]

    monkeypatch.setattr(model_module, "stage", stage)
    assert main(quick_run(small_cache, run, "--epochs", "2", "--steps", "1", "--resume")) == 0
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(float(row["learning_rate"]) > 0 and 0 <= float(row["val_cer"]) for row in rows)


def trained_until_ctrl_c(argv: list[str], at_sample: int) -> subprocess.CompletedProcess:
    """`training.train` with `argv` in its own process, Ctrl-C pressed as the input pipeline draws sample
    number `at_sample`."""
    code = f"""if True:
        import signal, sys
        from training import augment, train
        draw, drawn = augment.Sampler.draw, []
        def pressing_ctrl_c(self, *args, **kwargs):
            drawn.append(1)
            if len(drawn) == {at_sample}:
                signal.raise_signal(signal.SIGINT)
            return draw(self, *args, **kwargs)
        augment.Sampler.draw = pressing_ctrl_c
        sys.exit(train.main({argv!r}))"""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ctrl_c_during_training_is_one_line(small_cache: Path, tmp_path: Path):
    """No TensorFlow warning after it: the input pipeline is freed before Python shuts down. The key is
    pressed as the pipeline draws its 160th sample (80 an epoch, after the batches of the iterator Keras
    builds the model from and drops), so in epoch 2."""
    run = tmp_path / "run"
    result = trained_until_ctrl_c(quick_run(small_cache, run, "--epochs", "50", "--steps", "20"), at_sample=160)
    assert result.returncode == 130
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    after = result.stderr[result.stderr.index("epoch 1:"):].splitlines()[1:]
    keras_progress = re.compile(r"Epoch \d+/\d+$|\d+/\d+ - ")  # (a line an epoch: stderr is no terminal)
    assert [line for line in after if line.strip() and not keras_progress.match(line)] == [
        f"interrupted: {run} keeps every finished epoch; run the same command with --resume to continue"]


def test_ctrl_c_in_the_first_epoch_says_to_begin_again_and_the_same_command_does(small_cache: Path, tmp_path: Path):
    """Nothing to resume yet: the line says to run the command again, not to --resume (which would be
    refused), and the folder it left is begun again by that command."""
    run = tmp_path / "run"
    argv = quick_run(small_cache, run, "--epochs", "1", "--steps", "20")
    result = trained_until_ctrl_c(argv, at_sample=20)
    assert result.returncode == 130 and not (run / "state.json").exists()
    assert result.stderr.splitlines()[-1] == \
        "interrupted before an epoch finished: nothing to resume; run the command again to begin"
    assert (run / "args.json").is_file()
    assert main(argv) == 0 and json.loads((run / "state.json").read_text())["epoch"] == 1


def test_ctrl_c_that_python_drops_still_stops_the_run(small_cache: Path, tmp_path: Path):
    """A real SIGINT whose KeyboardInterrupt is raised inside a weakref callback, which Python drops
    ("Exception ignored in"; TensorFlow's training runs many such callbacks on the main thread, and a
    Ctrl-C landed in one half the time): the run still stops, at the next step, and says so."""
    run = tmp_path / "run"
    code = f"""if True:
        import signal, sys, weakref
        import keras
        from training import train
        ended, after = [], keras.callbacks.CallbackList.on_train_batch_end
        class Garbage:
            pass
        def dropping_ctrl_c(self, batch, logs=None):
            ended.append(batch)
            if len(ended) == 3:
                garbage = Garbage()
                collected = weakref.ref(garbage, lambda _: signal.raise_signal(signal.SIGINT))
                del garbage
            return after(self, batch, logs)
        keras.callbacks.CallbackList.on_train_batch_end = dropping_ctrl_c
        sys.exit(train.main({quick_run(small_cache, run, "--epochs", "2", "--steps", "10")!r}))"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "Exception ignored" in result.stderr  # Python dropped the first KeyboardInterrupt
    assert result.returncode == 130 and not (run / "state.json").exists(), result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == \
        "interrupted before an epoch finished: nothing to resume; run the command again to begin"


def test_a_folder_of_other_files_is_not_trained_into(small_cache: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture):
    """A model and a log of the user's in --out (no run began there): refused, and left as they were."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "best.keras").write_bytes(b"the user's own model")
    (mine / "log.csv").write_text("the user's notes\n")
    assert main(quick_run(small_cache, mine, "--epochs", "1", "--steps", "1")) == 2
    assert capsys.readouterr().err == \
        f"error: {mine} holds files of no training run (best.keras, log.csv): choose another --out\n"
    assert sorted(p.name for p in mine.iterdir()) == ["best.keras", "log.csv"]
    assert (mine / "best.keras").read_bytes() == b"the user's own model"
    # A run begun there (args.json first) whose first checkpoint was cut short, beside a file manager's
    # hidden file: the same command begins it again, and leaves the hidden file be.
    begun = tmp_path / "begun"
    begun.mkdir()
    for name in ("args.json", "split.json", "best.keras", "last.tmp.keras", ".DS_Store"):
        (begun / name).write_text("left\n")
    assert main(quick_run(small_cache, begun, "--epochs", "1", "--steps", "1")) == 0
    assert json.loads((begun / "state.json").read_text())["epoch"] == 1
    assert (begun / ".DS_Store").read_text() == "left\n" and load(begun / "best.keras")[1].config == "tiny"


def test_a_grey_cache_trains_a_grey_model(grid_subset, tmp_path: Path):
    """`training.prepare --grey` makes one-channel crops; the sampler's warps keep their channel axis
    (OpenCV drops it) and training writes a model that reads one channel."""
    from training.prepare import main as prepare_main

    cache = tmp_path / "grey.h5"
    grid = grid_subset(("bbaf2n", "bbaf3s", "bbaf5a"))  # bbaf5a is in the validation split
    assert prepare_main(["--grid", str(grid), "--out", str(cache), "--workers", "1", "--grey"]) == 0
    clips = load_clips(cache)
    warped = Sampler(clips, AugmentOptions(affine_p=1.0, colour_p=1.0), seed=0).pixels(clips[0].mouth)
    assert warped.shape == clips[0].mouth.shape == (75, 50, 100, 1)
    assert not np.array_equal(warped, clips[0].mouth)
    run = tmp_path / "run"
    assert main(quick_run(cache, run, "--epochs", "1", "--steps", "2")) == 0
    model, spec = load(run / "best.keras")
    assert spec.crop.channels == 1 and model.input_shape[-1] == 1


def test_a_model_reads_at_its_clips_frame_rate(small_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """The spec's fps (what the live loop resamples the camera to) is the cached clips' own; clips at
    two rates are refused, since one model reads one."""
    cache = tmp_path / "30fps.h5"
    shutil.copy(small_cache, cache)
    with h5py.File(cache, "a") as f:
        for g in f["clips/s1"].values():
            g.attrs["fps"] = 30.0
    assert main(quick_run(cache, tmp_path / "run", "--epochs", "1", "--steps", "1")) == 0
    assert load(tmp_path / "run" / "best.keras")[1].fps == 30.0
    # Nor is a model trained on, or measured on, clips at another rate than it reads at.
    from training.evaluate import main as evaluate_main
    capsys.readouterr()
    assert evaluate_main(["--model", str(tmp_path / "run" / "best.keras"), "--data", str(small_cache)]) == 2
    assert capsys.readouterr().err == f"error: {small_cache} holds clips at 25 fps, and the model reads 30 fps: " \
                                      "use clips at its rate\n"
    init = tmp_path / "run" / "best.keras"
    assert main(quick_run(small_cache, tmp_path / "from30", "--epochs", "1", "--steps", "1", "--init", str(init))) == 2
    assert f"holds clips at 25 fps, and {init} reads 30 fps" in capsys.readouterr().err
    assert not (tmp_path / "from30").exists()
    assert main(quick_run(small_cache, tmp_path / "run", "--epochs", "2", "--steps", "1", "--resume")) == 2
    assert f"holds clips at 25 fps, and {tmp_path / 'run'} reads 30 fps" in capsys.readouterr().err
    with h5py.File(cache, "a") as f:
        f["clips/s1/bbaf2n"].attrs["fps"] = 25.0
    assert main(quick_run(cache, tmp_path / "mixed", "--epochs", "1", "--steps", "1")) == 2
    assert "several frame rates (25.0, 30.0 fps)" in capsys.readouterr().err
    assert not (tmp_path / "mixed").exists()


def test_recipe_trains_stage_two_from_stage_one_and_resumes(small_cache: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture):
    out = tmp_path / "recipe"
    quick = ["--config", "tiny", "--limit", "8", "--batch-size", "4", "--steps", "2"]
    assert recipe_main(["--cache", str(small_cache), "--out", str(out), "--epochs", "1", "1", *quick]) == 0
    first = json.loads((out / "stage1" / "args.json").read_text())
    second = json.loads((out / "stage2" / "args.json").read_text())
    assert first["init"] is None and first["lr"] == 2e-3 and first["weight_decay"] == 0 and first["seed"] == 0
    assert second["init"] == str(out / "stage1" / "best.keras")
    assert second["lr"] == 1e-3 and second["weight_decay"] == 0.05 and second["seed"] == 1
    assert first["config"] == second["config"] == "tiny"
    for stage in (first, second):
        assert stage["char_target"] == "silence" and stage["char_weight"] == 0.5 and stage["patience"] == 100

    capsys.readouterr()
    assert recipe_main(["--cache", str(small_cache), "--out", str(out), "--epochs", "1", "2", *quick]) == 0
    said = capsys.readouterr().out  # the recipe's model alone: the stages' results are theirs
    assert said.startswith(f"the model: {out / 'stage2' / 'best.keras'} (epoch ") and said.count("\n") == 1
    for stage, epochs in (("stage1", ["1"]), ("stage2", ["1", "2"])):  # stage 1 was done; stage 2 resumed
        with open(out / stage / "log.csv") as f:
            assert [row["epoch"] for row in csv.DictReader(f)] == epochs
    # Stage 2 has begun: stage 1 is not reopened, even when asked for more epochs.
    assert recipe_main(["--cache", str(small_cache), "--out", str(out), "--epochs", "2", "2", *quick]) == 0
    assert json.loads((out / "stage1" / "state.json").read_text())["epoch"] == 1
    refusals = {"--resume": "chains its stages itself", "--init=x.keras": "chains its stages itself",
                "--epochs 0 1": "argument --epochs: must be 1 or more, not 0"}
    for flag, why in refusals.items():
        with pytest.raises(SystemExit) as refused:
            recipe_main(["--cache", str(small_cache), "--out", str(out), *flag.split(" ")])
        assert refused.value.code == 2 and why in capsys.readouterr().err


def test_benchmark_times_training_steps(small_cache: Path, capsys: pytest.CaptureFixture):
    assert benchmark_main(["--cache", str(small_cache), "--configs", "tiny", "--batch-size", "4", "--steps", "2"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["config"] == "tiny" and line["batch_size"] == 4 and line["steps"] == 2  # counted after warm-up
    assert set(line) == {"config", "batch_size", "steps", "median_ms", "p90_ms"}
    assert 0 < line["median_ms"] <= line["p90_ms"]
    assert benchmark_main(["--cache", str(small_cache), "--configs", "huge"]) == 2
    assert "unknown config 'huge'" in capsys.readouterr().err
    assert benchmark_main(["--cache", str(small_cache.with_name("none.h5")), "--configs", "tiny"]) == 2
    assert capsys.readouterr().err.startswith("error: no cache at")


def test_ctrl_c_while_the_benchmark_loads_its_clips_is_one_line(small_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture):
    """A real Ctrl-C (SIGINT) as the clips load, before a step is timed: one line and exit 130, where it was
    a traceback."""
    import training.cache

    load = training.cache.load_clips

    def loading_pressing_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return load(*args, **kwargs)

    monkeypatch.setattr(training.cache, "load_clips", loading_pressing_ctrl_c)
    try:
        code = benchmark_main(["--cache", str(small_cache), "--configs", "tiny", "--steps", "1"])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C left the command as a traceback")
    assert code == 130 and capsys.readouterr().err == "interrupted: nothing was timed\n"


@pytest.mark.parametrize("package", ["training", "export"])
def test_tensorflow_runs_its_onednn_kernels_unless_the_user_says_otherwise(package: str):
    """TensorFlow turns oneDNN on by itself only on AVX-512-class CPUs; on this AVX2 machine a `lite`
    training step took 3.2-3.7 times as long without it (docs/training.md)."""
    probe = (f"import {package}, tensorflow; from tensorflow.python.util import _pywrap_util_port as port; "
             "print(port.IsMklEnabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for setting, enabled in ((None, "True"), ("0", "False")):
        run = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env=env if setting is None else {**env, "TF_ENABLE_ONEDNN_OPTS": setting})
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.split()[-1] == enabled


def test_averaged_weights_are_lent_to_the_model_and_taken_back(small_cache: Path):
    model, x, y = tiny_model_and_batch(small_cache, seed=2, ema=0.5)
    for _ in range(3):
        model.train_on_batch(x, y)
    trained = [np.array(w) for w in model.trainable_weights]
    averages = [np.array(a) for a in model.optimizer._model_variables_moving_average]
    assert any(not np.allclose(t, a) for t, a in zip(trained, averages))
    logp_trained = np.asarray(model.predict_on_batch(x)["ctc"])
    with averaged_weights(model):
        for weight, average in zip(model.trainable_weights, averages):
            np.testing.assert_array_equal(np.array(weight), average)
        assert not np.allclose(np.asarray(model.predict_on_batch(x)["ctc"]), logp_trained)
    with pytest.raises(KeyboardInterrupt), averaged_weights(model):
        raise KeyboardInterrupt  # an interrupted validation must not leave the averages in the model
    for weight, value in zip(model.trainable_weights, trained):
        np.testing.assert_array_equal(np.array(weight), value)


def test_best_checkpoint_is_lowest_cer_then_lowest_wer():
    assert improves(0.05, 0.2, {"best_cer": None, "best_wer": None})
    best = {"best_cer": 0.0211, "best_wer": 0.0503}
    assert improves(0.0211, 0.0472, best)  # same CER, fewer word errors
    assert not improves(0.0211, 0.0503, best) and not improves(0.0211, 0.0566, best)
    assert improves(0.0204, 0.0566, best) and not improves(0.0219, 0.0440, best)


def test_mirrored_strategy_trains_on_two_cpus(small_cache: Path, tmp_path: Path):
    run = tmp_path / "mirrored"
    done = train_process(*quick_run(small_cache, run, "--epochs", "1", "--steps", "1", "--strategy", "mirrored",
                                    "--logical-cpus", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mirrored strategy: 2 device(s)" in done.stderr
    assert json.loads((run / "state.json").read_text())["epoch"] == 1


def contiguous_in(words: list[str], sentence: tuple[str, ...]) -> bool:
    return any(list(sentence[i:i + len(words)]) == words for i in range(len(sentence) - len(words) + 1))


def word_runs(classes: np.ndarray) -> list[tuple[str, int, int]]:
    """(word, first frame, end frame) of each run of frames labelled with one word."""
    runs, start = [], 0
    for c, group in itertools.groupby(classes):
        n = len(list(group))
        if c > 0:
            runs.append((WORD_CLASSES[c], start, start + n))
        start += n
    return runs


def test_lipnet_only_augmentation_keeps_pixels_or_their_mirror(small_cache: Path):
    clips = load_clips(small_cache)
    frames = clips[0].mouth[:20]
    full = Sampler(clips, seed=3)
    lipnet = Sampler(clips, AugmentOptions().lipnet_only(), seed=3)
    kept = [lipnet.pixels(frames) for _ in range(20)]
    assert all(np.array_equal(k, frames) or np.array_equal(k, frames[:, :, ::-1]) for k in kept)
    assert any(np.array_equal(k, frames[:, :, ::-1]) for k in kept)
    changed = [full.pixels(frames) for _ in range(20)]
    assert not all(np.array_equal(c, frames) or np.array_equal(c, frames[:, :, ::-1]) for c in changed)


def test_colour_swap_permutes_a_sample_s_channels(small_cache: Path):
    frames = load_clips(small_cache)[0].mouth[:20]
    still = replace(AugmentOptions(), flip=0.0, affine_p=0.0, colour_p=0.0)
    assert all(np.array_equal(Sampler([], still, seed=4).pixels(frames), frames) for _ in range(5))
    swapping = Sampler([], replace(still, colour_swap=1.0), seed=4)
    orders = set()
    for _ in range(30):
        out = swapping.pixels(frames)
        order = [next(j for j in range(3) if np.array_equal(out[..., i], frames[..., j])) for i in range(3)]
        assert sorted(order) == [0, 1, 2] and order != [0, 1, 2]
        orders.add(tuple(order))
    assert len(orders) == 5  # every other order of three channels


def test_time_masking_replaces_short_runs_with_the_mean_frame(small_cache: Path):
    frames = load_clips(small_cache)[0].mouth[:75]  # three seconds of a real clip
    sampler = Sampler([], AugmentOptions(time_mask=8), seed=5)
    mean = frames.mean(axis=0).astype(np.uint8)
    masked_counts = []
    for _ in range(30):
        out = sampler.mask_time(frames.copy())
        changed = np.nonzero(np.any(out != frames, axis=(1, 2, 3)))[0]
        assert all(np.array_equal(out[i], mean) for i in changed)
        masked_counts.append(len(changed))
    assert max(masked_counts) <= 3 * 8  # at most one run of 8 frames per second
    assert max(masked_counts) > 8 and min(masked_counts) < 8  # runs vary in width and sometimes add up


SLOT = {w: i for i, slot in enumerate(GRID_GRAMMAR) for w in slot}


@pytest.mark.parametrize("kind", ["sentence", "words", "splice", "stream"])
def test_sampler_labels_follow_the_frames(small_cache: Path, kind: str):
    clips = load_clips(small_cache)
    sampler = Sampler(clips, seed=7)
    for _ in range(20):
        s = sampler.draw(kind, length=60)
        assert len(s.frames) == len(s.frame_classes) == len(s.frame_chars) > 0
        assert s.frames.shape[1:] == clips[0].mouth.shape[1:] and s.frames.dtype == np.uint8
        words, runs = s.text.split(), word_runs(s.frame_classes)
        # Whole sentences back to back, cut anywhere: the words follow the grammar's order.
        assert all(SLOT[b] == (SLOT[a] + 1) % len(GRID_GRAMMAR) for a, b in zip(words, words[1:])), s.text
        # The words seen in the frames are in the text, in order (retiming may skip a short word's
        # frames, not its place in the text), but for a word cut at either edge, which has no
        # character targets.
        a = int(bool(runs) and words[:1] != [runs[0][0]])
        b = int(len(runs) > a and words[-1:] != [runs[-1][0]])
        remaining = iter(words)
        assert all(w in remaining for w, _, _ in runs[a:len(runs) - b]), (s.text, [w for w, _, _ in runs])
        for _, start, end in runs[:a] + runs[len(runs) - b:]:
            assert (s.frame_chars[start:end] == UNKNOWN).all()
        if kind == "sentence":
            assert s.text in {c.text for c in clips}
        elif kind == "words":
            assert words and any(contiguous_in(words, c.words) for c in clips)
        elif kind == "splice":
            assert len(words) == len(GRID_GRAMMAR) and SLOT[words[0]] == 0, s.text


def test_a_clip_reads_the_same_whatever_clips_share_its_batch(small_cache: Path):
    """Validation and evaluation batch clips of several lengths (a person's recordings): each reads as
    it reads alone, not as padded to the longest clip beside it."""
    from realtime.backend import BUNDLED_MODEL, OnnxModel
    from training.dataset import predict_clips

    model = OnnxModel(BUNDLED_MODEL, "cpu")
    whole = load_clips(small_cache)[:3]
    clips = [replace(whole[0], mouth=whole[0].mouth[:40]), whole[1], replace(whole[2], mouth=whole[2].mouth[:60]),
             whole[2]]
    together = predict_clips(model.batch_logp, clips)
    for clip, logp in zip(clips, together):
        assert logp.shape == (len(clip.mouth), model.spec.vocabulary.size)
        np.testing.assert_allclose(logp, predict_clips(model.batch_logp, [clip])[0], atol=1e-4)


def test_the_pipeline_draws_each_epoch_with_that_epoch_s_mix(small_cache: Path):
    """A one-epoch curriculum ends after one epoch, though prefetching draws ahead of Keras's epochs,
    and a resumed run draws from its own epoch on."""
    vocabulary, crop, clips = Vocabulary(), read_crop_spec(small_cache), load_clips(small_cache)
    mix, steps = SampleMix(curriculum_epochs=1), 4

    def expected(epochs: list[int]) -> list[np.ndarray]:
        sampler = Sampler(clips, seed=6, vocabulary=vocabulary)
        return [x for epoch in epochs for x, _ in batches(sampler, 2, steps, epoch, mix, vocabulary)]

    def drawn(first_epoch: int) -> list[np.ndarray]:
        data = tf_dataset(Sampler(clips, seed=6, vocabulary=vocabulary), 2, steps, first_epoch, mix, vocabulary,
                          (crop.height, crop.width, crop.channels))
        return [x.numpy() for x, _ in data.take(2 * steps)]

    assert any(a.shape != b.shape or not np.array_equal(a, b)  # one epoch late would show
               for a, b in zip(expected([0, 0]), expected([0, 1])))
    for first_epoch in (0, 3):
        want, got = expected([first_epoch, first_epoch + 1]), drawn(first_epoch)
        assert [a.shape for a in got] == [a.shape for a in want]
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_two_iterations_of_the_pipeline_draw_alike_side_by_side(small_cache: Path):
    """Keras iterates the pipeline twice (once to build the model, then to train) and drops the first
    while it may still be drawing: each iteration draws on its own, not from a random state they share."""
    crop, clips = read_crop_spec(small_cache), load_clips(small_cache)
    data = tf_dataset(Sampler(clips, seed=2), 2, 12, 0, SampleMix(), Vocabulary(),
                      (crop.height, crop.width, crop.channels))
    first = iter(data)
    drawn = [next(first)[0].numpy()]  # its prefetching draws on meanwhile
    second = [x.numpy() for x, _ in data.take(12)]
    drawn += [next(first)[0].numpy() for _ in range(11)]
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(drawn, second, strict=True))


def test_frame_jitter_never_deletes_a_whole_sample(small_cache: Path):
    """Every frame dropped (as a word of two frames can lose both) would be a sample of no frames."""
    sampler = Sampler(load_clips(small_cache), replace(AugmentOptions(), jitter=1.0, speed_p=0.0), seed=0)
    for _ in range(5):
        s = sampler.draw("words")
        assert len(s.frames) == len(s.frame_classes) == 2  # the one frame kept, duplicated


def test_stream_windows_cut_only_aligned_clips(small_cache: Path):
    """A clip without an align file is known only whole: a window across part of it would get the
    whole sentence's text, or none of its words."""
    clips = load_clips(small_cache)
    unaligned = [replace(c, words=(), spans=np.zeros((0, 2))) for c in clips]
    mixed = unaligned[:len(clips) // 2] + clips[len(clips) // 2:]
    sampler = Sampler(mixed, seed=1)
    for _ in range(20):
        assert set(sampler.stream(60)[:, 0]) <= set(range(len(clips) // 2, len(clips)))
    none_aligned = Sampler(unaligned, seed=1)
    for _ in range(5):
        s = none_aligned.draw("stream", length=60)
        assert s.text in {c.text for c in clips} and len(s.frames) == len(clips[0].mouth)  # a whole sentence


def test_a_spliced_sentence_reads_each_word_from_the_clip_its_frames_come_from(small_cache: Path):
    """Without pixel changes or retiming, a spliced sample is runs of real frames: the k-th run is
    word k of one clip with the pause after it, and the text says that clip's k-th word."""
    clips = load_clips(small_cache)
    where = {c.mouth[f].tobytes(): (i, f) for i, c in enumerate(clips) for f in range(len(c.mouth))}
    still = replace(AugmentOptions(), flip=0.0, affine_p=0.0, colour_p=0.0, speed_p=0.0, jitter=0.0)
    sampler = Sampler(clips, still, seed=11)
    mixed = 0
    for _ in range(10):
        s = sampler.draw("splice")
        source = np.array([where[f.tobytes()] for f in s.frames])
        runs = np.split(source, np.nonzero((np.diff(source[:, 0]) != 0) | (np.diff(source[:, 1]) != 1))[0] + 1)
        mixed += len({int(r[0, 0]) for r in runs}) > 1
        words = s.text.split()
        slot = 0
        for run in runs:
            clip, first, last = clips[int(run[0, 0])], int(run[0, 1]), int(run[-1, 1])
            bounds = np.append(np.round(clip.spans[:, 0]).astype(int), len(clip.mouth))
            bounds[0] = 0  # segment k (word k and the pause after it): frames bounds[k]:bounds[k + 1]
            read = [k for k in range(len(clip.words)) if first <= bounds[k] and bounds[k + 1] <= last + 1]
            assert read and read[0] == slot and bounds[slot] == first and bounds[read[-1] + 1] == last + 1
            assert [clip.words[k] for k in read] == words[slot:slot + len(read)], (s.text, clip.key)
            slot += len(read)
        assert slot == len(words) and source[0, 1] == 0 and source[-1, 1] == len(clips[source[-1, 0]].mouth) - 1
    assert mixed >= 8  # nearly every spliced sentence joins several clips


def test_speech_loss_is_the_squared_error_of_frames_with_sound():
    from training.losses import SpeechLoss

    rng = np.random.default_rng(0)
    truth, predicted = rng.normal(size=(2, 5, 3)).astype(np.float32), rng.normal(size=(2, 5, 3)).astype(np.float32)
    truth[0, 3:] = np.nan  # padding, or a clip without sound
    truth[1, 0, 1] = np.nan  # a frame is known whole or not at all
    per_sample = [np.square(predicted[0, :3] - truth[0, :3]).mean(),
                  np.square(predicted[1, 1:] - truth[1, 1:]).mean()]
    loss = SpeechLoss(reduction=None)(truth, predicted)
    np.testing.assert_allclose(np.asarray(loss), per_sample, rtol=1e-5)
    import tensorflow as tf

    guess = tf.Variable(predicted)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(SpeechLoss(reduction=None)(truth, guess))
    gradient = tape.gradient(total, guess).numpy()
    assert np.isfinite(gradient).all()  # NaN targets reach neither the loss nor its gradient
    assert (gradient[0, 3:] == 0).all() and (gradient[1, 0] == 0).all() and (gradient[0, :3] != 0).all()


def test_training_with_speech_hears_the_cached_sound_and_saves_its_runtime_model_without_it(
        small_cache: Path, tmp_path: Path):
    """--speech-weight trains a speech head on the cached sound (its loss logged every epoch, resumed
    runs included); best.keras, the inference model that export and the live loop read, has no such
    head; and a run without --speech-weight can start from its last.keras."""
    run = tmp_path / "speech"
    assert main(quick_run(small_cache, run, "--epochs", "1", "--steps", "3", "--speech-weight", "1")) == 0
    with open(run / "log.csv") as f:
        assert float(next(csv.DictReader(f))["speech_loss"]) > 0
    trained, _ = load(run / "last.keras", compile=True)
    assert trained.get_layer("speech").units == DIMS
    runtime, _ = load(run / "best.keras")  # what export and the live loop read: lips in, characters out
    assert "speech" not in {layer.name for layer in runtime.layers}
    # A resumed run hears as it began, and a new run may start from its last.keras without the head.
    assert main(quick_run(small_cache, run, "--epochs", "2", "--resume")) == 0
    with open(run / "log.csv") as f:
        assert [float(row["speech_loss"]) > 0 for row in csv.DictReader(f)] == [True, True]
    assert main(quick_run(small_cache, tmp_path / "from_speech", "--epochs", "1", "--steps", "1",
                          "--init", str(run / "last.keras"))) == 0
    started, _ = load(tmp_path / "from_speech" / "last.keras", compile=True)
    assert "speech" not in {layer.name for layer in started.layers}
    with open(tmp_path / "from_speech" / "log.csv") as f:
        assert "speech_loss" not in next(csv.DictReader(f))


def test_sampled_speech_is_the_sound_of_the_sampled_frames(small_cache: Path):
    """Each sampled frame carries the sound of the same clip and frame as its pixels; NaN for a clip
    without sound."""
    clips = load_clips(small_cache)
    clips = [c if i % 2 else replace(c, speech=None) for i, c in enumerate(clips)]
    where = {row.astype(np.float32).tobytes(): (c, f) for c in clips if c.speech is not None
             for f, row in enumerate(c.speech)}
    still = replace(AugmentOptions(), flip=0.0, affine_p=0.0, colour_p=0.0)  # retiming stays on
    sampler = Sampler(clips, still, seed=3, speech_dims=DIMS)
    silent = heard = 0
    for kind in ("sentence", "words", "stream") * 4:
        s = sampler.draw(kind, length=60)
        assert s.frame_speech.shape == (len(s.frames), DIMS) and s.frame_speech.dtype == np.float32
        for pixels, row in zip(s.frames, s.frame_speech):
            if np.isnan(row).all():
                silent += 1
                assert any((pixels == c.mouth).all(axis=(1, 2, 3)).any() for c in clips if c.speech is None)
            else:
                heard += 1
                clip, frame = where[row.tobytes()]
                np.testing.assert_array_equal(pixels, clip.mouth[frame])
    assert silent and heard
    assert Sampler(clips, seed=3).draw("sentence").frame_speech is None


def test_confidence_penalty_subtracts_the_entropy_of_each_sample_s_own_frames():
    """The penalised CTC loss is the plain one less the weight times the summed entropy of the frames the
    sample has (padding frames do not count), and its gradient flattens a confident frame."""
    import tensorflow as tf

    from training.losses import CTCLoss

    vocabulary = Vocabulary()
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(2, 6, vocabulary.size)).astype(np.float32)
    logp = np.asarray(tf.nn.log_softmax(logits)).astype(np.float32)
    truth = np.full((2, 4), -1, np.int32)
    truth[0, :3] = [6, *vocabulary.encode("ab")]
    truth[1, :2] = [4, *vocabulary.encode("c")]  # two padding frames
    plain = np.asarray(CTCLoss(vocabulary.blank, reduction=None)(truth, logp))
    penalised = np.asarray(CTCLoss(vocabulary.blank, 0.5, reduction=None)(truth, logp))
    entropy = -(np.exp(logp) * logp).sum(-1)
    np.testing.assert_allclose(plain - penalised, 0.5 * np.array([entropy[0].sum(), entropy[1, :4].sum()]),
                               rtol=1e-5)
    guess = tf.Variable(logits)
    with tf.GradientTape() as tape:
        logp_guess = tf.nn.log_softmax(guess)
        penalty = tf.reduce_sum(CTCLoss(vocabulary.blank, 1.0, reduction=None)(truth, logp_guess)
                                - CTCLoss(vocabulary.blank, reduction=None)(truth, logp_guess))
    step = tape.gradient(penalty, guess).numpy()  # the penalty's own gradient: descending it raises the entropy
    frame = logits[0, 0]
    assert np.sign(step[0, 0, frame.argmax()]) > 0  # descending it lowers the most likely class
    assert (step[1, 4:] == 0).all()  # padding frames are untouched


def test_ctc_loss_scores_a_real_batch_as_keras_dense_ctc_does(small_cache: Path):
    """CTCLoss runs TensorFlow's fused kernel on sparse labels; Keras' dense CTC is the reference: the
    same loss and the same gradient, sample by sample, on a real batch's labels and lengths."""
    import tensorflow as tf

    from training.losses import CTCLoss

    vocabulary = Vocabulary()
    sampler = Sampler(load_clips(small_cache), seed=4, vocabulary=vocabulary)
    x, y = next(batches(sampler, batch_size=4, steps=1, epoch=0, mix=SampleMix(), vocabulary=vocabulary))
    truth = y["ctc"]
    lengths, labels = truth[:, 0], truth[:, 1:]
    assert len(set(lengths)) > 1  # padded samples: each is read in its own frames
    guess = tf.Variable(np.random.default_rng(0).normal(size=(*x.shape[:2], vocabulary.size)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        loss = CTCLoss(vocabulary.blank, reduction=None)(truth, tf.nn.log_softmax(guess))
        reference = keras.ops.ctc_loss(np.maximum(labels, 0), tf.nn.log_softmax(guess), (labels >= 0).sum(axis=1),
                                       lengths, mask_index=vocabulary.blank)
    np.testing.assert_allclose(loss, reference, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, guess), tape.gradient(reference, guess), atol=1e-4)
    with pytest.raises(ValueError, match="blank must be the last class"):
        CTCLoss(0)(truth, tf.nn.log_softmax(guess))


def test_a_label_that_does_not_fit_its_frames_adds_no_ctc_loss():
    """Retiming can leave more letters than frames ('white by' in 7): no alignment exists, so the
    sample adds nothing (and no gradient) to CTC; one that fits is scored as CTC scores it."""
    import tensorflow as tf

    from training.losses import CTCLoss

    vocabulary = Vocabulary()
    logits = np.random.default_rng(0).normal(size=(2, 7, vocabulary.size)).astype(np.float32)
    truth = np.full((2, 9), -1, np.int32)
    truth[0, :9] = [7, *vocabulary.encode("white by")]  # 8 letters in 7 frames
    truth[1, :4] = [7, *vocabulary.encode("add")]  # 3 letters and a blank between the two d
    guess = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = CTCLoss(vocabulary.blank, reduction=None)(truth, tf.nn.log_softmax(guess))
    gradient = tape.gradient(loss, guess).numpy()
    fits = keras.ops.ctc_loss(truth[1:, 1:4], tf.nn.log_softmax(logits[1:]), [3], [7], mask_index=vocabulary.blank)
    assert loss[0] == 0 and (gradient[0] == 0).all()
    np.testing.assert_allclose(loss[1], np.asarray(fits)[0], rtol=1e-5)
    assert np.isfinite(gradient).all() and np.abs(gradient[1]).sum() > 0


def test_sequence_loss_is_the_sentence_s_cross_entropy_against_the_sentences_one_word_away():
    """With rivals packed, the CTC loss adds weight x -log softmax(scale x CTC log-likelihood) over the
    sentence and its 45 GRID neighbours, taken at the sentence; a sample that is not a GRID sentence, or
    has too few frames for it, gets plain CTC; and descending the added term sets the sentence apart."""
    import tensorflow as tf

    from training.augment import Sample
    from training.dataset import pad_batch
    from realtime.grid import RIVALS, rivals
    from training.losses import CTCLoss

    vocabulary = Vocabulary()
    sentence, other = "bin blue at f two now", "hello there"
    neighbours = rivals(sentence)
    assert len(neighbours) == len(set(neighbours)) == RIVALS == 45 and sentence not in neighbours
    assert all(sum(a != b for a, b in zip(n.split(), sentence.split())) == 1 for n in neighbours)
    assert rivals(other) == [] and rivals("bin blue at w two now") == []  # GRID has no letter w
    frames = np.zeros((90, 2, 2, 3), np.uint8)
    empty = np.zeros(90, np.int32)
    samples = [Sample(frames, sentence, empty, empty), Sample(frames[:70], other, empty[:70], empty[:70]),
               Sample(frames[:20], sentence, empty[:20], empty[:20])]  # too few frames for its letters
    plain_targets = pad_batch(samples, vocabulary)[1]["ctc"]
    targets = pad_batch(samples, vocabulary, with_rivals=True)[1]["ctc"]
    width = max(len(t) for t in [sentence, *neighbours])
    assert targets.shape == (3, 1 + (1 + RIVALS) * width)
    row = targets[0, 1 + width:1 + 2 * width]
    assert "".join(vocabulary.charset[i] for i in row if 0 <= i < len(vocabulary.charset)) == neighbours[0]
    assert (targets[1, 1 + width:] == -1).all()
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(3, 90, vocabulary.size)).astype(np.float32)
    logp = np.asarray(tf.nn.log_softmax(logits))
    plain = np.asarray(CTCLoss(vocabulary.blank, reduction=None)(plain_targets, logp))
    total = np.asarray(CTCLoss(vocabulary.blank, sequence_weight=0.7, sequence_scale=0.5, rivals=RIVALS,
                               reduction=None)(targets, logp))
    one = np.full((1, 1 + width), -1, np.int32)
    likelihoods = []
    for text in [sentence, *neighbours]:  # each reading scored alone, as plain CTC
        one[:] = -1
        one[0, 0] = 90
        one[0, 1:1 + len(text)] = vocabulary.encode(text)
        likelihoods.append(-float(np.asarray(CTCLoss(vocabulary.blank, reduction=None)(one, logp[:1]))[0]))
    scaled = 0.5 * np.array(likelihoods)
    expected = -(scaled[0] - np.logaddexp.reduce(scaled))
    np.testing.assert_allclose(total[0] - plain[0], 0.7 * expected, rtol=1e-4)
    np.testing.assert_allclose(total[1], plain[1], rtol=1e-6)  # not a GRID sentence: CTC alone
    assert total[2] == plain[2]  # a sentence its frames cannot hold: CTC alone, no NaN
    guess = tf.Variable(logits)
    with tf.GradientTape() as tape:
        logp_guess = tf.nn.log_softmax(guess)
        added = tf.reduce_sum(CTCLoss(vocabulary.blank, sequence_weight=1.0, rivals=RIVALS, reduction=None)(
            targets, logp_guess) - CTCLoss(vocabulary.blank, reduction=None)(plain_targets, logp_guess))
    gradient = tape.gradient(added, guess)
    assert np.isfinite(gradient.numpy()).all()  # the sample its frames cannot hold adds no NaN either
    stepped = guess - 20.0 * gradient
    one[:] = -1
    one[0, 0] = 90
    one[0, 1:1 + len(neighbours[0])] = vocabulary.encode(neighbours[0])

    def margin(weights: tf.Tensor) -> float:  # the sentence's CTC log-likelihood less the first rival's
        logp_now = tf.nn.log_softmax(weights)[:1]
        return float(CTCLoss(vocabulary.blank, reduction=None)(one, logp_now)[0]
                     - CTCLoss(vocabulary.blank, reduction=None)(plain_targets[:1], logp_now)[0])

    assert margin(stepped) > margin(guess)  # descending the added term sets the sentence apart from a rival


def test_the_learning_rate_decays_to_its_floor_on_the_last_epoch():
    from training.train import learning_rate

    rates = [learning_rate(epoch, 1.0, 10) for epoch in range(10)]
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)  # warm-up, then the peak
    assert rates[-1] == pytest.approx(0.05)  # Keras counts epochs from 0: epoch 9 is the last of 10
    assert all(a > b for a, b in zip(rates[1:], rates[2:]))


def test_every_batch_is_whole_though_windows_fall_in_silence(small_cache: Path):
    """A window with no word is drawn again, not dropped: a short batch cannot be split over the devices
    of --strategy mirrored (an odd one crashed it)."""
    vocabulary = Vocabulary()
    sampler = Sampler(load_clips(small_cache), seed=0, vocabulary=vocabulary)
    mix = SampleMix(stream=1.0, window=(30, 30))  # short windows only: some fall between two sentences
    sizes = [len(x) for x, y in batches(sampler, 8, 40, 0, mix, vocabulary)]
    assert sizes == [8] * 40


def test_mirrored_strategy_refuses_an_uneven_batch_and_ends_a_failed_step_in_one_line(small_cache: Path,
                                                                                      tmp_path: Path):
    run = tmp_path / "uneven"
    refused = train_process(*quick_run(small_cache, run, "--batch-size", "3", "--strategy", "mirrored",
                                       "--logical-cpus", "2"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == \
        "error: --batch-size 3 does not split evenly over the 2 devices of --strategy mirrored"
    assert not run.exists()
    # A step TensorFlow fails (here a batch cut to 3 samples behind the sampler's back) ends the run with
    # one line, and the process exits rather than waiting on the input pipeline forever.
    cut = ("import sys, training.dataset as d\n"
           "whole = d.batches\n"
           "def cut(*a, **k):\n"
           "    for x, y in whole(*a, **k):\n"
           "        yield x[:3], {n: v[:3] for n, v in y.items()}\n"
           "d.batches = cut\n"
           "from training.train import main\n"
           "sys.exit(main(sys.argv[1:]))\n")
    failed = subprocess.run([sys.executable, "-c", cut, *quick_run(small_cache, run, "--epochs", "1", "--steps", "2",
                                                                 "--strategy", "mirrored", "--logical-cpus", "2")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "training stopped in epoch 1" in errors[0] and "AddN" in errors[0]


def test_a_refused_run_leaves_no_run_folder(small_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    deaf = tmp_path / "deaf.h5"
    shutil.copy(small_cache, deaf)
    with h5py.File(deaf, "a") as f:
        for group in f["clips/s1"].values():
            del group["speech"]
    for cache, extra, says in ((small_cache, ("--val-fraction", "0.9999"), "no training clips"),
                               (deaf, ("--speech-weight", "1"), "--speech-weight needs speech features")):
        assert main(quick_run(cache, tmp_path / "refused", *extra)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and err.count("\n") == 1
        assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("name, text, says", [
    ("state.json", "{epoch: 3}", "is not a training run's state (Expecting property name enclosed in double quotes: "
                                 "line 1 column 2 (char 1))"),
    ("state.json", '{"best_cer": null}', "is not a training run's state (no 'epoch')"),
    ("state.json", '{"epoch": "3", "best_cer": null}', """is not a training run's state ('epoch' is "3")"""),
    ("state.json", '{"epoch": true, "best_cer": null}', "is not a training run's state ('epoch' is true)"),
    ("state.json", '{"epoch": -1, "best_cer": null}', "is not a training run's state ('epoch' is -1)"),
    ("state.json", '{"epoch": 1, "best_cer": NaN}', "is not a training run's state ('best_cer' is NaN)"),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_epoch": 1}', "is not a training run's state (no 'best_wer')"),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_wer": Infinity, "best_epoch": 1}',
     "is not a training run's state ('best_wer' is Infinity)"),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_wer": 0.5}', "is not a training run's state (no 'best_epoch')"),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_wer": 0.5, "best_epoch": "1"}',
     """is not a training run's state ('best_epoch' is "1")"""),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_wer": 0.5, "best_epoch": true}',
     "is not a training run's state ('best_epoch' is true)"),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_wer": 0.5, "best_epoch": 2}',
     "is not a training run's state ('best_epoch' is 2)"),
    ("state.json", '{"epoch": 1, "best_cer": 0.5, "best_wer": 0.5, "best_epoch": 0}',
     "is not a training run's state ('best_epoch' is 0)"),
    ("state.json", '{"epoch": 1, "best_cer": null}', "is not a training run's state ('best_cer' is null after epoch "
                                                      "1)"),
    ("args.json", '{"lr": 0.1', "is not a training run's recipe (Expecting ',' delimiter: line 1 column 11 (char 10))"),
], ids=["state_not_json", "state_without_epoch", "state_epoch_not_a_number", "state_epoch_a_bool",
        "state_epoch_negative", "state_best_cer_nan", "state_without_best_wer", "state_best_wer_infinite",
        "state_without_best_epoch", "state_best_epoch_a_string", "state_best_epoch_a_bool",
        "state_best_epoch_after_epoch", "state_best_epoch_zero", "state_never_validated", "args_cut_short"])
def test_a_run_folder_s_damaged_record_is_named_in_one_line(name: str, text: str, says: str, small_cache: Path,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture):
    """A state or recipe edited by hand or cut short: the file is named and what is wrong with it, the
    run folder left as it was."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text('{"epoch": 1, "best_cer": 0.5, "best_wer": 0.5, "best_epoch": 1}')
    (run / name).write_text(text)
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(quick_run(small_cache, run, "--resume", "--epochs", "2")) == 2
    assert capsys.readouterr().err == f"error: {run / name} {says}\n"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files


def test_an_out_that_is_a_file_is_refused_before_the_cache_is_loaded(small_cache: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture):
    """The real cache is a gigabyte: a run that cannot be written is told before it is read (and so
    before any note on its clips, here that none falls in a validation split of 0)."""
    from training import cache

    loaded, load = [], cache.load_clips
    monkeypatch.setattr(cache, "load_clips", lambda path: loaded.append(path) or load(path))
    taken = tmp_path / "taken"
    taken.write_text("a user's file\n")
    assert main(quick_run(small_cache, taken, "--val-fraction", "0")) == 2
    assert capsys.readouterr().err == f"error: cannot write {taken / 'state.json'}: {taken} is not a folder\n"
    assert loaded == [] and taken.read_text() == "a user's file\n"


def test_a_resumed_run_and_evaluate_go_by_the_run_s_recorded_clips(small_cache: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture):
    """The cache grows (a prepare finishes more clips) while a --limit run pauses: the resumed run trains
    and validates on the clips it began with, and evaluate's --split takes them from split.json."""
    from training.evaluate import main as evaluate_main

    cache, run = tmp_path / "growing.h5", tmp_path / "run"
    shutil.copy(small_cache, cache)
    keys = [c.key for c in load_clips(small_cache)]

    def complete(key: str, done: bool) -> None:
        with h5py.File(cache, "a") as f:
            f["clips"][key].attrs["complete"] = done

    for key in keys[:2]:
        complete(key, False)
    argv = quick_run(cache, run, "--limit", "5", "--val-fraction", "0.3", "--steps", "1")
    assert main([*argv, "--epochs", "1"]) == 0
    record = json.loads((run / "split.json").read_text())
    assert record["train"] + record["validation"] and \
        sorted(record["train"] + record["validation"]) == keys[2:7]
    for key in keys[:2]:
        complete(key, True)
    capsys.readouterr()
    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    assert json.loads((run / "split.json").read_text()) == record
    assert f"{len(record['train'])} training clips, {len(record['validation'])} validation clips" in \
        capsys.readouterr().err

    for split in ("val", "train"):
        assert evaluate_main(["--model", str(run / "best.keras"), "--data", str(cache), "--split", split,
                              "--json"]) == 0
        out, err = capsys.readouterr()
        names = [c["name"] for c in json.loads(out)["clips"]]
        assert names == record["validation" if split == "val" else "train"]
        assert f"--split {split}: the {'validation' if split == 'val' else 'training'} clips {run / 'split.json'}" \
            in err
    # The model itself records the clips held out: a copy away from its run's folder goes by them too (the
    # deterministic split at training's default share would take others).
    assert read_spec(run / "best.keras").validation == tuple(record["validation"])
    (tmp_path / "elsewhere").mkdir()
    copy = shutil.copy(run / "best.keras", tmp_path / "elsewhere" / "mine.keras")
    assert evaluate_main(["--model", str(copy), "--data", str(cache), "--split", "val", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [c["name"] for c in json.loads(out)["clips"]] == record["validation"]
    assert "the model records as held out" in err

    complete(record["validation"][0], False)  # a cache without a clip the run validates on
    assert main([*argv, "--epochs", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"e.g. {record['validation'][0]}" in err and err.count("\n") == 1
    assert json.loads((run / "state.json").read_text())["epoch"] == 2


def test_a_resumed_run_trains_as_the_uninterrupted_one_trains(small_cache: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    """Each epoch's samples and dropout masks come from (seed, epoch): epoch 2 of a run resumed after
    epoch 1 is epoch 2 of the run that went on, to the last bit of its weights. And a run traces its
    training step once: the default strategy is one device, made explicit, so Keras builds the optimizer
    before tracing the step (unbuilt, its first trace makes variables and TensorFlow traces the step again)."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    from training import dataset

    traced, step = [], TensorFlowTrainer.train_step

    def counted(self, data):
        traced.append(1)
        return step(self, data)

    drawn: dict[str, dict[int, list[np.ndarray]]] = {}
    whole = dataset.batches

    def recorded(name: str):
        def batches(sampler, batch_size, steps, epoch, *args, **kwargs):
            for x, y in whole(sampler, batch_size, steps, epoch, *args, **kwargs):
                drawn.setdefault(name, {}).setdefault(epoch, []).append(x)
                yield x, y
        return batches

    dropout = ("--spatial-dropout", "0.25")
    argv = quick_run(small_cache, tmp_path / "through", "--steps", "2", "--seed", "3", *dropout)
    monkeypatch.setattr(dataset, "batches", recorded("through"))
    monkeypatch.setattr(TensorFlowTrainer, "train_step", counted)
    assert main([*argv, "--epochs", "2"]) == 0
    assert len(traced) == 1
    monkeypatch.setattr(TensorFlowTrainer, "train_step", step)
    argv = quick_run(small_cache, tmp_path / "paused", "--steps", "2", "--seed", "3", *dropout)
    monkeypatch.setattr(dataset, "batches", recorded("paused"))
    assert main([*argv, "--epochs", "1"]) == 0
    monkeypatch.setattr(dataset, "batches", recorded("resumed"))
    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    assert min(drawn["resumed"]) == 1
    for name in ("paused", "resumed"):
        epoch = min(drawn[name])
        want, got = drawn["through"][epoch][:2], drawn[name][epoch][:2]
        assert len(want) == len(got) == 2
        assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(want, got)), name
    through, _ = load(tmp_path / "through" / "last.keras", compile=True)
    resumed, _ = load(tmp_path / "paused" / "last.keras", compile=True)
    for a, b in zip(through.weights, resumed.weights, strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)


# The kinds of sample Sampler.draw makes (training.augment).
KINDS = ("sentence", "words", "splice", "stream")


def ctc_paths_exist(text: str, chars: np.ndarray, vocabulary: Vocabulary) -> bool:
    """Whether some CTC path reads `text` and agrees with every frame of `chars` it knows (UNKNOWN frames
    take any class)."""
    labels = vocabulary.encode(text)
    states = [vocabulary.blank]
    for c in labels:
        states += [int(c), vocabulary.blank]
    reach = np.zeros(len(states), bool)
    reach[:2] = True
    for t, known in enumerate(chars):
        if t:
            step = reach.copy()
            step[1:] |= reach[:-1]
            skip = np.array([s > 1 and states[s] != vocabulary.blank and states[s] != states[s - 2]
                             for s in range(len(states))])
            step[2:] |= reach[:-2] & skip[2:]
            reach = step
        reach &= (known == UNKNOWN) | (np.array(states) == known)
    return bool(reach[-1] or reach[-2])


@pytest.mark.parametrize("target", ["spread", "silence"])
def test_frame_character_targets_spell_the_sample_s_text(small_cache: Path, target: str):
    """Per-frame character targets agree with the CTC text, retimed or not: spread targets (where every
    word fits its frames) collapse to exactly the text, with no space before a sub-sentence's first word
    and one between two sentences of a window; silence targets leave room for a CTC path that reads it."""
    vocabulary = Vocabulary()
    clips = load_clips(small_cache)
    still = replace(AugmentOptions(char_target=target), speed_p=0.0, jitter=0.0)
    checked = Counter()
    for options in (still, AugmentOptions(char_target=target)):
        sampler = Sampler(clips, options, seed=3, vocabulary=vocabulary)
        for kind in KINDS * 30:
            s = sampler.draw(kind, length=60)
            if target == "spread" and UNKNOWN not in s.frame_chars:
                spelt = "".join(vocabulary.charset[c] for c, _ in itertools.groupby(s.frame_chars)
                                if c != vocabulary.blank)
                assert spelt == s.text, kind
                checked[kind] += 1
            elif target == "silence" and ctc_paths_exist(s.text, np.full(len(s.frames), UNKNOWN), vocabulary):
                assert ctc_paths_exist(s.text, s.frame_chars, vocabulary), (kind, s.text)
                checked[kind] += 1
    assert all(checked[kind] >= 5 for kind in KINDS), checked


def test_a_failed_save_leaves_no_partial_model(tiny_run, tmp_path: Path):
    """The temporary file is written, then cannot replace its target (here a folder of that name)."""
    model, spec = load(tiny_run.model)
    target = tmp_path / "best.keras"
    (target / "kept").mkdir(parents=True)
    with pytest.raises(OSError):
        model_module.save(model, target, spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"] and (target / "kept").is_dir()


@pytest.mark.parametrize("config", CONFIGS)
def test_every_configuration_reads_the_least_crop_and_none_smaller(config: str):
    build(CONFIGS[config], LEAST_CROP, LEAST_CROP, 3)
    with pytest.raises(ValueError):
        build(CONFIGS[config], LEAST_CROP - 1, LEAST_CROP, 3)


def test_only_the_clips_wanted_are_read(small_cache: Path, tmp_path: Path):
    """Evaluation reads its split's clips alone: a cache of many speakers need not fit in memory to read
    a few of them. A clip wanted and not whole is still named; an empty cache is still refused."""
    every = load_clips(small_cache)
    some = load_clips(small_cache, lambda key: key == every[1].key)
    assert [c.key for c in some] == [every[1].key] and np.array_equal(some[0].mouth, every[1].mouth)
    assert load_clips(small_cache, lambda key: False) == []
    damaged = tmp_path / "damaged.h5"
    shutil.copy(small_cache, damaged)
    with h5py.File(damaged, "a") as f:
        del f[f"clips/{every[0].key}/spans"]
    assert len(load_clips(damaged, lambda key: key != every[0].key)) == len(every) - 1
    with pytest.raises(ValueError, match=f"clip {every[0].key} has no spans"):
        load_clips(damaged, lambda key: key == every[0].key)


def test_malformed_caches_are_one_line_errors(small_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    from training.report import main as report_main

    newer = tmp_path / "newer.h5"  # crop settings of another version: a field this one does not know
    shutil.copy(small_cache, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["crop"] = json.dumps({**json.loads(f.attrs["crop"]), "grey_gamma": 1})
    assert main(quick_run(newer, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {newer}: crop settings") and "grey_gamma, which this version does not know" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()

    small = tmp_path / "small.h5"  # crops a model's poolings would leave no pixel of (an older version made them)
    shutil.copy(small_cache, small)
    with h5py.File(small, "a") as f:
        f.attrs["crop"] = json.dumps({**json.loads(f.attrs["crop"]), "height": LEAST_CROP - 1})
    assert main(quick_run(small, tmp_path / "run")) == 2
    assert benchmark_main(["--cache", str(small), "--configs", "tiny", "--steps", "1"]) == 2
    said = f"error: {small}'s crops are {LEAST_CROP - 1} x 100 pixels, and a model needs {LEAST_CROP} a side: " \
           "prepare a cache with a larger --crop-size\n"
    assert capsys.readouterr().err == said * 2
    assert not (tmp_path / "run").exists()

    poseless = tmp_path / "poseless.h5"  # a clip without its crop poses and lip landmarks
    shutil.copy(small_cache, poseless)
    with h5py.File(poseless, "a") as f:
        del f["clips/s1/bbaf3s/pose"], f["clips/s1/bbaf3s/lips"]
    assert report_main(["--cache", str(poseless)]) == 2
    assert capsys.readouterr().err == f"error: {poseless}: clip s1/bbaf3s has no pose or lips: prepare it again\n"
    mouthless, frameless = tmp_path / "mouthless.h5", tmp_path / "frameless.h5"  # what --montage reads, too
    for damaged in (mouthless, frameless):
        shutil.copy(small_cache, damaged)
        with h5py.File(damaged, "a") as f:
            clip = f["clips/s1/bbaf3s"]
            if damaged == mouthless:
                del clip["mouth"]
            else:
                for name in ("mouth", "pose", "box", "lips", "quality", "held"):
                    data = clip[name][()]
                    del clip[name]
                    clip.create_dataset(name, data=data[:0])
        assert report_main(["--cache", str(damaged), "--montage", str(tmp_path / "m.png")]) == 2
    said = capsys.readouterr().err.splitlines()
    assert said == [f"error: {mouthless}: clip s1/bbaf3s has no mouth: prepare it again",
                    f"error: {frameless}: clip s1/bbaf3s has no frames: prepare it again"]
    assert not (tmp_path / "m.png").exists()

    # Texts the model cannot write (a hand-made align file with a digit), or no word at all: refused before
    # the run folder is made, naming the clips; the input pipeline would fail on them inside TensorFlow.
    for case, word, says in (("digit", "2", "the model cannot write the text of s1/bbaf2n (2) (it"),
                             ("silent", None, "none of the 5 training clips has a word to read")):
        cache = tmp_path / f"{case}.h5"
        shutil.copy(small_cache, cache)
        with h5py.File(cache, "a") as f:
            for name, g in f["clips/s1"].items():
                if word is None or name == "bbaf2n":
                    words = [] if word is None else [*json.loads(g.attrs["words"])[:4], word, "now"]
                    g.attrs.update(words=json.dumps(words), text=" ".join(words))
        for char_target in ("spread", "silence"):
            assert main(quick_run(cache, tmp_path / case, "--char-target", char_target)) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {cache}: {says}") and err.count("\n") == 1
            assert not (tmp_path / case).exists()


def test_a_truncated_cache_is_one_line_with_h5py_s_whole_reason(small_cache: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture):
    """The first half of a real cache (a copy cut short): h5py's reason is told whole, sizes and all."""
    data = small_cache.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[:len(data) // 2])
    assert main(quick_run(truncated, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {truncated} is not a lipstream cache (not a readable HDF5 file: ") and \
        f"(truncated file: eof = {len(data) // 2}," in err and err.endswith(f"stored_eof = {len(data)}))\n"), err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_cache_another_process_writes_is_told_as_that(small_cache: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture):
    """A copy of a real cache held open for writing by another process (HDF5 locks it): said as that, not
    as a file that is no lipstream cache."""
    from training.report import main as report_main

    busy = tmp_path / "busy.h5"
    shutil.copy(small_cache, busy)
    writer = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\n"
                               "f = h5py.File(sys.argv[1], 'a')\nprint('open', flush=True)\ntime.sleep(120)\n",
                               str(busy)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "open\n"
        assert report_main(["--cache", str(busy)]) == 2
    finally:
        writer.kill()
        writer.wait()
    assert capsys.readouterr().err == f"error: {busy} is being written by another process: try again once it is done\n"


def test_clips_with_no_window_of_words_are_one_error_not_an_endless_draw(small_cache: Path):
    """A recording whose one word outlasts twice the window (real frames, its word stretched over all of
    them) gives no stream window a word to count: the draw says so instead of looping for ever."""
    clip = load_clips(small_cache)[0]
    drawn_out = replace(clip, text="bin", words=("bin",), spans=np.array([[0.0, len(clip.mouth)]], np.float32))
    sampler = Sampler([drawn_out], AugmentOptions(), seed=0, vocabulary=Vocabulary())
    with pytest.raises(ValueError, match="held no word"):
        draw_with_words(sampler, "stream", 30)


def test_a_frozen_front_end_keeps_the_weights_init_gives_and_the_back_end_learns(small_cache: Path,
                                                                                  tiny_run: TinyRun,
                                                                                  tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch):
    """--freeze-front-end: every layer up to the front end's output keeps --init's weights, batch-norm
    statistics included, while the recurrent back end's change. The run, begun with --init named from the
    model's folder, resumes from another with the same options, the model named by its whole path."""
    from training.model import FRONT_END

    run = tmp_path / "frozen"
    monkeypatch.chdir(tiny_run.model.parent)
    assert main(quick_run(small_cache, run, "--epochs", "1", "--steps", "2", "--init", tiny_run.model.name,
                          "--freeze-front-end")) == 0
    monkeypatch.chdir(tmp_path)
    assert main(quick_run(small_cache, run, "--epochs", "1", "--steps", "2", "--init", str(tiny_run.model),
                          "--freeze-front-end", "--resume")) == 0  # nothing left to train: accepted, not refused
    base, _ = load(tiny_run.model)
    trained, _ = load(run / "last.keras", compile=True)
    names = [layer.name for layer in base.layers]
    front = names[:names.index(FRONT_END) + 1]
    kept = [all(np.array_equal(a, b) for a, b in zip(base.get_layer(n).get_weights(),
                                                     trained.get_layer(n).get_weights())) for n in names]
    weighted = [bool(base.get_layer(n).weights) for n in names]
    assert any(w for n, w in zip(names, weighted) if n in front)
    assert all(k for n, k in zip(names, kept) if n in front), "a front-end layer changed"
    assert not all(k for n, k, w in zip(names, kept, weighted) if n not in front and w), "the back end did not learn"
