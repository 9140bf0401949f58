from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import av
import cv2
import h5py
import numpy as np
import pytest

from realtime.crop import CropPose, CropSpec, crop_mouth
from realtime.grid import read_align, sentence_from_code
from tests.conftest import PREPARED_CLIPS, PreparedRun, link_clip
from training.prepare import main as prepare_main
from training.prepare import prepare
from training.speech import DIMS

ROOT = Path(__file__).resolve().parents[1]


def run_prepare(grid: Path, out: Path) -> tuple[list, str]:
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        skipped = prepare(grid, out, workers=1)
    return skipped, log.getvalue()


def test_run_finishes_and_reports_the_bad_clip(prepared: PreparedRun):
    assert prepared.exit_code == 0
    assert "4 clips, 0 already cached, 4 to prepare" in prepared.log
    assert "skipped s1/x: unreadable video" in prepared.log
    assert prepared.out.is_file()
    assert not prepared.out.with_name(prepared.out.name + ".partial").exists()


def test_cache_layout(prepared: PreparedRun, grid_s1: Path):
    with h5py.File(prepared.out, "r") as f:
        assert json.loads(f.attrs["crop"]) == asdict(CropSpec())
        assert list(f["clips"]) == ["s1"]
        assert sorted(f["clips/s1"]) == sorted(PREPARED_CLIPS)  # the unreadable x is not there
        for name in PREPARED_CLIPS:
            g = f[f"clips/s1/{name}"]
            first = int(g.attrs["first_frame"])
            frames = 75 - first
            assert g["mouth"].dtype == np.uint8 and g["mouth"].shape == (frames, 50, 100, 3)
            assert g["pose"].shape == (frames, 4) and g["box"].shape == (frames, 4, 2)
            assert g["lips"].shape == (frames, 40, 2) and g["quality"].shape == (frames,)
            assert g["held"].dtype == bool and g["held"].shape == (frames,)
            assert g.attrs["complete"]
            assert g.attrs["fps"] == 25.0
            assert g.attrs["source"].endswith(f"s1/video/{name}.mp4")
            text = g.attrs["text"]
            assert text == sentence_from_code(name)  # lower-case words, no sil
            assert json.loads(g.attrs["words"]) == text.split()
            words = [t for t in read_align(grid_s1 / "align" / f"{name}.align") if t.is_word]
            np.testing.assert_allclose(g["spans"][:], [(t.start - first, t.end - first) for t in words])
            assert (g["spans"][:] >= 0).all() and (g["spans"][:] <= frames).all()
        assert f["clips/s1/bbaf2n"].attrs["first_frame"] == 0
        assert f["clips/s1/bbizzn"].attrs["first_frame"] > 0  # its corrupt leading frames are trimmed


