"""The live window: what it draws, and that it really opens on an X display (Xvfb)."""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.captions import CaptionState
from realtime.capture import Frame
from realtime.live import StepResult
from realtime.tracker import MouthTracker, TrackerOptions
from realtime.window import (CAPTION_ROWS, GREEN, GREY, RED, WHITE, YELLOW, ZOOMS, CaptionStyle, caption_layout,
                             caption_lines, caption_size, first_zoom, fitting_zoom, render, rolled, zoom, zoom_limit)
from tests.conftest import transcript
from tests.test_live import cue_words

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "grid" / "s1" / "video" / "bbaf2n.mp4"


def step_on_real_frame(committed: str, tentative: str) -> StepResult:
    capture = cv2.VideoCapture(str(CLIP))
    with MouthTracker(TrackerOptions()) as tracker:
        for i in range(10):
            ok, image = capture.read()
            track = tracker.process(image, i / 25)
    frame = Frame(image, 0.4, 9, 0.0)
    return StepResult(frame, track, CaptionState(0.4, committed, tentative), True, False, {}, 0.0)


def test_render_draws_captions_inset_and_contour() -> None:
    step = step_on_real_frame("bin blue", "at")
    image = render(step, "25 fps  20 ms  CPU")
    h, w = image.shape[:2]
    # The captions' band (84 lines at 2x) is below the picture, not over it: the lips it would reach at more rows
    # or a smaller view stay in sight, and the picture's foot is drawn as filmed.
    picture = cv2.resize(step.frame.image, (w, 2 * step.frame.image.shape[0]))
    assert (h, w) == (2 * step.frame.image.shape[0] + 84, 2 * step.frame.image.shape[1])
    assert np.array_equal(image[h - 84 - 40:h - 84, :60], picture[-40:, :60])
    # With the tracking marks hidden (the o key) and no status line, the picture is the frame as filmed.
    assert np.array_equal(render(step, "", tracking=False)[:h - 84], picture)
    band = image[h - 84:]
    assert (band == WHITE).all(axis=-1).sum() > 200  # committed words in white
    assert (band == GREY).all(axis=-1).sum() > 50  # the tentative word in grey
    inset = cv2.resize(cv2.cvtColor(step.track.crop, cv2.COLOR_RGB2BGR), None, fx=2, fy=2,
                       interpolation=cv2.INTER_NEAREST)
    ih, iw = inset.shape[:2]
    assert np.array_equal(image[10:10 + ih, w - iw - 10:w - 10], inset)
    # The lip contour (green) is drawn around the mouth, inside the crop box.
    green = (image[..., 1] > 200) & (image[..., 0] < 120) & (image[..., 2] < 120)
    ys, xs = np.nonzero(green[:h - 84, :w - iw - 20])
    box = step.track.box * 2
    assert len(xs) > 50
    assert box[:, 0].min() - 2 <= xs.min() and xs.max() <= box[:, 0].max() + 2
    assert box[:, 1].min() - 2 <= ys.min() and ys.max() <= box[:, 1].max() + 2


def test_the_status_line_reads_on_a_white_wall() -> None:
    """The status line over a white frame: its white letters sit on a dark outline, not lost in the wall."""
    step = step_on_real_frame("bin blue", "at")
    white = replace(step, frame=replace(step.frame, image=np.full_like(step.frame.image, 255)))
    status = render(white, "25 fps  20 ms  CPU", paused=True)[:100, :300]
    assert (status == WHITE).all(axis=-1).sum() > 50 and (status.max(axis=-1) < 60).sum() > 200


def test_what_the_s_key_did_is_shown_in_the_window() -> None:
    """Saved, in green under the status line; could not save, in red: a desktop user sees no stderr."""
    step = step_on_real_frame("bin blue", "at")
    region = {notice: render(step, "25 fps  20 ms  CPU", notices=[(notice, colour)] if notice else [])[40:80, :400]
              for notice, colour in (("", GREEN), ("saved lipstream-transcript-20261206-120000.txt", GREEN),
                                     ("error: could not save x.txt", RED))}
    count = {notice: {name: int((np.abs(image.astype(int) - colour).max(axis=-1) < 30).sum())
                      for name, colour in (("green", GREEN), ("red", RED))} for notice, image in region.items()}
    plain, saved, failed = count.values()
    assert saved["green"] > plain["green"] + 100 and saved["red"] == plain["red"]
    assert failed["red"] > plain["red"] + 100 and failed["green"] == plain["green"]


def test_cleared_words_leave_the_screen_and_the_tentative_ones_stay() -> None:
    """The c key: the committed words read so far are hidden; words read after them, and the tentative
    ones, show."""
    step = step_on_real_frame("bin blue", "at")
    band = {hidden: render(step, "", first=hidden)[-84:] for hidden in (0, 1, 2)}
    white = {hidden: int((image == WHITE).all(axis=-1).sum()) for hidden, image in band.items()}
    assert white[0] > white[1] > white[2] == 0  # "bin blue", "blue", nothing
    assert all((image == GREY).all(axis=-1).sum() > 50 for image in band.values())  # "at" stays


def test_captions_roll_to_the_last_two_lines() -> None:
    """Sixty committed words and a tentative one: the band shows the newest words on two lines, older
    ones rolled off, and is drawn exactly as a caption of only those two lines' words would be."""
    long = " ".join(["place white with"] * 20)
    step = step_on_real_frame(long, "again")
    image = render(step, "")
    band = image[image.shape[0] - 84:]
    assert (band == WHITE).all(axis=-1).sum() > 200 and (band == GREY).all(axis=-1).sum() > 50
    lines = caption_lines(long, "again", caption_layout((576, 720)))[-2:]  # what the band under the 2x picture shows
    words = [word for line in lines for word, _ in line]
    assert len(lines) == 2 and lines[-1][-1] == ("again", GREY)
    assert words == (long.split() + ["again"])[-len(words):] and len(words) < len(long.split())
    shown = replace(step, caption=CaptionState(0.4, " ".join(words[:-1]), "again"))
    assert np.array_equal(band, render(shown, "")[-84:])  # nothing of the rolled-off words is drawn


