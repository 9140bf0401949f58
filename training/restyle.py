"""Write GRID clips with another look: a reproducible stand-in for "a new person" when measuring
fine-tuning, since no second person can be recorded here.

    python -m training.restyle --grid DIR --out DIR [--split val|all] [--count N]

Each frame gets red and blue swapped (another skin and lighting tone than any colour jitter in
training), a darker gamma and a softer focus (a cheaper webcam). The words and their timing are
the speaker's own, so the align files are copied unchanged into our GRID layout
(`OUT/<speaker>x/video/<name>.mp4`, `OUT/<speaker>x/align/<name>.align`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from realtime.cli import Parser, at_least, named_path, summary
from realtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import folder_problem, run_command
from realtime.grid import clip_files, video_fps
from realtime.interrupts import stops_like_ctrl_c
from training.split import select_clips
from training.video import Mp4Writer, read_video

_GAMMA = (255 * (np.arange(256) / 255) ** 1.5).astype(np.uint8)  # darker mid-tones


def restyle(image: np.ndarray) -> np.ndarray:
    """One BGR frame with the other look."""
    return cv2.GaussianBlur(cv2.LUT(image[:, :, ::-1], _GAMMA), (5, 5), 1.2)


def restyle_clips(grid: Path, out: Path, split: str, count: int) -> int:
    clips = select_clips(grid, split, count)
    if problem := folder_problem(out):  # one line before any clip, not an OSError's dump after the first
        raise NotADirectoryError(problem)
    for clip in clips:
        speaker = out / f"{clip.speaker}x"
        video, align = clip_files(speaker, clip.name)
        for folder in (video.parent, align.parent):
            folder.mkdir(parents=True, exist_ok=True)
        with Mp4Writer(video, video_fps(clip.video)) as writer:
            for image in read_video(clip.video):
                writer.write(restyle(image))
            if not writer.close():
                raise ValueError(f"{clip.video} has no readable frames")
        shutil.copy(clip.aligned, align)
    return len(clips)


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.restyle", description=summary(__doc__))
    parser.add_argument("--grid", type=named_path, required=True, help="GRID folder of the clips to restyle")
    parser.add_argument("--out", type=named_path, required=True, help="the folder to write (our GRID layout)")
    parser.add_argument("--split", choices=("val", "all"), default="val",
                        help="val: only clips no bundled model trained on")
    parser.add_argument("--count", type=at_least(0), default=0, help="at most this many clips (0: every one)")
    args = parser.parse_args(argv)
    try:
        n = restyle_clips(args.grid, args.out, args.split, args.count)
    except KeyboardInterrupt:
        print(f"interrupted: the clips finished so far are under {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {n} clips under {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