def test_mouth_frames_line_up_with_the_video(prepared: PreparedRun, grid_s1: Path):
    """After trimming, crop i is frame first_frame + i of the video, cut where `pose` says."""
    with h5py.File(prepared.out, "r") as f:
        g = f["clips/s1/bbizzn"]
        first, mouth, pose = int(g.attrs["first_frame"]), g["mouth"][:], g["pose"][:]
    capture = cv2.VideoCapture(str(grid_s1 / "video" / "bbizzn.mp4"))
    video = [capture.read()[1] for _ in range(75)]
    capture.release()
    for i in (0, 1, len(mouth) // 2, len(mouth) - 2):
        cut = [crop_mouth(video[first + i + k], CropPose(*map(float, pose[i])), CropSpec()) for k in (-1, 0, 1)]
        error = [np.abs(c.astype(int) - mouth[i]).mean() for c in cut]
        assert error[1] < 1.0 and error[1] < min(error[0], error[2]), error


def test_crop_options_make_the_crop_they_name(prepared: PreparedRun, grid_subset, tmp_path: Path):
    """--crop-size, --face-width, --below-nose and --grey reach the cache's spec and its crops: a grey
    crop of more of the face (down to the jaw), cut where `pose` says."""
    from training.prepare import main as prepare_main

    out, grid = tmp_path / "grey.h5", grid_subset(("bbaf2n",))
    code = prepare_main(["--grid", str(grid), "--out", str(out), "--workers", "1", "--crop-size", "40", "56",
                         "--face-width", "1.3", "--below-nose", "0.45", "--grey"])
    spec, usual_spec = CropSpec(height=40, width=56, channels=1, face_width=1.3, below_nose=0.45), CropSpec()
    with h5py.File(out, "r") as f, h5py.File(prepared.out, "r") as usual:
        assert code == 0 and json.loads(f.attrs["crop"]) == asdict(spec)
        mouth, pose = f["clips/s1/bbaf2n/mouth"][:], f["clips/s1/bbaf2n/pose"][:]
        usual_pose = usual["clips/s1/bbaf2n/pose"][:]  # the same clip with the default crop
    assert mouth.shape == (75, 40, 56, 1)
    np.testing.assert_allclose(np.median(pose[:, 2] / usual_pose[:, 2]), spec.face_width / usual_spec.face_width,
                               rtol=0.01)
    eye_distance = usual_pose[:, 2] / usual_spec.face_width
    np.testing.assert_allclose(np.median((pose[:, 1] - usual_pose[:, 1]) / eye_distance),
                               spec.below_nose - usual_spec.below_nose, atol=0.01)
    capture = cv2.VideoCapture(str(grid / "s1" / "video" / "bbaf2n.mp4"))
    frame = [capture.read()[1] for _ in range(38)][-1]
    capture.release()
    cut = crop_mouth(frame, CropPose(*map(float, pose[37])), spec)
    assert np.abs(cut.astype(int) - mouth[37]).mean() < 1.0


def test_rerun_keeps_finished_clips(prepared: PreparedRun, tmp_path: Path):
    out = tmp_path / "s1.h5"
    shutil.copy(prepared.out, out)
    skipped, log = run_prepare(prepared.grid, out)
    assert "4 clips, 3 already cached, 1 to prepare" in log  # only the bad clip is tried again
    assert [(c.name, why) for c, why in skipped] == [("x", "unreadable video")]
    with h5py.File(prepared.out, "r") as before, h5py.File(out, "r") as after:
        for name in PREPARED_CLIPS:
            np.testing.assert_array_equal(after[f"clips/s1/{name}/mouth"], before[f"clips/s1/{name}/mouth"])


def test_a_rerun_with_nothing_to_add_leaves_the_cache_untouched(prepared: PreparedRun, grid_subset,
                                                                 tmp_path: Path):
    """Not copied to add nothing: a 1 GB cache would be written again on every rerun of the command, as
    two of GRID's 900 clips fail every time (here the unreadable x.mp4, tried again and skipped again);
    nor is a clip made again from a copy of its files."""
    out = tmp_path / "s1.h5"
    shutil.copy(prepared.out, out)
    before = out.stat()
    linked, copied = grid_subset(PREPARED_CLIPS), tmp_path / "copied"  # copied: new times, the same bytes
    shutil.copytree(linked, copied, copy_function=shutil.copy)
    for grid, says, skips in ((linked, "3 clips, 3 already cached, 0 to prepare", []),
                              (copied, "3 clips, 3 already cached, 0 to prepare", []),
                              (prepared.grid, "4 clips, 3 already cached, 1 to prepare", ["x"])):
        skipped, log = run_prepare(grid, out)
        assert says in log and [c.name for c, _ in skipped] == skips
        assert ("clip/s" in log) == bool(skips)  # no progress bar over nothing to prepare
        after = out.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copied", "grid", "s1.h5"]  # no partial file


def test_a_clip_changed_since_it_was_cached_is_prepared_again(prepared: PreparedRun, grid_s1: Path, tmp_path: Path):
    """Since the cache was made, bbaf2n's align was corrected, bbaf3s recorded again (here: another GRID
    take under its name), and bbizzn's align made to run past its video: a rerun makes each again from its
    files, and the one that now fails is skipped, saying why, not kept stale."""
    speaker = tmp_path / "grid" / "s1"
    for name in PREPARED_CLIPS:
        link_clip(grid_s1, name, speaker)
    out = tmp_path / "s1.h5"
    shutil.copy(prepared.out, out)  # made from the same files (linked alike): all cached
    for name, old, new in (("bbaf2n", " f\n", " e\n"),
                           ("bbizzn", "45500 51750 now\n51750 74500 sil\n", "45500 80000 now\n")):
        align = speaker / "align" / f"{name}.align"
        align.unlink()  # a file of its own: the link's target is the corpus'
        align.write_text((grid_s1 / "align" / f"{name}.align").read_text().replace(old, new))
    for folder, suffix in (("video", "mp4"), ("align", "align")):
        (speaker / folder / f"bbaf3s.{suffix}").unlink()
        (speaker / folder / f"bbaf3s.{suffix}").symlink_to(grid_s1 / folder / f"bbal6n.{suffix}")
    skipped, log = run_prepare(tmp_path / "grid", out)
    assert "3 clips, 0 already cached, 3 to prepare (3 changed" in log
    assert [(c.name, why) for c, why in skipped] == \
        [("bbizzn", "its align runs past the video: 'now' ends at frame 80 of 75")]  # not "face lost in 0 of 75"
    with h5py.File(out, "r") as f, h5py.File(prepared.out, "r") as before:
        assert sorted(f["clips/s1"]) == ["bbaf2n", "bbaf3s"]
        assert f["clips/s1/bbaf2n"].attrs["text"] == "bin blue at e two now"
        assert f["clips/s1/bbaf3s"].attrs["text"] == sentence_from_code("bbal6n")
        assert not np.array_equal(f["clips/s1/bbaf3s/mouth"], before["clips/s1/bbaf3s/mouth"])
    _, log = run_prepare(tmp_path / "grid", out)
    assert "3 clips, 2 already cached, 1 to prepare\n" in log


@pytest.mark.parametrize("fps", [12, 30])
def test_a_video_at_another_rate_has_its_words_on_its_own_frames(fps: int, grid_s1: Path, tmp_path: Path):
    """GRID's align times count 25 fps frames: a clip filmed (here re-encoded) at another rate with its
    align file is cached with its words' spans on its own frames, not refused or mistimed."""
    speaker = tmp_path / "grid" / "s1"
    for sub in ("video", "align"):
        (speaker / sub).mkdir(parents=True)
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(grid_s1 / "video" / "bbaf2n.mp4"),
                    "-vf", f"fps={fps}", str(speaker / "video" / "bbaf2n.mp4")], check=True)
    shutil.copyfile(grid_s1 / "align" / "bbaf2n.align", speaker / "align" / "bbaf2n.align")
    skipped, _ = run_prepare(tmp_path / "grid", tmp_path / "c.h5")
    assert skipped == []
    words = [t for t in read_align(grid_s1 / "align" / "bbaf2n.align") if t.is_word]
    with h5py.File(tmp_path / "c.h5", "r") as f:
        g = f["clips/s1/bbaf2n"]
        assert g.attrs["fps"] == fps and len(g["mouth"]) == 3 * fps - g.attrs["first_frame"]
        seconds = (g["spans"][()] + g.attrs["first_frame"]) / fps
    np.testing.assert_allclose(seconds, [(t.start / 25, t.end / 25) for t in words], atol=1e-5)
    # A cache made before spans were counted on the clip's own frames (no spans_fps) makes the clip again.
    with h5py.File(tmp_path / "c.h5", "a") as f:
        del f["clips/s1/bbaf2n"].attrs["spans_fps"]
    _, log = run_prepare(tmp_path / "grid", tmp_path / "c.h5")
    assert "1 clips, 0 already cached, 1 to prepare (1 changed since they were cached" in log
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["clips/s1/bbaf2n"].attrs["spans_fps"] == fps


