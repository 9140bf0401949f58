"""The live window: what it draws, and that it really opens on an X display (Xvfb)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.captions import CaptionState
from realtime.capture import Frame
from realtime.live import StepResult
from realtime.tracker import MouthTracker, TrackerOptions
from realtime.window import GREY, WHITE, render

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "grid" / "s1" / "video" / "bbaf2n.mp4"


def step_on_real_frame(committed: str, tentative: str) -> StepResult:
    capture = cv2.VideoCapture(str(CLIP))
    with MouthTracker(TrackerOptions()) as tracker:
        for i in range(10):
            ok, image = capture.read()
            track = tracker.process(image, i / 25)
    frame = Frame(image, 0.4, 9, 0.0)
    return StepResult(frame, track, CaptionState(0.4, committed, tentative), True, False, {}, 0.0)


def test_render_draws_captions_inset_and_contour() -> None:
    step = step_on_real_frame("bin blue", "at")
    image = render(step, "25 fps  20 ms  CPU")
    h, w = image.shape[:2]
    assert (h, w) == (2 * step.frame.image.shape[0], 2 * step.frame.image.shape[1])
    band = image[h - 84:]
    assert (band == WHITE).all(axis=-1).sum() > 200  # committed words in white
    assert (band == GREY).all(axis=-1).sum() > 50  # the tentative word in grey
    inset = cv2.resize(cv2.cvtColor(step.track.crop, cv2.COLOR_RGB2BGR), None, fx=2, fy=2,
                       interpolation=cv2.INTER_NEAREST)
    ih, iw = inset.shape[:2]
    assert np.array_equal(image[10:10 + ih, w - iw - 10:w - 10], inset)
    # The lip contour (green) is drawn around the mouth, inside the crop box.
    green = (image[..., 1] > 200) & (image[..., 0] < 120) & (image[..., 2] < 120)
    ys, xs = np.nonzero(green[:h - 84, :w - iw - 20])
    box = step.track.box * 2
    assert len(xs) > 50
    assert box[:, 0].min() - 2 <= xs.min() and xs.max() <= box[:, 0].max() + 2
    assert box[:, 1].min() - 2 <= ys.min() and ys.max() <= box[:, 1].max() + 2


def test_captions_roll_to_the_last_two_lines() -> None:
    long = " ".join(["place white with"] * 20)
    step = step_on_real_frame(long, "again")
    image = render(step, "")
    band = image[image.shape[0] - 84:]
    rows = np.nonzero((band == WHITE).all(axis=-1).any(axis=1))[0]
    assert rows.max() - rows.min() < 70  # two lines, not twenty
    assert (band == GREY).all(axis=-1).sum() > 50  # the tentative tail is on the last line


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is installed by ./lipstream; run the suite through it")
def test_window_opens_on_a_real_x_display(tmp_path: Path) -> None:
    display = ":%d" % (90 + os.getpid() % 100)
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1024x768x24"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        result = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--source", str(CLIP)],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    finally:
        xvfb.terminate()
        xvfb.wait()
    assert result.returncode == 0, result.stderr
    assert "first frame processed" in result.stderr
    assert result.stdout.strip(), "the window run prints the final transcript"
