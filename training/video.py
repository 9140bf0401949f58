"""Video files as the training tools write and read them whole: an mp4 written safely (Mp4Writer), and a
clip's frames in memory (read_video)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from realtime.capture import Video, video_images
from realtime.files import make_folder_for


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
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():  # OpenCV fails silently: every frame would be lost
                raise OSError(f"cannot write a video to {self.path}")
        self.writer.write(fitted(image, self.size))

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Leaving normally finishes the file (as `close`); on an exception (Ctrl-C included) the partial
        file is dropped."""
        if kind is None:
            self.close()
        elif self.writer is not None:
            self.writer.release()
            self.writer = None
        self.partial.unlink(missing_ok=True)

    def close(self) -> bool:
        """Finish the file and move it into place; False when no frame was written (no file made, or it was
        finished before)."""
        if self.writer is None:
            return False
        self.writer.release()
        self.writer = None
        self.partial.replace(self.path)
        return True


def read_video(source: Path) -> list[np.ndarray]:
    """Every frame of `source` that decodes, in order (a clip's few seconds)."""
    return list(video_images(Video(str(source))))