def test_captions_roll_up_and_never_back_as_the_tentative_tail_changes() -> None:
    """Roll-up captions: a tentative tail that grows onto a third line rolls the top line off, and when it
    shrinks again the line does not come back (it had made the whole band jump up and down as a word's
    letters came and went); the committed words keep their places from frame to frame."""
    layout = caption_layout((576, 720))
    committed = " ".join(["place white with"] * 5)  # a line and two thirds of a 2x GRID view's
    tails = ["", "bin", "bin green at", "bin green at f two now please", "bin green at f", "bin", ""]
    first, tops = 0, []
    for tail in tails:
        first = rolled(first, committed, tail, layout)
        shown = caption_lines(" ".join(committed.split()[first:]), tail, layout)
        assert len(shown) <= CAPTION_ROWS, tail
        tops.append(first)
    assert tops[:3] == [0, 0, 0] and tops[3] > 0  # rolled on once the tail needed a third line
    assert tops[3:] == [tops[3]] * 4  # and not back as it shrank
    # The band draws what `rolled` keeps.
    step = step_on_real_frame(committed, "bin")
    assert np.array_equal(render(step, "", first=tops[-1])[-84:],
                          render(replace(step, caption=CaptionState(0.4, " ".join(committed.split()[tops[-1]:]),
                                                                    "bin")), "")[-84:])


def test_each_phrase_begins_a_line_and_rolls_off_whole() -> None:
    """Two sentences that would share a line on their own begin a line each when the policy says each is a
    phrase (said between two rests of the lips), the tentative tail too; a third phrase rolls the first off."""
    layout = caption_layout((576, 720))
    said, tail = "bin blue at f two now set red", "by"
    assert len(caption_lines(said, tail, layout)) == 1
    lines = caption_lines(said, tail, layout, frozenset({6}))
    assert [[w for w, _ in line] for line in lines] == [["bin", "blue", "at", "f", "two", "now"], ["set", "red", "by"]]
    assert rolled(0, said, tail, layout, (0, 6)) == 0
    assert rolled(0, said, "lay", layout, (0, 6, 8)) == 6  # the tail begins a third phrase
    assert rolled(6, said + " lay", "", layout, (0, 6, 8)) == 6  # committed, it stays where it was shown
    # The band draws the phrases' lines: the first alone draws as the first of them.
    step = step_on_real_frame(said, tail)
    band = render(replace(step, caption=CaptionState(0.4, said, tail, (0, 6))), "")[-84:]
    assert not np.array_equal(band, render(step, "")[-84:])
    first_line = render(replace(step, caption=CaptionState(0.4, "bin blue at f two now", "")), "")[-84:]
    assert np.array_equal(band[:42], first_line[:42])


def test_more_caption_rows_show_more_of_what_was_said() -> None:
    """--caption-rows 3: a taller band holds three phrases where two rows have rolled the first off; its last two
    lines are drawn as the two-row band draws them. A band is never taller than the picture above it."""
    said = "bin blue at f two now set red by g nine soon lay white in k one again"
    layout = {rows: caption_layout((576, 720), CaptionStyle(rows)) for rows in (2, 3)}
    assert rolled(0, said, "", layout[2], (0, 6, 12)) == 6 and rolled(0, said, "", layout[3], (0, 6, 12)) == 0
    assert (layout[2].band, layout[3].band) == (84, 118)  # at 2x: a line 34 pixels more
    step = replace(step_on_real_frame(said, ""), caption=CaptionState(0.4, said, "", (0, 6, 12)))
    two, three = render(step, "", first=6), render(step, "", style=CaptionStyle(3))
    assert np.array_equal(three[-83:], two[-83:])  # (the row above them holds the smoothed foot of the line above)
    assert (three[-118:-84] == WHITE).all(axis=-1).sum() > 200 and not (two[-118:-84] == WHITE).all(axis=-1).any()
    # A small view (the - key down to a quarter) shows as many as fit in its picture's height, one at least.
    assert [caption_layout((h, round(h * 1.25)), CaptionStyle(4)).rows for h in (24, 36, 72, 144, 288)] == \
        [1, 1, 3, 4, 4]
    assert [caption_layout((h, round(h * 1.25))).rows for h in (24, 72)] == [1, 2]


