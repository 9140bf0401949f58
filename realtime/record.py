"""Recording new clips: one GRID-grammar prompt at a time, webcam video and microphone sound, trimmed to the
spoken part and written in the GRID layout that training.prepare reads.

    python -m realtime.record --out DIR [--speaker NAME] [--count N] [--source CAM_OR_FILE]
                              [--audio-file FILE] [--fast] [--silent] [--headless] [--seed N]

Prompts cycle every slot of the grammar through its words in shuffled rounds, so N prompts cover each letter
and digit equally often (within one); a later session for the same speaker continues the sequence after the
last prompt its manifest records, in the order (--seed) its sessions began in.

A take runs from the prompt until the speaker, having spoken long enough for the prompt's words, has been
quiet for a moment (at most `seconds`; with --silent always `seconds`, since the lips are tracked once the
take is over). The voice activity of its sound gives the spoken span — with --silent (mouthed, not voiced),
the movement of the lips does — and the clip keeps that span plus `margin` each side (`lips_margin`). A
take without speech, whose speech reaches its first or last frame (cut off), or with a frame of that clip
where no face was found, is not saved: the prompt is shown again, up to `attempts` times. q, Esc or the window's close
button ends the session where it is (the take under way is not saved), as its last prompt would.

Stand-ins: --source FILE plays a video in place of the camera, --audio-file FILE a sound file (or a video's
sound track) in place of the microphone, each at real time through the devices' own path: frames through
FrameSource, sound in 20 ms blocks through the microphone's callback (--fast: both as fast as they are
read, the same clips sooner, as live's --fast reads a file). One file is one take, so each take
replays it from the start. A GRID clip (named by its sentence code, like bbaf2n.mp4) stands in for a speaker
reading its own sentence, so that sentence is every prompt; pass the same mp4 as both stand-ins. The command
refuses another video file, which does not say the prompts.

Under DIR/SPEAKER this writes video/NAME.mp4 (25 fps H.264 with 16 kHz AAC sound), align/NAME.align (sil,
the prompt's words spread evenly over the spoken span, sil: an estimate, which manifest.jsonl says) and one
manifest.jsonl line per clip. NAME is the sentence's GRID code (bbaf2n), suffixed _2, _3 when repeated.
The video is written under a .tmp name; it is renamed, its align file written and its manifest line added
with Ctrl-C held back, so an interrupted session leaves complete clips only. Sound and video share the
clock of their streams' start: exact for the stand-ins, within the devices' latency for a camera and mic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

from realtime.activity import LIP_ACTIVITY, ActivityOptions, Span, VadOptions, detect_speech, lip_span
from realtime.audio import RATE, AudioError, AudioRecording, FileAudioStream, MicrophoneStream, read_audio
from realtime.capture import CaptureError, Frame, FrameSource, Resampler, SourceOptions, local_path
from realtime.cli import Parser, at_least, folder_name, named, named_path, summary
from realtime.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOURCE_ENDED, EXIT_USAGE
from realtime.files import folder_problem, output_problem, run_command, write_text
from realtime.grid import (ALIGN_UNITS_PER_FRAME, GRID_FPS, Token, align_text, clip_files, code_from_sentence,
                           sentence_from_code)
from realtime.interrupts import held_interrupts, stops_like_ctrl_c
from realtime.outputs import log
from realtime.tracker import MouthTracker, TrackResult, lip_landmarks, track_frames
from realtime.vocab import GRID_GRAMMAR
from realtime.window import WHITE, Window, display_problem, fitting_zoom, outlined

WINDOW = "lipstream record"
MOST_CLIPS = 1000  # a session's prompts at most: GRID recorded 1000 sentences a speaker


@dataclass(frozen=True)
class RecordOptions:
    out: Path  # GRID folder: clips go to out/speaker/{video,align}
    speaker: str = "me"
    count: int = 10  # clips to record
    source: str = "0"  # camera index, or a video file standing in for the camera
    audio_file: str | None = None  # a sound file standing in for the microphone
    silent: bool = False  # mouthed, not voiced: the lips give the spoken span
    sound: bool = True  # False: the video alone (a silent session with no microphone), its sound track silence
    headless: bool = False  # print the prompts instead of opening a window
    seed: int | None = None  # prompt order; None: the order the speaker's sessions began in (manifest), else 0
    seconds: float = 6.0  # longest take
    # A voiced take ends once the speaker has been quiet this long after speaking: longer than a breath between
    # words (0.8 s ended a take paused for 0.9 s before its last word, saved in part under its whole text).
    quiet_after: float = 1.5
    fastest_word: float = 0.185  # ...after speaking this long a word (GRID s1's fastest sentence by the VAD: 0.186)
    margin: float = 0.3  # seconds kept each side of the spoken span
    # With --silent, of the lips' span: they rest before a word's sound ends (GRID's speaker 1: up to 0.48 s
    # before, 3 of 898 clips beyond 0.3 s) and open long before its first (up to 0.94 s), so keep more.
    lips_margin: float = 0.5
    # A take's spoken span shorter than this a word is refused: the voice or lips were followed poorly.
    # Below fastest_word, which waits for more: it also judges takes cut by the time limit and --silent.
    shortest_word: float = 0.12
    attempts: int = 3  # takes of one prompt before it is given up
    rate: int = RATE
    fast: bool = False  # stand-ins read as fast as they are taken, not paced at real time
    vad: VadOptions = field(default_factory=VadOptions)
    lips: ActivityOptions = LIP_ACTIVITY


@dataclass(frozen=True)
class Take:
    images: list[np.ndarray]  # BGR frames at GRID_FPS
    audio: np.ndarray  # the sound under them, float32: len(images) / GRID_FPS seconds, or less if it stopped
    lost_sound: bool = False  # the audio device dropped samples: the sound no longer lines up with the frames
    stalled: bool = False  # the picture skipped (a camera that stalled, or was reopened): the same, and words lost


@dataclass(frozen=True)
class Cut:
    """The part of a take to keep: frames first..last (exclusive), and the spoken span within them."""

    first: int
    last: int
    span: Span  # seconds from the clip's first frame


@dataclass(frozen=True)
class ManifestEntry:
    """A saved clip's line in manifest.jsonl: what was prompted, and how the clip was cut and timed."""

    name: str  # the clip's file names: the sentence's GRID code, _2, _3 when repeated
    text: str  # the sentence prompted
    prompt: int  # its place in the prompt order, which a later session goes on from
    seed: int  # the prompt order (--seed)
    fps: float
    frames: int
    take_start: float  # seconds into the take the clip begins
    speech: tuple[float, float]  # the spoken span, seconds from the clip's first frame
    alignment: str  # "estimated": the align file spreads the words evenly over the spoken span
    mode: str  # "voice", or "silent" (the lips gave the span)
    source: str  # the camera, or the video standing in for it
    audio: str  # the sound file standing in for the microphone, "microphone", or "none"

    def line(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Session:
    saved: tuple[str, ...]  # names of the clips written
    rejected: tuple[str, ...]  # why each take that was not saved was not
    stopped: bool = False  # the user quit in the window before the last prompt


class SessionStopped(Exception):
    """The user quit in the prompt window (q, Esc, its close button): the session ends there, as one that
    ran through its prompts does; a take under way is not saved."""


class SessionInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a stop request) during a session, with what the session had saved by then."""

    def __init__(self, session: Session):
        super().__init__()
        self.session = session


class SessionFailed(Exception):
    """A session ended by a failure (`cause`: the camera's stand-in ended, a device failed), with what it had
    saved by then."""

    def __init__(self, session: Session, cause: Exception):
        super().__init__(str(cause))
        self.session, self.cause = session, cause


def choose_prompts(count: int, seed: int = 0) -> list[str]:
    """`count` GRID sentences; every slot goes through its words in shuffled rounds, so each letter and digit
    (and every other word) comes up equally often, within one, whatever `count` is. Each slot draws from its
    own generator, so a longer list starts with the shorter one: a later session continues the sequence."""
    columns = []
    for number, slot in enumerate(GRID_GRAMMAR):
        rng = np.random.default_rng([seed, number])
        rounds = -(-count // len(slot))
        columns.append([slot[i] for _ in range(rounds) for i in rng.permutation(len(slot))][:count])
    return [" ".join(words) for words in zip(*columns)]


def own_sentence(source: str) -> str | None:
    """The sentence a GRID clip standing in for the camera says: the one its name encodes (a clip this
    command saved as a second take of it too: bbaf2n_2)."""
    try:
        return sentence_from_code(re.sub(r"_\d+$", "", Path(source).stem))
    except ValueError:
        return None


def clip_name(text: str, taken: set[str]) -> str:
    """The sentence's GRID code, suffixed _2, _3... when a clip of that sentence exists."""
    code = code_from_sentence(text)
    name, n = code, 1
    while name in taken:
        n += 1
        name = f"{code}_{n}"
    return name


def estimated_align(words: list[str], span: Span, frames: int) -> str:
    """GRID align lines for a clip of `frames` frames: silence, the words spread evenly over the spoken
    span, silence; times in GRID's units (1/1000 of a frame)."""
    edges = np.round(np.linspace(span.start, span.end, len(words) + 1) * GRID_FPS * ALIGN_UNITS_PER_FRAME)
    edges = np.clip(edges, 0, frames * ALIGN_UNITS_PER_FRAME) / ALIGN_UNITS_PER_FRAME
    tokens = [Token(0, edges[0], "sil"), *map(Token, edges[:-1], edges[1:], words), Token(edges[-1], frames, "sil")]
    return align_text(t for t in tokens if t.end > t.start or t.is_word)


def speech_over(recording: AudioRecording, now: float, options: RecordOptions, words: int) -> bool:
    """The speaker has spoken long enough for the prompt's `words` and been quiet for `quiet_after`, both in
    the sound and on camera so far: a shorter span followed by a pause is a sentence not yet finished. Sound
    from after `now` (a stand-in read faster than real time runs ahead of the frames) is not heard yet."""
    heard = recording.samples()[:round(now * recording.rate)]
    span = detect_speech(heard, recording.rate, options.vad)
    return (span is not None and span.end - span.start >= words * options.fastest_word
            and len(heard) / recording.rate >= span.end + options.quiet_after)


class SourceEnded(CaptureError):
    """The camera's stand-in (or a stream) ended before the take did; the message says where."""


class SourceFailed(CaptureError):
    """Reading the camera (or its stand-in) failed: a failure of lipstream's own, not of the input."""


def capture_take(options: RecordOptions, show: Callable[[np.ndarray], None], words: int) -> Take:
    """Camera and microphone (or their stand-ins) from now until the take of a prompt of `words` words is
    over, at GRID_FPS."""
    recording = AudioRecording(options.rate)
    source = FrameSource(SourceOptions(options.source, fast=options.fast))
    sound: FileAudioStream | MicrophoneStream | None = None
    resampler = Resampler(GRID_FPS)
    frames: list[Frame] = []
    try:  # not resampler.resample(source): the window shows each camera frame, and the take stops by its time
        # A sound that fails to open or start leaves neither the camera open nor its thread running.
        sound = (FileAudioStream(options.audio_file, recording, options.rate, realtime=not options.fast)
                 if options.audio_file else MicrophoneStream(recording, options.rate) if options.sound else None)
        source.start()
        if sound:
            sound.start()
        with held_interrupts() as stop_asked:  # a Ctrl-C is raised after the loop, not inside the queue's lock
            for frame in source.until(stop_asked):
                if frame.t >= options.seconds:  # the take is `seconds` long, not a frame more
                    break
                if sound:
                    sound.check()
                frames += resampler.push(frame)
                show(frame.image)
                if not options.silent and speech_over(recording, frame.t, options, words):
                    break
            else:  # a video standing in for the camera ended: its last frame too (a 24 fps video's)
                frames += resampler.flush()
            if frames and sound and not stop_asked():  # a microphone's last blocks come a little after the frame
                recording.wait_for(frames[-1].t + 1 / GRID_FPS, timeout=0.5)
    finally:
        source.stop()
        if sound:
            sound.stop()
    if sound:
        sound.check()
    if source.failure:
        raise SourceFailed(source.failure)
    if source.error:  # a take cut short is no take (a video standing in for the camera ended early)
        raise SourceEnded(source.error)
    if not frames:
        raise CaptureError(f"no frames from {options.source}")
    # The sound is cut as if the frames were evenly spaced: after a gap the resampler starts its timing again.
    stalled = bool(np.any(np.diff([f.t for f in frames]) > 1.5 / GRID_FPS))
    start, n = round(frames[0].t * options.rate), round(len(frames) * options.rate / GRID_FPS)
    return Take([f.image for f in frames], recording.samples()[start:start + n], recording.overflows > 0, stalled)


def cut_take(take: Take, tracks: list[TrackResult], options: RecordOptions, words: int) -> Cut | str:
    """The clip to keep — the spoken span with `margin` each side (`lips_margin` with --silent) — or why there is
    none: a span within a frame of the take's start or end ran on past it, so the sentence is cut off; a span
    too short for the prompt's `words` missed some of them (lips the tracker followed poorly, a cough taken
    for speech)."""
    if take.lost_sound:
        return "the audio device lost sound (its timing no longer matches the video)"
    if take.stalled:
        return "the camera stalled (its frames no longer match the sound, and words were missed)"
    if all(t.crop is None for t in tracks):
        return "no face"
    if options.silent:
        span = lip_span(lip_landmarks(tracks), GRID_FPS, options.lips)
        length = len(tracks) / GRID_FPS
    else:
        span = detect_speech(take.audio, options.rate, options.vad)
        length = len(take.audio) / options.rate
    if span is None:
        return "no lip movement" if options.silent else "no speech"
    # Within a frame of an edge (four of the VAD's 10 ms hops, its onset allowance included) the span has no
    # frame of quiet beyond it: the speech ran on past the take, and some of its words are not in it.
    if span.start < 1 / GRID_FPS:
        return "already speaking when the take began"
    if span.end > length - 1 / GRID_FPS:
        return "still speaking when the take ended"
    if span.end - span.start < words * options.shortest_word:
        return (f"{'the lips moved' if options.silent else 'speech lasted'} {span.end - span.start:.2f} s: "
                f"too short for {words} words")
    margin = options.lips_margin if options.silent else options.margin
    first = max(0, int(np.floor((span.start - margin) * GRID_FPS)))
    last = min(len(take.images), int(np.ceil((span.end + margin) * GRID_FPS)))
    missing = sum(t.crop is None for t in tracks[first:last])
    if missing:
        return f"no face in {missing} of {last - first} frames"
    offset = first / GRID_FPS
    return Cut(first, last, Span(span.start - offset, span.end - offset))


def write_video(path: Path, images: list[np.ndarray], audio: np.ndarray, rate: int) -> None:
    """H.264 at GRID_FPS with AAC sound. Both are stamped from zero: only then does the file record AAC's
    encoder delay, which readers skip, so the sound stays in sync with the frames."""
    height, width = (d // 2 * 2 for d in images[0].shape[:2])  # 4:2:0 needs even sizes
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(GRID_FPS))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18"}
        sound = container.add_stream("aac", rate=rate, layout="mono")
        for index, image in enumerate(images):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
            picture.pts, picture.time_base = index, Fraction(1) / Fraction(GRID_FPS)
            container.mux(video.encode(picture))
        container.mux(video.encode())
        samples = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
        samples.sample_rate, samples.pts, samples.time_base = rate, 0, Fraction(1, rate)
        container.mux(sound.encode(samples))
        container.mux(sound.encode())


def save_clip(folder: Path, take: Take, cut: Cut, entry: ManifestEntry, rate: int) -> None:
    """Write one clip and its manifest line; on any failure or interruption, nothing of it is left."""
    video, align = clip_files(folder, entry.name)
    tmp = video.with_name(video.name + ".tmp")
    for made in (video, align):
        made.parent.mkdir(parents=True, exist_ok=True)
    images = take.images[cut.first:cut.last]
    first, last = (round(i * rate / GRID_FPS) for i in (cut.first, cut.last))
    audio = take.audio[first:last]
    try:
        write_video(tmp, images, np.pad(audio, (0, last - first - len(audio))), rate)
        with held_interrupts():
            write_text(align, estimated_align(entry.text.split(), cut.span, len(images)))
            tmp.replace(video)
            manifest = folder / "manifest.jsonl"
            size = manifest.stat().st_size if manifest.exists() else 0
            try:
                with manifest.open("a", encoding="utf-8") as f:
                    f.write(entry.line() + "\n")
            except OSError:  # a full disk: the clip goes too, as a later session reads on from its lines
                video.unlink()
                if manifest.is_file():
                    os.truncate(manifest, size)  # no half-written line
                raise
    finally:
        tmp.unlink(missing_ok=True)
        if not video.exists():
            align.unlink(missing_ok=True)


class Screen:
    """Shows the prompt: printed, and with a window, drawn over the camera image (Esc, q or the window's
    close button stops)."""

    def __init__(self, headless: bool):
        self.window = None if headless else Window(WINDOW)
        self.text = ""
        self.status = ""  # under the image: where the session stands, and how to end it
        self._unprinted = ""  # the prompt's line, printed with the take's first image

    def prompt(self, text: str, number: int, total: int, attempt: int) -> None:
        self.text = text
        again = f" (take {attempt + 1})" if attempt else ""
        self.status = f"{number + 1}/{total}{again}   q: end the session"
        self._unprinted = f"[{number + 1}/{total}] say: {text}{again}"

    def show(self, image: np.ndarray) -> None:
        """Show a take's image under the prompt. The prompt is printed with the take's first image, when the
        camera and microphone have started: a camera that takes a second to open would miss the first word
        of a prompt printed before it."""
        if self._unprinted:
            print(self._unprinted, flush=True)
            self._unprinted = ""
        if self.window is None:
            return
        scale = min(1.0, fitting_zoom(image.shape, self.window.room))  # a 1080p camera on a laptop's screen
        view = image.copy() if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        outlined(view, self.text, (10, 30), 0.8, WHITE, 2)
        outlined(view, self.status, (10, view.shape[0] - 12), 0.5, WHITE, 1)
        if self.window.show(view) in (27, ord("q")):
            raise SessionStopped

    def close(self) -> None:
        if self.window is not None:
            self.window.close()


def check_devices(options: RecordOptions) -> RecordOptions:
    """Open the camera and the microphone (or the files standing in for them) once: one that is missing
    is told before any folder is made or prompt shown. A silent session, which times its words by the
    lips, goes on without a microphone: the options it records with say so."""
    FrameSource(SourceOptions(options.source)).stop()
    if options.audio_file:
        read_audio(options.audio_file, options.rate)
        return options
    try:
        MicrophoneStream(AudioRecording(options.rate), options.rate).stop()
    except AudioError:
        if not options.silent:
            raise
        log("no microphone: recording the video alone (with --silent the lips time the words)")
        return replace(options, sound=False)
    return options


def next_prompt(manifest: Path) -> tuple[int, int | None]:
    """Where a session starts in the prompt sequence: after the last prompt a clip was saved for, so the
    sequence and its balance of letters and digits go on past prompts given up on the way (a prompt given
    up last, of which nothing was kept, comes first again); and the seed of that sequence (None: not
    recorded, by a session before seeds were)."""
    if not manifest.exists():
        return 0, None
    last, seed = -1, None
    try:
        text = manifest.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{manifest} is not a manifest realtime.record wrote (not UTF-8 text)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            last = max(last, int(entry["prompt"]))
            seed = entry.get("seed", seed)
            if seed is not None and type(seed) is not int:
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, not an object, no prompt number
            raise ValueError(f"{manifest}:{number} is not a line realtime.record wrote: {line[:60]!r}") from None
    return last + 1, seed


def layout_problem(folder: Path) -> str | None:
    """Why clips cannot be recorded into the speaker folder `folder` (a file where it, its video or its
    align folder goes, a folder where its manifest goes), or None; said before recording, not after a
    take. Makes nothing."""
    return (folder_problem(folder / "video", folder) or folder_problem(folder / "align", folder)
            or output_problem(folder / "manifest.jsonl"))


def record(options: RecordOptions) -> Session:
    """Prompt, record and save `count` clips, or fewer when the user quits in the window; Ctrl-C
    (KeyboardInterrupt) keeps every clip already saved, and comes out as SessionInterrupted, which names them."""
    options = check_devices(options)
    folder = options.out / options.speaker
    done, began = next_prompt(folder / "manifest.jsonl")
    if options.seed is not None and began is not None and options.seed != began:
        raise ValueError(f"--seed {options.seed} is not the order {folder}'s sessions began in (--seed {began}): a "
                         "later session goes on with it; leave --seed out, or record under another --speaker")
    seed = options.seed if options.seed is not None else began if began is not None else 0
    for sub in ("video", "align"):  # made with the first clip saved: a session that saves none leaves none
        for stale in (folder / sub).glob("*.tmp"):  # left by a killed session: never complete
            stale.unlink()
    own = own_sentence(options.source)
    prompts = [own] * options.count if own else choose_prompts(done + options.count, seed)[done:]
    taken = {p.stem for p in (folder / "video").glob("*.mp4")} | {p.stem for p in (folder / "align").glob("*.align")}
    saved: list[str] = []
    rejected: list[str] = []
    with MouthTracker() as tracker:
        screen = Screen(options.headless)  # after the tracker: one that fails to load leaves no window open
        try:
            for number, text in enumerate(prompts, start=done):
                for attempt in range(options.attempts):
                    screen.prompt(text, number - done, len(prompts), attempt)
                    take = capture_take(options, screen.show, len(text.split()))
                    tracker.reset()
                    tracks = list(track_frames(tracker, take.images, GRID_FPS))
                    cut = cut_take(take, tracks, options, len(text.split()))
                    if isinstance(cut, str):
                        log(f"not saved: {cut}")
                        rejected.append(cut)
                        continue
                    name = clip_name(text, taken)
                    entry = ManifestEntry(
                        name=name, text=text, prompt=number, seed=seed, fps=GRID_FPS, frames=cut.last - cut.first,
                        take_start=round(cut.first / GRID_FPS, 3),
                        speech=(round(cut.span.start, 3), round(cut.span.end, 3)), alignment="estimated",
                        mode="silent" if options.silent else "voice", source=options.source,
                        audio=options.audio_file or ("microphone" if options.sound else "none"))
                    save_clip(folder, take, cut, entry, options.rate)
                    taken.add(name)
                    saved.append(name)
                    log(f"saved {name}")
                    break
                else:
                    log(f"gave up on '{text}' after {options.attempts} takes")
        except SessionStopped:
            log("session stopped in the window")
            return Session(tuple(saved), tuple(rejected), stopped=True)
        except KeyboardInterrupt:
            raise SessionInterrupted(Session(tuple(saved), tuple(rejected))) from None
        except (CaptureError, AudioError, OSError) as e:
            raise SessionFailed(Session(tuple(saved), tuple(rejected)), e) from e
        finally:
            screen.close()
    return Session(tuple(saved), tuple(rejected))


def _seed_problem(args: argparse.Namespace) -> str | None:
    """--seed orders the prompts, and a GRID clip standing in for the camera makes its sentence every prompt."""
    if args.seed is None or own_sentence(args.source) is None:
        return None
    return (f"--seed has no effect with --source {args.source}: a GRID clip standing in says its own sentence at "
            "every prompt")


def _kept(session: Session | None, folder: Path) -> str:
    """What a session that ended early leaves: the clips it saved, each whole."""
    saved = len(session.saved) if session else 0
    return "no clip was saved" if not saved else f"the clip saved is kept in {folder}" if saved == 1 else \
        f"the {saved} clips saved are kept in {folder}"


def _exit_code(e: Exception) -> int:
    """A stand-in that ended early (3), a failure of lipstream's own reading (1), or bad input (2)."""
    return EXIT_SOURCE_ENDED if isinstance(e, SourceEnded) else EXIT_FAILED if isinstance(e, SourceFailed) \
        else EXIT_USAGE


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m realtime.record", description=summary(__doc__))
    parser.add_argument("--out", type=named_path, required=True, help="GRID folder to add the clips to")
    parser.add_argument("--speaker", type=folder_name, default=RecordOptions.speaker, help="the speaker's folder name")
    parser.add_argument("--count", type=at_least(1, MOST_CLIPS), default=RecordOptions.count,
                        help=f"clips to record, up to {MOST_CLIPS} a session")
    parser.add_argument("--source", type=named, default=RecordOptions.source,
                        help="camera index, or a video file standing in for the camera")
    parser.add_argument("--audio-file", type=named,
                        help="a sound file (or a video's sound) standing in for the microphone")
    parser.add_argument("--fast", action="store_true",
                        help="stand-ins: read the video and sound files as fast as possible, not in real time")
    parser.add_argument("--silent", action="store_true", help="mouthed without voice: the lips give the spoken span")
    parser.add_argument("--headless", action="store_true", help="print the prompts instead of opening a window")
    parser.add_argument("--seed", type=at_least(0),
                        help="prompt order (default: the order the speaker's first session began, else 0)")
    parser.checks.append(_seed_problem)
    args = parser.parse_args(argv)
    options = RecordOptions(out=args.out, speaker=args.speaker, count=args.count, source=args.source,
                            audio_file=args.audio_file, fast=args.fast, silent=args.silent, headless=args.headless,
                            seed=args.seed)
    if not args.headless and (problem := display_problem()):
        log(f"error: {problem}; use --headless to have the prompts printed")
        return EXIT_USAGE
    if (video := local_path(args.source)) is not None and video.is_file() and own_sentence(str(video)) is None:
        log(f"error: --source {args.source}: a video stands in for the camera only as a GRID clip named by its "
            "sentence (like bbaf2n.mp4); another does not say the prompts, and its clips would be labelled with them")
        return EXIT_USAGE
    said, heard = own_sentence(args.source), own_sentence(args.audio_file) if args.audio_file else None
    if said and heard and heard != said:  # the clip's words would be timed by another sentence's sound
        log(f"error: --audio-file {args.audio_file} says '{heard}', and --source {args.source} '{said}': pass one "
            "GRID clip as both stand-ins")
        return EXIT_USAGE
    folder = options.out / options.speaker
    try:
        problem = layout_problem(folder)
        if problem:
            raise NotADirectoryError(problem)
        session = record(options)
    except KeyboardInterrupt as e:
        log(f"interrupted: {_kept(e.session if isinstance(e, SessionInterrupted) else None, folder)}")
        return EXIT_INTERRUPTED
    except SessionFailed as e:
        log(f"error: {e.cause}; {_kept(e.session, folder)}")
        return _exit_code(e.cause)
    except (CaptureError, AudioError, OSError, ValueError) as e:  # ValueError: a manifest it cannot read on from
        log(f"error: {e}")
        return _exit_code(e)
    saved, rejected = len(session.saved), len(session.rejected)
    failed = not saved and not session.stopped  # a session that saved nothing failed, whatever each take's reason
    log(f"{'error: ' if failed else ''}{saved} clip{'' if saved == 1 else 's'} saved in "
        f"{options.out / options.speaker}, {rejected} take{'' if rejected == 1 else 's'} not saved")
    return EXIT_USAGE if failed else EXIT_OK  # quitting before a clip was saved is the user's choice, not a failure


if __name__ == "__main__":
    sys.exit(run_command(main))
