"""What a run writes: subtitle cues (SRT, WebVTT), JSON lines of caption changes, and its own lines on
stderr. Kept apart from the live loop, which only produces the captions."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import IO

from realtime.captions import CaptionPolicy, CaptionState, TimedWord, transcript
from realtime.files import OpenedAtFirstWrite, is_pipe, silence, write_as_read, write_stream


def _timestamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


WORDS_PER_CUE = 6
CUE_PAUSE = 0.5  # seconds between two words that begin a new cue
LINGER = 0.2  # seconds a cue stays up after its last word
READING_RATE = 15.0  # characters a second: a cue stays up long enough to be read (subtitling guides: 12-17)
SHORTEST_CUE = 5 / 6  # seconds, however short its text (subtitling guides' minimum)
CUE_GAP = 0.08  # seconds between a cue and the next (two frames at 25 fps): a line replaced by another is seen to go


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def cues(words: list[TimedWord], phrase_starts: Collection[int] = (), until: float | None = None) -> list[Cue]:
    """The committed words as subtitle cues: each phrase (`phrase_starts`: the indices of the words that begin
    one, CaptionPolicy.phrase_starts) begins a cue, and within one, words committed together or without a
    pause between them share a cue of up to WORDS_PER_CUE words (one read may commit two phrases at once:
    reads `--hop` frames apart, or a new stream begun at once). Each cue stays up long enough to be read,
    SHORTEST_CUE at least, and is gone CUE_GAP before the next begins: a cue that would begin sooner waits,
    unless it would then come up only after its words were said; it is then the last cue's second line, and
    the cue after a two-line one waits for its first line alone, so that cues said faster than they can be read
    do not fall further behind with each. No cue outlasts `until`, the video's end."""
    starts = set(phrase_starts)
    groups: list[list[TimedWord]] = []
    for i, w in enumerate(words):
        last = groups[-1][-1] if groups else None
        if last and i not in starts and len(groups[-1]) < WORDS_PER_CUE and (
                w.committed_at == last.committed_at or w.start - last.end < CUE_PAUSE):
            groups[-1].append(w)
        else:
            groups.append([w])
    out: list[Cue] = []
    for group in groups:
        text = " ".join(w.text for w in group)
        if out:
            shown = out[-1]
            two_lines = "\n" in shown.text
            # A two-line cue is up long enough to read its first line: its second came too soon to wait for.
            ready = shown.start + _reading_time(shown.text.split("\n")[0]) + CUE_GAP
            if ready > group[-1].end and not two_lines:
                text = f"{shown.text}\n{text}"
                out[-1] = Cue(shown.start, max(shown.end, _cue_end(shown.start, group[-1].end, text)), text)
                continue
            start = max(group[0].start, ready)
            out[-1] = replace(shown, end=min(shown.end, start - CUE_GAP))
        else:
            start = group[0].start
        out.append(Cue(start, _cue_end(start, group[-1].end, text), text))
    if until is not None:  # a cue that begins in the video's last frames is up until then, however briefly
        out = [replace(c, end=min(c.end, max(until, c.start + CUE_GAP))) for c in out]
    return out


def _reading_time(text: str) -> float:
    return max(len(text) / READING_RATE, SHORTEST_CUE)


def _cue_end(start: float, said_until: float, text: str) -> float:
    """When a cue from `start` may go: LINGER after its words were said, and once it has been up long enough
    to read, SHORTEST_CUE at least."""
    return max(said_until + LINGER, start + _reading_time(text))


def subtitles(policy: CaptionPolicy, kind: str, until: float | None = None) -> str:
    """SRT or WebVTT cues of the committed words, at the times they were spoken (none past `until`, the
    video's end)."""
    sep = "," if kind == "srt" else "."
    lines = [] if kind == "srt" else ["WEBVTT", ""]
    for n, cue in enumerate(cues(policy.words, policy.phrase_starts, until), start=1):
        if kind == "srt":
            lines.append(str(n))
        lines += [f"{_timestamp(cue.start, sep)} --> {_timestamp(cue.end, sep)}", cue.text, ""]
    return "\n".join(lines)


class JsonLines:
    """`{"t", "commit", "tentative"}` per caption change, then `{"final": true, "text"}`.

    `commit` is only the text committed since the line before (the committed text only grows), so a
    line's size does not grow with the session and the lines' commits joined are the transcript, a phrase a
    line: a commit that begins a phrase begins with a line break where another begins with a space.
    """

    def __init__(self, out: IO[str] | OpenedAtFirstWrite, stopped: Callable[[], bool] | None = None):
        self.out = out
        # Whether a stop was asked for: a write to a pipe whose reader has stopped reading gives up then, where it
        # would hold the run for as long as the reader does (a stop request is acted on between frames).
        self.stopped = stopped
        # Which it is decided once: a pipe of the process's own, given `stopped`, is written as its reader takes it.
        self.pipe = out if stopped is not None and not isinstance(out, OpenedAtFirstWrite) and is_pipe(out) else None
        self.written = 0  # characters of the committed text already written
        self.tentative = ""  # as last written: nothing is written until a caption shows something
        self.error: OSError | None = None  # the first write that failed (a full disk): later lines are not tried

    def caption(self, c: CaptionState) -> None:
        if (len(c.committed), c.tentative) == (self.written, self.tentative):
            return
        commit = transcript(c)[self.written:]
        self.written, self.tentative = len(c.committed), c.tentative
        self._write({"t": round(c.t, 3), "commit": commit, "tentative": c.tentative})

    def final(self, text: str) -> None:
        """The last line; a file of its own is closed (its last write can fail there, on a full disk)."""
        self._write({"final": True, "text": text})
        if self.out in (sys.stdout, sys.stderr):
            return
        try:
            self.out.close()
        except OSError as e:
            self.error = self.error or e

    def _write(self, line: dict) -> None:
        """A failed write leaves the run going: its words are still committed, and written elsewhere at the end."""
        if self.error:
            return
        try:
            text = json.dumps(line) + "\n"
            if self.pipe is not None and self.stopped is not None:
                write_as_read(self.pipe, text.encode(), self.stopped)
            else:
                self.out.write(text)
                self.out.flush()
        except OSError as e:
            self.error = e


def _never() -> bool:
    return False


_stopping: Callable[[], bool] = _never  # whether the command was asked to stop (log_gives_way_to)


def log_gives_way_to(stopping: Callable[[], bool]) -> None:
    """Let the lines `log` writes into a pipe give way to a stop, as a command's outputs do: a reader that
    stopped reading (`|& less`, paused) holds a line only until a stop is asked for and it has taken nothing
    for a while (realtime.files.write_as_read); the line is then lost, not the run."""
    global _stopping
    _stopping = stopping


def log(message: str) -> None:
    """A line on stderr, written whole; a closed or broken stderr (its reader gone), or a stalled one at a stop,
    loses the line, never the run's outputs."""
    if sys.stderr is None:  # started with stderr closed
        return
    try:
        write_stream(sys.stderr, f"lipstream: {message}\n", _stopping)
    except (OSError, ValueError):
        silence(sys.stderr)
