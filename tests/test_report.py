from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from tests.conftest import PreparedRun
from training.report import MONTAGE_SCALE, main


def run_report(cache: Path, capsys: pytest.CaptureFixture, *extra: str) -> dict:
    assert main(["--cache", str(cache), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def found_at(image: np.ndarray, tile: np.ndarray) -> tuple[int, int] | None:
    """Top-left corner where `tile` appears pixel for pixel in `image`, if it does."""
    difference = cv2.matchTemplate(image.astype(np.float32), tile.astype(np.float32), cv2.TM_SQDIFF)
    _, _, where, _ = cv2.minMaxLoc(difference)
    x, y = where
    return where if np.array_equal(image[y:y + tile.shape[0], x:x + tile.shape[1]], tile) else None


def test_report_on_a_real_cache(prepared: PreparedRun, tmp_path: Path, capsys: pytest.CaptureFixture):
    png = tmp_path / "docs" / "crops.png"
    report = run_report(prepared.out, capsys, "--montage", str(png))
    with h5py.File(prepared.out, "r") as f:
        clips = {f"s1/{name}": g["mouth"][()] for name, g in f["clips/s1"].items()}
    assert report["clips"] == 3 and report["frames"] == sum(len(m) for m in clips.values())
    # Real GRID clips, tracked: the crop barely zooms or moves, and no detection was dropped.
    assert 0 < report["width_cv"] < 0.02
    assert 0 < report["jitter_median_px"] <= report["jitter_p95_px"] < 3
    assert report["held_fraction"] == 0
    # A speaker facing the camera, the mouth about half the crop's width and within it.
    assert 0.95 < report["frontal_median"] <= 1
    assert 0.35 < report["mouth_width_share"] < 0.7 and report["lips_outside_fraction"] < 0.05

    # The montage shows the cached crops themselves, first and last frame included, one clip a row.
    image = cv2.imread(str(png))
    rows = []
    for key in sorted(clips):
        for crop in (clips[key][0], clips[key][-1]):
            tile = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), None, fx=MONTAGE_SCALE, fy=MONTAGE_SCALE,
                              interpolation=cv2.INTER_NEAREST)
            where = found_at(image, tile)
            assert where is not None, key
        rows.append(where[1])
    assert rows == sorted(rows) and len(set(rows)) == 3


def test_report_figures_mean_what_they_say(prepared: PreparedRun, tmp_path: Path, capsys: pytest.CaptureFixture):
    """Poses rewritten to known motion: steady width, a centre moving 3-4-5 px a frame, two clips held;
    the third clip's lips in a crop box turned by 30 degrees, the mouth's corners 0.6 of its width apart,
    and the lower lip below the box in one frame. Then every clip held: no tracked frame to tell of."""
    cache = tmp_path / "known.h5"
    shutil.copy(prepared.out, cache)
    turn = np.radians(30)
    across, down = 80 * np.array([np.cos(turn), np.sin(turn)]), 40 * np.array([-np.sin(turn), np.cos(turn)])
    origin = np.array([200.0, 100.0])
    box = np.stack([origin, origin + across, origin + across + down, origin + down])
    with h5py.File(cache, "a") as f:
        clips = list(f["clips/s1"].values())
        for g in clips:
            pose = g["pose"][()]
            steps = np.arange(len(pose))
            pose[:, 0], pose[:, 1], pose[:, 2] = 100 + 3 * steps, 50 + 4 * steps, 80
            g["pose"][...] = pose
            g["held"][...] = g is not clips[1]
            g["quality"][...] = 0.9 if g is clips[1] else 0.0
            g["box"][...] = box
            lips = np.tile(origin + 0.5 * across + 0.5 * down, (len(pose), 40, 1))
            lips[:, 0] = origin + 0.2 * across + 0.5 * down  # landmark 61, the right corner
            lips[:, 10] = origin + 0.8 * across + 0.5 * down  # landmark 291, the left corner
            if g is clips[1]:
                lips[5, 5] = origin + 0.5 * across + 1.1 * down  # landmark 17, the lower lip's middle
            g["lips"][...] = lips if g is clips[1] else np.nan
        tracked = len(clips[1]["held"])
        frames = sum(len(g["held"]) for g in clips)
    report = run_report(cache, capsys)
    assert report["width_cv"] == 0
    assert report["jitter_median_px"] == pytest.approx(5) and report["jitter_p95_px"] == pytest.approx(5)
    assert report["held_fraction"] == pytest.approx(1 - tracked / frames)
    assert report["frontal_median"] == pytest.approx(0.9), "held frames, with no face of their own, do not count"
    assert report["mouth_width_share"] == pytest.approx(0.6)
    assert report["lips_outside_fraction"] == pytest.approx(1 / tracked)

    with h5py.File(cache, "a") as f:
        for g in f["clips/s1"].values():
            g["held"][...], g["lips"][...], g["quality"][...] = True, np.nan, 0.0
    report = run_report(cache, capsys)
    assert report["held_fraction"] == 1
    assert report["frontal_median"] is report["lips_outside_fraction"] is report["mouth_width_share"] is None
    assert main(["--cache", str(cache)]) == 0
    assert "none: every frame was held" in capsys.readouterr().out


def test_ctrl_c_mid_report_is_one_line(prepared: PreparedRun, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture):
    """A real Ctrl-C (SIGINT) while the cache is read, in its summary's second read of a dataset: exit 130
    and one line, not a traceback from inside h5py."""
    read, reads = h5py.Dataset.__getitem__, []

    def pressing_ctrl_c(self: h5py.Dataset, key: object) -> object:
        reads.append(self.name)
        if len(reads) == 2:
            signal.raise_signal(signal.SIGINT)
        return read(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", pressing_ctrl_c)
    assert main(["--cache", str(prepared.out)]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert len(reads) == 2  # no read after the one that was interrupted
