"""Recording clips: GRID clips stand in for the camera and the microphone (their sound streamed in blocks
through the microphone's callback path), and what is written must be what training.prepare reads."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import signal
import threading
import wave
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

import realtime.record as record_module
from realtime.activity import Span, detect_speech
from realtime.audio import AudioError, AudioRecording, FileAudioStream, MicrophoneStream, at_rate, read_audio
from realtime.grid import code_from_sentence, read_align, sentence, sentence_from_code
from realtime.interrupts import interrupt
from realtime.record import (Cut, ManifestEntry, RecordOptions, Session, Take, choose_prompts, estimated_align,
                             record, save_clip, write_video)
from realtime.vad_report import main as vad_report_main
from realtime.vocab import GRID_GRAMMAR
from tests.conftest import made_once
from training.prepare import prepare

CLIP = "praj3a"  # "place red at j three again"


def grid_words(grid_s1: Path, name: str):
    return [t for t in read_align(grid_s1 / "align" / f"{name}.align") if t.is_word]


def stand_in(grid_s1: Path, out: Path, **kw) -> RecordOptions:
    """Options that record from GRID clip CLIP: its video for the camera, its sound for the microphone."""
    video = str(grid_s1 / "video" / f"{CLIP}.mp4")
    options = RecordOptions(out=out, speaker="s1", count=1, source=video, audio_file=video, headless=True,
                            fast=True)
    return replace(options, **kw)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@dataclass(frozen=True)
class Recorded:
    out: Path
    session: Session
    entry: dict
    stdout: str


@pytest.fixture(scope="module")
def recorded(grid_s1: Path, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """One clip recorded from the stand-ins, once per test run."""
    def make(folder: Path) -> dict:
        out = folder / "grid"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            session = record(stand_in(grid_s1, out))
        return {"out": str(out), "saved": session.saved, "rejected": session.rejected, "stdout": printed.getvalue()}

    run = made_once(tmp_path_factory, "recorded", make)
    out = Path(run["out"])
    lines = (out / "s1" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 1
    return Recorded(out, Session(tuple(run["saved"]), tuple(run["rejected"])), json.loads(lines[0]), run["stdout"])


def test_recording_writes_one_complete_clip(recorded: Recorded):
    assert recorded.session == Session(saved=(CLIP,), rejected=())
    assert "[1/1] say: place red at j three again" in recorded.stdout
    assert files(recorded.out) == [f"s1/align/{CLIP}.align", "s1/manifest.jsonl", f"s1/video/{CLIP}.mp4"]
    entry = recorded.entry
    assert entry["name"] == CLIP and entry["text"] == sentence_from_code(CLIP) and entry["prompt"] == 0
    assert entry["alignment"] == "estimated" and entry["mode"] == "voice" and entry["fps"] == 25.0
    tokens = read_align(recorded.out / "s1" / "align" / f"{CLIP}.align")
    assert sentence(tokens) == entry["text"]
    words = [t for t in tokens if t.is_word]
    start, end = entry["speech"]
    assert words[0].start == pytest.approx(start * 25, abs=0.01) and words[-1].end == pytest.approx(end * 25, abs=0.01)
    assert 0 < words[0].start and words[-1].end < entry["frames"]  # the margins are kept
    assert tokens[0].word == tokens[-1].word == "sil" and tokens[-1].end == entry["frames"]


def test_recorded_speech_is_where_grid_says_it_is(recorded: Recorded, grid_s1: Path):
    """Trimming keeps the timing: clip time + where the clip starts = the source's time."""
    words = grid_words(grid_s1, CLIP)
    start, end = (recorded.entry["take_start"] + t for t in recorded.entry["speech"])
    assert abs(start - words[0].start / 25) <= 0.08
    assert abs(end - words[-1].end / 25) <= 0.08
    assert 0.2 <= recorded.entry["speech"][0] <= 0.35  # the 0.3 s margin, unless clamped at the start


def test_recorded_sound_is_in_sync_with_the_frames(recorded: Recorded, grid_s1: Path):
    sound = read_audio(recorded.out / "s1" / "video" / f"{CLIP}.mp4")
    frames = recorded.entry["frames"]
    assert len(sound) >= frames * 640  # 16 kHz: 640 samples a frame
    first = round(recorded.entry["take_start"] * 16000)
    source = read_audio(grid_s1 / "video" / f"{CLIP}.mp4")[first:first + frames * 640]
    mine = sound[:frames * 640]
    lags = range(-400, 401, 8)  # +-25 ms
    scores = [np.dot(source[800:-800], mine[800 + lag:len(mine) - 800 + lag]) for lag in lags]
    assert list(lags)[int(np.argmax(scores))] == 0
    assert np.corrcoef(source, mine)[0, 1] > 0.95  # AAC at 16 kHz is close to the original


def test_stand_ins_paced_in_real_time_give_the_same_clip(recorded: Recorded, grid_s1: Path, tmp_path: Path):
    """The paced path (a thread per stream, each at the file's own rate) cuts the take where the fast one does."""
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(stand_in(grid_s1, tmp_path / "grid", fast=False))
    assert session.saved == (CLIP,)
    entry = json.loads((tmp_path / "grid" / "s1" / "manifest.jsonl").read_text())
    assert abs(entry["frames"] - recorded.entry["frames"]) <= 1
    assert entry["take_start"] == pytest.approx(recorded.entry["take_start"], abs=0.041)
    assert entry["speech"] == pytest.approx(recorded.entry["speech"], abs=0.041)


def test_prepare_accepts_the_recorded_clip(recorded: Recorded, tmp_path: Path):
    cache = tmp_path / "x.h5"
    with contextlib.redirect_stderr(io.StringIO()):
        skipped = prepare(recorded.out, cache, workers=1)
    assert skipped == []
    with h5py.File(cache, "r") as f:
        assert list(f["clips/s1"]) == [CLIP]
        g = f[f"clips/s1/{CLIP}"]
        assert g["mouth"].shape == (recorded.entry["frames"], 50, 100, 3)
        assert g.attrs["text"] == sentence_from_code(CLIP) and g.attrs["fps"] == 25.0
        assert g.attrs["first_frame"] == 0  # a face in every frame
        assert g["spans"].shape == (6, 2)


