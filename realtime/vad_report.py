"""How close the voice activity detector's speech span comes to GRID's word alignments.

    python -m realtime.vad_report --grid DIR [--count 100]

`count` clips are taken evenly across the sorted corpus. For each, the detected start is compared with the
first word's start and the detected end with the last word's end; the report gives the median and 95th
percentile of the absolute errors in ms over the clips in which speech was found, and the median signed
error (a bias that VadOptions' pre and post would absorb).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from realtime.activity import VadOptions, detect_speech
from realtime.audio import RATE, AudioError, read_audio
from realtime.cli import Parser, at_least, named_path, summary
from realtime.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from realtime.files import run_command
from realtime.grid import GRID_FPS, AlignError, Clip, clip_files, find_clips, read_align
from realtime.interrupts import interruptible


def spread(clips: list[Clip], count: int) -> list[Clip]:
    """`count` clips evenly across the list, so the sample covers every part of the corpus."""
    count = min(count, len(clips))
    return [clips[i * len(clips) // count] for i in range(count)]


def estimated_by_record(clips: list[Clip]) -> set[Path]:
    """The videos among `clips` whose align files realtime.record estimated from this detector's own span
    (their manifest.jsonl says so): measured against them, the detector would be measured against itself."""
    estimated = set()
    for folder in {c.video.parent.parent for c in clips}:  # a speaker's folder: video/, align/, manifest.jsonl
        manifest = folder / "manifest.jsonl"
        if not manifest.is_file():
            continue
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("alignment") == "estimated":
                estimated.add(clip_files(folder, str(entry.get("name")))[0])
    return estimated


def boundary_errors(clip: Clip, options: VadOptions = VadOptions(), rate: int = RATE) -> tuple[float, float]:
    """Detected minus aligned start and end of the speech, in seconds; inf when no speech was found."""
    words = [t for t in read_align(clip.aligned) if t.is_word]
    sound = read_audio(clip.video, rate)
    if len(sound) / rate < words[-1].end / GRID_FPS:  # a file cut off: no miss of the detector's
        raise AudioError(f"its sound ends at {len(sound) / rate:.2f} s, before its last word "
                         f"({words[-1].end / GRID_FPS:.2f} s)")
    span = detect_speech(sound, rate, options)
    if span is None:
        return np.inf, np.inf
    return span.start - words[0].start / GRID_FPS, span.end - words[-1].end / GRID_FPS


@interruptible
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m realtime.vad_report", description=summary(__doc__))
    parser.add_argument("--grid", type=named_path, required=True, help="GRID folder with video/*.mp4 and align/*.align")
    parser.add_argument("--count", type=at_least(1), default=100)
    args = parser.parse_args(argv)
    try:
        clips = [c for c in find_clips(args.grid) if c.align is not None]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    estimated = estimated_by_record(clips)
    if left_out := sum(c.video in estimated for c in clips):
        clips = [c for c in clips if c.video not in estimated]
        print(f"left out {left_out} clip{'' if left_out == 1 else 's'} realtime.record aligned by this "
              "detector's own span (their manifest says \"estimated\")", file=sys.stderr)
    if not clips:
        print(f"error: no clips with align files of their own under {args.grid}", file=sys.stderr)
        return EXIT_USAGE
    measured = []
    for clip in spread(clips, args.count):
        try:
            measured.append(boundary_errors(clip))
        except (AudioError, AlignError) as e:  # one bad clip is reported, not the end of the report
            print(f"skipped {clip.speaker}/{clip.name}: {e}", file=sys.stderr)
    if not measured:
        print("error: no clip could be measured", file=sys.stderr)
        return EXIT_USAGE
    errors = np.array(measured) * 1000
    found = errors[np.isfinite(errors[:, 0])]  # a clip in which no speech was found has no boundary to compare
    print(f"{len(errors)} clip{'' if len(errors) == 1 else 's'}, speech found in {len(found)}")
    if not len(found):
        print("error: speech was found in no clip: no boundary to compare", file=sys.stderr)
        return EXIT_FAILED
    for name, signed in (("start", found[:, 0]), ("end", found[:, 1])):
        print(f"{name:>5}: median |error| {np.median(np.abs(signed)):.0f} ms, "
              f"p95 {np.percentile(np.abs(signed), 95):.0f} ms, median signed {np.median(signed):+.0f} ms")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