def test_the_captions_have_a_size_of_their_own() -> None:
    """--caption-size and the ] and [ keys: larger captions under the same picture, for a viewer far from the
    screen or who sees less well; the view that opens, and the largest + offers, still fit them on the screen."""
    step = step_on_real_frame("bin blue at f two now", "")
    one, double = render(step, ""), render(step, "", style=CaptionStyle(size=2.0))
    assert np.array_equal(one[:576], double[:576])  # the picture as it was
    assert (one.shape[0] - 576, double.shape[0] - 576) == (84, 168)  # a band twice as tall
    white = [int((image[576:] == WHITE).all(axis=-1).sum()) for image in (one, double)]
    assert white[1] > 2.5 * white[0]  # strokes twice as long, and thicker
    at_2x = (576, 720)
    stepped = [caption_size(size, ord(key), at_2x) for size, key in ((1.0, "]"), (1.0, "["), (1.1, "["))]
    assert stepped == [1.25, 0.75, 1.0]
    assert caption_size(3.0, ord("]"), at_2x) == 3.0 and caption_size(0.5, ord("["), at_2x) == 0.5
    assert caption_size(2, ord("+"), at_2x) == 2
    # Smaller captions are never smaller than at a 288-line view's 1x (capitals 10 pixels high) ...
    assert [caption_layout((h, h * 5 // 4), CaptionStyle(size=0.5)).text_scale for h in (288, 576, 1152)] == [1, 1, 2]
    # ... so where sizes look alike a key steps to the first that shows, or says it can go no further.
    assert caption_size(1.0, ord("["), (288, 360)) == 1.0 and caption_size(1.0, ord("]"), (144, 180)) == 2.5
    room = (1326, 648)  # a 1366x768 laptop's, less the bars
    for size in (1.0, 2.0, 3.0):
        style = CaptionStyle(size=size)
        largest = fitting_zoom((480, 640), room, style)
        view = render(replace(step, frame=replace(step.frame, image=cv2.resize(step.frame.image, (640, 480)))), "",
                      largest, style=style)
        assert view.shape[0] <= room[1] and view.shape[1] <= room[0], size
        assert view.shape[0] > room[1] - 5, size  # and no smaller than it need be
    assert fitting_zoom((480, 640), room, CaptionStyle(size=3.0)) < fitting_zoom((480, 640), room, CaptionStyle())


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 3.0])
def test_caption_lines_fit_the_band_as_drawn_and_are_filled(scale: float) -> None:
    """Lines are broken by the words' drawn widths: none runs past the band's edge (GRID's letter, the word
    that matters most, last on a line was cut off), and none breaks while the next word would still fit."""
    rng = np.random.default_rng(0)
    words = ["bin", "lay", "place", "set", "blue", "green", "red", "white", "at", "by", "in", "with", "m", "w",
             "seven", "eight", "again", "please", "soon", "now"]
    layout = caption_layout((round(288 * scale), round(360 * scale)))
    for _ in range(200):
        text = " ".join(rng.choice(words, size=24))
        lines = caption_lines(text, "", layout)
        assert [w for line in lines for w, _ in line] == text.split()
        for line, after in zip(lines, lines[1:] + [[]]):
            ends = sum(layout.advance(w) for w, _ in line[:-1]) + cv2.getTextSize(line[-1][0], cv2.FONT_HERSHEY_SIMPLEX,
                                                                               layout.size, layout.thickness)[0][0]
            assert ends <= layout.width or len(line) == 1, (scale, line)
            if after:  # the next line's first word, drawn after this line's words and their spaces, would not fit
                wider = sum(layout.advance(w) for w, _ in line) + cv2.getTextSize(
                    after[0][0], cv2.FONT_HERSHEY_SIMPLEX, layout.size, layout.thickness)[0][0]
                assert wider > layout.width, (scale, line, after[0])


def test_a_long_notice_is_wrapped_within_the_view_not_shrunk() -> None:
    """A run's notice (a face too small, shown in the window as on stderr) is broken into lines left of the
    inset at its own size; the status line above it keeps its size."""
    step = step_on_real_frame("bin blue", "at")
    notice = ("face small at 3.2 s: its mouth is enlarged 3.4x for the model, and above 3x reading suffers: come "
              "closer, or film at a higher resolution")
    bare, told = render(step, "25 fps  20 ms  CPU"), render(step, "25 fps  20 ms  CPU", notices=[(notice, YELLOW)])
    inset_left = int(np.nonzero((bare[9] == WHITE).all(axis=-1))[0].min())
    yellow = np.abs(told.astype(int) - YELLOW).max(axis=-1) < 30
    ys, xs = np.nonzero(yellow & (bare != told).any(axis=-1))
    assert xs.max() < inset_left - 1 and ys.max() - ys.min() > 3 * 20  # four lines or more, clear of the inset
    assert np.array_equal(bare[:28, :inset_left - 1], told[:28, :inset_left - 1])  # the status line as before
    # Notices too many for the view stop above the picture's foot, descenders and outline too, clear of the
    # captions below it, at any height the view may have.
    for scale in (0.75, 1.0, 1.2, 1.25, 1.3, 1.35, 1.5, 1.75, 2.0, 2.25, 2.5):
        bare, told = render(step, "25 fps", scale), render(step, "25 fps", scale, notices=[(notice, YELLOW)] * 3)
        band = bare.shape[0] - round(288 * scale)
        assert np.array_equal(bare[-band - 2:], told[-band - 2:]), scale
        assert (np.abs(told.astype(int) - YELLOW).max(axis=-1) < 30).any(), scale
    # The newest notices are shown first: in a view too small for all, an older one is the one left out.
    red = {name: int((np.abs(image.astype(int) - RED).max(axis=-1) < 30).sum()) for name, image in (
        ("bare", render(step, "25 fps", 1.0)),
        ("told", render(step, "25 fps", 1.0, notices=[("error: could not save x.txt", RED), *[(notice, YELLOW)] * 3])))}
    assert red["told"] == red["bare"], red


def test_zoom_grows_the_captions_with_the_frame() -> None:
    step = step_on_real_frame("bin blue at f two now", "")
    at = {scale: render(step, "", scale) for scale in (2.0, 3.0)}
    white = {scale: int((image[-round(42 * scale):] == WHITE).all(axis=-1).sum()) for scale, image in at.items()}
    assert at[3.0].shape[:2] == (3 * 288 + 3 * 42, 3 * 360)  # the picture, and its band of two lines below
    assert white[3.0] > 1.8 * white[2.0]  # strokes 1.5 times as long and as thick: 2.25 times the pixels
    assert [zoom(2.0, ord(k)) for k in "+=-q"] == [2.5, 2.5, 1.5, 2.0] and zoom(ZOOMS[-1], ord("+")) == ZOOMS[-1]
    # A key left without effect says which end it met: the last of ZOOMS on a screen with room for more (a 4K
    # one: 6.7x would fit a GRID clip), or the screen's own limit.
    assert zoom_limit(ZOOMS[-1], ord("+"), 6.7) == "view at 4x, its largest"
    assert zoom_limit(1.67, ord("+"), 1.67) == "view at 1.67x, its largest on this screen"
    assert zoom_limit(ZOOMS[0], ord("-"), 6.7) == "view at 0.25x, its smallest"


def test_every_zoom_draws_the_inset_inside_the_view() -> None:
    """Down to 1/4x (the - key), where a GRID frame's view, 90x72, is smaller than the inset at 2x."""
    step = step_on_real_frame("bin blue", "at")
    for scale in ZOOMS:
        image = render(step, "", scale)
        h, w = image.shape[:2]
        view = (round(288 * scale), round(360 * scale))
        assert (h, w) == (view[0] + caption_layout(view).band, view[1])
        assert (image[9, w - 10] == WHITE).all(), scale  # the inset's frame, at the view's top right
        inset = np.nonzero((image[9] == WHITE).all(axis=-1))[0]
        assert w - 10 - inset.min() <= max(w / 3, 2 * 100) + 1, scale  # 2x, or a third of a small view


def test_the_status_lines_shrink_to_fit_left_of_the_inset_at_every_zoom() -> None:
    """Down to 1/4x the status line, "no face" and "paused" stay in the view, clear of the inset; at the
    first zoom (2x) they have their full size, above it they grow with the view as the captions do (at 4x,
    "no face" would otherwise be half their height), and they never grow as the view shrinks."""
    step = step_on_real_frame("", "")
    black = replace(step, frame=replace(step.frame, image=np.zeros_like(step.frame.image)))
    heights = {}
    for scale in ZOOMS:
        bare = render(black, "", scale)
        drawn = render(replace(black, no_face=True), "25 fps  20 ms  CPU  dropped 0", scale, paused=True)
        inset_left = int(np.nonzero((drawn[9] == WHITE).all(axis=-1))[0].min())
        ys, xs = np.nonzero((bare != drawn).any(axis=-1))
        assert len(xs) and xs.max() < inset_left - 1, scale  # drawn, and not over or beyond the inset
        red = (drawn[:, :inset_left - 1, 2] > 200) & (drawn[:, :inset_left - 1, 1] < 120)
        assert red.any() or scale < 0.5, scale  # "no face" shows too (at 1/4x its strokes are thinner than a pixel)
        heights[scale] = ys.max() - ys.min()
    assert heights[4.0] > 1.8 * heights[2.0] and heights[0.25] < heights[2.0] / 2
    assert all(heights[a] <= heights[b] for a, b in zip(ZOOMS, ZOOMS[1:]))


def test_a_large_video_opens_at_a_size_that_fits_and_captions_keep_their_share_of_it() -> None:
    """A 1080p video at 2x would open a 3840x2160 window; in the room a 1080p screen leaves it opens at
    0.727x (1396x785, and its captions' band below: 899 lines in all), and its captions are as large a share
    of that view as a GRID clip's of its 720x576 one. No view is offered larger than the room (+ stops there)."""
    room = (1600, 900)
    assert [first_zoom(shape, room) for shape in ((288, 360), (480, 640), (720, 1280), (1080, 1920))] == \
        [2.0, 1.636, 1.09, 0.727]
    assert fitting_zoom((1080, 1920), room) == pytest.approx(5 / 6)  # without a band (the recorder's window)
    assert zoom(1.636, ord("+"), fitting_zoom((480, 640), room, CaptionStyle())) == 1.636
    assert zoom(1.636, ord("-")) == 1.5
    # - then + comes back to the size it opened at, the largest that fits, which is none of ZOOMS.
    largest = fitting_zoom((1080, 1920), room, CaptionStyle())
    assert zoom(zoom(largest, ord("-"), largest), ord("+"), largest) == largest
    assert zoom(1.0, ord("+"), 1.501) == 1.5 and zoom(1.5, ord("+"), 1.501) == 1.5  # no step too small to see
    small = step_on_real_frame("bin blue at f two now", "")
    large = replace(small, frame=replace(small.frame, image=cv2.resize(small.frame.image, (1920, 1080))))
    views = {step.frame.image.shape[0]: render(step, "", first_zoom(step.frame.image.shape, room))
             for step in (small, large)}
    assert views[1080].shape[:2] == (899, 1396)
    white = {lines: int((view[-view.shape[0] // 6:] == WHITE).all(axis=-1).sum()) for lines, view in views.items()}
    assert 1.6 < white[1080] / white[288] < 3.2  # strokes 900/576 times as long, 3 pixels thick against 2


@pytest.fixture
def x_server(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, str], subprocess.Popen]]:
    """A real X server (Xvfb): the environment that opens windows on it, and its process. Its screen is
    1280x1024, or the size a test gives (parametrized indirectly)."""
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        pytest.fail("Xvfb and xdotool are missing: ./lipstream installs them; run the suite through it", pytrace=False)
    ready, told = os.pipe()  # Xvfb writes its display number here once it accepts clients
    screen = getattr(request, "param", "1280x1024")
    # -noreset: what a client sets on the server (RandR monitors) outlives the client.
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(told), "-noreset", "-screen", "0", f"{screen}x24"],
                            pass_fds=(told,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(told)
    try:
        with os.fdopen(ready) as f:
            display = f.readline().strip()
        assert display, "Xvfb did not start"
        yield {**os.environ, "DISPLAY": f":{display}", "QT_QPA_PLATFORM": "xcb"}, xvfb
    finally:
        xvfb.terminate()
        xvfb.wait()


@pytest.fixture
def x_display(x_server: tuple[dict[str, str], subprocess.Popen]) -> dict[str, str]:
    """The environment that opens windows on a real X server."""
    return x_server[0]


def test_the_window_holds_the_last_words_when_the_video_ends(x_display: dict[str, str], tmp_path: Path) -> None:
    """At the video's end everything read is committed, written out, and stays on screen until the window
    is closed: the last words are there to read, not gone with the window. (A run with subtitles prints no
    transcript; its JSON lines, on stdout, tell what it committed.) The clip ends in a second with no face,
    and the window held at the end no longer asks in red for a face: nothing is read any more."""
    video, log, srt = tmp_path / "faceless_end.mp4", tmp_path / "stderr.txt", tmp_path / "talk.srt"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(CLIP), "-f", "lavfi", "-i",
                    "color=black:s=360x288:r=25:d=1", "-filter_complex",
                    "[0:v]setsar=1[a];[1:v]setsar=1,format=yuv420p[b];[a][b]concat=n=2:v=1:a=0", "-an", str(video)],
                   check=True)
    with open(log, "w") as err:
        # --fast: every frame is read, however busy the machine (played at its pace, a busy machine drops frames,
        # and reads fewer words to show).
        process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--fast",
                                    "--srt", str(srt), "--jsonl", "-"], stdout=subprocess.PIPE, stderr=err, text=True,
                                   env=x_display, cwd=tmp_path)
    try:
        found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^lipstream$"],
                               capture_output=True,
                               text=True, env=x_display, timeout=120)
        window = found.stdout.split()[0]
        deadline = time.monotonic() + 60
        while "the video has ended" not in log.read_text():
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "no face in view" in log.read_text()
        shot = tmp_path / "held.png"
        deadline = time.monotonic() + 30  # a busy machine may draw the held frame a while after the line is said

        def red_and_white() -> tuple[int, int]:
            shot.unlink(missing_ok=True)
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab", "-i", x_display["DISPLAY"],
                            "-frames:v", "1", str(shot)], check=True, timeout=30)
            held = cv2.imread(str(shot))
            return (np.abs(held.astype(int) - RED).max(axis=-1) < 30).sum(), (held == WHITE).all(axis=-1).sum()

        red, white = red_and_white()
        while red or white <= 500:  # red: it asks for a face; little pure white: not the last words (the status
            # line's smaller letters are anti-aliased, and hardly count)
            assert time.monotonic() < deadline, (red, white)
            time.sleep(0.5)
            red, white = red_and_white()
        assert process.poll() is None  # still showing the last words in white
        subtitled = cue_words(srt)  # written before the wait: closing the terminal would not lose it
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=x_display, check=True, timeout=30)
        subprocess.run(["xdotool", "key", "q"], env=x_display, check=True, timeout=30)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, log.read_text()
    assert "first frame processed" in log.read_text()
    lines = [json.loads(line) for line in out.splitlines()]
    final = lines[-1]
    # Every word read is committed (nothing is left tentative), and the subtitles hold them all.
    assert final["final"] and final["text"] and transcript(lines[:-1]) == final["text"]
    assert lines[-2]["tentative"] == "" and subtitled == final["text"].split()