def test_a_clip_whose_name_is_not_utf8_is_skipped_and_named(grid_s1: Path, tmp_path: Path):
    """OpenCV crashes on a file name that is not UTF-8 (a worker's segmentation fault left the run waiting
    for ever): such a clip is skipped, saying why, and the others are cached."""
    speaker = tmp_path / "grid" / "s1"
    link_clip(grid_s1, "bbaf2n", speaker)
    odd = os.fsdecode(b"bbaf3s\xff")
    (speaker / "video" / f"{odd}.mp4").symlink_to(grid_s1 / "video" / "bbaf3s.mp4")
    (speaker / "align" / f"{odd}.align").symlink_to(grid_s1 / "align" / "bbaf3s.align")
    skipped, _ = run_prepare(tmp_path / "grid", tmp_path / "c.h5")
    assert [(clip.name, why) for clip, why in skipped] == [(odd, "its file name is not UTF-8: rename it")]
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert list(f["clips/s1"]) == ["bbaf2n"]


def test_a_ctrl_c_that_python_drops_still_stops_the_run(grid_subset, tmp_path: Path):
    """A real SIGINT whose KeyboardInterrupt is raised inside a weakref callback, which Python drops
    ("Exception ignored in"; h5py runs such callbacks as its objects are freed, and the reviewer's Ctrl-C
    landed in one about 1 time in 20): the run still stops, at the next clip, and says so."""
    grid, out = grid_subset(("bbaf2n", "bbaf3s", "bbaf4p")), tmp_path / "s1.h5"
    code = f"""if True:
        import signal, sys, weakref
        from training import prepare
        written, write = [], prepare.write_clip
        class Garbage:
            pass
        def dropping_ctrl_c(f, clip):
            write(f, clip)
            written.append(clip)
            if len(written) == 1:
                garbage = Garbage()
                collected = weakref.ref(garbage, lambda _: signal.raise_signal(signal.SIGINT))
                del garbage
        prepare.write_clip = dropping_ctrl_c
        sys.exit(prepare.main(["--grid", {str(grid)!r}, "--out", {str(out)!r}, "--workers", "1"]))"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Exception ignored" in result.stderr  # Python dropped the KeyboardInterrupt
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == \
        f"interrupted: finished clips are kept in {out}.partial; run again to resume"
    assert not out.exists()
    with h5py.File(f"{out}.partial", "r") as f:  # the first clip, and no other
        assert len(f["clips/s1"]) == 1


def test_an_interrupted_rerun_leaves_the_cache_as_it_was(prepared: PreparedRun, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    """A real Ctrl-C (SIGINT) while a rerun writes a clip, its mouth crops written and the rest not:
    FILE.h5 is still there, unchanged, and the next run redoes the half-written clip."""
    out = tmp_path / "s1.h5"
    shutil.copy(prepared.out, out)
    with h5py.File(out, "a") as f:
        del f["clips/s1/bbaf3s"]
    before = out.read_bytes()
    create, made = h5py.Group.create_dataset, []

    def pressing_ctrl_c(self: h5py.Group, name: str, *args, **kwargs):
        dataset = create(self, name, *args, **kwargs)
        made.append(f"{self.name}/{name}")
        if name == "mouth":
            signal.raise_signal(signal.SIGINT)
        return dataset

    monkeypatch.setattr(h5py.Group, "create_dataset", pressing_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_prepare(prepared.grid, out)
    monkeypatch.undo()
    assert made == ["/clips/s1/bbaf3s/mouth"]
    assert out.read_bytes() == before
    with h5py.File(tmp_path / "s1.h5.partial", "r") as f:  # where the run was: the clip half written
        assert "mouth" in f["clips/s1/bbaf3s"] and not f["clips/s1/bbaf3s"].attrs.get("complete", False)
    _, log = run_prepare(prepared.grid, out)
    assert "4 clips, 2 already cached, 2 to prepare" in log
    with h5py.File(out, "r") as f, h5py.File(prepared.out, "r") as whole:
        assert f["clips/s1/bbaf3s"].attrs["complete"]
        np.testing.assert_array_equal(f["clips/s1/bbaf3s/mouth"], whole["clips/s1/bbaf3s/mouth"])


def test_the_cache_folder_is_made_when_missing(grid_subset, tmp_path: Path):
    """The README's first training command writes cache/s1.h5 in a fresh clone, where cache/ does not exist yet."""
    out = tmp_path / "cache" / "nested" / "s1.h5"
    skipped, _ = run_prepare(grid_subset(("bbaf2n",)), out)
    assert skipped == []
    with h5py.File(out, "r") as f:
        assert f["clips/s1/bbaf2n"].attrs["complete"]


