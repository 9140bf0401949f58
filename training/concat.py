"""Join GRID clips into one continuous video with one align file, as a stand-in for a person who
keeps talking: what the streaming captioner and the latency benchmark are measured on.

    python -m training.concat --grid DIR --out FILE.mp4 [--split val|all] [--count N] [--seconds S]

Writes FILE.mp4 and FILE.align (word times shifted to the joined video, in GRID's units).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from realtime.capture import Video
from realtime.cli import Parser, at_least, named_path, non_negative, stops_like_ctrl_c, summary
from realtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import make_folder_for, outputs_problem, run_command, write_text
from training.dataset import VAL_FRACTION, is_validation
from realtime.grid import ALIGN_UNITS_PER_FRAME, AlignError, Clip, find_clips, read_align, video_fps


def fitted(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `size` (width, height) whole, its shape kept, centred on black: OpenCV's
    writer drops a frame of another size than its first without a word (a clip of another size or
    pixel shape), and the align file's times would then run ahead of the video."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    scale = min(w / iw, h / ih)
    sw, sh = max(1, round(iw * scale)), max(1, round(ih * scale))
    out = np.zeros((h, w, *image.shape[2:]), image.dtype)
    x, y = (w - sw) // 2, (h - sh) // 2
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[y:y + sh, x:x + sw] = cv2.resize(image, (sw, sh), interpolation=shrink)
    return out


class Mp4Writer:
    """An mp4 file opened at its first frame's size. It is written under a hidden partial name and
    moved into place when closed, so a failed or interrupted run leaves an earlier file whole."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.partial = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.size = (0, 0)  # width, height: the first frame's

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            h, w = image.shape[:2]
            make_folder_for(self.path)
            self.size = (w, h)
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():  # OpenCV fails silently: every frame would be lost
                raise OSError(f"cannot write a video to {self.path}")
        self.writer.write(fitted(image, self.size))

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Leaving on an exception (Ctrl-C included) drops the partial file; `close` moves it into place."""
        if kind is not None:
            if self.writer is not None:
                self.writer.release()
                self.writer = None
            self.partial.unlink(missing_ok=True)

    def close(self) -> bool:
        """Finish the file and move it into place; False when no frame was written (no file made)."""
        if self.writer is None:
            return False
        self.writer.release()
        self.writer = None
        self.partial.replace(self.path)
        return True


def read_video(source: Path) -> list[np.ndarray]:
    """Every frame of `source` that decodes, in order (a clip's few seconds)."""
    capture = Video(str(source))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    return images


def append_video(source: Path, writer: Mp4Writer,
                 transform: Callable[[np.ndarray], np.ndarray] = lambda image: image) -> int:
    """Write every frame of `source` (transformed) to `writer`; returns how many."""
    images = read_video(source)
    for image in images:
        writer.write(transform(image))
    return len(images)


def select_clips(grid: Path, split: str, count: int, found: list[Clip] | None = None) -> list[Clip]:
    """The aligned clips under `grid` (`found` there already, or looked for now): all, or those training
    holds out (`val`); the first `count` (0: all)."""
    aligned = [c for c in (find_clips(grid) if found is None else found) if c.align is not None]
    clips = [c for c in aligned if split == "all" or is_validation(c.key, VAL_FRACTION)]
    if count:
        clips = clips[:count]
    if not aligned:
        raise ValueError(f"no aligned clips under {grid}")
    if not clips:
        raise ValueError(f"none of the {len(aligned)} aligned clips under {grid} is held out for validation: "
                         "--split all takes them all")
    return clips


def check_outputs(out: Path, clips: list[Clip]) -> None:
    """Refuse, before anything is written, an output that cannot be written (a folder at the align file's
    name would fail only once the video had replaced the earlier one) or that is one of `clips`' own files
    (through links too, hard or symbolic), which the joined video or its word times would replace."""
    sources = ((path, f"clip {clip.key}'s {kind}") for clip in clips
               for kind, path in (("video", clip.video), ("align file", clip.align)))
    if problem := outputs_problem([out, out.with_suffix(".align")], sources,
                                  "cannot write {path}: it is {what}, which the joined one would replace; "
                                  "choose an --out outside the clips' folders"):
        raise ValueError(problem)


def concat(grid: Path, out: Path, split: str, count: int, seconds: float) -> tuple[int, int]:
    found = find_clips(grid)  # once: a full corpus is tens of thousands of clips
    clips = select_clips(grid, split, count, found)
    check_outputs(out, found)  # every clip's files, not only those joined
    fps = video_fps(clips[0].video)
    frames, lines, used = 0, [], 0
    with Mp4Writer(out, fps) as writer:
        for clip in clips:
            # A clip is joined whole or not at all: its words must stand in the align file over its frames.
            try:
                tokens = read_align(clip.align)
            except AlignError as e:
                print(f"skipped {clip.key}: {e}", file=sys.stderr)
                continue
            images = read_video(clip.video)
            spoken = max((t.end for t in tokens if t.is_word), default=0.0)
            if not images or len(images) < spoken:
                why = "unreadable video" if not images else \
                    f"its video ends at frame {len(images)}, before its last word ({spoken:g})"
                print(f"skipped {clip.key}: {why}", file=sys.stderr)
                continue
            start = frames
            for image in images:
                writer.write(image)
            frames += len(images)
            for token in tokens:
                s = min(start + token.start, frames)
                e = min(start + token.end, frames)
                lines.append(f"{round(s * ALIGN_UNITS_PER_FRAME)} {round(e * ALIGN_UNITS_PER_FRAME)} {token.word}")
            used += 1
            if seconds and frames >= seconds * fps:
                break
        # Both files written before either is moved into place (each checked writable before the run), so
        # that a failure leaves no video beside another video's word times.
        align = out.with_suffix(".align")
        partial_align = align.with_name(f".{align.stem}.partial{align.suffix}")
        try:
            write_text(partial_align, "\n".join(lines) + "\n")
            if not writer.close():
                raise ValueError(f"none of the {len(clips)} clips under {grid} could be joined (each said why above)")
            partial_align.replace(align)
        finally:
            partial_align.unlink(missing_ok=True)
    return used, frames


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.concat", description=summary(__doc__))
    parser.add_argument("--grid", type=named_path, required=True)
    parser.add_argument("--out", type=named_path, required=True, help="the .mp4 to write (an .align goes beside it)")
    parser.add_argument("--split", choices=("val", "all"), default="val")
    parser.add_argument("--count", type=at_least(0), default=0, help="at most this many clips (0: every one)")
    parser.add_argument("--seconds", type=non_negative, default=0, help="stop once the video is this long, in seconds (0: no limit)")
    args = parser.parse_args(argv)
    existed = args.out.exists()
    try:
        used, frames = concat(args.grid, args.out, args.split, args.count, args.seconds)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} is as it was" if existed else "interrupted: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.out} ({used} clip{'s' * (used != 1)}, {frames} frames) and {args.out.with_suffix('.align')}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
