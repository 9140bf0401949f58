"""Bad input to the tools' command lines: one line that says what is wrong, a non-zero exit, no
traceback, and nothing the user had lost or replaced."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import h5py
import pytest

from export.__main__ import main as export_main
from realtime.bench import main as bench_main
from realtime.files import output_problem, outputs_problem, write_text
from realtime.grid import read_align
from realtime.record import main as record_main
from realtime.spec import ModelSpecError
from realtime.vad_report import main as vad_main
from tests.conftest import ignores_sigint, link_clip, maps
from training.concat import main as concat_main
from training.evaluate import main as evaluate_main
from training.model import SPEC_ENTRY, read_spec
from training.prepare import main as prepare_main
from training.report import main as report_main
from training.recipe import main as recipe_main
from training.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(capsys: pytest.CaptureFixture, says: str) -> None:
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err
    assert [line for line in err.splitlines() if "error" in line] == [line for line in err.splitlines()
                                                                      if says in line], err


@pytest.fixture
def not_a_file(tmp_path: Path) -> Path:
    """A text file with the name of a cache, a model or a video."""
    path = tmp_path / "fake"
    path.write_text("not what it claims to be\n")
    return path


@pytest.mark.parametrize("argv, says", [
    (["training.concat", "--count", "-3"], "must be 0 or more, not -3"),
    (["training.concat", "--seconds", "-5"], "must be 0 or more, not -5"),
    (["realtime.bench", "--hop", "0"], "must be 1 or more, not 0"),
    (["realtime.bench", "--source", os.fsdecode(b"clip\xff.mp4")],  # OpenCV crashed on such a name
     "argument --source: the name b'clip\\xff.mp4' is not UTF-8: rename it"),
    (["realtime.record", "--out", os.fsdecode(b"rec\xfe")], "argument --out: the name b'rec\\xfe' is not UTF-8"),
    (["realtime.bench", "--policy", "right-context", "--right-context", "500"],
     "--right-context must be less than the window"),
    (["realtime.bench", "--hop", "151"], "--hop must not exceed half the window"),
    (["realtime.bench", "--plot", "latency.txt"], "--plot must name a .png file"),
    (["realtime.bench", "--decoder", "grammar", "--beam-width", "100000"], "must be from 1 to 512, not 100000"),
    (["realtime.record", "--count", "-3"], "must be from 1 to 1000, not -3"),
    (["realtime.record", "--count", "100000000000"], "must be from 1 to 1000, not 100000000000"),
    (["realtime.record", "--seed", "-1"], "must be 0 or more, not -1"),
    (["realtime.record", "--source", "bbaf2n.mp4", "--seed", "0"],
     "--seed has no effect with --source bbaf2n.mp4: a GRID clip standing in says its own sentence at every prompt"),
    (["realtime.record", "--speaker", "../elsewhere"], "must be a plain folder name, not '../elsewhere'"),
    (["realtime.record", "--speaker", ""], "must be a plain folder name, not ''"),
    (["realtime.record", "--speaker", os.fsdecode(b"me\xff")], "argument --speaker: the name b'me\\xff' is not UTF-8"),
    (["realtime.vad_report", "--count", "0"], "must be 1 or more, not 0"),
    (["training.train", "--batch-size", "0"], "must be from 1 to 256, not 0"),
    (["training.train", "--batch-size", "100000"], "must be from 1 to 256, not 100000"),
    (["training.train", "--epochs", "0"], "must be 1 or more, not 0"),
    (["training.train", "--sequence-scale", "0"], "must be above 0, not 0"),
    (["training.train", "--colour-swap", "1.5"], "must be from 0 to 1, not 1.5"),
    (["training.train", "--seed", "-1"], "must be from 0 to 4294967295, not -1"),
    (["training.train", "--augment", "lipnet", "--colour-swap", "0.3"], "which --augment lipnet leaves out"),
    (["training.train", "--augment", "lipnet", "--time-mask", "3"], "--time-mask is part of the webcam"),
    (["training.train", "--freeze-front-end"], "--freeze-front-end keeps the front end --init gives"),
    (["training.report", "--montage", "crops.txt"], "--montage must name a .png or .jpg file"),
    (["training.prepare", "--face-width", "0"], "must be above 0 and at most 4, not 0"),
    (["training.prepare", "--face-width", "9"], "must be above 0 and at most 4, not 9"),
    (["training.prepare", "--below-nose", "nan"], "must be a finite number, not nan"),
    (["training.prepare", "--below-nose", "1e9"], "must be from -1 to 2, not 1e9"),
    (["training.train", "--lr", "inf"], "must be a finite number, not inf"),
    (["training.train", "--seed", "4294967296"], "must be from 0 to 4294967295, not 4294967296"),
    (["training.prepare", "--crop-size", "14", "100"], "must be from 15 to 256, not 14"),
    (["training.prepare", "--crop-size", "5000", "5000"], "must be from 15 to 256, not 5000"),
    (["training.evaluate", "--val-fraction", "0.1"], "--val-fraction has no effect with --split all"),
    (["realtime.record", "--headles"], "unrecognized arguments: --headles"),  # not taken for --headless
    (["training.train", "--epoch", "5"], "unrecognized arguments: --epoch 5"),  # nor for --epochs
    (["training.train", "--logical-cpus", "4"], "--logical-cpus splits the CPU for --strategy mirrored alone"),
    (["training.train", "--sequence-scale", "0.5"], "--sequence-scale scales the loss --sequence-weight turns on"),
    (["training.recipe", "--freeze-front-end"], "python -m training.recipe: error: the recipe trains every layer"),
    (["training.recipe", "--seed", "-1"], "python -m training.recipe: error: argument --seed: must be from 0 to"),
])
def test_impossible_numbers_and_names_are_refused_before_anything_runs(argv: list[str], says: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture):
    tool, *options = argv
    required = {"training.concat": ["--grid", str(tmp_path), "--out", str(tmp_path / "v.mp4")],
                "realtime.bench": ["--source", str(tmp_path / "v.mp4")],
                "realtime.record": ["--out", str(tmp_path / "rec"), "--headless"],
                "realtime.vad_report": ["--grid", str(tmp_path)],
                "training.train": ["--cache", str(tmp_path / "c.h5"), "--out", str(tmp_path / "run")],
                "training.report": ["--cache", str(tmp_path / "c.h5")],
                "training.prepare": ["--grid", str(tmp_path), "--out", str(tmp_path / "c.h5")],
                "training.evaluate": ["--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "c.h5")],
                "training.recipe": ["--cache", str(tmp_path / "c.h5"), "--out", str(tmp_path / "run")]}[tool]
    main = {"training.concat": concat_main, "realtime.bench": bench_main, "realtime.record": record_main,
            "realtime.vad_report": vad_main, "training.train": train_main, "training.report": report_main,
            "training.prepare": prepare_main, "training.evaluate": evaluate_main, "training.recipe": recipe_main}[tool]
    with pytest.raises(SystemExit) as exit_:
        main([*required, *options])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err  # one line: no usage block, no traceback
    assert list(tmp_path.iterdir()) == []  # nothing was made


NAMED_FILES = {  # each tool's required options, then its options that name a file or folder
    "training.train": (["--cache", "c.h5", "--out", "run"], ["--cache", "--out", "--init"]),
    "training.evaluate": (["--model", "m.keras", "--data", "c.h5"], ["--model", "--data"]),
    "training.prepare": (["--grid", "grid", "--out", "c.h5"], ["--grid", "--out"]),
    "training.finetune": (["--base", "m.keras", "--data", "rec", "--out", "run"], ["--base", "--data", "--out"]),
    "training.benchmark": (["--cache", "c.h5"], ["--cache"]),
    "realtime.record": (["--out", "rec", "--headless"], ["--out", "--source", "--audio-file"]),
    "training.recipe": (["--cache", "c.h5", "--out", "run"], ["--cache", "--out"]),
    "training.concat": (["--grid", "grid", "--out", "s.mp4"], ["--grid", "--out"]),
    "training.restyle": (["--grid", "grid", "--out", "out"], ["--grid", "--out"]),
    "training.report": (["--cache", "c.h5"], ["--cache", "--montage"]),
    "realtime.vad_report": (["--grid", "grid"], ["--grid"]),
    "export.__main__": (["--model", "m.keras", "--out", "m.onnx"], ["--model", "--out", "--cache"]),
    "export.speed": (["--model", "m.keras"], ["--model", "--onnx", "--cache"]),
}


@pytest.mark.parametrize("tool, option", [(tool, option) for tool, (_, options) in NAMED_FILES.items()
                                          for option in options])
def test_an_empty_file_name_is_refused_not_taken_for_the_current_folder(tool: str, option: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture):
    """As a path, '' is the current folder: a run, a cache or clips would be read from or written there."""
    monkeypatch.chdir(tmp_path)
    required, _ = NAMED_FILES[tool]
    argv = [*required, option, ""]  # the last of an option given twice is the one argparse keeps
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(tool).main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option}: an empty name names no file" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_cache_is_refused_and_no_run_folder_is_begun(not_a_file: Path, tmp_path: Path,
                                                                          grid_subset, capsys: pytest.CaptureFixture):
    run = tmp_path / "run"
    assert train_main(["--cache", str(not_a_file), "--out", str(run)]) == 2
    one_line_error(capsys, "is not a lipstream cache")
    assert not run.exists()
    for main, argv in ((report_main, ["--cache", str(not_a_file)]),
                       (prepare_main, ["--grid", str(grid_subset(("bbaf2n",))), "--out", str(not_a_file)])):
        assert main(argv) == 2
        one_line_error(capsys, "is not a lipstream cache")
    assert not_a_file.read_text() == "not what it claims to be\n"  # not taken over as a cache either
    foreign = tmp_path / "foreign.h5"  # an HDF5 file of another program
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=[1])
    assert report_main(["--cache", str(foreign)]) == 2
    one_line_error(capsys, f"{foreign} is not a lipstream cache (no crop settings)")


def test_a_missing_or_foreign_start_model_is_told_before_a_run_folder_is_begun(small_cache: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture):
    monkeypatch.chdir(tmp_path)  # a bare name finds the bundled model from any folder
    run = tmp_path / "run"
    bundled = Path(__file__).resolve().parents[1] / "models" / "lipstream-lite.keras"
    lower = tmp_path / "lower.keras"  # the bundled model, as if trained on crops cut lower on the face
    with zipfile.ZipFile(bundled) as source, zipfile.ZipFile(lower, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == SPEC_ENTRY:
                spec = json.loads(data)
                spec["lipstream.crop"] = json.dumps({**json.loads(spec["lipstream.crop"]), "below_nose": 0.45})
                data = json.dumps(spec).encode()
            copy.writestr(item, data)
    for init, config, says in ((tmp_path / "missing.keras", "tiny", "no model at"),
                               (tmp_path, "tiny", f"{tmp_path} is a folder: name the .keras model in it"),
                               (bundled, "tiny", "is a 'lite' model; pass --config lite"),
                               ("lipstream-lite.keras", "tiny", "is a 'lite' model; pass --config lite"),
                               (lower, "lite", "was cut with another crop than")):
        assert train_main(["--cache", str(small_cache), "--out", str(run), "--config", config,
                           "--init", str(init)]) == 2
        one_line_error(capsys, says)
        assert not run.exists()
    assert evaluate_main(["--model", str(tmp_path), "--data", str(small_cache)]) == 2
    one_line_error(capsys, f"{tmp_path} is a folder: name the .keras or .onnx model in it")
    with pytest.raises(SystemExit) as exit_:  # an option the cache leaves without effect, as in the table above
        evaluate_main(["--model", "lipstream-lite.onnx", "--data", str(small_cache), "--workers", "2"])
    assert exit_.value.code == 2
    one_line_error(capsys, f"--workers has no effect with a cache: {small_cache}'s crops are cut already")


# Run with the training packages unimportable, as an install of the runtime alone (`pip install lipstream`)
# leaves them: this environment has them, and the test cannot uninstall them for one process.
WITHOUT_TRAINING_PACKAGES = """
import runpy, sys
from realtime.files import TRAINING_PACKAGES
for name in TRAINING_PACKAGES:
    sys.modules[name] = None  # import raises ModuleNotFoundError naming it, as for a package not installed
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("command", [
    ("training.train", "--cache", "{cache}", "--out", "{tmp}/run"),
    ("training.evaluate", "--model", "lipstream-lite.keras", "--data", "{cache}"),
    ("training.benchmark", "--cache", "{cache}", "--configs", "tiny"),
    ("export", "--model", "lipstream-lite.keras", "--out", "{tmp}/x.onnx", "--cache", "{cache}"),
])
def test_a_training_command_without_the_training_packages_says_how_to_install_them(
        command: tuple[str, ...], small_cache: Path, tmp_path: Path) -> None:
    argv = [arg.format(cache=small_cache, tmp=tmp_path) for arg in command]
    run = subprocess.run([sys.executable, "-c", WITHOUT_TRAINING_PACKAGES, *argv], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: this command needs the training packages (keras is missing): install lipstream with its [train] "
        "extra (pip install '.[train]' in the checkout)"], \
        run.stderr
    assert list(tmp_path.iterdir()) == []  # nothing begun


