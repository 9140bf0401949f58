"""Join GRID clips into one continuous video with one align file, as a stand-in for a person who
keeps talking: what the streaming captioner and the latency benchmark are measured on.

    python -m training.concat --grid DIR --out FILE.mp4 [--split val|all] [--count N] [--seconds S]

Writes FILE.mp4 and FILE.align (word times shifted to the joined video, in GRID's units). A clip that
cannot be joined whole (its video cut off before its words, its align file unreadable, or its frame rate
not the first clip's) is left out, said in a line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from realtime.cli import Parser, at_least, named_path, non_negative, summary
from realtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realtime.files import outputs_problem, run_command, write_text
from realtime.grid import GRID_FPS, AlignError, Clip, Token, align_text, find_clips, read_align, video_fps
from realtime.interrupts import stops_like_ctrl_c
from training.cache import same_rate
from training.split import select_clips
from training.video import Mp4Writer, read_video


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
    frames, used = 0, 0
    shifted: list[Token] = []  # the clips' words, on the joined video's frames
    with Mp4Writer(out, fps) as writer:
        for clip in clips:
            # A clip is joined whole or not at all: its words must stand in the align file over its frames.
            try:
                tokens = read_align(clip.aligned)
            except AlignError as e:
                print(f"skipped {clip.key}: {e}", file=sys.stderr)
                continue
            if not same_rate(rate := video_fps(clip.video), fps):  # its frames would play at the first clip's rate
                print(f"skipped {clip.key}: its video is {rate:g} fps, the joined one {fps:g} (the first clip's)",
                      file=sys.stderr)
                continue
            images = read_video(clip.video)
            spoken = max((t.end for t in tokens if t.is_word), default=0.0)
            if not images or len(images) * GRID_FPS / fps < spoken:
                why = "unreadable video" if not images else \
                    f"its video ends at {len(images) / fps:.2f} s, before its last word ({spoken / GRID_FPS:.2f} s)"
                print(f"skipped {clip.key}: {why}", file=sys.stderr)
                continue
            start = frames
            for image in images:
                writer.write(image)
            frames += len(images)
            # Align times are GRID frames (25 fps), the joined video's frames `fps` ones.
            offset, end = start * GRID_FPS / fps, frames * GRID_FPS / fps
            shifted.extend(Token(min(offset + t.start, end), min(offset + t.end, end), t.word) for t in tokens)
            used += 1
            if seconds and frames >= seconds * fps:
                break
        # Both files written before either is moved into place (each checked writable before the run), so
        # that a failure leaves no video beside another video's word times.
        if not used:  # before anything is written: no file, nor a folder for one
            raise ValueError(f"none of the {len(clips)} clips under {grid} could be joined (each said why above)"
                             if len(clips) > 1 else f"the clip under {grid} could not be joined (it said why above)")
        align = out.with_suffix(".align")
        partial_align = align.with_name(f".{align.stem}.partial{align.suffix}")
        try:
            write_text(partial_align, align_text(shifted))
            writer.close()
            partial_align.replace(align)
        finally:
            partial_align.unlink(missing_ok=True)
    return used, frames


@stops_like_ctrl_c
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.concat", description=summary(__doc__))
    parser.add_argument("--grid", type=named_path, required=True, help="GRID folder of the clips to join")
    parser.add_argument("--out", type=named_path, required=True, help="the .mp4 to write (an .align goes beside it)")
    parser.add_argument("--split", choices=("val", "all"), default="val",
                        help="val: the held-out clips alone (training.split), a stream no model trained on")
    parser.add_argument("--count", type=at_least(0), default=0, help="at most this many clips (0: every one)")
    parser.add_argument("--seconds", type=non_negative, default=0,
                        help="stop once the video is this long, in seconds (0: no limit)")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".mp4":
        print(f"error: --out must name an .mp4 (its word times go beside it, in {args.out.stem}.align)",
              file=sys.stderr)
        return EXIT_USAGE
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
