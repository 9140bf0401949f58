"""Turn GRID-layout clips into an HDF5 cache of mouth crops (the model's input), resumably.

    python -m training.prepare --grid DIR --out FILE.h5 [--workers N] [--crop-size H W] [--face-width F]
        [--below-nose B] [--grey]

Layout: /clips/<speaker>/<name> holds `mouth` (T, H, W, C) uint8 plus per-frame `pose`, `box`, `lips`,
`quality`, `held`, `speech` (what was heard: training.speech), and word frame `spans` (on the video's own
frames; align files count GRID's 25 fps frames); attributes `text`, `words` (a JSON list), `fps`,
`spans_fps` (the rate `spans` count in: a clip at another rate cached before spans were counted so is
made again), `source`, `first_frame` (the video's frames trimmed before the first kept, which `spans` count
from), `stamp` (what it was made from: its video's bytes, by digest, its align text), `silent` on a clip
without sound, whose sound is not looked for again, and `complete`, written last (a clip without it was cut
short, and is made again). A clip whose stamp no longer matches its files (re-recorded, or its align
corrected) is made again, as is one cached without a stamp.
The file's attribute `crop` records the crop spec, and `speech` the speech features' format: features
of another format, and the `silent` marks, are made again (as is a clip whose sound could not be read
this time). Work goes to FILE.h5.partial (a copy of FILE.h5 when adding to one), which replaces
FILE.h5 when every clip is done: a FILE.h5 is always complete, and stays while a rerun adds to it; an
interrupted run resumes from the partial file. A run that adds nothing (its new clips failing again
included) leaves FILE.h5 untouched.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.pool import Pool
from pathlib import Path

import cv2
import h5py
import numpy as np
from tqdm import tqdm

from realtime.audio import AudioError, NoAudioTrack, read_audio
from realtime.capture import SHORTFALL, Video, capture_fps, video_timeline
from realtime.cli import Parser, at_least, named_path, summary, within
from realtime.crop import CropSpec
from realtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import make_folder_for, run_command
from realtime.grid import GRID_FPS, AlignError, Clip, find_clips, read_align, sentence, sentence_from_code
from realtime.interrupts import kept_stop_requests
from realtime.tracker import TrackerOptions, lip_landmarks, tracked_video
from training.cache import LEAST_CROP, check_crop, complete_clips, open_cache
from training.speech import FORMAT as SPEECH_FORMAT
from training.speech import RATE, speech_features

MIN_FRAMES = 8
# Pixels a crop side at most: the mouth spans about 65 of a 360x288 GRID frame, so larger crops add nothing the
# video holds, and at 5000 a side one 3 s clip took 16.7 GB of memory.
MOST_CROP = 256


@dataclass(frozen=True)
class PreparedClip:
    clip: Clip
    text: str
    fps: float
    mouth: np.ndarray  # (T, H, W, C) uint8
    pose: np.ndarray  # (T, 4) cx, cy, width, angle
    box: np.ndarray  # (T, 4, 2)
    lips: np.ndarray  # (T, 40, 2), NaN where the detection was held
    quality: np.ndarray  # (T,)
    held: np.ndarray  # (T,) bool
    words: tuple[str, ...]
    spans: np.ndarray  # (W, 2) start, end frame of each word, counted from first_frame
    first_frame: int  # frames trimmed from the start of the video (no face in them)
    speech: np.ndarray | None  # (T, D) speech features of the kept frames; None when none were read
    silent: bool  # the video has no sound for its kept frames (not read again)
    stamp: str  # clip_stamp when it was read


class ClipError(Exception):
    """A clip that cannot be used; the message says why."""


def clip_stamp(clip: Clip) -> str:
    """What a clip is made from: its video's bytes (their digest) and its align file's text. A clip
    re-recorded or re-aligned under the same name has another stamp, so its cached crops and text are
    not taken for the new ones; the same files copied (to another machine, from a backup) have the same."""
    with open(clip.video, "rb") as f:
        video = hashlib.file_digest(f, "sha256").hexdigest()
    align = clip.align.read_text(encoding="utf-8", errors="replace") if clip.align is not None else None
    return json.dumps({"video_sha256": video, "align": align})


def clip_text(clip: Clip) -> tuple[str, tuple[str, ...], np.ndarray]:
    """The sentence, its words and their frame spans (empty when there is no align file)."""
    if clip.align is not None:
        tokens = read_align(clip.align)
        words = [t for t in tokens if t.is_word]
        return (sentence(tokens), tuple(t.word for t in words),
                np.array([(t.start, t.end) for t in words], dtype=np.float32).reshape(-1, 2))
    try:
        text = sentence_from_code(clip.name)
    except ValueError:
        raise ClipError("no align file, and the name is not a GRID sentence code") from None
    return text, tuple(text.split()), np.zeros((0, 2), dtype=np.float32)


def clip_speech(video: Path, fps: float, frames: int, first_frame: int) -> tuple[np.ndarray | None, bool]:
    """(the speech features of a clip's kept frames, whether it is silent): (None, True) when the video
    has no sound for those frames, (None, False) when its sound cannot be read now (a broken track, a
    busy disk), so a later run tries again."""
    try:  # the sound from the video's first frame on: frame k is heard k / fps seconds after it
        heard = read_audio(video, RATE)[round(video_timeline(str(video))[0] * RATE):]
        features = speech_features(heard, fps, frames, first_frame)
    except NoAudioTrack:
        return None, True
    except AudioError:
        return None, False
    return features, features is None


def prepare_clip(clip: Clip, options: TrackerOptions, with_speech: bool) -> PreparedClip:
    """Track every frame of one clip with a fresh tracker; raise ClipError when it is unusable.
    `with_speech`: read its sound's speech features too (training's target; evaluation needs the crops
    alone)."""
    stamp = clip_stamp(clip)  # before reading: a file changed meanwhile is read again next time
    text, words, spans = clip_text(clip)
    capture = Video(str(clip.video))
    if not capture.isOpened():
        raise ClipError(capture.refusal or "unreadable video")
    fps = capture_fps(capture, GRID_FPS)
    expected = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    with tracked_video(capture, fps, options) as tracked:
        results = list(tracked)
    if 0 < expected < 1e12 and (expected - len(results)) / fps > SHORTFALL:  # a cut-off download
        raise ClipError(f"video ended early: {len(results)} of {expected:.0f} frames")
    spans = spans * (fps / GRID_FPS)  # the words' spans in this video's frames
    if len(spans) and spans[-1, 1] > len(results):  # no face could be found in frames that are not there
        raise ClipError(f"its align runs past the video: '{words[-1]}' ends at frame {spans[-1, 1]:g} "
                        f"of {len(results)}")
    found = [i for i, r in enumerate(results) if r.crop is not None]
    if not found:
        raise ClipError("no face found")
    # Frames without a face at either end (GRID has some corrupt leading frames) are trimmed when no
    # word is spoken in them; a face lost anywhere else makes the clip unusable.
    first, last = found[0], found[-1] + 1
    lost = len(results) - len(found)
    if lost != len(results) - (last - first) or (len(spans) and (spans[0, 0] < first or spans[-1, 1] > last)):
        raise ClipError(f"face lost in {lost} of {len(results)} frames")
    results = results[first:last]
    spans = spans - first
    if len(results) < MIN_FRAMES:
        raise ClipError(f"too short ({len(results)} frames)")
    faces = [(r.crop, r.pose, r.box) for r in results
             if r.crop is not None and r.pose is not None and r.box is not None]
    assert len(faces) == len(results)  # frames without a face were trimmed, or the clip refused, above
    speech, silent = clip_speech(clip.video, float(fps), len(results), first) if with_speech else (None, False)
    return PreparedClip(
        clip=clip, text=text, fps=float(fps),
        mouth=np.stack([crop for crop, _, _ in faces]),
        pose=np.stack([pose.as_array() for _, pose, _ in faces]).astype(np.float32),
        box=np.stack([box for _, _, box in faces]).astype(np.float32),
        lips=lip_landmarks(results).astype(np.float32),
        quality=np.array([r.quality for r in results], dtype=np.float32),
        held=np.array([r.reason == "held" for r in results]),
        words=words, spans=spans, first_frame=first,
        speech=speech, silent=silent, stamp=stamp,
    )


@contextmanager
def worker_pool(workers: int, tasks: int) -> Iterator[Pool]:
    """Up to `workers` spawned workers, and no more than `tasks` (one at least): each imports MediaPipe, seconds
    of work for nothing when idle. They leave Ctrl-C to the parent. Ctrl-C reaches the terminal's whole process group,
    and the parent alone says what became of the run (each worker would print a traceback of its own).
    A spawned process keeps an ignored signal ignored from its first instruction, so the parent ignores
    Ctrl-C in the milliseconds they take to start (an initializer alone comes too late for a worker still
    importing, for seconds). The initializer covers a worker the pool starts later, when one has died."""
    on_main_thread = threading.current_thread() is threading.main_thread()  # signals are the main thread's
    previous = signal.getsignal(signal.SIGINT) if on_main_thread else None  # None too: a handler set in C
    if previous is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool = mp.get_context("spawn").Pool(max(1, min(workers, tasks)), initializer=signal.signal,
                                            initargs=(signal.SIGINT, signal.SIG_IGN))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    with pool:
        yield pool


def try_prepare(job: tuple[Clip, TrackerOptions, bool]) -> tuple[Clip, PreparedClip | None, str]:
    """prepare_clip for a worker pool: never raises; a failure comes back as its reason."""
    clip, options, with_speech = job
    try:
        return clip, prepare_clip(clip, options, with_speech), ""
    except (ClipError, AlignError) as e:
        return clip, None, str(e)
    except Exception as e:  # a broken file must not stop the run; it is listed at the end
        return clip, None, f"{type(e).__name__}: {e}"


def speech_job(job: tuple[str, Path, float, int, int]) -> tuple[str, np.ndarray | None, bool]:
    """`clip_speech` for a worker pool: (key, video, fps, frames, first frame) -> (key, features, silent)."""
    key, video, fps, frames, first = job
    return key, *clip_speech(video, fps, frames, first)


def speech_format_current(f: h5py.File) -> bool:
    """Whether the cache's speech features are of this version's format (else all are made again)."""
    return json.loads(f.attrs.get("speech", "null")) == SPEECH_FORMAT


def add_missing_speech(f: h5py.File, videos: dict[str, Path], pool: Pool) -> None:
    """Speech features for cached clips that have none (a cache made before they existed, a sound not
    read last time) or have them in another format, read from the clips' videos under this run's --grid;
    clips marked silent are skipped, and clips found silent are marked."""
    if not speech_format_current(f):  # every clip's, under --grid or not
        for speaker in f.get("clips", {}).values():
            for g in speaker.values():
                if "speech" in g:
                    del g["speech"]
                g.attrs.pop("silent", None)
        f.attrs["speech"] = json.dumps(SPEECH_FORMAT)
    jobs = []
    for key, video in sorted(videos.items()):
        g = f[f"clips/{key}"]
        if needs_speech(g):
            jobs.append((key, video, float(g.attrs["fps"]), len(g["mouth"]), int(g.attrs["first_frame"])))
    if not jobs:
        return
    for key, speech, silent in tqdm(pool.imap_unordered(speech_job, jobs), total=len(jobs), desc="speech",
                                    unit="clip", dynamic_ncols=True):
        if speech is not None:
            f[f"clips/{key}"].create_dataset("speech", data=speech.astype(np.float16))
        elif silent:
            f[f"clips/{key}"].attrs["silent"] = True


def needs_speech(g: h5py.Group) -> bool:
    """Whether cached clip `g` has no speech features and is not known to be silent."""
    return "speech" not in g and not g.attrs.get("silent", False)


def write_clip(f: h5py.File, p: PreparedClip) -> None:
    """Write one clip; the `complete` attribute goes last, so a half-written group is recognised."""
    key = f"clips/{p.clip.key}"
    if key in f:
        del f[key]
    g = f.create_group(key)
    g.create_dataset("mouth", data=p.mouth, chunks=(1, *p.mouth.shape[1:]), compression="lzf")
    for name in ("pose", "box", "lips", "quality", "held", "spans"):
        g.create_dataset(name, data=getattr(p, name))
    if p.speech is not None:
        g.create_dataset("speech", data=p.speech.astype(np.float16))
    g.attrs.update(text=p.text, fps=p.fps, source=str(p.clip.video), words=json.dumps(list(p.words)),
                   first_frame=p.first_frame, stamp=p.stamp, spans_fps=p.fps)
    if p.silent:
        g.attrs["silent"] = True
    g.attrs["complete"] = True
    f.flush()


def is_stale(g: h5py.Group, clip: Clip) -> bool:
    """Whether cached clip `g` was made from other files than `clip`'s (or they cannot be read now, which
    preparing it again will say), or its word spans count other frames than its own: a clip at another rate
    than GRID's, cached before spans were counted on its own frames (`spans_fps`)."""
    if g.attrs.get("spans_fps", GRID_FPS) != g.attrs["fps"]:
        return True
    try:
        return g.attrs.get("stamp") != clip_stamp(clip)
    except OSError:
        return True