def test_resume_redoes_a_half_written_clip(prepared: PreparedRun, tmp_path: Path):
    out = tmp_path / "s1.h5"
    partial = tmp_path / "s1.h5.partial"
    shutil.copy(prepared.out, partial)
    with h5py.File(partial, "a") as f:  # as if interrupted while writing bbaf3s
        g = f["clips/s1/bbaf3s"]
        del g.attrs["complete"]
        del g["held"]
    skipped, log = run_prepare(prepared.grid, out)
    assert "4 clips, 2 already cached, 2 to prepare" in log
    assert [c.name for c, _ in skipped] == ["x"]
    assert out.is_file() and not partial.exists()
    with h5py.File(prepared.out, "r") as before, h5py.File(out, "r") as after:
        g = after["clips/s1/bbaf3s"]
        assert g.attrs["complete"] and g["held"].shape == (75,)
        np.testing.assert_array_equal(g["mouth"], before["clips/s1/bbaf3s/mouth"])


def test_a_partial_cut_short_before_its_crop_settings_is_taken_up(grid_subset, tmp_path: Path):
    """A run killed between making the .partial and writing its crop leaves it empty of them: the next
    run goes on with it (it is prepare's own) rather than refusing it on every run."""
    out = tmp_path / "s1.h5"
    with h5py.File(out.with_name(out.name + ".partial"), "w"):
        pass
    skipped, _ = run_prepare(grid_subset(("bbaf2n",)), out)
    assert skipped == [] and not out.with_name(out.name + ".partial").exists()
    with h5py.File(out, "r") as f:
        assert "crop" in f.attrs and f["clips/s1/bbaf2n"].attrs["complete"]