def looped(tmp_path: Path, times: int) -> Path:
    """The clip played `times` times over, as one video, under the clip's own name (its GRID sentence
    code, as a stand-in for the camera while recording must be named)."""
    video = tmp_path / "looped" / CLIP.name
    video.parent.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", str(times - 1), "-i", str(CLIP),
                    "-c", "copy", str(video)], check=True)
    return video


def window_geometry(window: str, env: dict[str, str]) -> tuple[int, int, int, int]:
    """An X window's place and size on the screen: x, y, width, height."""
    shell = subprocess.run(["xdotool", "getwindowgeometry", "--shell", window], capture_output=True, text=True,
                           env=env, check=True, timeout=30).stdout
    values = dict(line.split("=") for line in shell.split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


@dataclass(frozen=True)
class WindowRun:
    """A real run_live window on the X display: its process, stderr log, JSON lines and X window id."""

    process: subprocess.Popen
    log: Path
    captions: Path
    window: str

    def wait_for(self, condition: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline and self.process.poll() is None, \
                f"no {what}: {self.log.read_text()[-2000:]}"
            time.sleep(0.1)

    def committed(self) -> str:
        lines = self.captions.read_text().splitlines() if self.captions.exists() else []
        return transcript(json.loads(line) for line in lines if line.strip())


@contextmanager
def window_run(x_display: dict[str, str], tmp_path: Path, *options: str) -> Iterator[WindowRun]:
    """run_live in a window on the GRID clip played 100 times at its fps (300 s: it ends only when told),
    with `options`, once its first words are committed; killed afterwards whatever happened."""
    video, log, captions = looped(tmp_path, 100), tmp_path / "stderr.txt", tmp_path / "captions.jsonl"
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--jsonl",
                                    str(captions), *options], stdout=subprocess.DEVNULL, stderr=err,
                                   env=x_display, cwd=tmp_path)
    try:
        found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^lipstream$"],
                               capture_output=True,
                               text=True, env=x_display, timeout=120)
        run = WindowRun(process, log, captions, found.stdout.split()[0])
        run.wait_for(run.committed, "committed caption")  # the first sentence, read and committed
        subprocess.run(["xdotool", "windowfocus", "--sync", run.window], env=x_display, check=True, timeout=30)
        yield run
    finally:
        process.kill()
        process.wait()