def test_vad_report_leaves_out_clips_record_aligned_with_the_detector(recorded: Recorded, grid_s1: Path,
                                                                     tmp_path: Path, capsys: pytest.CaptureFixture):
    """A recorded clip's align file is the detector's own span spread over the words: measured against it,
    the detector would read as exact. Left out, and said; with nothing else to measure, one line and exit 2."""
    assert vad_report_main(["--grid", str(recorded.out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "left out 1 clip realtime.record aligned by this detector's own span (their manifest says \"estimated\")",
        f"error: no clips with align files of their own under {recorded.out}"]
    shutil.copytree(recorded.out, tmp_path / "grid")
    for kind, suffix in (("video", "mp4"), ("align", "align")):  # a GRID clip beside it is measured
        (tmp_path / "grid" / "s1" / kind / f"bbaf2n.{suffix}").symlink_to(grid_s1 / kind / f"bbaf2n.{suffix}")
    assert vad_report_main(["--grid", str(tmp_path / "grid")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "1 clip, speech found in 1"


def test_vad_boundaries_match_grid_alignments(grid_s1: Path):
    names = sorted(p.stem for p in (grid_s1 / "video").glob("*.mp4"))[7::45]
    assert len(names) == 20
    errors = []
    for name in names:
        words = grid_words(grid_s1, name)
        span = detect_speech(read_audio(grid_s1 / "video" / f"{name}.mp4"), 16000)
        assert span is not None, name
        errors.append((span.start - words[0].start / 25, span.end - words[-1].end / 25))
    errors = np.abs(errors)
    assert np.median(errors[:, 0]) <= 0.08 and np.median(errors[:, 1]) <= 0.08  # 2 frames
    assert (errors <= 0.08).mean(axis=0).min() >= 0.5  # a fixed 0.8-2.0 s span gets 5% of starts right


def test_a_take_beginning_in_exact_zeros_finds_the_same_speech(grid_s1: Path):
    """A microphone starting up (or noise suppression) hands over exact zeros: its first 0.3 s of bbaf2n
    made zero, the floor was -100 dB and the room's noise speech (found from 0.4 s, where the whole clip's
    is found from 0.6 s)."""
    heard = read_audio(grid_s1 / "video" / "bbaf2n.mp4")
    zeroed = heard.copy()
    zeroed[:4800] = 0
    span, whole = detect_speech(zeroed, 16000), detect_speech(heard, 16000)
    assert span is not None and whole is not None
    assert span.start == pytest.approx(whole.start, abs=0.01) and span.end == pytest.approx(whole.end, abs=0.01)


def test_vad_report(grid_s1: Path, capsys: pytest.CaptureFixture):
    """The report's figures are those of the detector against GRID's alignments, measured here apart
    from it on the same clips (5 taken evenly across the sorted corpus: its 0th, 180th, 360th, ...)."""
    assert vad_report_main(["--grid", str(grid_s1), "--count", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0] == "5 clips, speech found in 5"
    names = sorted(p.stem for p in (grid_s1 / "video").glob("*.mp4"))
    assert len(names) == 900
    errors = []  # ms, detected minus aligned: start, end
    for name in names[::180]:
        words = grid_words(grid_s1, name)
        span = detect_speech(read_audio(grid_s1 / "video" / f"{name}.mp4"), 16000)
        assert span is not None, name
        errors.append(((span.start - words[0].start / 25) * 1000, (span.end - words[-1].end / 25) * 1000))
    errors = np.array(errors)
    for line, label, e in zip(lines[1:], ("start", "  end"), errors.T):
        said = re.fullmatch(rf"{label}: median \|error\| (\d+) ms, p95 (\d+) ms, median signed ([+-]\d+) ms", line)
        assert said, line
        expected = (np.median(np.abs(e)), np.percentile(np.abs(e), 95), np.median(e))
        for printed, value in zip(said.groups(), expected):
            assert abs(int(printed) - value) <= 0.5 + 1e-9, (line, expected)  # printed to the ms


def test_interrupt_while_recording_leaves_complete_clips_only(grid_s1: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    """A real Ctrl-C (SIGINT) in the middle of the second take, sent from the audio thread as its 10th
    block arrives: the first clip is kept whole, nothing of the second is written, and the file left by
    a killed session is gone."""
    out = tmp_path / "grid"
    (out / "s1" / "video").mkdir(parents=True)
    (out / "s1" / "video" / "old.mp4.tmp").write_bytes(b"left by a killed session")
    blocks: Counter[AudioRecording] = Counter()  # blocks each take's consumer received
    consume = AudioRecording.__call__

    def pressing_ctrl_c(self, indata, frames, status):
        consume(self, indata, frames, status)
        blocks[self] += 1
        if len(blocks) == 2 and blocks[self] == 10:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(AudioRecording, "__call__", pressing_ctrl_c)
    with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(io.StringIO()):
        record(stand_in(grid_s1, out, count=2))
    first, second = blocks.values()
    assert len(blocks) == 2 and first > 100 and second >= 10  # the first take ran to its end
    assert files(out) == [f"s1/align/{CLIP}.align", "s1/manifest.jsonl", f"s1/video/{CLIP}.mp4"]
    assert len((out / "s1" / "manifest.jsonl").read_text().splitlines()) == 1
    read_align(out / "s1" / "align" / f"{CLIP}.align")


class PressingCtrlC(list):
    """A take's frames that send a real Ctrl-C (SIGINT) as the first frame is handed to the encoder after
    the video file appeared on disk (the encoder holds its first frames back before writing any); `fired`
    is how many frames it had been handed by then."""

    def __init__(self, images: list[np.ndarray], video: Path):
        super().__init__(images)
        self.video, self.fired = video, None

    def __iter__(self):
        for index, image in enumerate(super().__iter__()):
            if self.fired is None and self.video.is_file():
                self.fired = index
                signal.raise_signal(signal.SIGINT)
            yield image


def test_interrupt_while_writing_leaves_nothing_of_the_clip(grid_s1: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    """A real Ctrl-C (SIGINT) while the real encoder writes the clip's video, its file begun and frames
    still to come: neither it nor anything else of the clip is left."""
    write, handed = record_module.write_video, []

    def writing(path: Path, images: list[np.ndarray], audio: np.ndarray, rate: int) -> None:
        handed.append(PressingCtrlC(images, path))
        write(path, handed[-1], audio, rate)

    monkeypatch.setattr(record_module, "write_video", writing)
    out = tmp_path / "grid"
    with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(io.StringIO()):
        record(stand_in(grid_s1, out))
    assert [frames.video.name for frames in handed] == [f"{CLIP}.mp4.tmp"]
    assert handed[0].fired is not None and 0 < handed[0].fired < len(handed[0])  # partway through
    assert files(out) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_stop_while_committing_waits_for_the_clip(signum: int, grid_s1: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """A real SIGINT (Ctrl-C), or SIGTERM as the command takes it, between writing the align file and
    renaming the video: the clip is finished first."""
    write_text = record_module.write_text

    def signalled(path: Path, text: str) -> None:
        signal.raise_signal(signum)
        write_text(path, text)

    monkeypatch.setattr(record_module, "write_text", signalled)
    out = tmp_path / "grid"
    previous = signal.signal(signal.SIGTERM, interrupt)  # as record's main sets it
    try:
        with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(io.StringIO()):
            record(stand_in(grid_s1, out, count=2))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert files(out) == [f"s1/align/{CLIP}.align", "s1/manifest.jsonl", f"s1/video/{CLIP}.mp4"]
    assert json.loads((out / "s1" / "manifest.jsonl").read_text())["name"] == CLIP


def test_a_manifest_that_cannot_be_written_leaves_nothing_of_the_clip(grid_s1: Path, tmp_path: Path):
    """The clip's last step fails (here the manifest is a folder; a full disk fails the same way): its
    video and align file go too, as a later session counts clips by their manifest lines."""
    capture = cv2.VideoCapture(str(grid_s1 / "video" / f"{CLIP}.mp4"))
    images = [image for ok, image in iter(capture.read, (False, None)) if ok]
    take = Take(images, np.zeros(len(images) * 16000 // 25, np.float32))
    folder = tmp_path / "s1"
    for sub in ("video", "align", "manifest.jsonl"):
        (folder / sub).mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        entry = ManifestEntry(CLIP, sentence_from_code(CLIP), 0, 0, 25, len(images), 0.0, (0.5, 2.5), "estimated",
                              "voice", str(grid_s1 / "video" / f"{CLIP}.mp4"), "microphone")
        save_clip(folder, take, Cut(0, len(images), Span(0.5, 2.5)), entry, 16000)
    assert files(folder) == []


@pytest.mark.parametrize("sound", ["noise", "lead_in"])
def test_take_without_speech_is_prompted_again_not_saved(sound: str, grid_s1: Path, tmp_path: Path):
    if sound == "noise":
        samples = np.random.default_rng(0).normal(0, 0.002, 3 * 16000)
    else:  # a real room before anyone speaks: bbaf2n's first 0.5 s (its first word starts at 0.95 s)
        samples = read_audio(grid_s1 / "video" / "bbaf2n.mp4")[:8000]
        assert grid_words(grid_s1, "bbaf2n")[0].start / 25 > 0.9
    wav = tmp_path / "quiet.wav"
    write_wav(wav, samples)
    options = RecordOptions(out=tmp_path / "grid", speaker="s1", count=1, source=str(grid_s1 / "video" / f"{CLIP}.mp4"),
                            audio_file=str(wav), headless=True, fast=True, attempts=2)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        session = record(options)
    assert session == Session(saved=(), rejected=("no speech", "no speech"))
    assert printed.getvalue().splitlines() == ["[1/1] say: place red at j three again",
                                               "[1/1] say: place red at j three again (take 2)"]
    assert files(tmp_path / "grid") == []


@pytest.mark.parametrize("grey", [range(75), range(30, 42)], ids=["no_face", "face_lost_while_speaking"])
def test_take_without_a_face_is_prompted_again_not_saved(grey: range, grid_s1: Path, tmp_path: Path):
    """GRID's voice and video, with some or all frames replaced by grey (0.48 s outlasts the tracker's hold)."""
    clip = grid_s1 / "video" / f"{CLIP}.mp4"
    capture = cv2.VideoCapture(str(clip))
    images = [capture.read()[1] for _ in range(75)]
    for i in grey:
        images[i] = np.full_like(images[i], 128)
    video = tmp_path / "take.mp4"
    write_video(video, images, read_audio(clip)[:48000], 16000)
    options = RecordOptions(out=tmp_path / "grid", speaker="s1", count=1, source=str(video), audio_file=str(video),
                            headless=True, fast=True, attempts=2)
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(options)
    assert session.saved == () and len(session.rejected) == 2
    if len(grey) == 75:
        assert session.rejected == ("no face", "no face")
    else:
        assert all(re.fullmatch(r"no face in \d+ of \d+ frames", why) for why in session.rejected), session.rejected
    assert files(tmp_path / "grid") == []


def bbaf2n_take(grid_s1: Path, folder: Path, frames: list[int], sound: np.ndarray | None = None) -> RecordOptions:
    """Options recording from a stand-in for the camera and microphone made of GRID's bbaf2n ("bin" from
    0.95 s to "now" at 2.12 s): its frames `frames` and, unless given, the sound under them. Its name,
    bbaf2n.mp4, makes its sentence the prompt."""
    from tests.test_tracker import read_frames

    clip = grid_s1 / "video" / "bbaf2n.mp4"
    images, heard = read_frames(clip), read_audio(clip)
    if sound is None:
        sound = np.concatenate([heard[k * 640:(k + 1) * 640] for k in frames])
    video = folder / "bbaf2n.mp4"
    write_video(video, [images[k] for k in frames], sound, 16000)
    return RecordOptions(out=folder / "grid", speaker="s1", count=1, source=str(video), audio_file=str(video),
                         headless=True, fast=True, attempts=2)


@pytest.mark.parametrize("cut", ["ended", "began", "limit"])
def test_a_take_cut_off_mid_sentence_is_prompted_again_not_saved(cut: str, grid_s1: Path, tmp_path: Path):
    """The speaker still speaking as the take ends (the file ends at 1.8 s, in "two"; or the take's limit
    comes then), or already speaking as it begins (the file starts at 1.04 s, in "bin"): not all the
    prompt's words are in the take, however long its speech."""
    frames = range(26, 75) if cut == "began" else range(45) if cut == "ended" else range(75)
    options = bbaf2n_take(grid_s1, tmp_path, list(frames))
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(replace(options, seconds=1.8) if cut == "limit" else options)
    why = "already speaking when the take began" if cut == "began" else "still speaking when the take ended"
    assert session == Session(saved=(), rejected=(why, why))
    assert files(tmp_path / "grid") == []


@pytest.mark.parametrize("after", [41, 47])
def test_a_pause_mid_sentence_does_not_end_the_take(after: int, grid_s1: Path, tmp_path: Path):
    """bbaf2n with a 1 s pause after "f" or after "two" (frames 41 and 47 by bbaf2n.align; its picture held,
    the room's own sound from before "bin"): "bin blue at f" is shorter than six words at GRID's fastest,
    and a breath is shorter than the quiet that ends a take, so the take goes on and keeps the words after
    (with 0.8 s of quiet ending a take, "bin blue at f two" was saved as the whole sentence)."""
    heard = read_audio(grid_s1 / "video" / "bbaf2n.mp4")
    frames = [*range(after), *[after - 1] * 25, *range(after, 75)]
    room = heard[:8000]  # its first 0.5 s: no speech (see test_take_without_speech_is_prompted_again_not_saved)
    sound = np.concatenate([heard[:after * 640], room, room, heard[after * 640:]])
    options = bbaf2n_take(grid_s1, tmp_path, frames, sound)
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(options)
    assert session == Session(saved=("bbaf2n",), rejected=())
    entry = json.loads((tmp_path / "grid" / "s1" / "manifest.jsonl").read_text())
    start, end = (entry["take_start"] + t for t in entry["speech"])
    whole = detect_speech(heard, 16000)  # the same sentence without the pause
    assert start == pytest.approx(whole.start, abs=0.041) and end == pytest.approx(whole.end + 1.0, abs=0.041)


def test_a_later_session_goes_on_after_the_last_prompt_recorded(grid_s1: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture):
    """An earlier session (--seed 3) saved prompts 0 and 2 and gave up on 1, so its manifest has two lines:
    the next session asks prompt 3 of the same order, not 2 again, and one given another order is refused.
    A manifest line it cannot read is one line and exit 2."""
    prompts = choose_prompts(4, seed=3)
    manifest = tmp_path / "grid" / "s1" / "manifest.jsonl"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("".join(json.dumps({"name": code_from_sentence(prompts[n]), "text": prompts[n], "prompt": n,
                                            "seed": 3}) + "\n" for n in (0, 2)))
    video = tmp_path / "take.mp4"  # not named by a GRID code: the prompts come from the sequence
    video.symlink_to(grid_s1 / "video" / f"{CLIP}.mp4")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        session = record(RecordOptions(out=tmp_path / "grid", speaker="s1", count=1, source=str(video),
                                       audio_file=str(video), headless=True, fast=True))
    assert printed.getvalue().splitlines()[0] == f"[1/1] say: {prompts[3]}"
    assert session.saved == (code_from_sentence(prompts[3]),)
    assert [(entry["prompt"], entry["seed"]) for entry in map(json.loads, manifest.read_text().splitlines())] == \
        [(0, 3), (2, 3), (3, 3)]
    with pytest.raises(ValueError, match=r"--seed 4 is not the order .* began in \(--seed 3\)"):
        record(RecordOptions(out=tmp_path / "grid", speaker="s1", count=1, source=str(video), audio_file=str(video),
                             headless=True, fast=True, seed=4))

    kept = manifest.read_text() + "{not json\n"
    manifest.write_text(kept)
    capsys.readouterr()
    with contextlib.redirect_stdout(io.StringIO()):
        clip = str(grid_s1 / "video" / f"{CLIP}.mp4")
        code = record_module.main(["--out", str(tmp_path / "grid"), "--speaker", "s1", "--count", "1", "--headless",
                                   "--source", clip, "--audio-file", clip])
    assert code == 2 and manifest.read_text() == kept
    assert capsys.readouterr().err.splitlines() == \
        [f"lipstream: error: {manifest}:4 is not a line realtime.record wrote: '{{not json'"]


def test_silent_mode_finds_the_span_from_the_lips(grid_s1: Path, tmp_path: Path):
    out = tmp_path / "grid"
    quiet = tmp_path / "quiet.wav"  # no voice at all: only the lips can tell
    write_wav(quiet, np.zeros(3 * 16000))
    options = replace(stand_in(grid_s1, out, silent=True), audio_file=str(quiet))
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(options)
    assert session.saved == (CLIP,)
    entry = json.loads((out / "s1" / "manifest.jsonl").read_text())
    assert entry["mode"] == "silent"
    words = grid_words(grid_s1, CLIP)
    start, end = (entry["take_start"] + t for t in entry["speech"])
    assert abs(end - words[-1].end / 25) <= 0.12  # the lips close with the last word
    assert words[0].start / 25 - 0.6 <= start <= words[0].start / 25 + 0.08  # and open a little before the first


def test_a_silent_clip_holds_its_last_word_whole(grid_s1: Path, tmp_path: Path):
    """bwbt8p's lips rest 0.47 s before "please" stops sounding (the furthest of GRID's 898 tracked clips):
    the clip still runs past the word's end, so it is not kept without its last sound."""
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, np.zeros(3 * 16000))
    video = grid_s1 / "video" / "bwbt8p.mp4"
    options = RecordOptions(out=tmp_path / "grid", speaker="s1", count=1, source=str(video), audio_file=str(quiet),
                            headless=True, fast=True, silent=True)
    with contextlib.redirect_stdout(io.StringIO()):
        assert record(options).saved == ("bwbt8p",)
    entry = json.loads((tmp_path / "grid" / "s1" / "manifest.jsonl").read_text())
    last = grid_words(grid_s1, "bwbt8p")[-1]
    assert entry["take_start"] * 25 + entry["frames"] >= last.end  # the clip's last frame is after the word's


def has_microphone() -> bool:
    try:
        import sounddevice
        sounddevice.query_devices(kind="input")
        return True
    except Exception:  # no PortAudio library, or no input device
        return False


@pytest.mark.skipif(has_microphone(), reason="this machine has a microphone")
def test_silent_mode_records_without_a_microphone(grid_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """No microphone and no sound file given: a silent session records the video alone (its sound track
    silence), timing the words by the lips, and says so; a voiced one is refused before anything is made."""
    out = tmp_path / "grid"
    with pytest.raises(AudioError):
        record(replace(stand_in(grid_s1, out), audio_file=None))
    assert not out.exists() and "no microphone" not in capsys.readouterr().err  # refused, not gone on silent
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(replace(stand_in(grid_s1, out, silent=True), audio_file=None))
    assert "lipstream: no microphone: recording the video alone (with --silent the lips time the words)" in \
        capsys.readouterr().err.splitlines()
    assert session.saved == (CLIP,)
    entry = json.loads((out / "s1" / "manifest.jsonl").read_text())
    assert entry["mode"] == "silent" and entry["audio"] == "none"
    sound = read_audio(out / "s1" / "video" / f"{CLIP}.mp4", 16000)
    assert len(sound) > 0 and np.abs(sound).max() < 1e-3


def test_prompts_cover_letters_and_digits_evenly():
    letters, digits = GRID_GRAMMAR[3], GRID_GRAMMAR[4]
    for count in (1, 10, 25, 36, 100, 137):
        prompts = choose_prompts(count, seed=3)
        assert len(prompts) == count
        assert all(sentence_from_code(code_from_sentence(p)) == p for p in prompts)
        for slot, words in ((3, letters), (4, digits), (0, GRID_GRAMMAR[0])):
            seen = Counter(p.split()[slot] for p in prompts)
            counts = [seen[w] for w in words]
            assert max(counts) - min(counts) <= 1, (count, slot, seen)
    assert choose_prompts(60, seed=3) == choose_prompts(60, seed=3)
    assert choose_prompts(60, seed=3) != choose_prompts(60, seed=4)
    assert choose_prompts(100, seed=3)[:40] == choose_prompts(40, seed=3)  # a later session continues it
    assert len(set(choose_prompts(100, seed=3))) > 90  # letters and digits are not paired the same way


def test_estimated_align_is_a_grid_align(tmp_path: Path):
    path = tmp_path / "x.align"
    path.write_text(estimated_align(["bin", "blue", "at", "f", "two", "now"], Span(0.3, 1.5), frames=46))
    tokens = read_align(path)
    assert [t.word for t in tokens] == ["sil", "bin", "blue", "at", "f", "two", "now", "sil"]
    assert tokens[0].start == 0 and tokens[1].start == pytest.approx(7.5) and tokens[-2].end == pytest.approx(37.5)
    assert tokens[-1].end == 46
    lengths = [t.end - t.start for t in tokens[1:-1]]
    assert max(lengths) - min(lengths) <= 0.002  # evenly
    path.write_text(estimated_align(["bin", "blue", "at", "f", "two", "now"], Span(0.0, 1.84), frames=46))
    assert [t.word for t in read_align(path)] == ["bin", "blue", "at", "f", "two", "now"]  # no empty silences


def test_file_stream_delivers_the_sound_in_blocks_through_the_callback(grid_s1: Path):
    path = grid_s1 / "video" / f"{CLIP}.mp4"
    expected = read_audio(path)
    calls = []
    done = threading.Event()

    def callback(indata, frames, status):
        calls.append((indata.copy(), frames, status))
        if sum(c[1] for c in calls) == len(expected):
            done.set()

    stream = FileAudioStream(path, callback, realtime=False).start()
    assert done.wait(timeout=60)
    stream.stop()
    stream.check()
    assert len(expected) > 47000 and np.abs(expected).max() > 0.1
    assert all(c[0].shape == (c[1], 1) and c[0].dtype == np.float32 for c in calls)
    assert [c[1] for c in calls[:-1]] == [320] * (len(calls) - 1)  # BLOCK_MS at 16 kHz
    np.testing.assert_array_equal(np.concatenate([c[0][:, 0] for c in calls]), expected)
    assert all(c[2] is None for c in calls)


def test_a_failing_consumer_surfaces_on_the_consumer_thread(grid_s1: Path):
    called = threading.Event()

    def broken(indata, frames, status):
        called.set()
        raise ValueError("consumer bug")

    stream = FileAudioStream(grid_s1 / "video" / f"{CLIP}.mp4", broken, realtime=False).start()
    assert called.wait(timeout=60)
    stream.stop()
    with pytest.raises(ValueError, match="consumer bug"):
        stream.check()


def test_recording_consumer_counts_time_in_samples():
    recording = AudioRecording(16000)
    buffer = np.ones((320, 1), np.float32)
    recording(buffer, 320, None)
    buffer[:] = 2  # PortAudio reuses its buffer: the recording must have copied it
    recording(buffer, 160, True)
    assert recording.seconds == pytest.approx(0.03)
    assert recording.overflows == 1
    np.testing.assert_array_equal(recording.samples(), [1.0] * 320 + [2.0] * 160)


@pytest.mark.skipif(has_microphone(), reason="this machine has a microphone")
def test_no_microphone_is_a_one_line_error():
    with pytest.raises(AudioError) as error:
        MicrophoneStream(AudioRecording(16000))
    assert "\n" not in str(error.value) and "--audio-file" in str(error.value)


def test_a_microphone_that_records_only_at_48_khz_is_heard_at_16_khz(grid_s1: Path):
    """A device that takes no rate but its own (a raw ALSA device, WASAPI) records at it, and each block is
    converted as it comes: a clip's sound taken at 48 kHz in 20 ms blocks is recorded as the same sound read
    at 16 kHz, in time, the filter holding back a millisecond or two."""
    path = grid_s1 / "video" / f"{CLIP}.mp4"
    heard, device = read_audio(path, 16000), read_audio(path, 48000)
    recording = AudioRecording(16000)
    callback = at_rate(recording, 48000, 16000)
    for start in range(0, len(device), 960):
        block = device[start:start + 960, None]
        callback(block, len(block), None)
    recorded = recording.samples()
    assert len(heard) - 32 <= len(recorded) <= len(heard)
    assert recording.seconds == len(recorded) / 16000
    np.testing.assert_allclose(recorded, heard[:len(recorded)], atol=0.02)


def test_sound_and_frames_of_a_file_keep_its_timeline(grid_s1: Path, tmp_path: Path):
    """A video whose sound starts 0.436 s after its picture (the same packets, shifted) reads as silence
    until then; one whose picture starts 0.3 s after its sound reads its sound whole, and a take recorded
    from it (both stand-ins) or a clip prepared from it hears each frame with the sound the file plays
    with it: the first frame with the sound 0.3 s in."""
    from realtime.record import capture_take
    from tests.test_capture import ffmpeg
    from training.prepare import clip_speech
    from training.speech import speech_features

    clip = str(grid_s1 / "video" / "bbaf2n.mp4")
    own = read_audio(clip)
    ffmpeg("-i", clip, "-itsoffset", "0.436", "-i", clip, "-map", "0:v", "-map", "1:a", "-c", "copy",
           str(tmp_path / "late.mp4"))
    late = read_audio(tmp_path / "late.mp4")
    start = round(0.436 * 16000)
    np.testing.assert_array_equal(late[start:start + len(own)], own)
    assert not np.any(late[:start - 1024])  # the encoder's 1024-sample priming frame plays just before it

    early = tmp_path / "bbaf2n.mp4"  # named by its sentence, as a stand-in must be
    ffmpeg("-itsoffset", "0.3", "-i", clip, "-i", clip, "-map", "0:v", "-map", "1:a", "-c", "copy", str(early))
    np.testing.assert_array_equal(read_audio(early), own)
    options = replace(stand_in(grid_s1, tmp_path / "grid", source=str(early), audio_file=str(early)), silent=True)
    take = capture_take(options, lambda image: None, words=6)
    assert len(take.images) > 60
    np.testing.assert_array_equal(take.audio, own[4800:4800 + len(take.audio)])
    features, _ = clip_speech(early, 25.0, 75, 0)
    np.testing.assert_array_equal(features, speech_features(own[4800:], 25.0, 75, 0))


def test_read_audio_errors_are_one_line(tmp_path: Path):
    (tmp_path / "x.mp4").write_text("not a video\n")
    with pytest.raises(AudioError, match="cannot read"):
        read_audio(tmp_path / "x.mp4")


def test_a_damaged_sound_packet_is_heard_as_silence_and_a_format_change_is_read_on(grid_s1: Path, tmp_path: Path):
    """A packet damaged in the middle of a sound file (40 bytes overwritten, as a failing disk or a broken
    download leaves it) made the whole file unreadable, where FFmpeg's own tools skip it: it is its length
    of silence now, and the sound after it stays in time. A stream whose format changes midway (16 kHz mono
    then 48 kHz stereo, as broadcast recordings do) failed with PyAV's own message; it is read on."""
    from tests.test_capture import ffmpeg

    clip = str(grid_s1 / "video" / "bbaf2n.mp4")
    whole, damaged = tmp_path / "whole.aac", tmp_path / "damaged.aac"
    ffmpeg("-i", clip, "-vn", "-c:a", "copy", str(whole))
    data = bytearray(whole.read_bytes())
    data[len(data) // 2:len(data) // 2 + 40] = bytes(40)
    damaged.write_bytes(bytes(data))
    heard, kept = read_audio(whole), read_audio(damaged)
    assert len(kept) == len(heard)
    lost = np.flatnonzero(np.abs(kept - heard) > 1e-4)
    assert 0 < len(lost) <= 2048 and lost[-1] - lost[0] < 2048  # the packet, and the next that overlaps it
    assert not np.any(kept[lost[0]:lost[0] + 1024])  # the packet lost (1024 samples of AAC) is silent

    halves = [tmp_path / "mono16k.ts", tmp_path / "stereo48k.ts"]
    for half, (rate, channels) in zip(halves, [("16000", "1"), ("48000", "2")]):
        ffmpeg("-i", clip, "-vn", "-ar", rate, "-ac", channels, "-c:a", "aac", str(half))
    mixed = tmp_path / "mixed.ts"
    mixed.write_bytes(halves[0].read_bytes() + halves[1].read_bytes())
    sound = read_audio(mixed)
    assert abs(len(sound) / 16000 - 6.0) < 0.15, len(sound) / 16000
    assert np.abs(sound[:40000]).max() > 0.5 and np.abs(sound[56000:]).max() > 0.5  # both sentences heard


def test_a_take_whose_sound_was_dropped_is_not_saved(grid_s1: Path):
    """A real GRID take is kept; the same take, had the audio device reported lost samples, is not:
    its sound would no longer line up with its frames."""
    from realtime.audio import read_audio
    from realtime.record import Take, cut_take
    from realtime.tracker import TrackerOptions
    from tests.test_tracker import read_frames, track

    video = grid_s1 / "video" / "bbaf2n.mp4"
    images = read_frames(video)
    options = RecordOptions(out=Path("unused"))
    take = Take(images, read_audio(video, options.rate))
    tracks = track(images, TrackerOptions(max_faces=1))
    assert not isinstance(cut_take(take, tracks, options, words=6), str)
    assert "lost sound" in cut_take(replace(take, lost_sound=True), tracks, options, words=6)
    # Only its first word heard (the rest silenced): too short a span for the prompt's six words.
    first = next(t for t in read_align(grid_s1 / "align" / "bbaf2n.align") if t.is_word)
    keep = np.zeros_like(take.audio)
    word = slice(int(first.start / 25 * options.rate), int(first.end / 25 * options.rate))
    keep[word] = take.audio[word]
    said = cut_take(replace(take, audio=keep), tracks, options, words=6)
    assert isinstance(said, str) and said.startswith("speech lasted") and said.endswith("too short for 6 words")


def test_a_take_whose_picture_skipped_is_not_saved(grid_s1: Path, tmp_path: Path):
    """A stand-in whose frames 20-37 are missing (the picture jumps from 0.76 s to 1.52 s, as after a camera
    that stalled or was reopened; the sound goes on): its frames no longer line up with its sound, and
    words were missed, so it is prompted again, not saved."""
    from tests.test_capture import ffmpeg

    video = tmp_path / "bbaf2n.mp4"
    ffmpeg("-i", str(grid_s1 / "video" / "bbaf2n.mp4"), "-vf", r"select=not(between(n\,20\,37))",
           "-fps_mode", "passthrough", "-c:a", "copy", str(video))
    options = RecordOptions(out=tmp_path / "grid", speaker="s1", count=1, source=str(video), audio_file=str(video),
                            headless=True, fast=True, attempts=2)
    with contextlib.redirect_stdout(io.StringIO()):
        session = record(options)
    why = "the camera stalled (its frames no longer match the sound, and words were missed)"
    assert session == Session(saved=(), rejected=(why, why))
    assert files(tmp_path / "grid") == []


def test_a_take_is_as_long_as_its_limit(grid_s1: Path, tmp_path: Path):
    """The take's limit (`seconds`) ends it before the frame due then, not after: 1 s is 25 frames."""
    from realtime.record import capture_take

    options = replace(stand_in(grid_s1, tmp_path / "grid", audio_file=None, sound=False), silent=True, seconds=1.0)
    assert len(capture_take(options, lambda image: None, words=6).images) == 25


def test_a_sound_that_cannot_be_opened_leaves_the_camera_closed(grid_s1: Path, tmp_path: Path):
    """The take's sound fails to open (its file unreadable): the camera's stand-in, opened first, is closed
    again, not left holding its file."""
    from realtime.record import capture_take
    from tests.test_live import open_files

    video = tmp_path / f"{CLIP}.mp4"
    shutil.copy(grid_s1 / "video" / f"{CLIP}.mp4", video)
    (tmp_path / "noise.wav").write_bytes(b"not a sound file")
    options = stand_in(grid_s1, tmp_path / "grid", source=str(video), audio_file=str(tmp_path / "noise.wav"))
    with pytest.raises(AudioError):
        capture_take(options, lambda image: None, words=6)
    assert str(video) not in open_files()


def test_the_prompt_is_printed_once_the_camera_and_microphone_have_started(grid_s1: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture):
    """A prompt printed before the take's devices open (a camera can take a second) would be read into a
    camera not yet filming: it is printed with the take's first image, and a take whose sound fails to open
    prints none."""
    from realtime.record import Screen, capture_take

    screen = Screen(headless=True)
    screen.prompt("place red at j three again", 0, 1, 1)
    assert capsys.readouterr().out == ""
    (tmp_path / "noise.wav").write_bytes(b"not a sound file")
    with pytest.raises(AudioError):
        capture_take(stand_in(grid_s1, tmp_path / "grid", audio_file=str(tmp_path / "noise.wav")), screen.show, words=6)
    assert capsys.readouterr().out == ""
    capture_take(replace(stand_in(grid_s1, tmp_path / "grid"), seconds=0.5), screen.show, words=6)
    assert capsys.readouterr().out == "[1/1] say: place red at j three again (take 2)\n"


def test_a_clip_saved_as_a_second_take_stands_in_with_its_sentence():
    """record names a second clip of a sentence bbaf2n_2: as a stand-in it still says its sentence."""
    from realtime.record import own_sentence

    assert own_sentence("takes/bbaf2n_2.mp4") == own_sentence("bbaf2n.mp4") == "bin blue at f two now"
    assert own_sentence("talk.mp4") is None


def test_a_stand_in_at_another_rate_gives_its_last_frame_too(grid_s1: Path, tmp_path: Path):
    """A 24 fps video standing in for the camera, ending before the take's time limit, gives the take all
    75 frames of its 3 s at 25 fps: its last frame (2.958 s) is the one nearest the last due time (2.96 s),
    though no frame comes after it to make that time due."""
    from realtime.record import capture_take
    from tests.test_capture import ffmpeg

    video = tmp_path / "at24.mp4"
    ffmpeg("-i", str(grid_s1 / "video" / f"{CLIP}.mp4"), "-vf", "fps=24", "-an", str(video))
    options = replace(stand_in(grid_s1, tmp_path / "grid", source=str(video), audio_file=None, sound=False),
                      silent=True, seconds=10.0)
    take = capture_take(options, lambda image: None, words=6)
    assert len(take.images) == 75
    last = cv2.VideoCapture(str(video))
    last.set(cv2.CAP_PROP_POS_FRAMES, 71)
    ok, image = last.read()
    assert ok and np.array_equal(take.images[-1], image)


def test_a_video_not_named_by_its_sentence_is_refused_as_a_stand_in(grid_s1: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture):
    """A GRID clip under another name says a sentence no prompt would match: each take would replay it
    under a new prompt, clips labelled with words they do not say. One line, exit 2, nothing written."""
    video = tmp_path / "talk.mp4"
    video.symlink_to(grid_s1 / "video" / f"{CLIP}.mp4")
    for source in (str(video), video.as_uri()):  # a path, or a file:// URL, which the camera's reader opens too
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert record_module.main(["--out", str(tmp_path / "grid"), "--count", "2", "--headless",
                                       "--source", source, "--audio-file", str(video)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"lipstream: error: --source {source}: a video stands in for the camera only as a GRID clip named by its "
            "sentence (like bbaf2n.mp4); another does not say the prompts, and its clips would be labelled with them"]
        assert printed.getvalue() == "" and not (tmp_path / "grid").exists()


def test_stand_ins_of_two_sentences_are_refused(grid_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """One GRID clip's pictures with another's sound: its words would be timed by the other sentence. One line,
    exit 2, nothing written."""
    video, sound = (str(grid_s1 / "video" / f"{name}.mp4") for name in ("bbaf2n", "bbaf3s"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert record_module.main(["--out", str(tmp_path / "grid"), "--count", "1", "--headless", "--fast",
                                   "--source", video, "--audio-file", sound]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lipstream: error: --audio-file {sound} says 'bin blue at f three soon', and --source {video} 'bin blue at "
        "f two now': pass one GRID clip as both stand-ins"]
    assert not (tmp_path / "grid").exists()


def test_a_session_that_saves_nothing_fails(grid_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """Every take refused (a stand-in video without a face): the summary is an error and the exit 2, so a
    script can tell; a stand-in cut off mid-take is said to be, not taken for silence."""
    clip = grid_s1 / "video" / f"{CLIP}.mp4"
    grey = tmp_path / "grey" / clip.name  # named by the sentence its sound says, as the command asks
    grey.parent.mkdir()
    write_video(grey, [np.full((288, 360, 3), 128, np.uint8)] * 75, read_audio(clip)[:48000], 16000)
    argv = ["--out", str(tmp_path / "grid"), "--speaker", "s1", "--count", "1", "--headless", "--fast"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert record_module.main([*argv, "--source", str(grey), "--audio-file", str(grey)]) == 2
    said = capsys.readouterr().err.splitlines()
    assert said[-1] == f"lipstream: error: 0 clips saved in {tmp_path / 'grid' / 's1'}, 3 takes not saved", said
    assert not (tmp_path / "grid").exists()  # no clip, no folders for clips
    cut = tmp_path / "cut" / clip.name
    cut.parent.mkdir()
    cut.write_bytes(clip.read_bytes()[:len(clip.read_bytes()) // 4])
    with contextlib.redirect_stdout(io.StringIO()):
        assert record_module.main([*argv, "--source", str(cut), "--audio-file", str(clip)]) == 3  # as live's
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and said[0].startswith("lipstream: error: video ended early: read "), said
    assert said[0].endswith("; no clip was saved"), said


def test_a_session_that_fails_after_saving_says_what_it_kept(grid_s1: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture):
    """The stand-in is damaged once the first clip is saved (cut to a quarter, as a failing disk leaves it):
    the second take's video ends early, and the one line says so and that the clip saved is kept (exit 3)."""
    clip = grid_s1 / "video" / f"{CLIP}.mp4"
    video = tmp_path / clip.name
    shutil.copy(clip, video)
    save = record_module.save_clip

    def saved_then_damaged(*args, **kwargs):
        save(*args, **kwargs)
        video.write_bytes(clip.read_bytes()[:len(clip.read_bytes()) // 4])

    monkeypatch.setattr(record_module, "save_clip", saved_then_damaged)
    with contextlib.redirect_stdout(io.StringIO()):
        code = record_module.main(["--out", str(tmp_path / "grid"), "--speaker", "s1", "--count", "2", "--headless",
                                   "--fast", "--source", str(video), "--audio-file", str(clip)])
    said = capsys.readouterr().err.splitlines()
    assert code == 3 and said[-1].startswith("lipstream: error: video ended early: read "), said
    assert said[-1].endswith(f"; the clip saved is kept in {tmp_path / 'grid' / 's1'}"), said
    assert (tmp_path / "grid" / "s1" / "video" / f"{CLIP}.mp4").is_file()


def test_a_stop_request_ends_a_session_as_ctrl_c_does(grid_s1: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """SIGTERM (kill, a service manager) half a second into a paced take: the same line and exit as Ctrl-C,
    not a silent death; and the handler the caller had is back afterwards."""
    clip = str(grid_s1 / "video" / f"{CLIP}.mp4")
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Timer(0.5, signal.raise_signal, (signal.SIGTERM,))

    class Stdout(io.StringIO):
        def write(self, text: str) -> int:
            if "say:" in text and stop.ident is None:  # the prompt, printed with the take's first image: not begun yet
                stop.start()
            return super().write(text)

    printed = Stdout()
    try:
        with contextlib.redirect_stdout(printed):
            code = record_module.main(["--out", str(tmp_path / "grid"), "--speaker", "s1", "--count", "2",
                                       "--headless", "--source", clip, "--audio-file", clip])
    finally:
        stop.cancel()  # a session that ended before it must not take the signal to whatever runs next
    assert printed.getvalue().count("say:") == 1, printed.getvalue()  # stopped in the first take
    assert code == 130 and signal.getsignal(signal.SIGTERM) == before
    assert capsys.readouterr().err.splitlines()[-1] == "lipstream: interrupted: no clip was saved"
    assert not (tmp_path / "grid").exists()  # nothing saved, nothing made


@pytest.mark.parametrize("blocker, says", [
    ("manifest.jsonl", "cannot write {folder}/manifest.jsonl: it is a folder"),
    ("align", "cannot write {folder}: {folder}/align is not a folder"),
], ids=["manifest_a_folder", "align_a_file"])
def test_a_speaker_folder_laid_out_wrong_is_one_line_before_recording(blocker: str, says: str, grid_s1: Path,
                                                                      tmp_path: Path, capsys: pytest.CaptureFixture):
    """A folder where the manifest goes, or a file where the align folder goes: said in one line before
    any prompt, and nothing made beside it."""
    folder = tmp_path / "grid" / "s1"
    folder.mkdir(parents=True)
    if blocker == "align":
        (folder / "align").write_text("mine\n")
    else:
        (folder / blocker).mkdir()
    clip = str(grid_s1 / "video" / f"{CLIP}.mp4")
    assert record_module.main(["--out", str(tmp_path / "grid"), "--speaker", "s1", "--count", "1", "--headless",
                               "--source", clip, "--audio-file", clip]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"lipstream: error: {says.format(folder=folder)}\n"
    assert sorted(p.name for p in folder.iterdir()) == [blocker]