def test_cache_made_with_another_crop_is_refused(prepared: PreparedRun, tmp_path: Path):
    out = tmp_path / "s1.h5"
    shutil.copy(prepared.out, out)
    with pytest.raises(ValueError, match="another crop"):
        prepare(prepared.grid, out, workers=1, spec=CropSpec(width=96, height=48))
    assert out.is_file() and not out.with_name(out.name + ".partial").exists()  # left as it was
    # Beside a partial cut short before its crop settings, the finished cache is still not replaced.
    with h5py.File(out.with_name(out.name + ".partial"), "w"):
        pass
    with pytest.raises(ValueError, match="another crop"):
        prepare(prepared.grid, out, workers=1, spec=CropSpec(width=96, height=48))
    assert out.read_bytes() == prepared.out.read_bytes()


def test_an_hdf5_file_that_is_not_a_cache_is_refused_and_left_as_it_was(grid_subset, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture):
    """Another program's HDF5 file at --out is refused as training and evaluate refuse it, not taken over."""
    theirs = tmp_path / "theirs.h5"
    with h5py.File(theirs, "w") as f:
        f["readings"] = np.arange(10)
    before = theirs.read_bytes()
    assert prepare_main(["--grid", str(grid_subset(("bbaf2n",))), "--out", str(theirs), "--workers", "1"]) == 2
    assert capsys.readouterr().err == f"error: {theirs} is not a lipstream cache (no crop settings)\n"
    assert theirs.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["grid", "theirs.h5"]


def test_speech_features_are_loud_where_the_align_file_has_words(prepared: PreparedRun):
    """The sound is cut to the kept frames: loudness follows the word spans, best at no shift (bbizzn's
    trimmed leading frames included), so the model learns to hear what the lips at that frame say."""
    shifts = (0, -3, 3, -6, 6, -12, 12)
    agreements = []
    with h5py.File(prepared.out, "r") as f:
        for name in PREPARED_CLIPS:
            g = f[f"clips/s1/{name}"]
            speech, spans = g["speech"][()].astype(np.float32), g["spans"][()]
            assert speech.shape == (len(g["mouth"]), DIMS) and g["speech"].dtype == np.float16
            loudness = speech.mean(axis=1)
            spoken = np.zeros(len(loudness), bool)
            for start, end in np.round(spans).astype(int):
                spoken[start:end] = True
            assert loudness[spoken].mean() - loudness[~spoken].mean() > 0.5, name

            agreements.append([np.corrcoef(np.roll(loudness, shift), spoken)[0, 1] for shift in shifts])
            assert agreements[-1][0] > 0.5, name
    mean = np.mean(agreements, axis=0)
    assert mean[0] > mean[1:].max(), dict(zip(shifts, mean))


def test_rerun_adds_speech_to_clips_cached_without_it(prepared: PreparedRun, tmp_path: Path):
    out = tmp_path / "s1.h5"
    shutil.copy(prepared.out, out)
    with h5py.File(out, "a") as f:  # as cached before speech features existed
        del f["clips/s1/bbizzn/speech"]
    run_prepare(prepared.grid, out)
    with h5py.File(prepared.out, "r") as before, h5py.File(out, "r") as after:
        np.testing.assert_array_equal(after["clips/s1/bbizzn/speech"], before["clips/s1/bbizzn/speech"])
    with h5py.File(out, "a") as f:  # as cached with features made another way
        f.attrs["speech"] = json.dumps({**json.loads(f.attrs["speech"]), "mel_bands": 80})
        f["clips/s1/bbaf2n/speech"][...] = 0
    run_prepare(prepared.grid, out)
    with h5py.File(prepared.out, "r") as before, h5py.File(out, "r") as after:
        for name in PREPARED_CLIPS:
            np.testing.assert_array_equal(after[f"clips/s1/{name}/speech"], before[f"clips/s1/{name}/speech"])


