"""How steady the crops in a prepared cache are, whether they hold the lips, and a montage of what the
model sees.

    python -m training.report --cache FILE.h5 [--montage docs/crops.png] [--json]
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

import cv2
import h5py
import numpy as np

from realtime.cli import Parser, named_path, summary
from realtime.crop import MOUTH_CORNERS
from realtime.exits import EXIT_OK, EXIT_USAGE
from realtime.files import make_folder_for, run_command
from realtime.interrupts import interruptible
from training.cache import complete_clips, open_cache, read_crop_spec

MONTAGE_SCALE = 2  # crops are small; nearest-neighbour upscaling keeps their pixels visible as they are
_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.5
_GAP = 2  # dark pixels between tiles, so neighbouring crops do not run into each other


@dataclass(frozen=True)
class CacheReport:
    clips: int
    frames: int
    width_cv: float  # median over clips of std/mean of the crop width: zoom the face did not cause
    jitter_median_px: float  # frame-to-frame movement of the crop centre
    jitter_p95_px: float
    held_fraction: float  # frames cut at a held pose through a detection drop-out
    # Of the tracked frames (None when every frame was held):
    frontal_median: float | None  # realtime.crop.frontality: 1 faces the camera squarely
    lips_outside_fraction: float | None  # frames with a lip landmark outside the crop: the model misses it
    mouth_width_share: float | None  # median gap between the mouth's corners across the crop, in its widths


def in_box(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Points (T, N, 2) in the frame as fractions of their frame's crop box (T, 4, 2; clockwise from
    top-left): 0..1 across and down inside it."""
    origin, across, down = box[:, None, 0], box[:, None, 1] - box[:, None, 0], box[:, None, 3] - box[:, None, 0]
    offset = points - origin
    return np.stack([(offset * across).sum(-1) / (across * across).sum(-1),
                     (offset * down).sum(-1) / (down * down).sum(-1)], axis=-1)


def summarize(f: h5py.File) -> CacheReport:
    clips = complete_clips(f)
    if not clips:
        raise ValueError(f"{f.filename} holds no complete clips")
    for key, g in clips:  # h5py's KeyError names neither the clip nor what to do
        if missing := [name for name in ("mouth", "pose", "box", "lips", "quality", "held") if name not in g]:
            raise ValueError(f"{f.filename}: clip {key} has no {' or '.join(missing)}: prepare it again")
        if not len(g["mouth"]):
            raise ValueError(f"{f.filename}: clip {key} has no frames: prepare it again")
    poses = [g["pose"][()] for _, g in clips]
    held = np.concatenate([g["held"][()] for _, g in clips])
    steps = np.concatenate([np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1) for p in poses])
    tracked = ~held  # a held frame has no landmarks of its own
    lips = np.concatenate([in_box(g["lips"][()], g["box"][()]) for _, g in clips])[tracked]
    quality = np.concatenate([g["quality"][()] for _, g in clips])[tracked]
    outside = ((lips < 0) | (lips > 1)).any(axis=(1, 2))
    left, right = lips[:, MOUTH_CORNERS[0], 0], lips[:, MOUTH_CORNERS[1], 0]
    return CacheReport(
        clips=len(clips), frames=len(held),
        width_cv=float(np.median([p[:, 2].std() / p[:, 2].mean() for p in poses])),
        jitter_median_px=float(np.median(steps)), jitter_p95_px=float(np.percentile(steps, 95)),
        held_fraction=float(held.mean()),
        frontal_median=float(np.median(quality)) if len(quality) else None,
        lips_outside_fraction=float(outside.mean()) if len(outside) else None,
        mouth_width_share=float(np.median(np.abs(right - left))) if len(left) else None,
    )


def montage(f: h5py.File, rows: int = 6, cols: int = 8) -> np.ndarray:
    """BGR image: `rows` clips spread over the cache, `cols` evenly spaced crops of each, labelled."""
    clips = complete_clips(f)
    picked = [clips[i] for i in np.linspace(0, len(clips) - 1, min(rows, len(clips))).round().astype(int)]
    label_width = max(cv2.getTextSize(key, _FONT, _FONT_SCALE, 1)[0][0] for key, _ in picked) + 12
    lines = []
    for key, g in picked:
        mouth = g["mouth"]
        tiles = [mouth[int(i)] for i in np.linspace(0, len(mouth) - 1, cols).round()]
        tiles = [cv2.cvtColor(t, cv2.COLOR_GRAY2BGR if t.shape[-1] == 1 else cv2.COLOR_RGB2BGR) for t in tiles]
        tiles = [cv2.resize(t, None, fx=MONTAGE_SCALE, fy=MONTAGE_SCALE, interpolation=cv2.INTER_NEAREST)
                 for t in tiles]
        height = tiles[0].shape[0]
        label = np.zeros((height, label_width, 3), np.uint8)
        cv2.putText(label, key, (6, height // 2 + 5), _FONT, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
        gap = np.zeros((height, _GAP, 3), np.uint8)
        lines.append(np.hstack([label] + [part for t in tiles for part in (gap, t)]))
        lines.append(np.zeros((_GAP, lines[-1].shape[1], 3), np.uint8))
    return np.vstack(lines[:-1])


@interruptible
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m training.report", description=summary(__doc__))
    parser.add_argument("--cache", type=named_path, required=True, help="HDF5 cache made by training.prepare")
    parser.add_argument("--montage", type=named_path, help="write a PNG of crops from a few clips here")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.montage and args.montage.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        parser.error("--montage must name a .png or .jpg file")
    try:
        read_crop_spec(args.cache)  # an HDF5 file of another program is told as the other commands tell it
        with open_cache(args.cache) as f:
            report = summarize(f)
            image = montage(f) if args.montage else None
        if image is not None:
            make_folder_for(args.montage)
            if not cv2.imwrite(str(args.montage), image):
                raise OSError(f"could not write {args.montage}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return EXIT_OK
    print(f"clips                {report.clips}")
    print(f"frames               {report.frames}")
    print(f"crop width std/mean  {report.width_cv:.4f} (median over clips)")
    print(f"crop centre jitter   {report.jitter_median_px:.2f} px median, {report.jitter_p95_px:.2f} px p95 "
          "(frame to frame)")
    print(f"held frames          {100 * report.held_fraction:.2f}%")
    if report.frontal_median is None or report.lips_outside_fraction is None or report.mouth_width_share is None:
        print("tracked frames       none: every frame was held")
    else:
        print(f"frontality           {report.frontal_median:.3f} (median; 1 faces the camera squarely)")
        print(f"lips outside crop    {100 * report.lips_outside_fraction:.2f}% of tracked frames")
        print(f"mouth width          {report.mouth_width_share:.2f} of the crop's width (median)")
    if args.montage:
        print(f"montage              {args.montage}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