def test_export_finds_the_bundled_model_by_its_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture):
    """A model named bare is the bundled one, as in every command that reads a model: here the missing cache
    is what stops the export, not the model."""
    monkeypatch.chdir(tmp_path)
    assert export_main(["--model", "lipstream-lite.keras", "--out", "x.onnx", "--cache", "missing.h5"]) == 2
    one_line_error(capsys, "no cache at missing.h5: make one with python -m training.prepare, or name one with --cache")
    assert export_main(["--model", "elsewhere.keras", "--out", "x.onnx", "--cache", "missing.h5"]) == 2
    one_line_error(capsys, "no model at elsewhere.keras")


@pytest.mark.parametrize("crop", ['{"height": 0}', '{"width": 96.5}', '{"channels": true}', '{"below_nose": NaN}',
                                  '{"face_width": -1}', '{"height": 50, "grey_gamma": 1}', "[]", "not json"])
def test_a_cache_and_a_model_refuse_the_same_crop_settings_in_the_same_words(crop: str, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture):
    """One reader for the crop settings of both, so that neither takes what the other refuses."""
    cache = tmp_path / "cache.h5"
    with h5py.File(cache, "w") as f:
        f.attrs["crop"] = crop
    model = tmp_path / "model.keras"  # the bundled model's spec with these crop settings (all read_spec reads)
    with zipfile.ZipFile(ROOT / "models" / "lipstream-lite.keras") as bundled, zipfile.ZipFile(model, "w") as z:
        z.writestr(SPEC_ENTRY, json.dumps({**json.loads(bundled.read(SPEC_ENTRY)), "lipstream.crop": crop}))
    with pytest.raises(ModelSpecError) as refused:
        read_spec(model)
    assert train_main(["--cache", str(cache), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cache}: crop settings ") and err.count("\n") == 1, err
    reason = err.removeprefix(f"error: {cache}: ").rstrip("\n")
    assert str(refused.value) == f"{model}: malformed lipstream metadata ({reason})"


@pytest.mark.parametrize("part", ["mouth", "text", "fps"])
def test_a_cached_clip_without_a_part_it_needs_is_one_line_naming_it(part: str, small_cache: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture):
    """A damaged or hand-made cache: training and evaluation name the clip and the part, not h5py's KeyError."""
    damaged = tmp_path / "damaged.h5"
    shutil.copy(small_cache, damaged)
    with h5py.File(damaged, "a") as f:
        clip = f["clips/s1/bbaf2n"]
        del (clip if part == "mouth" else clip.attrs)[part]
    says = (f"{damaged} is not a whole lipstream cache: clip s1/bbaf2n has no {part} (make it again with python -m "
            "training.prepare)")
    assert train_main(["--cache", str(damaged), "--out", str(tmp_path / "run"), "--config", "tiny"]) == 2
    one_line_error(capsys, says)
    assert not (tmp_path / "run").exists()
    assert evaluate_main(["--model", str(ROOT / "models" / "lipstream-lite.onnx"), "--data", str(damaged),
                          "--split", "all"]) == 2
    one_line_error(capsys, says)


def test_a_run_folder_under_a_file_is_one_line(small_cache: Path, not_a_file: Path, capsys: pytest.CaptureFixture):
    assert train_main(["--cache", str(small_cache), "--out", str(not_a_file / "run")]) == 2
    one_line_error(capsys, f"{not_a_file} is not a folder")


def test_a_validation_split_of_every_clip_is_refused(small_cache: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as refused:  # one line, before anything is loaded
        train_main(["--cache", str(small_cache), "--out", str(tmp_path / "run"), "--val-fraction", "1"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --val-fraction: must be from 0 up to but not 1, not 1" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_file_that_is_not_a_keras_model_is_named(not_a_file: Path, tmp_path: Path):
    with pytest.raises(ModelSpecError, match="is not a .keras model"):
        read_spec(not_a_file)
    with pytest.raises(FileNotFoundError, match="no model at"):
        read_spec(tmp_path / "missing.keras")


def test_a_grid_of_unusable_clips_makes_no_cache_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture):
    speaker = tmp_path / "grid" / "s1"
    (speaker / "video").mkdir(parents=True)
    (speaker / "align").mkdir()
    (speaker / "video" / "x.mp4").write_text("not a video\n")
    (speaker / "align" / "x.align").write_text("0 20000 sil\n20000 30000 bin\n30000 74500 sil\n")
    assert prepare_main(["--grid", str(tmp_path / "grid"), "--out", str(tmp_path / "c.h5"), "--workers", "1"]) == 2
    one_line_error(capsys, "no usable clip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid"]  # no cache, no partial one


def test_an_unreadable_clip_is_left_out_of_a_joined_video_and_its_align_file(grid_subset, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture):
    grid = grid_subset(("bbaf2n",))
    (grid / "s1" / "video" / "aaaa0a.mp4").write_text("not a video\n")  # sorts first
    (grid / "s1" / "align" / "aaaa0a.align").write_text("0 20000 sil\n20000 30000 bin\n30000 74500 sil\n")
    out = tmp_path / "joined.mp4"
    assert concat_main(["--grid", str(grid), "--out", str(out), "--split", "all"]) == 0
    assert "skipped s1/aaaa0a: unreadable video" in capsys.readouterr().err
    assert read_align(out.with_suffix(".align")) == read_align(grid / "s1" / "align" / "bbaf2n.align")
    (grid / "s1" / "video" / "bbaf2n.mp4").unlink()
    (grid / "s1" / "video" / "bbaf2n.mp4").write_text("not a video either\n")
    assert concat_main(["--grid", str(grid), "--out", str(tmp_path / "none.mp4"), "--split", "all"]) == 2
    one_line_error(capsys, "none of the 2 clips")


def test_vad_report_skips_a_clip_it_cannot_hear(grid_subset, grid_s1: Path, capsys: pytest.CaptureFixture):
    """A file that is no video, and a real clip cut off after 5000 bytes (whose sound reads as none): each
    is skipped, said in a line, not counted as speech the detector missed."""
    grid = grid_subset(("bbaf2n",))
    (grid / "s1" / "video" / "bbaf3s.mp4").write_text("not a video\n")
    (grid / "s1" / "align" / "bbaf3s.align").write_text("0 20000 sil\n20000 30000 bin\n30000 74500 sil\n")
    (grid / "s1" / "video" / "bbaf4p.mp4").write_bytes((grid_s1 / "video" / "bbaf4p.mp4").read_bytes()[:5000])
    (grid / "s1" / "align" / "bbaf4p.align").symlink_to(grid_s1 / "align" / "bbaf4p.align")
    assert vad_main(["--grid", str(grid / "s1"), "--count", "3"]) == 0
    captured = capsys.readouterr()
    assert "skipped s1/bbaf3s" in captured.err and "1 clip, speech found in 1" in captured.out
    assert "skipped s1/bbaf4p: its sound ends at 0.00 s, before its last word" in captured.err, captured.err


def test_vad_report_leaves_a_clip_without_speech_out_of_its_figures(grid_subset, grid_s1: Path,
                                                                  capsys: pytest.CaptureFixture):
    """A clip whose sound is silence is counted as missed, and its figures are those of the clips heard:
    an infinite error in them would make the median and 95th percentile infinite."""
    grid = grid_subset(("bbaf2n",))
    assert vad_main(["--grid", str(grid / "s1")]) == 0
    heard = capsys.readouterr().out.splitlines()
    silent = grid / "s1" / "video" / "bbaf3s.mp4"

    def silence() -> None:  # the clip's pictures and align, its sound replaced by silence
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(grid_s1 / "video" / "bbaf3s.mp4"),
                        "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                        "-shortest", str(silent)], check=True)

    silence()
    (grid / "s1" / "align" / "bbaf3s.align").symlink_to(grid_s1 / "align" / "bbaf3s.align")
    assert vad_main(["--grid", str(grid / "s1")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert heard[0] == "1 clip, speech found in 1" and lines == ["2 clips, speech found in 1", *heard[1:]]
    (grid / "s1" / "video" / "bbaf2n.mp4").unlink()  # the silent clip alone
    assert vad_main(["--grid", str(grid / "s1")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "1 clip, speech found in 0\n"
    assert captured.err == "error: speech was found in no clip: no boundary to compare\n"


def test_record_refuses_a_window_without_a_display_and_a_folder_under_a_file(
        not_a_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert record_main(["--out", str(tmp_path / "rec")]) == 2
    one_line_error(capsys, "no display")
    assert record_main(["--out", str(not_a_file / "rec"), "--headless"]) == 2
    one_line_error(capsys, f"{not_a_file} is not a folder")


def test_record_tells_a_missing_camera_or_sound_file_before_making_folders_or_prompting(
        grid_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    video = str(grid_s1 / "video" / "bbaf2n.mp4")
    for source, audio, says in ((str(tmp_path / "missing.mp4"), video, "no video file at"),
                                (video, str(tmp_path / "missing.wav"),
                                 f"cannot read {tmp_path / 'missing.wav'}: no such file or directory\n")):
        assert record_main(["--out", str(tmp_path / "rec"), "--headless", "--source", source,
                            "--audio-file", audio]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and says in captured.err and captured.err.count("\n") == 1  # no prompt
        assert not (tmp_path / "rec").exists()


def test_an_output_through_a_link_or_into_a_pipe_replaces_neither(tmp_path: Path):
    real, link = tmp_path / "real.srt", tmp_path / "link.srt"
    real.write_text("old\n")
    link.symlink_to(real)
    write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"  # written through the link, not over it
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    heard: list[str] = []
    reader = threading.Thread(target=lambda: heard.append(pipe.read_text()), daemon=True)
    reader.start()
    assert output_problem(pipe) is None
    write_text(pipe, "cue\n")
    reader.join(timeout=10)
    assert heard == ["cue\n"] and pipe.is_fifo()  # written into, still a pipe


def test_a_pipe_no_process_reads_is_given_up_on_not_waited_for_for_ever(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """A named pipe that no process opens for reading: the write gives up after PIPE_WAIT (here half a
    second), saying why, where a blocking open would hold the run's end for ever; then a reader comes
    and is written to."""
    import realtime.files

    monkeypatch.setattr(realtime.files, "PIPE_WAIT", 0.5)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(OSError) as error:
        write_text(pipe, "cue\n")
    assert error.value.strerror == "no process read from the pipe in 0.5 s"
    heard: list[str] = []
    reader = threading.Thread(target=lambda: heard.append(pipe.read_text()), daemon=True)
    reader.start()
    write_text(pipe, "cue\n")
    reader.join(timeout=10)
    assert heard == ["cue\n"]


def test_a_pipe_no_process_reads_is_given_up_on_once_a_stop_is_asked_for(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C at a run's end, as its subtitles wait for a named pipe's reader: the wait ends then (the stop
    is the reason given), not after PIPE_WAIT (here an hour), during which the stop did nothing."""
    import realtime.files

    monkeypatch.setattr(realtime.files, "PIPE_WAIT", 3600.0)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    stop = threading.Event()
    failed: list[OSError] = []

    def write() -> None:
        try:
            write_text(pipe, "cue\n", stopped=stop.is_set)
        except OSError as e:
            failed.append(e)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=0.5)
    assert writer.is_alive()  # waiting for a reader
    stop.set()
    writer.join(timeout=30)
    assert not writer.is_alive() and len(failed) == 1
    assert isinstance(failed[0], realtime.files.ReaderStalled) and failed[0].strerror == "no process read from the pipe"


def test_a_stopping_run_waits_for_a_slow_pipe_reader_and_gives_up_on_one_that_takes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Once a stop is asked for, subtitles written into a pipe (`--srt - | ssh …`) still reach a reader that
    takes them slowly, 8 KiB every 0.15 s, whole, where giving up at the first full pipe cut them short; a
    reader that takes nothing is given up on after STALL_GRACE (here 0.5 s)."""
    import realtime.files

    monkeypatch.setattr(realtime.files, "STALL_GRACE", 0.5)
    text = "".join(f"{n}\n00:00:{n % 60:02d},000 --> 00:00:{n % 60:02d},500\nbin blue at f two now\n\n"
                   for n in range(1600))  # 100 kB: more than a pipe holds
    read_end, write_end = os.pipe()
    heard = bytearray()

    def read_slowly() -> None:
        while chunk := os.read(read_end, 8192):
            heard.extend(chunk)
            time.sleep(0.15)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    with open(write_end, "w") as pipe:
        realtime.files.write_stream(pipe, text, stopped=lambda: True)
    reader.join(timeout=60)
    assert heard.decode() == text
    read_end, write_end = os.pipe()  # a reader that takes nothing
    with open(write_end, "w") as pipe, pytest.raises(realtime.files.ReaderStalled):
        realtime.files.write_stream(pipe, text, stopped=lambda: True)
    os.close(read_end)


def test_two_outputs_may_share_a_device_but_not_a_file(tmp_path: Path):
    """A device is written in place, so `--srt /dev/null --vtt /dev/null` loses nothing; one file named
    twice, or through a link, would be replaced by the second output."""
    assert outputs_problem(["/dev/null", "/dev/null", tmp_path / "a.srt"]) is None
    file, link = tmp_path / "a.srt", tmp_path / "link.srt"
    file.write_text("old\n")
    link.symlink_to(file)
    assert outputs_problem([file, link]) == f"{link} is another output: choose another file"
    assert outputs_problem([tmp_path / "new.srt", tmp_path / "new.srt"]) == \
        f"{tmp_path / 'new.srt'} is another output: choose another file"
    # A pipe's reader ends with the first output's close: the second would wait for another for ever.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert outputs_problem([pipe, tmp_path / "a.vtt"]) is None
    assert outputs_problem([pipe, pipe]) == f"{pipe} is another output: choose another file"
    assert outputs_problem([tmp_path / "b.srt", "/dev/null", tmp_path / "b.srt"]) == \
        f"{tmp_path / 'b.srt'} is another output: choose another file"


def test_a_folder_no_one_can_write_in_is_found_out_even_by_root():
    """os.access says yes to root everywhere; /proc takes no new files from anyone."""
    problem = output_problem(Path("/proc/lipstream-captions.srt"))
    assert problem and problem.startswith("cannot write /proc/lipstream-captions.srt: no file can be made in /proc")


def test_a_name_too_long_to_write_through_its_tmp_is_refused_before_the_run(tmp_path: Path):
    """Subtitles are written to NAME.tmp, then moved: a name of 252 to 255 bytes is one the file system
    takes, but its .tmp is not, and the run would read to its end before failing to write it."""
    longest = tmp_path / "new" / ("a" * 247 + ".srt")  # 251 bytes, and 255 with .tmp
    assert output_problem(longest) is None
    write_text(longest, "1\n")
    assert longest.read_text() == "1\n"
    longer = tmp_path / "new" / ("a" * 248 + ".srt")
    assert output_problem(longer) == f"cannot write {longer}: its name is too long (it is written through NAME.tmp, " \
                                     "and this file system takes names of up to 255 bytes)"
    assert not longer.exists()


@pytest.mark.parametrize("into", ["file", "pipe"])
def test_dev_stdout_as_an_output_joins_what_stdout_already_holds(into: str, tmp_path: Path):
    """`--srt /dev/stdout`, stdout redirected to a file or piped: the text lands after what was printed
    before it and before what is printed after it, and nothing is replaced."""
    script = ("from pathlib import Path; from realtime.files import output_problem, write_text; "
              "print('before', flush=True); assert output_problem(Path('/dev/stdout')) is None; "
              "write_text(Path('/dev/stdout'), 'cue\\n'); print('after')")
    command = [sys.executable, "-c", script]
    if into == "file":
        out = tmp_path / "out.txt"
        with open(out, "w") as f:
            subprocess.run(command, stdout=f, check=True, cwd=ROOT, timeout=60)
        text = out.read_text()
    else:
        text = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT, timeout=60).stdout
    assert text == "before\ncue\nafter\n"


def test_two_sessions_with_one_clip_name_are_refused_not_merged(grid_s1: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture):
    """Two recording sessions of speaker `me` under one folder, each with the clip bbaf2n: a cache keeps
    one clip a speaker and name, so preparing both would silently keep only one."""
    for session in ("day1", "day2"):
        link_clip(grid_s1, "bbaf2n", tmp_path / "sessions" / session / "me")
    cache = tmp_path / "me.h5"
    assert prepare_main(["--grid", str(tmp_path / "sessions"), "--out", str(cache)]) == 2
    one_line_error(capsys, "are both clip me/bbaf2n: record each session under its own --speaker")
    assert not cache.exists() and not cache.with_name("me.h5.partial").exists()


def test_evaluate_says_why_every_clip_was_skipped(grid_s1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capfd: pytest.CaptureFixture) -> None:
    """A folder whose only video has no align file and no GRID name: the reason, then the error. Its one clip
    is prepared by one worker process, whatever --workers allows (each would import MediaPipe, for nothing)."""
    import training.prepare

    pool, started = training.prepare.worker_pool, []

    @contextlib.contextmanager
    def counted_pool(workers: int, tasks: int):
        with pool(workers, tasks) as opened:
            started.append(opened._processes)  # the worker processes it runs
            yield opened

    monkeypatch.setattr(training.prepare, "worker_pool", counted_pool)
    (tmp_path / "me" / "s1" / "video").mkdir(parents=True)
    (tmp_path / "me" / "s1" / "video" / "hello.mp4").symlink_to(grid_s1 / "video" / "bbaf2n.mp4")
    assert evaluate_main(["--model", str(ROOT / "models" / "lipstream-lite.onnx"), "--data", str(tmp_path / "me"),
                          "--workers", "4"]) == 2
    err = capfd.readouterr().err
    assert err.splitlines() == ["skipped s1/hello: no align file, and the name is not a GRID sentence code",
                                "error: no clips to evaluate"], err
    assert started == [1]


def test_evaluate_says_when_no_clip_is_in_the_split(prepared, capsys: pytest.CaptureFixture) -> None:
    """A cache of clips the bundled model trained on, read with --split val: said as that, with the way on."""
    assert evaluate_main(["--model", "lipstream-lite.onnx", "--data", str(prepared.out), "--split", "val"]) == 2
    one_line_error(capsys, f"no clip of {prepared.out} is in --split val (the 53 clips the model records as held "
                           "out, such as s1/bbaf5a; a clip's key is its speaker folder's name and its own): "
                           "--split all takes every clip")


@pytest.mark.parametrize("stage", ["workers_starting", "workers_preparing"])
def test_ctrl_c_while_clips_are_prepared_is_one_line(grid_s1: Path, stage: str) -> None:
    """Ctrl-C in a terminal reaches the whole process group, the workers too, whether they are still
    starting (importing what they need: seconds) or preparing clips (MediaPipe loaded): only the
    parent speaks. (The parent ignores SIGINT for the moment it takes to start them: a Ctrl-C then is
    lost, so the test waits for the parent to take it again.)"""
    process = subprocess.Popen([sys.executable, "-m", "training.evaluate", "--model",
                                str(ROOT / "models" / "lipstream-lite.onnx"), "--data", str(grid_s1.parent),
                                "--workers", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)

    def ready() -> bool:
        found = workers(process.pid)
        if len(found) < 2 or ignores_sigint(process.pid):
            return False
        return stage == "workers_starting" or all(maps(int(pid), "_framework_bindings") for pid in found)

    try:
        deadline = time.monotonic() + 120
        while not ready():  # 900 clips take minutes: the run is still going
            assert time.monotonic() < deadline and process.poll() is None, f"{stage} never seen"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130 and err.strip() == "interrupted", err


def workers(pid: int) -> list[str]:
    """The pool workers a process has started (not multiprocessing's resource tracker)."""
    found = subprocess.run(["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True)
    return found.stdout.split()


def test_a_cut_off_clip_is_skipped_as_cut_off(grid_s1: Path, tmp_path: Path) -> None:
    """A download cut off at a quarter: its words run past its last frame, but the reason is the
    video, not the face."""
    from realtime.tracker import TrackerOptions
    from realtime.grid import Clip
    from training.prepare import try_prepare

    video = tmp_path / "bbaf2n.mp4"
    data = (grid_s1 / "video" / "bbaf2n.mp4").read_bytes()
    video.write_bytes(data[:len(data) // 4])
    clip = Clip("s1", "bbaf2n", video, grid_s1 / "align" / "bbaf2n.align")
    _, prepared, why = try_prepare((clip, TrackerOptions(), True))
    assert prepared is None and re.fullmatch(r"video ended early: \d\d? of 75 frames", why), why


def test_help_gives_each_option_s_default(capsys: pytest.CaptureFixture) -> None:
    """A user reads the defaults in --help, not in the code: the recipe's flags differ from them."""
    with pytest.raises(SystemExit) as stop:
        train_main(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS epochs in all (default: 60; with --resume, the run's own unless given)" in text
    assert "early stopping on validation CER (default: 12; with --resume, the run's own unless given)" in text
    assert "(default: 0.0)" in text  # a zero is a default to tell, not an absent one
    assert "continue from the run folder's last state (default" not in text  # a flag off by default
    assert "(default: the config's)" in text and "(default: the config's) (default" not in text


def test_a_stop_held_through_a_block_goes_to_the_handler_the_block_found():
    """held_interrupts holds Ctrl-C until its block is done, then hands it on: to a handler that raises
    (Python's own) as KeyboardInterrupt, and to one that only notes it (run_live's while it starts up)
    as a note, not as an exception out of the start-up."""
    from realtime.interrupts import held_interrupts

    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _: noted.append(number))
    try:
        with held_interrupts():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            assert noted == []  # held while the block runs
        assert noted == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt):
            with held_interrupts():
                signal.raise_signal(signal.SIGINT)
                finished = True
        assert finished
        # A block that fails after the Ctrl-C hands it on as well: the error it raised is its context.
        with pytest.raises(KeyboardInterrupt) as stopped:
            with held_interrupts():
                signal.raise_signal(signal.SIGINT)
                raise OSError("disk full")
        assert isinstance(stopped.value.__context__, OSError)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_command_whose_stdout_fails_goes_on_and_says_so_only_when_output_is_lost(grid_subset):
    """A full disk behind stdout loses what the command prints: one line at the end, exit 2. A reader
    that leaves (`| head`) chose to: the command goes on, and says nothing. Every command but the live
    captioner's ends in the same realtime.files.run_command; the voice detector's report is a quick one."""
    command = [sys.executable, "-m", "realtime.vad_report", "--grid", str(grid_subset(("bbaf2n",))), "--count", "1"]
    for extra in ([], ["--help"]):  # --help too: argparse ends it with SystemExit
        with open("/dev/full", "w") as full:
            result = subprocess.run([*command, *extra], stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                    timeout=120)
        assert result.returncode == 2
        assert result.stderr == "error: could not write to stdout (No space left on device): what the command " \
                                "printed from then on is lost\n"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    process.stdout.close()  # the reader is gone before the first line
    assert process.wait(timeout=120) == 0 and process.stderr.read() == ""
    process.stderr.close()


def test_an_export_whose_reader_leaves_still_writes_its_model(tiny_run, small_cache: Path, tmp_path: Path):
    """`python -m export … | head -1`: the export's files are the point, its table of figures is not."""
    out = tmp_path / "model.onnx"
    process = subprocess.Popen([sys.executable, "-m", "export", "--model", str(tiny_run.model), "--out", str(out),
                                "--cache", str(small_cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    process.stdout.readline()  # the table's header, then the reader leaves
    process.stdout.close()
    assert process.wait(timeout=300) == 0
    err = process.stderr.read()
    process.stderr.close()
    assert "Traceback" not in err and err == "", err
    assert out.is_file() and out.with_suffix(".step.onnx").is_file() and out.with_suffix(".back.onnx").is_file()


def test_evaluate_leaves_out_a_clip_filmed_at_another_rate_than_the_model_reads(grid_subset, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture):
    """The live loop resamples a camera to the model's rate; a folder's clip at another rate would be read
    as motion the model never saw, so it is left out, saying why."""
    from tests.test_capture import ffmpeg

    grid = grid_subset(("bbaf2n",))
    speaker = grid / "s1"
    ffmpeg("-i", str(speaker / "video" / "bbaf2n.mp4"), "-r", "30", str(speaker / "video" / "bbaf3s.mp4"))
    (speaker / "align" / "bbaf3s.align").symlink_to((speaker / "align" / "bbaf2n.align").resolve())
    assert evaluate_main(["--model", str(ROOT / "models" / "lipstream-lite.onnx"), "--data", str(grid),
                          "--workers", "1", "--json"]) == 0
    said = capsys.readouterr()
    assert [c["name"] for c in json.loads(said.out)["clips"]] == ["s1/bbaf2n"]
    assert "skipped s1/bbaf3s: filmed at 30 fps, and the model reads 25\n" in said.err