def copy_video(video: Path, out: Path, sound: str) -> None:
    """The video track of `video`, packet for packet, in a file with no audio track (`sound` "none") or with
    its audio packets' bytes zeroed, as a failing disk gives them (`sound` "broken")."""
    with av.open(str(video)) as source, av.open(str(out), "w") as target:
        picture = target.add_stream_from_template(source.streams.video[0])
        audio = target.add_stream_from_template(source.streams.audio[0]) if sound == "broken" else None
        for packet in source.demux(*source.streams.video, *(source.streams.audio if audio else ())):
            if packet.dts is None:  # the demuxer's closing empty packets
                continue
            if packet.stream.type == "audio":
                zeroed = av.Packet(bytes(packet.size))
                zeroed.pts, zeroed.dts, zeroed.time_base = packet.pts, packet.dts, packet.time_base
                packet, stream = zeroed, audio
            else:
                stream = picture
            packet.stream = stream
            target.mux(packet)


def test_a_clip_without_sound_is_marked_silent_and_not_read_again(grid_s1: Path, tmp_path: Path):
    speaker = tmp_path / "grid" / "s1"
    (speaker / "video").mkdir(parents=True)
    (speaker / "align").mkdir()
    (speaker / "align" / "bbaf2n.align").symlink_to(grid_s1 / "align" / "bbaf2n.align")
    video = speaker / "video" / "bbaf2n.mp4"
    copy_video(grid_s1 / "video" / "bbaf2n.mp4", video, sound="none")
    out = tmp_path / "s1.h5"
    run_prepare(tmp_path / "grid", out)
    with h5py.File(out, "a") as f:
        g = f["clips/s1/bbaf2n"]
        assert g.attrs["silent"] and "speech" not in g and len(g["mouth"]) == 75
        del g.attrs["silent"]  # as cached before clips were marked: the next run marks it
    _, log = run_prepare(tmp_path / "grid", out)
    assert "speech" in log
    with h5py.File(out, "r") as f:
        assert f["clips/s1/bbaf2n"].attrs["silent"] and "speech" not in f["clips/s1/bbaf2n"]

    _, log = run_prepare(tmp_path / "grid", out)  # marked: a rerun does not listen for its sound again
    assert "speech" not in log
    with h5py.File(out, "a") as f:
        f.attrs["speech"] = json.dumps({**json.loads(f.attrs["speech"]), "mel_bands": 80})
    _, log = run_prepare(tmp_path / "grid", out)  # features of another format: every clip is heard again
    assert "speech" in log
    with h5py.File(out, "r") as f:
        assert f["clips/s1/bbaf2n"].attrs["silent"] and "speech" not in f["clips/s1/bbaf2n"]

    video.unlink()  # recorded again, with its sound: a changed clip is made again, sound and all
    video.symlink_to(grid_s1 / "video" / "bbaf2n.mp4")
    _, log = run_prepare(tmp_path / "grid", out)
    assert "1 clips, 0 already cached, 1 to prepare (1 changed" in log
    with h5py.File(out, "r") as f:
        g = f["clips/s1/bbaf2n"]
        assert not g.attrs.get("silent", False) and g["speech"].shape == (75, DIMS)


def test_a_sound_that_cannot_be_read_is_not_taken_for_silence(grid_s1: Path, tmp_path: Path):
    """A clip whose pictures read but whose sound does not now (its audio packets zeroed, as a failing disk
    gives them) is cached without speech features and not marked silent, so the next run tries its sound
    again; a video without a sound track is silent."""
    from training.prepare import clip_speech

    speaker = tmp_path / "grid" / "s1"
    (speaker / "video").mkdir(parents=True)
    (speaker / "align").mkdir()
    (speaker / "align" / "bbaf2n.align").symlink_to(grid_s1 / "align" / "bbaf2n.align")
    copy_video(grid_s1 / "video" / "bbaf2n.mp4", speaker / "video" / "bbaf2n.mp4", sound="broken")
    out = tmp_path / "s1.h5"
    for run in range(2):
        _, log = run_prepare(tmp_path / "grid", out)
        assert ("speech" in log) == (run == 1)  # the first run hears it with the crops, the next one again
        with h5py.File(out, "r") as f:
            g = f["clips/s1/bbaf2n"]
            assert len(g["mouth"]) == 75 and "speech" not in g and not g.attrs.get("silent", False)
    copy_video(grid_s1 / "video" / "bbaf2n.mp4", tmp_path / "mute.mp4", sound="none")
    assert clip_speech(tmp_path / "mute.mp4", 25.0, 75, 0) == (None, True)
    features, silent = clip_speech(grid_s1 / "video" / "bbaf2n.mp4", 25.0, 75, 0)
    assert features.shape == (75, DIMS) and not silent