def done_keys(f: h5py.File) -> set[str]:
    """Keys of completely written clips; incomplete groups (an interrupted write) are removed."""
    done = {key for key, _ in complete_clips(f)}
    for key in {f"{speaker}/{name}" for speaker, group in f.get("clips", {}).items() for name in group} - done:
        del f[f"clips/{key}"]
    return done


def stale_keys(f: h5py.File, clips: list[Clip]) -> set[str]:
    """Keys of the clips of `clips` that cache `f` holds whole, made from other files than theirs now."""
    done = dict(complete_clips(f))
    return {c.key for c in clips if c.key in done and is_stale(done[c.key], c)}


def more_to_do(f: h5py.File, clips: list[Clip]) -> bool:
    """Whether cache `f` needs more than clips made (again), read only: a half-written clip to remove, or
    speech features to add to a clip of `clips` (to every clip, when theirs are of an older format)."""
    if not speech_format_current(f):
        return True
    done = dict(complete_clips(f))
    if sum(len(group) for group in f.get("clips", {}).values()) > len(done):
        return True
    return any(needs_speech(done[c.key]) for c in clips if c.key in done)


def prepare(grid: Path, out: Path, workers: int, spec: CropSpec = CropSpec()) -> list[tuple[Clip, str]]:
    """Cache every clip under `grid` into `out`; returns the skipped clips with reasons."""
    clips = find_clips(grid)
    if not clips:
        raise FileNotFoundError(f"no videos under {grid}")
    partial = out.with_name(out.name + ".partial")
    # Each checked before renaming, so a refused run leaves the file at --out as it was; a partial
    # without crop settings was cut short between its making and their setting.
    for existing in (out, partial):
        if not existing.exists():
            continue
        if existing == partial:
            with open_cache(existing) as f:
                if "crop" not in f.attrs:
                    continue
        check_crop(existing, spec, "this run", "use a new --out")
    # Work goes to a copy, so the cache stays usable while more is added. When the only work is clips
    # new to it, the copy waits for the first of them made: a rerun whose clips all fail again, as a few
    # of GRID's do, or that finds nothing new, leaves the cache untouched.
    only_new, cached, stale = False, set(), None  # stale: read from the cache, which the copy then is
    if out.exists() and not partial.exists():
        with open_cache(out) as f:
            cached, stale = {key for key, _ in complete_clips(f)}, stale_keys(f, clips)
            only_new = not stale and not more_to_do(f, clips)
    make_folder_for(out)
    skipped: list[tuple[Clip, str]] = []
    with ExitStack() as stack:

        def opened() -> h5py.File:
            if out.exists() and not partial.exists():
                copying = out.with_name(out.name + ".copying")  # so an interrupted copy is no partial cache
                shutil.copyfile(out, copying)
                copying.replace(partial)
            f = stack.enter_context(h5py.File(partial, "a"))
            f.attrs["crop"] = json.dumps(asdict(spec))
            return f

        f, done, changed = None, cached, set()
        if not only_new:
            f = opened()
            done = done_keys(f)
            changed = stale_keys(f, clips) if stale is None else stale  # each video's digest read once
            for key in changed:  # gone before it is made again: a clip that now fails is not used stale
                del f[f"clips/{key}"]
            done -= changed
        todo = [c for c in clips if c.key not in done]
        options = TrackerOptions(crop=spec)
        again = f" ({len(changed)} changed since they were cached, or cached unstamped)" if changed else ""
        print(f"{len(clips)} clips, {len(done)} already cached, {len(todo)} to prepare{again}", file=sys.stderr)
        # A Ctrl-C that Python drops (raised in one of h5py's weakref callbacks) stops the run at the next clip.
        # The clips cached work too, when their sound is added.
        with kept_stop_requests() as stopped, worker_pool(workers, len(clips)) as pool:
            if f is not None:
                add_missing_speech(f, {c.key: c.video for c in clips if c.key in done}, pool)
            with tqdm(total=len(todo), unit="clip", dynamic_ncols=True, disable=not todo) as bar:
                for clip, prepared, why in pool.imap_unordered(try_prepare, [(c, options, True) for c in todo]):
                    stopped()
                    if prepared is None:
                        skipped.append((clip, why))
                    else:
                        write_clip(f or (f := opened()), prepared)
                    bar.update()
            stopped()
        if f is None:  # nothing was made: the cache is as it was
            return skipped
        usable = bool(done_keys(f))
    if not usable:  # a cache of no clips would only fail later, in training or export
        partial.unlink()
        why = f", e.g. {skipped[0][0].name}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"no usable clip under {grid} ({len(skipped)} skipped{why}): no cache written")
    partial.replace(out)
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.prepare", description=summary(__doc__))
    parser.add_argument("--grid", type=named_path, required=True, help="GRID folder (speakers, or one speaker)")
    parser.add_argument("--out", type=named_path, required=True, help="HDF5 cache to write or resume")
    parser.add_argument("--workers", type=at_least(1), default=os.cpu_count() or 1,
                        help="processes tracking the clips, at most one a clip (default: one per core)")
    default = CropSpec()
    parser.add_argument("--crop-size", type=at_least(LEAST_CROP, MOST_CROP), nargs=2, metavar=("H", "W"),
                        default=(default.height, default.width),
                        help=f"crop height and width in pixels, {LEAST_CROP} to {MOST_CROP}")
    # Bounds that keep the crop about the face (the mouth is about 0.5 eye-corner distances below the
    # nose, the chin about 1): far beyond them a cache of background would be made without a word.
    parser.add_argument("--face-width", type=within(0, 4, above=True), default=default.face_width,
                        help="crop width in outer-eye-corner distances, up to 4")
    parser.add_argument("--below-nose", type=within(-1, 2), default=default.below_nose,
                        help="crop centre below the base of the nose, in outer-eye-corner distances, -1 to 2")
    parser.add_argument("--grey", action="store_true", help="one grey channel instead of RGB")
    args = parser.parse_args(argv)
    spec = CropSpec(height=args.crop_size[0], width=args.crop_size[1], channels=1 if args.grey else 3,
                    face_width=args.face_width, below_nose=args.below_nose)
    try:
        skipped = prepare(args.grid, args.out, args.workers, spec)
    except KeyboardInterrupt:
        partial = args.out.with_name(args.out.name + ".partial")
        kept = f"finished clips are kept in {partial}; run again to resume" if partial.exists() else \
            f"{args.out} is as it was; run again to begin" if args.out.exists() else "run again to begin"
        print(f"interrupted: {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for clip, why in skipped:
        print(f"skipped {clip.speaker}/{clip.name}: {why}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} clips skipped, each named above with why; the next run tries them again",
              file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
