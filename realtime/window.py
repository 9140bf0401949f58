"""The live window: the frame with the lip contour and crop box, an inset of what the model reads,
rolling captions (committed in white, tentative in grey) and a HUD."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # a type only: the recorder's window needs none of the live pipeline
    from realtime.live import StepResult

WHITE, GREY, GREEN, YELLOW, RED = (255, 255, 255), (150, 150, 150), (80, 220, 80), (0, 220, 255), (60, 60, 230)
FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE = "lipstream"


ZOOMS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # the view's scales, + and - step through them
ZOOM = 2.0  # to begin with, if the view fits in FIRST_VIEW
FIRST_VIEW = (1600, 900)  # the largest view to begin with (width, height): a 1080p screen, less its bars
INSET = 2  # the model's crop is shown at twice its size, at most a third of the view's width and height
CAPTION_LINES = 288  # captions take the same share of any view as of a 288-line video's (GRID's) at 1x


def first_zoom(shape: tuple[int, ...]) -> float:
    """The scale to begin with for frames of this shape: ZOOM, or the largest smaller one that fits in
    FIRST_VIEW (a 1080p video at 2x would open a window larger than most screens)."""
    h, w = shape[:2]
    fitting = [z for z in ZOOMS if z <= ZOOM and w * z <= FIRST_VIEW[0] and h * z <= FIRST_VIEW[1]]
    return max(fitting, default=ZOOMS[0])


def caption_lines(committed: str, tentative: str, image_width: int,
                  text_scale: float = ZOOM) -> list[list[tuple[str, tuple[int, int, int]]]]:
    """The two caption lines an image this wide, its text drawn at this scale, shows, as runs of (word,
    colour): the newest words, older ones scrolled off the top."""
    width = max(10, int(image_width / (7.5 * text_scale)))  # characters a line holds
    words = [(w, WHITE) for w in committed.split()] + [(w, GREY) for w in tentative.split()]
    lines: list[list[tuple[str, tuple[int, int, int]]]] = [[]]
    length = 0
    for word, colour in words:
        if length and length + 1 + len(word) > width:
            lines.append([])
            length = 0
        lines[-1].append((word, colour))
        length += len(word) + (1 if length else 0)
    return lines[-2:]


def zoom(scale: float, key: int) -> float:
    """The next scale for the + (or =) and - keys; the same for any other key."""
    step = {ord("+"): 1, ord("="): 1, ord("-"): -1}.get(key, 0)
    at = min(range(len(ZOOMS)), key=lambda i: abs(ZOOMS[i] - scale))
    return ZOOMS[min(max(at + step, 0), len(ZOOMS) - 1)]


def render(step: StepResult, hud: str, scale: float = ZOOM, paused: bool = False, hidden: int = 0,
           notice: str = "") -> np.ndarray:
    """The window's image: the frame drawn at `scale`, its captions sized to the view, the rest at its
    own size; `hidden`: committed words cleared from the screen (the c key); `notice`: what a key just did
    (a transcript saved, or why not: red when it begins with "error")."""
    image = cv2.resize(step.frame.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    track = step.track
    if track.box is not None:
        cv2.polylines(image, [np.round(track.box * scale).astype(np.int32)], True, YELLOW, 1, cv2.LINE_AA)
    if track.lips is not None:
        lips = np.round(track.lips * scale).astype(np.int32)
        cv2.polylines(image, [lips[:20], lips[20:]], True, GREEN, 1, cv2.LINE_AA)
    status_width = w - 20  # the status lines' room in pixels (left of the inset, when there is one)
    if track.crop is not None:
        ch, cw = track.crop.shape[:2]
        enlarge = min(INSET, w / 3 / cw, h / 3 / ch)  # in a small view, a smaller inset: the face stays in sight
        inset = cv2.cvtColor(track.crop, cv2.COLOR_RGB2BGR) if track.crop.shape[-1] == 3 else \
            cv2.cvtColor(track.crop, cv2.COLOR_GRAY2BGR)
        inset = cv2.resize(inset, (max(1, round(cw * enlarge)), max(1, round(ch * enlarge))),
                           interpolation=cv2.INTER_NEAREST if enlarge >= 1 else cv2.INTER_AREA)
        ih, iw = inset.shape[:2]
        image[10:10 + ih, w - iw - 10:w - 10] = inset
        cv2.rectangle(image, (w - iw - 11, 9), (w - 10, 10 + ih), WHITE, 1)
        status_width = w - iw - 30
    # Caption band: its text grows with the view.
    text_scale = h / CAPTION_LINES
    band, size, thickness = round(42 * text_scale), 0.425 * text_scale, max(1, round(text_scale))
    overlay = image.copy()
    cv2.rectangle(overlay, (0, h - band), (w, h), (0, 0, 0), -1)
    image = cv2.addWeighted(overlay, 0.65, image, 0.35, 0)
    committed = " ".join(step.caption.committed.split()[hidden:])
    for row, line in enumerate(caption_lines(committed, step.caption.tentative, w, text_scale)):
        x, y = round(7 * text_scale), h - band + round(16 * text_scale) + row * round(17 * text_scale)
        for word, colour in line:
            cv2.putText(image, word, (x, y), FONT, size, colour, thickness, cv2.LINE_AA)
            x += cv2.getTextSize(word + " ", FONT, size, thickness)[0][0]
    lines = [(hud, 0.55, WHITE, 1)] + [("no face", 0.8, RED, 2)] * step.no_face + [("paused", 0.8, YELLOW, 2)] * paused
    if notice:
        lines.append((notice, 0.6, RED if notice.startswith("error") else GREEN, 2))
    status(image, lines, status_width)
    return image


def status(image: np.ndarray, lines: list[tuple[str, float, tuple[int, int, int], int]], width: int) -> None:
    """Outlined lines of (text, size, colour, thickness) at the view's top left, one under another,
    all made smaller together when the widest would overrun `width` pixels (a small view, the - key)."""
    widest = max((cv2.getTextSize(text, FONT, size, thickness + 2)[0][0] for text, size, _, thickness in lines),
                  default=0)
    fit = min(1.0, max(width, 1) / widest) if widest else 1.0
    for row, (text, size, colour, thickness) in enumerate(lines):
        outlined(image, text, (10, 10 + round(fit * (14 + 30 * row))), size * fit, colour,
                 max(1, round(thickness * fit)))


def outlined(image: np.ndarray, text: str, at: tuple[int, int], size: float, colour: tuple[int, int, int],
             thickness: int) -> None:
    """Text drawn over a dark outline, so it reads on any video (white on a bright wall, too)."""
    cv2.putText(image, text, at, FONT, size, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, at, FONT, size, colour, thickness, cv2.LINE_AA)


def display_problem() -> str | None:
    """Why no window can be opened here, or None. On Linux OpenCV's Qt (an X client) aborts the whole
    process, with no exception to catch, when it cannot reach an X server: none named, or a DISPLAY
    left from a session that has ended. So the server is asked first."""
    if not sys.platform.startswith("linux"):
        return None
    name = os.environ.get("DISPLAY")
    if not name:
        return "no display to open a window on"
    library = ctypes.util.find_library("X11")  # Qt's X plugin loads it too
    if library is None:
        return "no X library (libX11) to open a window with"
    x11 = ctypes.CDLL(library)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(name.encode())
    if not display:
        return f"cannot reach the display {name} to open a window on"
    x11.XCloseDisplay(display)
    return None


class Window:
    """An OpenCV window; `show` returns the key pressed (its low byte: 255 when none was), and q once the
    window was closed."""

    def __init__(self, title: str = TITLE) -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: the keys do it all

    def show(self, image: np.ndarray, wait_ms: int = 1) -> int:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(wait_ms) & 0xFF
        # Its close button quits as q does: the next imshow would open the window again.
        return ord("q") if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1 else key

    def close(self) -> None:
        cv2.destroyAllWindows()
