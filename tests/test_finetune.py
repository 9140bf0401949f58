"""Fine-tuning the bundled model to "a new face": real GRID clips given another look
(training.restyle), prepared, fine-tuned, exported, and read better than before."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import jiwer
import numpy as np
import pytest

from export.parity import FRAMES_NEEDED
from realtime.backend import streaming_paths
from realtime.grid import ALIGN_UNITS_PER_FRAME, read_align, sentence, video_fps
from training.cache import load_clips
from training.evaluate import main as evaluate_main
from training.finetune import claim, main as finetune_main, request_of
from training.restyle import restyle_clips
from training.video import Mp4Writer

REPO = Path(__file__).resolve().parents[1]
# Validation clips of the bundled model (never trained on); the first, third, fourth and seventh are
# the fine-tune's held-out clips (its own split by clip, 40 %).
CLIPS = ("bbaf5a", "bbbf8p", "bgwu6n", "bram2n", "bgbh7a", "bgwb6p", "bras6n", "bgwh8n", "bras8p")


def cut_after_the_last_word(folder: Path) -> None:
    """Each clip under `folder` (our GRID layout) without its closing silence, as realtime.record cuts a
    take to its speech: real frames, about 50 of a GRID clip's 75."""
    for align in folder.glob("*/align/*.align"):
        *spoken, silence = align.read_text().splitlines()
        assert silence.split()[2] == "sil"
        video = align.parent.parent / "video" / f"{align.stem}.mp4"
        capture = cv2.VideoCapture(str(video))
        images = [capture.read()[1] for _ in range(math.ceil(int(spoken[-1].split()[1]) / ALIGN_UNITS_PER_FRAME))]
        capture.release()
        with Mp4Writer(video, video_fps(video)) as writer:
            for image in images:
                writer.write(image)
        align.write_text("\n".join(spoken) + "\n")