def test_window_keys_clear_zoom_pause_save_and_quit(x_display: dict[str, str], tmp_path: Path) -> None:
    """Keys typed into the real window (xdotool) on a real clip played 100 times at its fps: c clears
    the screen but keeps the words; o hides the tracking marks; + makes the window (the frame and its
    captions) larger, ] the captions alone; space pauses the video where it is (nothing is read until space
    again), the subtitle file comes to hold every word committed before it, and the paused window still answers
    s (save); the video then goes on, and only q can end the run in time."""
    srt = tmp_path / "talk.srt"
    with window_run(x_display, tmp_path, "--srt", str(srt)) as run:
        before = run.committed()

        def size() -> str:
            return "{2}x{3}".format(*window_geometry(run.window, x_display))

        def press(key: str, effect: str) -> None:
            # One key per wait: OpenCV's Qt window keeps only the last key pressed between two frames.
            subprocess.run(["xdotool", "key", key], env=x_display, check=True, timeout=30)
            run.wait_for(lambda: effect in run.log.read_text(), f"{effect!r} after {key}")

        assert size() == "720x660"  # the 360x288 clip at twice its size over its captions, no toolbar
        press("c", "screen cleared")
        press("o", "tracking marks hidden")
        press("plus", "view at 2.5x")
        run.wait_for(lambda: size() == "900x825", "larger window after +")
        press("bracketright", "captions at 1.25x")  # the captions alone: a taller band under the same picture
        run.wait_for(lambda: size() == "900x851", "larger captions after ]")
        # Said once the video is held and the loop waits in its pause; every caption line is written and
        # flushed before the key is read, and none while paused: from here on the file cannot change.
        press("space", "paused at")
        lines = run.captions.read_text()
        watched = time.monotonic() + 1.5
        press("s", "saved")  # the paused window still answers keys
        paused = run.committed()
        # Held, nothing is read, so no caption changes however long the pause lasts. Watched for 1.5 s at
        # least (37 of the clip's frames, were they read): how long a fault has to show, not a time a
        # correct run must keep to.
        while time.monotonic() < watched:
            assert run.captions.read_text() == lines  # paused: no frame read, no caption changed
            time.sleep(0.1)
        assert run.captions.read_text() == lines and paused == run.committed()
        # The file is rewritten at most every few seconds, and the last words came within that: it
        # catches up while paused, not only with the next word read.
        run.wait_for(lambda: srt.exists() and cue_words(srt) == paused.split(), "subtitles of every committed word")
        press("space", "resumed")
        run.wait_for(lambda: len(run.committed()) > len(paused), "words read after the pause")
        subprocess.run(["xdotool", "key", "q"], env=x_display, check=True, timeout=30)
        run.process.wait(timeout=60)
    err = run.log.read_text()
    assert run.process.returncode == 0, err
    saved = list(tmp_path.glob("lipstream-transcript-*.txt"))
    assert len(saved) == 1 and f"saved {saved[0].name}" in err
    final = json.loads(run.captions.read_text().splitlines()[-1])
    assert final["final"] and before and final["text"].startswith(before)  # c lost no word
    assert saved[0].read_text() == paused + "\n" and final["text"].startswith(paused)


