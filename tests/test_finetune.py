"""Fine-tuning the bundled model to "a new face": real GRID clips given another look
(training.restyle), prepared, fine-tuned, exported, and read better than before."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.backend import streaming_paths
from training.finetune import main as finetune_main
from training.restyle import restyle_clips

REPO = Path(__file__).resolve().parents[1]
# Validation clips of the bundled model (never trained on); the first, third, fourth and seventh are
# the fine-tune's held-out clips (its own split by clip, 40 %).
CLIPS = ("bbaf5a", "bbbf8p", "bgwu6n", "bram2n", "bgbh7a", "bgwb6p", "bras6n", "bgwh8n", "bras8p")


def test_a_short_fine_tune_reads_a_new_look_better(grid_s1: Path, grid_subset, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture):
    assert restyle_clips(grid_subset(CLIPS), tmp_path / "me", "all", 0) == len(CLIPS)
    original = cv2.VideoCapture(str(grid_s1 / "video" / "bbaf5a.mp4")).read()[1]
    restyled = cv2.VideoCapture(str(tmp_path / "me" / "s1x" / "video" / "bbaf5a.mp4")).read()[1]
    assert original.shape == restyled.shape and np.abs(original.astype(int) - restyled).mean() > 20
    assert (tmp_path / "me" / "s1x" / "align" / "bbaf5a.align").read_text() == \
        (grid_s1 / "align" / "bbaf5a.align").read_text()

    run = tmp_path / "run"
    command = ["--base", str(REPO / "models" / "lipstream-lite.keras"), "--data", str(tmp_path / "me"),
               "--out", str(run), "--epochs", "2", "--steps", "6", "--batch-size", "4", "--val-fraction", "0.4"]

    def epochs_done() -> int:
        state = run / "state.json"
        return json.loads(state.read_text())["epoch"] if state.exists() else 0

    def ctrl_c_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 600
        while epochs_done() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the second epoch

    interrupter = threading.Thread(target=ctrl_c_after_the_first_epoch, daemon=True)
    interrupter.start()
    assert finetune_main(command) == 130
    interrupter.join()
    err = capsys.readouterr().err
    assert f"interrupted: {run} keeps every finished epoch; run the same command again to continue" in err
    assert "Traceback" not in err and epochs_done() == 1 and not (run / "finetune.json").exists()

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = finetune_main(command)  # the same command: the second epoch, then the rest
    assert code == 0, out.getvalue()
    assert epochs_done() == 2
    report = json.loads((run / "finetune.json").read_text())
    assert report["held_out"] == 4 and report["trained_on"] == 5
    assert report["after"]["cer"] < report["before"]["cer"], report
    for path in (run / "finetuned.onnx", *streaming_paths(run / "finetuned.onnx")):
        assert path.is_file()

    kept = (run / "finetune.json").read_text()
    again = finetune_main(["--base", str(REPO / "models" / "lipstream-lite.keras"), "--data", str(tmp_path / "me"),
                           "--out", str(run)])  # refused before its clips are prepared again
    err = capsys.readouterr().err
    assert again == 2 and f"{run} already holds a fine-tuned model" in err and "Traceback" not in err
    assert (run / "finetune.json").read_text() == kept