def evaluated(model: Path, cache: Path, *split: str) -> dict:
    """`python -m training.evaluate --json` of `model` on the held-out clips of `cache`: its one JSON object."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = evaluate_main(["--model", str(model), "--data", str(cache), "--split", "val", *split, "--json"])
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


def test_a_short_fine_tune_reads_a_new_look_better(grid_s1: Path, grid_subset, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture):
    """A person's few short recordings (here nine, cut after their last word: fewer frames than the
    export's parity gate reads, which it then reads again) are fine-tuned on and exported."""
    assert restyle_clips(grid_subset(CLIPS), tmp_path / "me", "all", 0) == len(CLIPS)
    original = cv2.VideoCapture(str(grid_s1 / "video" / "bbaf5a.mp4")).read()[1]
    restyled = cv2.VideoCapture(str(tmp_path / "me" / "s1x" / "video" / "bbaf5a.mp4")).read()[1]
    assert original.shape == restyled.shape and np.abs(original.astype(int) - restyled).mean() > 20
    assert (tmp_path / "me" / "s1x" / "align" / "bbaf5a.align").read_text() == \
        (grid_s1 / "align" / "bbaf5a.align").read_text()
    cut_after_the_last_word(tmp_path / "me")

    run = tmp_path / "run"
    command = ["--data", str(tmp_path / "me"), "--out", str(run), "--epochs", "2", "--steps", "6",  # no --base: the
               "--batch-size", "4", "--val-fraction", "0.4"]                                    # bundled model

    def epochs_done() -> int:
        state = run / "state.json"
        return json.loads(state.read_text())["epoch"] if state.exists() else 0

    returned = threading.Event()

    def ctrl_c_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 600
        while epochs_done() < 1 and time.monotonic() < deadline and not returned.is_set():
            time.sleep(0.05)
        if not returned.is_set():  # not after a run that ended some other way: the signal would hit the next test
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the second epoch

    interrupter = threading.Thread(target=ctrl_c_after_the_first_epoch, daemon=True)
    interrupter.start()
    try:
        code = finetune_main(command)
    finally:
        returned.set()
        interrupter.join()
    assert code == 130
    err = capsys.readouterr().err
    assert f"interrupted: {run} keeps every finished epoch; run the same command again to continue" in err
    assert "Traceback" not in err and epochs_done() == 1 and not (run / "finetune.json").exists()
    # The resumed run holds out the clips its split.json records, as its training goes by them, whatever the split
    # by name would draw now (a run begun before a change to it): one clip it held out is moved to its training.
    record = json.loads((run / "split.json").read_text())
    moved, *record["validation"] = record["validation"]
    record["train"] = sorted([*record["train"], moved])
    (run / "split.json").write_text(json.dumps(record))

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = finetune_main(command)  # the same command: the second epoch, then the rest
    assert code == 0, out.getvalue()
    said = out.getvalue().splitlines()  # the export's, then its own result: training's is not the fine-tune's
    assert said[-1].startswith("held-out clips: 3; CER ") and not any(line.startswith("best: ") for line in said)
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")] == [
        "note: these figures rest on 3 held-out clips: record more, or raise --val-fraction, for figures to go by"]
    assert epochs_done() == 2
    report = json.loads((run / "finetune.json").read_text())
    assert report["held_out"] == 3 and report["trained_on"] == 6
    assert sum(len(c.mouth) for c in load_clips(run / "clips.h5")) < FRAMES_NEEDED
    for path in (run / "finetuned.onnx", *streaming_paths(run / "finetuned.onnx")):
        assert path.is_file()

    # The exported model, judged apart from the fine-tune's own figures: training.evaluate reads the
    # held-out clips (those of the split.json beside each model) with a copy of the bundled ONNX model and
    # with finetuned.onnx, and jiwer scores what they wrote.
    held_out = set(record["validation"])
    assert len(held_out) == 3 and held_out < {f"s1x/{name}" for name in CLIPS[0:1] + CLIPS[2:4] + CLIPS[6:7]}
    shutil.copy(REPO / "models" / "lipstream-lite.onnx", run / "base.onnx")
    base = evaluated(run / "base.onnx", run / "clips.h5")
    tuned = evaluated(run / "finetuned.onnx", run / "clips.h5")
    said = {f"s1x/{align.stem}": sentence(read_align(align)) for align in (tmp_path / "me").glob("s1x/align/*.align")}
    for result in (base, tuned):
        assert {c["name"] for c in result["clips"]} == held_out and result["n"] == len(held_out)
        assert all(c["ref"] == said[c["name"]] for c in result["clips"])
    base_cer = jiwer.cer([c["ref"] for c in base["clips"]], [c["hyp"] for c in base["clips"]])
    tuned_cer = jiwer.cer([c["ref"] for c in tuned["clips"]], [c["hyp"] for c in tuned["clips"]])
    assert tuned_cer < base_cer, (base, tuned)  # the new look is read better once fine-tuned on
    # What finetune.json reports is what its models read (the .keras ones it evaluated, exported here).
    for figures, result in ((report["before"], base), (report["after"], tuned)):
        refs, hyps = [c["ref"] for c in result["clips"]], [c["hyp"] for c in result["clips"]]
        assert figures == {"cer": pytest.approx(jiwer.cer(refs, hyps)), "wer": pytest.approx(jiwer.wer(refs, hyps))}

    kept = (run / "finetune.json").read_text()
    again = finetune_main(["--base", str(REPO / "models" / "lipstream-lite.keras"), "--data", str(tmp_path / "me"),
                           "--out", str(run)])  # refused before its clips are prepared again
    err = capsys.readouterr().err
    assert again == 2 and f"{run} already holds a fine-tuned model" in err and "Traceback" not in err
    assert (run / "finetune.json").read_text() == kept