def test_a_stalled_stream_keeps_the_window_drawn_and_answering_its_keys(x_display: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """A live stream that stops sending (a network gone quiet) after the clip, its connection held open: the
    window says it waits for frames, rather than freezing on a stale picture a deaf user would take for
    silence, and q ends the run while the stream is still stalled, the words read written out. (It froze,
    deaf to its keys, until the stream gave frames again or OpenCV gave up on it.)"""
    from tests.test_capture import ffmpeg, streamed

    ffmpeg("-i", str(CLIP), "-an", "-c:v", "libx264", "-f", "mpegts", str(tmp_path / "clip.ts"))
    ts = (tmp_path / "clip.ts").read_bytes()
    packets = [ts[i:i + 188] for i in range(0, len(ts), 188)]
    chunks = [b"".join(packets[len(packets) * i // 75:len(packets) * (i + 1) // 75]) for i in range(75)]
    released = threading.Event()

    def stalling(clip: bool) -> Iterator[bytes]:
        started = time.monotonic()
        for i, chunk in enumerate(chunks if clip else []):  # at the clip's pace
            time.sleep(max(0.0, started + i / 25 - time.monotonic()))
            yield chunk
        released.wait(120)  # then nothing, the connection open; a reopened one gives nothing either
        yield b""

    log, captions, shot = tmp_path / "stderr.txt", tmp_path / "captions.jsonl", tmp_path / "stalled.png"
    with streamed(stalling(clip=i == 0) for i in itertools.count()) as address:
        with open(log, "w") as err:
            process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", f"{address}/live",
                                        "--jsonl", str(captions)], stdout=subprocess.DEVNULL, stderr=err,
                                       env=x_display, cwd=tmp_path)
        try:
            found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^lipstream$"],
                                   capture_output=True, text=True, env=x_display, timeout=120)
            run = WindowRun(process, log, captions, found.stdout.split()[0])
            run.wait_for(lambda: "waiting for the source" in log.read_text(), "word of the stall")

            looks: list[str] = []  # what each look at the screen saw, for a failure to tell

            def yellow() -> int:  # in the status lines under the top one, where it says it waits (the crop box,
                shot.unlink(missing_ok=True)  # yellow too, is far lower)
                x, y, width, height = window_geometry(run.window, x_display)
                subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab", "-i",
                                x_display["DISPLAY"], "-frames:v", "1", str(shot)], check=True, timeout=30)
                screen = np.abs(cv2.imread(str(shot)).astype(int) - YELLOW).max(axis=-1) < 30
                found = int(screen[y + 28:y + 70, x:x + 500].sum())
                rows, columns = np.nonzero(screen)
                looks.append(f"window {width}x{height} at {x},{y}: {found} yellow pixels where the line goes, "
                             f"{len(rows)} on the screen" + f" (rows {rows.min()}-{rows.max()}, columns "
                             f"{columns.min()}-{columns.max()})" * bool(len(rows)))
                return found

            try:
                run.wait_for(lambda: yellow() > 200, "status line saying the window waits")
            except AssertionError as failed:
                raise AssertionError(f"{failed}\nthe last looks: {looks[-3:]}") from None
            subprocess.run(["xdotool", "windowfocus", "--sync", run.window], env=x_display, check=True, timeout=30)
            subprocess.run(["xdotool", "key", "q"], env=x_display, check=True, timeout=30)
            process.wait(timeout=60)  # the stream stays stalled for 120 s
            assert not released.is_set()
        finally:
            released.set()
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()
    final = json.loads(captions.read_text().splitlines()[-1])
    assert final["final"] and final["text"] == run.committed()


