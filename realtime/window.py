"""The live window: the frame with the lip contour and crop box, an inset of what the model reads and a
HUD, over rolling captions (committed in white, tentative in grey) in a band of their own below it: drawn
over the picture, a band tall enough to read reached the speaker's lips, which a viewer may be reading too."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import math
import os
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # a type only: the recorder's window needs none of the live pipeline
    from realtime.live import StepResult

WHITE, GREY, GREEN, YELLOW, RED = (255, 255, 255), (175, 175, 175), (80, 220, 80), (0, 220, 255), (60, 60, 230)
FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE = "lipstream"


ZOOMS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # the view's scales, + and - step through them
ZOOM = 2.0  # to begin with, if the view fits on the screen
LARGER_KEYS = (ord("+"), ord("="))  # = is + without shift
SMALLER_KEY = ord("-")
FIRST_VIEW = (1600, 900)  # the room for a view (width, height) where the screen's size is not known: 1080p's
SCREEN_BARS = (40, 120)  # what a view leaves of the screen (width, height): the title bar, a taskbar, borders
INSET = 2  # the model's crop is shown at twice its size, at most a third of the view's width and height
CAPTION_LINES = 288  # captions take the same share of any view as of a 288-line video's (GRID's) at 1x
SMALLEST_TEXT = 1.0  # but are never drawn smaller than at that 1x (capitals 10 pixels high)
CAPTION_ROWS = 2  # lines of captions, unless asked for more (--caption-rows), up to MOST_CAPTION_ROWS
MOST_CAPTION_ROWS = 4  # (a 288-line view's band is then a quarter of its height)
CAPTION_SIZES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)  # the captions' own sizes at a view, [ and ] step them
LARGER_CAPTIONS, SMALLER_CAPTIONS = ord("]"), ord("[")
BAND_SHARE = 1.0  # of the picture's height, the most the band takes: a small view shows fewer rows (one at least)
STATUS_LINES = 576  # from a picture this tall (GRID's at the first zoom) the status lines grow with it, as captions do

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class CaptionStyle:
    """What the viewer asks of the captions: how many lines, and how large against the view's own size
    (larger captions on a small picture, for a viewer far from the screen or who sees less well)."""

    rows: int = CAPTION_ROWS
    size: float = 1.0


def picture_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """The (height, width) frames of this shape are drawn at, at `scale`."""
    return round(shape[0] * scale), round(shape[1] * scale)


def fitting_zoom(shape: tuple[int, ...], room: tuple[int, int] = FIRST_VIEW,
                 style: CaptionStyle | None = None) -> float:
    """The largest scale at which frames of this shape, with a caption band in `style` below them (None: no
    band), fit in `room` (width, height): no larger view is offered, as the captions at its bottom would be
    the first thing the screen cuts off."""
    h, w = shape[:2]
    largest = min(room[0] / w, room[1] / h)
    if style is None:
        return largest
    low, high = 0.0, largest  # the band grows with the scale: the largest that fits with it, to a thousandth
    while high - low > 1e-4:
        mid = (low + high) / 2
        view = picture_shape(shape, mid)
        low, high = (mid, high) if view[0] + caption_layout(view, style).band <= room[1] else (low, mid)
    return math.floor(low * 1000) / 1000


def first_zoom(shape: tuple[int, ...], room: tuple[int, int] = FIRST_VIEW,
               style: CaptionStyle = CaptionStyle()) -> float:
    """The scale to begin with for frames of this shape over captions in `style`: ZOOM, or smaller to fit in
    `room`."""
    return min(ZOOM, fitting_zoom(shape, room, style))


def zoom(scale: float, key: int, largest: float = ZOOMS[-1]) -> float:
    """The next of ZOOMS up (+ or =; or `largest`, the scale that fits, past the last of them below it) or down
    (-) from `scale`; the same for any other key."""
    if key in LARGER_KEYS:
        largest = min(largest, ZOOMS[-1])
        below = max((z for z in ZOOMS if z <= largest), default=0.0)
        fitting = [largest] * (scale < largest and largest > 1.02 * below)  # a step that shows, not 1.5 to 1.501
        return min([z for z in ZOOMS if scale < z <= largest] + fitting, default=scale)
    if key == SMALLER_KEY:
        return max((z for z in ZOOMS if z < scale), default=scale)
    return scale


def zoom_limit(scale: float, key: int, largest: float = ZOOMS[-1]) -> str:
    """What a key that `zoom` leaves at `scale` says: the view's smallest, its largest (ZOOMS' last), or its
    largest on this screen (`largest`, the scale that fits, below that)."""
    if key == SMALLER_KEY:
        return f"view at {scale:.3g}x, its smallest"
    return f"view at {scale:.3g}x, its largest{' on this screen' if largest < ZOOMS[-1] else ''}"


def caption_size(size: float, key: int, view_shape: tuple[int, ...]) -> float:
    """The next of CAPTION_SIZES up (]) or down ([) from `size` whose captions a view of this shape draws at
    another size (below SMALLEST_TEXT several look alike: a key that changed nothing seen would seem lost);
    `size` for any other key, or when none is."""
    if key not in (LARGER_CAPTIONS, SMALLER_CAPTIONS):
        return size
    larger = key == LARGER_CAPTIONS
    drawn = caption_layout(view_shape, CaptionStyle(size=size)).text_scale
    return next((s for s in sorted(CAPTION_SIZES, reverse=not larger) if (s > size if larger else s < size)
                 and caption_layout(view_shape, CaptionStyle(size=s)).text_scale != drawn), size)


@dataclass(frozen=True)
class CaptionLayout:
    """How a view's caption band is drawn: its text grows with the view times the style's size, down to
    SMALLEST_TEXT."""

    text_scale: float  # 1 at a 288-line view, times the captions' own size
    width: int  # pixels a line's words may take
    rows: int = CAPTION_ROWS  # lines the band shows (caption_layout: those asked for that fit)

    @property
    def size(self) -> float:  # OpenCV's font scale
        return 0.425 * self.text_scale

    @property
    def thickness(self) -> int:
        return max(1, round(self.text_scale))

    @property
    def margin(self) -> int:
        return round(7 * self.text_scale)

    @property
    def band(self) -> int:
        """The band's height in pixels: its lines, 17 pixels apart at 1x, and their margins."""
        return round((8 + 17 * self.rows) * self.text_scale)

    def baseline(self, row: int) -> int:
        """The pixels from the band's top to a line's baseline."""
        return round(16 * self.text_scale) + row * round(17 * self.text_scale)

    def advance(self, word: str) -> int:
        """Pixels from a word's start to the next's: the word and a space."""
        return _text_width(word + " ", self.size, self.thickness)


def caption_layout(view_shape: tuple[int, ...], style: CaptionStyle = CaptionStyle()) -> CaptionLayout:
    """The band under a picture of this shape: the style's rows, or as many as fit in BAND_SHARE of its height,
    its text at the style's size."""
    h, w = view_shape[:2]
    text_scale = max(h / CAPTION_LINES * style.size, SMALLEST_TEXT)
    fitting = [n for n in range(2, style.rows + 1) if CaptionLayout(text_scale, 0, n).band <= BAND_SHARE * h]
    unsized = CaptionLayout(text_scale, 0, max(fitting, default=1))
    return replace(unsized, width=w - 2 * unsized.margin)


@functools.lru_cache(maxsize=4096)
def _text_width(text: str, size: float, thickness: int) -> int:
    return cv2.getTextSize(text, FONT, size, thickness)[0][0]


def caption_lines(committed: str, tentative: str, layout: CaptionLayout,
                  phrases: Collection[int] = ()) -> list[list[tuple[str, Colour]]]:
    """The words as the band's lines of (word, colour), each line as wide as its words drawn (a word too
    wide for any line has one of its own); each phrase (`phrases`: the words that begin one, committed words
    counted first, then the tentative ones, as CaptionState.phrases) begins a line."""
    words = [(w, WHITE) for w in committed.split()] + [(w, GREY) for w in tentative.split()]
    lines: list[list[tuple[str, Colour]]] = [[]]
    x = 0
    for i, (word, colour) in enumerate(words):
        width = _text_width(word, layout.size, layout.thickness)
        if lines[-1] and (x + width > layout.width or i in phrases):
            lines.append([])
            x = 0
        lines[-1].append((word, colour))
        x += layout.advance(word)
    return lines


def rolled(first: int, committed: str, tentative: str, layout: CaptionLayout, phrases: Sequence[int] = ()) -> int:
    """The first committed word the band shows, rolled on from `first` (never back) until the words from it
    take at most the layout's rows. Roll-up captions: a line leaves the top when the words below need its
    room, and does not come back when the tentative tail shrinks again, so the lines never jump."""
    words = committed.split()
    # From a line's start, each line breaks alike.
    lines = caption_lines(" ".join(words[first:]), tentative, layout, phrases_from(phrases, first))
    return min(first + sum(map(len, lines[:-layout.rows])), len(words))


def phrases_from(phrases: Sequence[int], first: int) -> frozenset[int]:
    """The words that begin a phrase, counted from word `first` (the first the band shows)."""
    return frozenset(i - first for i in phrases if i > first)


def render(step: StepResult, hud: str, scale: float = ZOOM, paused: bool = False, first: int = 0,
           notices: Sequence[tuple[str, Colour]] = (), style: CaptionStyle = CaptionStyle(), stalled: float = 0.0,
           tracking: bool = True) -> np.ndarray:
    """The window's image: the frame drawn at `scale` over its captions, sized to the picture, the rest at
    its own size. The captions: the style's last rows, or as many as fit (caption_layout), from committed word
    `first` (those before it rolled off, or cleared with the c key), each phrase beginning a line; `notices`:
    lines of what happened, oldest first (a transcript saved; a face too small to read well), in their colours;
    `stalled`: the seconds the source has given no frame, said when not 0; `tracking`: whether the crop box,
    the lip contour and the inset of what the model reads are drawn (hidden, the lips are seen as filmed).
    An empty `hud` draws no status line of its own."""
    h, w = picture_shape(step.frame.image.shape, scale)
    image = cv2.resize(step.frame.image, (w, h), interpolation=cv2.INTER_LINEAR)
    track = step.track if tracking else replace(step.track, box=None, lips=None, crop=None)
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
    layout = caption_layout(image.shape, style)
    band = np.zeros((layout.band, w, 3), np.uint8)
    committed = " ".join(step.caption.committed.split()[first:])
    # The last rows: those `rolled` leaves from `first` (a line breaks where it would from any earlier start).
    lines = caption_lines(committed, step.caption.tentative, layout,
                          phrases_from(step.caption.phrases, first))[-layout.rows:]
    for row, line in enumerate(lines):
        x, y = layout.margin, layout.baseline(row)
        for word, colour in line:
            cv2.putText(band, word, (x, y), FONT, layout.size, colour, layout.thickness, cv2.LINE_AA)
            x += layout.advance(word)
    grow = max(1.0, h / STATUS_LINES)  # or at 4x "no face" would be half the captions' height
    said = [(hud, 0.55, WHITE, 1)] * bool(hud) + \
        [(f"no frame for {stalled:.0f} s: waiting", 0.8, YELLOW, 2)] * bool(stalled) + \
        [("no face: face the camera", 0.8, RED, 2)] * (step.no_face and not stalled) + \
        [("paused: space resumes", 0.8, YELLOW, 2)] * paused + \
        [(line, 0.6, colour, 2) for text, colour in notices[::-1]
         for line in wrapped(text, 0.6, 2, round(status_width / grow))]
    status(image, said, status_width, bottom=h - 2, grow=grow)  # the newest notices first: those left out are older
    return np.vstack([image, band])


def wrapped(text: str, size: float, thickness: int, width: int) -> list[str]:
    """A status line broken into lines no wider than `width` pixels (outline included), where it can be."""
    lines = [""]
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines[-1] else word
        if lines[-1] and _text_width(joined, size, thickness + 2) > width:
            lines.append(word)
        else:
            lines[-1] = joined
    return lines


def status(image: np.ndarray, lines: list[tuple[str, float, tuple[int, int, int], int]], width: int,
           bottom: int | None = None, grow: float = 1.0) -> None:
    """Outlined lines of (text, size, colour, thickness) at the view's top left, one under another, `grow`
    times their size, all made smaller together when the widest would overrun `width` pixels (a small view,
    the - key); those that would reach below `bottom` (the picture's foot) are left out, but for the first."""
    widest = max((cv2.getTextSize(text, FONT, size, thickness + 2)[0][0] for text, size, _, thickness in lines),
                  default=0)
    fit = min(grow, max(width, 1) / widest) if widest else grow
    for row, (text, size, colour, thickness) in enumerate(lines):
        y, size, thickness = 10 + round(fit * (14 + 30 * row)), size * fit, max(1, round(thickness * fit))
        # Below the baseline: the descenders, then the outline's half and its smoothing.
        low = y + cv2.getTextSize(text, FONT, size, thickness)[1] + (thickness + 2) // 2 + 1
        if row and bottom is not None and low > bottom:
            break
        outlined(image, text, (10, y), size, colour, thickness)


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
    with _x_display() as reached:
        return reached if isinstance(reached, str) else None


def screen_room() -> tuple[int, int]:
    """The room (width, height) a view may take on the screen: the size of the monitor the pointer is on (where
    a window manager opens a window), else of X's default screen, which spans all its monitors, less
    SCREEN_BARS; FIRST_VIEW where the screen cannot be asked (another system than Linux)."""
    if not sys.platform.startswith("linux"):
        return FIRST_VIEW
    with _x_display() as reached:
        if isinstance(reached, str):
            return FIRST_VIEW
        x11, display = reached
        x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
        x11.XDisplayWidth.argtypes = x11.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
        screen = x11.XDefaultScreen(display)
        whole = x11.XDisplayWidth(display, screen), x11.XDisplayHeight(display, screen)
        w, h = _pointer_monitor(x11, display) or whole
    return max(w - SCREEN_BARS[0], w // 2), max(h - SCREEN_BARS[1], h // 2)


@contextlib.contextmanager
def _x_display() -> Iterator[tuple[ctypes.CDLL, int] | str]:
    """libX11 and the display DISPLAY names, open for the block; or why it cannot be reached."""
    name = os.environ.get("DISPLAY")
    if not name:
        yield "no display to open a window on"
        return
    library = ctypes.util.find_library("X11")  # Qt's X plugin loads it too
    if library is None:
        yield "no X library (libX11) to open a window with"
        return
    x11 = ctypes.CDLL(library)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(name.encode())
    if not display:
        yield f"cannot reach the display {name} to open a window on"
        return
    try:
        yield x11, display
    finally:
        x11.XCloseDisplay(display)


class _Monitor(ctypes.Structure):  # XRRMonitorInfo (RandR 1.5)
    _fields_ = [("name", ctypes.c_ulong), ("primary", ctypes.c_int), ("automatic", ctypes.c_int),
                ("noutput", ctypes.c_int), ("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int),
                ("height", ctypes.c_int), ("mwidth", ctypes.c_int), ("mheight", ctypes.c_int),
                ("outputs", ctypes.c_void_p)]


def _pointer_monitor(x11: ctypes.CDLL, display: int) -> tuple[int, int] | None:
    """The size of the smallest RandR monitor the pointer is on; None without RandR 1.5 (asked first: a request
    the server does not know would end the process in Xlib's error handler) or without such a monitor."""
    library = ctypes.util.find_library("Xrandr")
    if library is None:
        return None
    try:
        xrandr = ctypes.CDLL(library)
        query, monitors_of, free = xrandr.XRRQueryVersion, xrandr.XRRGetMonitors, xrandr.XRRFreeMonitors
    except (OSError, AttributeError):  # a libXrandr older than RandR 1.5
        return None
    query.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    major, minor = ctypes.c_int(), ctypes.c_int()
    if not query(display, ctypes.byref(major), ctypes.byref(minor)) or (major.value, minor.value) < (1, 5):
        return None
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    root = x11.XDefaultRootWindow(display)
    pointer = [ctypes.c_int() for _ in range(4)]
    window, child, mask = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.c_uint()
    ulong_p, int_p = ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_int)
    x11.XQueryPointer.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ulong_p, ulong_p, int_p, int_p, int_p, int_p,
                                  ctypes.POINTER(ctypes.c_uint)]
    if not x11.XQueryPointer(display, root, ctypes.byref(window), ctypes.byref(child),
                             *map(ctypes.byref, pointer), ctypes.byref(mask)):
        return None
    px, py = pointer[0].value, pointer[1].value
    monitors_of.restype = ctypes.POINTER(_Monitor)
    monitors_of.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    free.argtypes = [ctypes.POINTER(_Monitor)]
    count = ctypes.c_int()
    monitors = monitors_of(display, root, 1, ctypes.byref(count))
    if not monitors:
        return None
    under = [(m.width, m.height) for m in monitors[:count.value]
             if m.x <= px < m.x + m.width and m.y <= py < m.y + m.height]
    free(monitors)
    return min(under, key=lambda size: size[0] * size[1], default=None)


class Window:
    """An OpenCV window; `show` returns the key pressed (its low byte: 255 when none was), and q once the
    window was closed."""

    def __init__(self, title: str = TITLE) -> None:
        self.title = title
        self.room = screen_room()  # what a view may take: the view is drawn at its size, not fitted to the window
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: the keys do it all

    def show(self, image: np.ndarray, wait_ms: int = 1) -> int:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(wait_ms) & 0xFF
        # Its close button quits as q does: the next imshow would open the window again.
        return ord("q") if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1 else key

    def close(self) -> None:
        cv2.destroyAllWindows()