def test_a_fine_tune_that_reads_worse_than_its_base_is_told() -> None:
    """Written all the same (the user judges it), but said, as figures resting on one clip are."""
    from training.evaluate import Evaluation
    from training.finetune import caveats

    good, worse = Evaluation(0.01, 0.05, (), (), ()), Evaluation(0.02, 0.10, (), (), ())
    assert caveats(good, worse, 20, "me.keras") == [
        "the fine-tuned model reads the held-out clips worse than me.keras did: keep reading with that model, or "
        "record more clips and fine-tune again"]
    assert caveats(worse, good, 20, "me.keras") == []
    assert caveats(worse, good, 1, "me.keras") == [
        "these figures rest on 1 held-out clip: record more, or raise --val-fraction, for figures to go by"]


def refusal(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one line a refused fine-tune prints (exit 2, no traceback)."""
    assert finetune_main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    return err


def test_a_run_folder_is_continued_only_by_the_command_that_made_it(grid_subset, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """Another base, other recordings or another folder's files are refused before anything is read:
    continuing them would train on, or report, what the user did not ask for."""
    base, mine, theirs = str(REPO / "models" / "lipstream-lite.keras"), grid_subset(CLIPS[:2]), tmp_path / "other"
    theirs.mkdir()
    run = tmp_path / "run"
    claim(run, request_of(argparse.Namespace(base=Path(base), data=mine, epochs=8, lr=1e-3, batch_size=8, steps=20,
                                             freeze_front_end=False, val_fraction=0.2)))
    monkeypatch.chdir(tmp_path)  # the bundled model named by its path, by its bare name or by no --base: one base
    for named in (["--base", base], ["--base", "lipstream-lite.keras"], []):
        said = refusal(capsys, *named, "--data", str(theirs), "--out", str(run))
        assert said == f"error: {run} holds a fine-tune of another command (--data differ): run that command to " \
                       "continue it, or choose another --out"
    assert "--epochs, --steps" in refusal(capsys, "--base", base, "--data", str(mine), "--out", str(run),
                                          "--epochs", "3", "--steps", "5")
    grid_subset(CLIPS[2:3])  # a clip recorded into the same folder since: it would join the training mid-run
    assert "(the clips in --data differ)" in refusal(
        capsys, "--base", base, "--data", str(mine), "--out", str(run))
    assert sorted(p.name for p in run.iterdir()) == ["request.json"]  # nothing prepared

    training_run = tmp_path / "tiny"
    training_run.mkdir()
    (training_run / "state.json").write_text('{"epoch": 1}')
    assert refusal(capsys, "--base", base, "--data", str(mine), "--out", str(training_run)) == \
        f"error: {training_run} already holds other files: choose a new or empty folder for --out"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no videos under" in refusal(capsys, "--base", base, "--data", str(empty),
                                        "--out", str(tmp_path / "new" / "runs" / "me"))
    assert not (tmp_path / "new").exists()  # a refused run leaves no folder behind, nor the folders made for it


def test_a_clip_re_aligned_mid_run_or_unwritable_is_refused(grid_subset, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """A clip whose align was corrected since the run began makes the same command another fine-tune
    (continuing it would train on the clip's cached, stale text). A clip whose text has a letter the model
    has no output for is named before anything is written, not met by training, which names no clip."""
    base, mine, run = REPO / "models" / "lipstream-lite.keras", grid_subset(CLIPS[:2]), tmp_path / "run"
    command = argparse.Namespace(base=base, data=mine, epochs=8, lr=1e-3, batch_size=8, steps=20,
                                 freeze_front_end=False, val_fraction=0.2)
    claim(run, request_of(command))
    align = mine / "s1" / "align" / f"{CLIPS[0]}.align"
    said = align.read_text()
    align.unlink()  # a file of its own: the link's target is the corpus'
    align.write_text(said.replace(" at\n", " by\n"))
    with pytest.raises(ValueError, match=r"\(the clips in --data differ\)"):
        claim(run, request_of(command))

    align.write_text(said.replace(" at\n", " \u00e0t\n"))
    fresh = tmp_path / "fresh"
    for out in (fresh, run):
        assert refusal(capsys, "--base", str(base), "--data", str(mine), "--out", str(out)) == \
            f"error: {base} cannot write the text of s1/{CLIPS[0]} (\u00e0) " \
            "(it writes ' abcdefghijklmnopqrstuvwxyz'): correct their align files, or move the clips out of --data"
    assert not fresh.exists() and sorted(p.name for p in run.iterdir()) == ["request.json"]


def test_clips_filmed_at_another_rate_are_refused_before_they_are_prepared(grid_subset, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """The bundled model reads 25 fps; clips a phone filmed at 30 are named before anything is made (training
    would refuse their cache only once it was prepared, and leave it in --out)."""
    grid = grid_subset(("bbaf2n", CLIPS[0]))  # one to train on, one held out
    video = grid / "s1" / "video" / f"{CLIPS[0]}.mp4"
    at30 = tmp_path / "at30.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-r", "30", str(at30)], check=True)
    video.unlink()
    at30.rename(video)
    base, out = REPO / "models" / "lipstream-lite.keras", tmp_path / "runs" / "me"
    assert refusal(capsys, "--base", str(base), "--data", str(grid), "--out", str(out)) == \
        f"error: {base} reads 25 fps, and s1/{CLIPS[0]} (30 fps) is filmed at another rate: record with python -m " \
        "realtime.record (25 fps), or re-encode them at the model's rate"
    assert not (tmp_path / "runs").exists()


def test_a_refused_run_leaves_an_empty_folder_empty(grid_subset, grid_s1: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """One clip (none to train on: the split goes by name) is refused before it is prepared, in one line.
    Two, of which the one to train on cannot be read, are refused once prepared; the run takes its
    request and its cache out of the empty folder it was given, so that another command can use it."""
    base, run = str(REPO / "models" / "lipstream-lite.keras"), tmp_path / "run"
    run.mkdir()
    grid = grid_subset(CLIPS[:1])  # held out by the split
    assert finetune_main(["--base", base, "--data", str(grid), "--out", str(run), "--workers", "1"]) == 2
    assert capsys.readouterr().err == "error: need clips to train on and to hold out; have 1 (record more)\n"
    assert list(run.iterdir()) == []
    (grid / "s1" / "video" / "bbaf2n.mp4").write_text("not a video\n")  # trained on by the split
    (grid / "s1" / "align" / "bbaf2n.align").symlink_to(grid_s1 / "align" / "bbaf2n.align")
    assert finetune_main(["--base", base, "--data", str(grid), "--out", str(run), "--workers", "1"]) == 2
    err = capsys.readouterr().err  # preparing's progress, the clip skipped, then the refusal
    assert "skipped s1/bbaf2n" in err and "Traceback" not in err
    assert err.splitlines()[-1] == "error: need clips to train on and to hold out; have 1 (record more)"
    assert list(run.iterdir()) == []


def test_a_damaged_request_is_named_in_one_line(grid_subset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base, run = str(REPO / "models" / "lipstream-lite.keras"), tmp_path / "run"
    run.mkdir()
    (run / "request.json").write_text('{"base": ')  # cut short by a full disk
    assert refusal(capsys, "--base", base, "--data", str(grid_subset(CLIPS[:2])), "--out", str(run)) == \
        f"error: {run / 'request.json'} is not a fine-tune's request (Expecting value: line 1 column 10 (char 9))"
    assert sorted(p.name for p in run.iterdir()) == ["request.json"]
    assert (run / "request.json").read_text() == '{"base": '


def test_the_takes_of_one_sentence_fall_on_one_side_of_the_split(grid_s1: Path) -> None:
    """realtime.record names a sentence's later takes bbaf2n_2, bbaf2n_3: a held-out take of a sentence trained on
    (with stand-ins, of its very frames) would test the model's memory, not its reading."""
    from training.split import is_validation

    keys = [f"s1/{p.stem}" for p in sorted((grid_s1 / "video").glob("*.mp4"))[:40]]
    for fraction in (0.06, 0.2, 0.5):
        for key in keys:
            assert len({is_validation(f"{key}{take}", fraction) for take in ("", "_2", "_3", "_12")}) == 1, key
    assert len({is_validation(key, 0.5) for key in keys}) == 2  # still a split between sentences