def close(window: str, env: dict[str, str]) -> None:
    """What a title bar's close button does: ask the window to close (WM_DELETE_WINDOW; Xvfb runs no
    window manager, and xdotool's windowclose destroys the window instead)."""

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class Event(ctypes.Union):
        _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]  # XEvent's size

    x11 = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(Event)]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(env["DISPLAY"].encode())
    assert display, f"cannot connect to {env['DISPLAY']}"
    event = Event()
    event.xclient.type = 33  # ClientMessage
    event.xclient.window = int(window)
    event.xclient.message_type = x11.XInternAtom(display, b"WM_PROTOCOLS", 0)
    event.xclient.format = 32
    event.xclient.data[0] = x11.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
    x11.XSendEvent(display, int(window), 0, 0, ctypes.byref(event))
    x11.XCloseDisplay(display)  # flushes the event


@pytest.mark.parametrize("x_server", ["800x600"], indirect=True)
def test_on_a_small_screen_the_window_opens_and_stays_within_it(x_server: tuple[dict[str, str], subprocess.Popen],
                                                                tmp_path: Path) -> None:
    """On an 800x600 screen a GRID clip at 2x (720x660 with its captions) would lose its caption band under
    a taskbar: the view opens at the largest size that leaves the screen's bars their room (760x480: 524x480,
    the band included), and + offers none larger, and says so."""
    env = x_server[0]
    with window_run(env, tmp_path) as run:
        def size() -> str:
            return "{2}x{3}".format(*window_geometry(run.window, env))

        assert size() == "524x480"
        subprocess.run(["xdotool", "key", "plus"], env=env, check=True, timeout=30)
        run.wait_for(lambda: "view at 1.46x, its largest on this screen" in run.log.read_text(), "+ refused")
        assert size() == "524x480"


def add_monitors(env: dict[str, str], monitors: dict[bytes, tuple[int, int, int, int]]) -> None:
    """RandR monitors (name: x, y, width, height) on the X server's screen, as `xrandr --setmonitor` makes them:
    two screens side by side, in one X screen."""
    from realtime.window import _Monitor

    x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
    xrandr = ctypes.CDLL(ctypes.util.find_library("Xrandr"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xrandr.XRRAllocateMonitor.restype = ctypes.POINTER(_Monitor)
    xrandr.XRRAllocateMonitor.argtypes = [ctypes.c_void_p, ctypes.c_int]
    xrandr.XRRSetMonitor.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(_Monitor)]
    xrandr.XRRQueryVersion.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    display = x11.XOpenDisplay(env["DISPLAY"].encode())
    assert display, f"cannot connect to {env['DISPLAY']}"
    major, minor = ctypes.c_int(), ctypes.c_int()  # the server takes RandR 1.5's requests once they are asked for
    assert xrandr.XRRQueryVersion(display, ctypes.byref(major), ctypes.byref(minor))
    assert (major.value, minor.value) >= (1, 5)
    for name, (x, y, width, height) in monitors.items():
        monitor = xrandr.XRRAllocateMonitor(display, 0)
        monitor.contents.name = x11.XInternAtom(display, name, 0)
        monitor.contents.x, monitor.contents.y, monitor.contents.width, monitor.contents.height = x, y, width, height
        monitor.contents.mwidth, monitor.contents.mheight = width // 4, height // 4  # millimetres
        xrandr.XRRSetMonitor(display, x11.XDefaultRootWindow(display), monitor)
    x11.XCloseDisplay(display)  # flushes the requests


def test_beside_a_larger_monitor_the_window_fits_the_one_the_pointer_is_on(
        x_server: tuple[dict[str, str], subprocess.Popen], tmp_path: Path) -> None:
    """An 800x600 screen beside a taller one, in one 1280x1024 X screen, the pointer on the small one (Xvfb
    starts it at the middle, 640,512): the window fits the small screen less its bars (524x480), not the X
    screen (where it would open at 720x660, its lower caption line under the small screen's taskbar)."""
    env = x_server[0]
    add_monitors(env, {b"laptop": (0, 0, 800, 600), b"monitor": (800, 0, 480, 1024)})
    with window_run(env, tmp_path) as run:
        assert window_geometry(run.window, env)[2:] == (524, 480)


def test_the_view_shrinks_to_a_quarter_and_the_close_button_ends_the_run(x_display: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """Once a word is read, - five times takes the view from 2x to 1/4x, smaller than the inset, and a sixth
    says it is the smallest; closing the window then ends the run as q does (OpenCV's next imshow would
    open it again), with the transcript written out."""
    with window_run(x_display, tmp_path) as run:
        for scale in ("1.5", "1", "0.75", "0.5", "0.25"):
            subprocess.run(["xdotool", "key", "minus"], env=x_display, check=True, timeout=30)
            run.wait_for(lambda: f"view at {scale}x" in run.log.read_text(), f"view at {scale}x")
        subprocess.run(["xdotool", "key", "minus"], env=x_display, check=True, timeout=30)
        run.wait_for(lambda: "view at 0.25x, its smallest" in run.log.read_text(), "- refused")
        close(run.window, x_display)
        run.process.wait(timeout=60)
    assert run.process.returncode == 0, run.log.read_text()
    final = json.loads(run.captions.read_text().splitlines()[-1])
    assert final["final"] and final["text"], "the transcript is written out when the window closes"


def test_a_lost_display_ends_the_run_and_its_subtitles_hold_the_words_read(
        x_server: tuple[dict[str, str], subprocess.Popen], tmp_path: Path) -> None:
    """The X server going away mid-run (a remote session dropped): Qt ends the process where no code of
    ours runs, so the subtitle files are written as the run goes. They hold the words committed up to
    then, at least the first sentence's, in order; and the run ends rather than reading on unseen."""
    env, xvfb = x_server
    video, log, captions = looped(tmp_path, 100), tmp_path / "stderr.txt", tmp_path / "captions.jsonl"
    srt, vtt = tmp_path / "talk.srt", tmp_path / "talk.vtt"
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--source", str(video), "--jsonl",
                                    str(captions), "--srt", str(srt), "--vtt", str(vtt)],
                                   stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp_path)
    try:
        run = WindowRun(process, log, captions, "")
        run.wait_for(lambda: len(run.committed().split()) >= 12, "second sentence committed")
        xvfb.terminate()
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode != 0, log.read_text()
    committed = run.committed().split()
    for subtitles in (srt, vtt):
        words = cue_words(subtitles)
        assert len(words) >= 6 and words == committed[:len(words)], (subtitles.name, words, committed)


@contextmanager
def record_window(video: Path, out: Path, count: int, log: Path,
                  env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """realtime.record with its prompt window on the X display, `video` standing in for camera and
    microphone, its stderr in `log`: the process and its window's id, once the window is up."""
    with open(log, "w") as err:
        run = subprocess.Popen([sys.executable, "-m", "realtime.record", "--out", str(out), "--count", str(count),
                                "--source", str(video), "--audio-file", str(video)],
                               stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
    try:
        found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^lipstream record$"],
                               capture_output=True,
                               text=True, env=env, timeout=120)
        yield run, found.stdout.split()[0]
    finally:
        run.kill()


@pytest.mark.parametrize("key", ["q", "Escape"])
def test_quitting_the_record_window_at_its_first_prompt_saves_nothing_and_is_no_failure(
        key: str, x_display: dict[str, str], tmp_path: Path) -> None:
    """q or Esc typed into realtime.record's real prompt window during the first take (a GRID clip
    standing in for camera and microphone): the session ends there with nothing saved, said plainly,
    exit 0, not the error of a session whose every take failed; the take under way is not saved."""
    log, out = tmp_path / "stderr.txt", tmp_path / "grid"
    with record_window(looped(tmp_path, 2), out, 2, log, x_display) as (run, window):
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=x_display, check=True, timeout=30)
        subprocess.run(["xdotool", "key", key], env=x_display, check=True, timeout=30)
        run.wait(timeout=60)
    assert run.returncode == 0, log.read_text()
    assert log.read_text().splitlines()[-2:] == [
        "lipstream: session stopped in the window",
        f"lipstream: 0 clips saved in {out / 'me'}, 0 takes not saved"]
    assert not (out / "me" / "video").exists() or not any((out / "me" / "video").iterdir())


@pytest.mark.parametrize("x_server", ["800x600"], indirect=True)
def test_the_record_window_of_a_large_camera_fits_a_small_screen(x_server: tuple[dict[str, str], subprocess.Popen],
                                                                 tmp_path: Path) -> None:
    """A 1280x720 camera (the clip scaled up, standing in) on an 800x600 screen: the prompt window shows it
    smaller, within the screen less its bars (760x480), where at its own size the status line under the
    image, how to end the session, would be off the screen."""
    env, log, large = x_server[0], tmp_path / "stderr.txt", tmp_path / "large" / CLIP.name
    large.parent.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(CLIP), "-vf", "scale=1280:720,setsar=1",
                    str(large)], check=True)
    with record_window(large, tmp_path / "grid", 1, log, env) as (run, window):
        def size() -> str:
            return "{2}x{3}".format(*window_geometry(window, env))

        deadline = time.monotonic() + 30  # the window takes the image's size at its first image
        while size() != "760x428":
            assert time.monotonic() < deadline and run.poll() is None, (size(), log.read_text()[-2000:])
            time.sleep(0.1)
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True, timeout=30)
        subprocess.run(["xdotool", "key", "q"], env=env, check=True, timeout=30)
        run.wait(timeout=60)
    assert run.returncode == 0, log.read_text()


def test_closing_the_record_window_stops_the_session_and_keeps_its_clips(x_display: dict[str, str],
                                                                         tmp_path: Path) -> None:
    """realtime.record's prompt window (a GRID clip standing in for camera and microphone): its close
    button ends the session there, as q does, after the first clip was saved: a session that saved
    clips, exit 0, not an interrupted one."""
    log = tmp_path / "stderr.txt"
    with record_window(looped(tmp_path, 10), tmp_path / "grid", 3, log, x_display) as (run, window):  # 30 s
        deadline = time.monotonic() + 60
        while not re.search(r"^lipstream: saved ", log.read_text(), re.MULTILINE):  # not "not saved: …"
            assert time.monotonic() < deadline and run.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        close(window, x_display)
        run.wait(timeout=60)
    assert run.returncode == 0, log.read_text()
    assert log.read_text().splitlines()[-2:] == [
        "lipstream: session stopped in the window",
        f"lipstream: 1 clip saved in {tmp_path / 'grid' / 'me'}, 0 takes not saved"]
    assert len(list((tmp_path / "grid" / "me" / "video").glob("*.mp4"))) == 1
