"""Streaming caption policies: overlapping window outputs in, committed and tentative text out.

Committed text never changes once shown; the tentative tail may. Policies are independent of the
backend: anything that gives per-frame log-probabilities over a sliding window, with each frame's media
time, can drive them. Three are here (README: Streaming captions, how they compare; docs/streaming.md,
why pause is the default):

- right-context (buffered CTC): a frame's probabilities are frozen from the first window in which it
  has `right_context` frames after it (a bidirectional model's reading of a frame settles once it sees
  what follows); a word is committed once its frozen frames show it finished: a space read after it, or
  `gap` quiet frames.
- local-agreement (LocalAgreement-2, as in whisper_streaming): each window is decoded whole, and the
  longest run of words that two consecutive hypotheses agree on is committed.
- pause: the window starts in the last pause (the policy says where: `window_start`), grows while the
  person speaks, and its words are committed when their lips rest again (`still` frames). The model
  reads a phrase from silence to silence about as well as a whole clip offline, and far better than
  windows cut mid-speech; and pauses are taken from the lips, not from the model's blanks, because a
  bidirectional CTC model places some letters at its window's edges rather than where they are spoken.

The model guesses at a sentence's first word at its window's start until it has read into the speech
(`i`, `in`, `y` for `bin`), so right-context and local-agreement settle no word a window reads before
it reads a word begun after the lips began to move, or the lips rest after it. Reads may be `hop`
frames apart: a word (right-context: a frame) the window slides past between two reads is committed
(frozen) as the last read that saw it read it, and a pause is honoured wherever it falls in the frames
read. Pause and local-agreement decode each read whole, so a word is read whole only if two reads
overlap by its length: reads no more than half a window apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import dropwhile
from typing import Literal, get_args

import numpy as np

from realtime.activity import true_runs
from realtime.decode import DecoderName, Hypothesis, Word, decode
from realtime.vocab import Vocabulary


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float  # media seconds the word was spoken from and to: its letters' frames, held within the lips' movement
    end: float
    committed_at: float  # media time of the frame whose arrival committed it


@dataclass(frozen=True)
class CaptionState:
    t: float  # media time of the newest frame
    committed: str
    tentative: str
    # The words that begin a phrase (what was said between two rests of the lips, or a stream's start and end),
    # counted over the committed words and then the tentative ones: where the window begins a caption line.
    phrases: tuple[int, ...] = ()


def transcript(caption: CaptionState) -> str:
    """The committed words, a phrase a line (as whisper's text output holds a segment a line): the transcript
    a run prints and saves."""
    words = caption.committed.split()
    starts = [i for i in caption.phrases if 0 < i < len(words)]
    return "\n".join(" ".join(words[a:b]) for a, b in zip([0, *starts], [*starts, len(words)]))


@dataclass(frozen=True)
class TailSlot:
    """A place of the tentative tail: the word it shows, the word the reads now give there (None: none),
    and the media time since which they have."""

    shown: str | None = None
    reading: str | None = None
    since: float = 0.0


PolicyName = Literal["pause", "right-context", "local-agreement"]


@dataclass(frozen=True)
class PolicyOptions:
    policy: PolicyName = "pause"
    decoder: DecoderName = "greedy"
    beam_width: int | None = None  # None: the decoder's default (realtime.decode.BEAM_WIDTH)
    right_context: int = 12  # frames after a frame before the model's reading of it settles
    gap: int = 6  # quiet frames that end a word without a space (blanks read) or a read (lips at rest too)
    still: int = 12  # frames of resting lips that end a phrase (pause policy)
    twitch: int = 3  # frames: lips that moved for fewer before resting said no phrase (pause policy)
    settle: float = 0.06  # seconds a tentative word must read the same before it is shown (two frames at 25 or 30 fps)


@dataclass(eq=False)  # stateful: two policies are equal only when they are one
class CaptionPolicy:
    """What every policy shares: the committed words, and the decoder it reads windows with."""

    vocabulary: Vocabulary
    options: PolicyOptions = field(default_factory=PolicyOptions)

    def __post_init__(self) -> None:
        self.words: list[TimedWord] = []
        self._tail = CaptionState(0.0, "", "")
        self._slots: list[TailSlot] = []  # the tentative tail's places, after the committed words
        self._committed_before = 0  # committed words when the tail was last shown: its places then began there
        self.phrase_starts: list[int] = []  # the committed words that begin a phrase
        self._closed = True  # the last committed word ended its phrase: the next one begins another
        self._space = self.vocabulary.charset.index(" ")
        self._moved = (-np.inf, np.inf)  # media times of the first and last frame the lips moved in, last window
        # The last window's pauses (`still` resting frames or more after the lips moved): media times of the
        # last frame they moved in before resting, and of the frame they move again at (inf: not yet).
        self._rests: list[tuple[float, float]] = []
        self._paused: list[tuple[int, int]] = []  # the same pauses, as frames of the last window (_pauses)
        self._rest_before: list[tuple[float, float]] = []  # the last pause seen before the last window began, if any
        self._first = np.inf  # media time of the last window's first frame; inf: none yet in this stream

    def _note_movement(self, times: np.ndarray, moving: np.ndarray) -> None:
        """Note when the lips moved in this window (`moving`: whether they move in each frame), and where they
        paused."""
        moved = np.flatnonzero(moving)
        self._moved = (float(times[moved[0]]), float(times[moved[-1]])) if len(moved) else (-np.inf, np.inf)
        # A window that begins in or after a pause sees no movement before it, so no pause there: the last one
        # seen is kept, for phrases (local-agreement commits a phrase a read after the pause that ends it, by
        # when, with reads far apart, the window may begin past it), ended where this window's lips move.
        before = [r for r in (*self._rest_before, *self._rests) if r[0] < times[0]][-1:]
        self._rest_before = [(r[0], float(times[moved[0]]) if r[1] == np.inf and len(moved) else r[1]) for r in before]
        self._paused = self._pauses(moving)
        self._rests = [(float(times[a - 1]), float(times[b]) if b < len(times) else np.inf) for a, b in self._paused]

    def _pauses(self, moving: np.ndarray) -> list[tuple[int, int]]:
        """The pauses (`still` resting frames or more after the lips moved) in a window: the frame each
        begins at, and the frame the lips move again at (the window's length if they do not). Lips that
        moved for fewer than `twitch` frames since the last pause said nothing: as a stream begins, a mouth
        at rest may read as moving for a frame (its floor is then a few frames' low), and the pause after
        it would end a phrase of the model's guess, which the speech after would say again."""
        pauses, since = [], 0
        for a, b in true_runs(np.logical_not(moving)):
            if a > 0 and b - a >= self.options.still and np.count_nonzero(moving[since:a]) >= self.options.twitch:
                pauses.append((int(a), int(b)))
                since = b
        return pauses

    def _next_window(self, times: np.ndarray, moving: np.ndarray, pending: list[TimedWord],
                     edge: float) -> list[TimedWord] | None:
        """Note a window, first committing the words it slid past since the last read: those of `pending`
        (the last read's words) that begin before media time `edge`. With reads `hop` frames apart the
        last read was the last to read them whole, so they are committed as it read them, held within
        its lips' movement. The words committed; None if the window did not slide."""
        slid = times[0] > self._first
        self._first = float(times[0])
        gone = [w for w in pending if w.start < edge] if slid else None
        if gone:
            self._commit_words(gone)
        self._note_movement(times, moving)
        return gone

    def _read_whole(self, words: Sequence[Word], logp: np.ndarray, moved: np.ndarray) -> int:
        """How many of a window's first words it has read to their end, where later windows read them
        alike: those followed by a word begun after the lips began to move, and all once the model reads
        no letter and the lips rest for `gap` frames after moving. Until then the window's start holds
        the model's guess at a sentence's first word, which it corrects as it reads into the speech."""
        if not len(moved):
            return 0
        resting = len(logp) - 1 - int(moved[-1])
        if resting >= self.options.gap and self._quiet(logp)[1] >= self.options.gap:
            return len(words)
        return max((i for i, w in enumerate(words) if w.start >= moved[0]), default=0)

    def _commit_words(self, words: list[TimedWord], since: float = np.inf) -> None:
        """Commit words with their times held within the lips' movement in the window read (or from
        `since`, when the lips moved in frames read before it). The model places a word's letters
        anywhere its window allows (a sentence's first word at the window's start, before the lips move;
        a phrase's last late in the pause after it, up to where the lips move again), so its frames time
        the words only roughly; the lips say when the speech was. A word read from a pause on was said
        before it, and ends where the lips stopped; a word after a pause begins a phrase."""
        low, high = min(self._moved[0], since), self._moved[1]
        for w in words:
            stopped = next((until for until, resumed in self._rests if until < w.start < resumed), None)
            if stopped is not None:
                w = replace(w, start=max(stopped - (w.end - w.start), low), end=stopped)
            else:
                end = next((until for until, _ in self._rests if w.start <= until < w.end), w.end)
                w = replace(w, start=min(max(w.start, low), high), end=min(max(end, low), high))
            if self.words and any(self.words[-1].end <= until and resumed <= w.start
                                  for until, resumed in (*self._rest_before, *self._rests)):
                self._closed = True
            if self._closed:
                self.phrase_starts.append(len(self.words))
                self._closed = False
            self.words.append(w)

    def _committed_end(self, read: TimedWord) -> float:
        """Where the word just committed ends, as read (`read`) or as held within the lips' movement, whichever
        is later: a later read that places a word before it reads that word again (a pause policy's window
        slid past a phrase's first word read at its start, before the lips moved; retimed, it begins where they
        did, and the next window reads it again at its own start)."""
        return max(read.end, self.words[-1].end)

    @property
    def committed(self) -> str:
        return " ".join(w.text for w in self.words)

    def _shown(self, now: float, tentative: str) -> CaptionState:
        """The caption with the committed words, then the tentative tail, which begins a phrase once one has
        ended. Each place of the tail shows what the reads have given there (a word, or none) for `settle`
        seconds, until they give another as long: a word the model is still spelling or guessing at (`bou`,
        `wat`, `se` for `bin`) changes from read to read, and shown at once, it flickers."""
        read = tentative.split()
        slots = self._slots
        if len(self.words) > self._committed_before:
            # Committed words leave the tail's front. A policy that decodes its words again to commit them may
            # commit more or fewer than the last read's front held, so a place moved up keeps its word only if
            # this read gives it there too: a word shown after its own commit would read twice.
            slots = [slot if i < len(read) and slot.shown == read[i] else replace(slot, shown=None)
                     for i, slot in enumerate(slots[len(self.words) - self._committed_before:])]
            self._committed_before = len(self.words)
        self._slots = []
        for i in range(max(len(read), len(slots))):
            slot = slots[i] if i < len(slots) else TailSlot()
            word = read[i] if i < len(read) else None
            if word != slot.reading:
                slot = replace(slot, reading=word, since=now)
            if now - slot.since >= self.options.settle:
                slot = replace(slot, shown=slot.reading)
            self._slots.append(slot)
        while self._slots and self._slots[-1].shown is None and self._slots[-1].reading is None:
            self._slots.pop()
        shown = []
        for slot in self._slots:
            if slot.shown is None:  # a place that shows no word ends what is shown
                break
            shown.append(slot.shown)
        tentative = " ".join(shown)
        tail = (len(self.words),) if tentative and self._closed else ()
        return CaptionState(now, self.committed, tentative, (*self.phrase_starts, *tail))

    def _quiet(self, logp: np.ndarray) -> tuple[np.ndarray, int]:
        """The best class per frame, and how many frames at the end read no letter (blank or space)."""
        best = np.argmax(logp, axis=-1)
        letters = np.nonzero((best != self.vocabulary.blank) & (best != self._space))[0]
        return best, len(best) - 1 - int(letters[-1]) if len(letters) else len(best)

    def _flush_words(self, words: list[TimedWord], now: float | None) -> CaptionState:
        """Commit the words still pending and show no tentative text; the next window starts a stream."""
        self._commit_words(words)
        self._first = np.inf
        self._rests, self._rest_before = [], []
        self._closed = True
        self._slots = []
        self._tail = self._shown(self._tail.t if now is None else now, "")
        return self._tail

    def _decode(self, logp: np.ndarray, previous: int | None = None) -> Hypothesis:
        return decode(logp, self.options.decoder, self.vocabulary, self.options.beam_width, previous=previous)

    def window_start(self) -> float:
        """Media time the next window should start at; -inf: the backend's whole sliding window."""
        return -np.inf

    def update(self, logp: np.ndarray, times: np.ndarray, moving: np.ndarray) -> CaptionState:
        """Take a window's log-probabilities (T, classes), its frames' media times (T,) and whether the
        lips move in each frame (T,) bool (realtime.activity.MovingLips)."""
        raise NotImplementedError

    def flush(self, now: float | None = None) -> CaptionState:
        """End of a stream (or of a face): commit everything read so far; later windows start afresh."""
        raise NotImplementedError


def make_policy(vocabulary: Vocabulary, options: PolicyOptions = PolicyOptions()) -> CaptionPolicy:
    if options.policy not in POLICY_CLASSES:
        raise ValueError(f"unknown caption policy {options.policy!r} (choose from {', '.join(POLICIES)})")
    return POLICY_CLASSES[options.policy](vocabulary, options)


@dataclass(eq=False)
class RightContextPolicy(CaptionPolicy):
    def __post_init__(self) -> None:
        super().__post_init__()
        # The open segment's frozen frames: log-probability row, media time, whether the lips moved.
        self._frozen: list[tuple[np.ndarray, float, bool]] = []
        self._frozen_until = -np.inf  # media time of the newest frozen frame
        self._open: list[tuple[np.ndarray, float, bool]] = []  # the newest window's frames not yet frozen
        self._reading = False  # a window of this stream has read a word whole: frames may settle
        self._after: int | None = None  # the committed letter whose run the frozen frames begin in, if any

    def _freeze(self, frames: Iterable[tuple[np.ndarray, float, bool]]) -> None:
        """Freeze the frames newer than the newest frozen one, as the window that holds them read them."""
        for row, t, lips in frames:
            if t > self._frozen_until:
                self._frozen.append((row, t, lips))
                self._frozen_until = t

    def _commit(self, now: float, final: bool) -> None:
        """Move finished words of the frozen segment into `words` and drop their frames."""
        if not self._frozen:
            return
        logp = np.stack([row for row, _, _ in self._frozen])
        hyp = self._decode(logp, self._after)
        if not hyp.words:  # silence: drop it but for its last frames, which may begin a word
            drop = len(logp) if final else max(0, len(logp) - self.options.gap)
            self._frozen = self._frozen[drop:]
            if drop:
                self._after = None
            return
        best, quiet = self._quiet(logp)
        done: list[Word] = list(hyp.words) if final else []
        if not final:
            for i, w in enumerate(hyp.words):
                ended = i + 1 < len(hyp.words) or quiet >= self.options.gap or \
                    bool(np.any(best[w.end + 1:] == self._space))
                if ended:
                    done.append(w)
        if not done:
            return
        times = [t for _, t, _ in self._frozen]
        since = next((t for _, t, lips in self._frozen if lips), np.inf)  # frozen before the window, maybe
        self._commit_words([TimedWord(w.text, times[w.start], times[w.end], now) for w in done], since)
        cut, self._after = len(logp), None
        if not final:  # past the last committed character's whole run, so it is not read twice
            cut, self._after = done[-1].end + 1, self.vocabulary.charset.index(done[-1].text[-1])
            while cut < len(best) and best[cut] == self._after:
                cut += 1
        self._frozen = self._frozen[cut:]

    def update(self, logp: np.ndarray, times: np.ndarray, moving: np.ndarray) -> CaptionState:
        now = float(times[-1])
        moved = np.flatnonzero(moving)
        self._note_movement(times, moving)
        # Frames the window slid past before they settled (reads `hop` frames apart, before the stream's
        # speech was read) are frozen as the last read read them, from where the lips began to move:
        # before that, that read's start held the model's guess at the first word, not speech.
        leaving = [frame for frame in self._open if frame[1] < times[0]]
        self._freeze(leaving if self._reading else dropwhile(lambda frame: not frame[2], leaving))
        read = None  # the whole window, decoded while nothing settles: what is pending until then
        if not self._reading:
            read = self._decode(logp)
            self._reading = self._read_whole(read.words, logp, moved) > 0
        settled = max(len(times) - self.options.right_context, 0) if self._reading else 0
        self._freeze(zip(logp[:settled], times[:settled].tolist(), moving[:settled].tolist()))
        self._commit(now, final=False)
        self._open = [(r, t, m) for r, t, m in zip(logp, times.tolist(), moving.tolist()) if t > self._frozen_until]
        if read is not None and not self._frozen and len(self._open) == len(times):
            tentative = read.text
        else:
            rows = [r for r, _, _ in self._frozen + self._open]
            tentative = self._decode(np.stack(rows), self._after).text if rows else ""
        self._tail = self._shown(now, tentative)
        return self._tail

    def flush(self, now: float | None = None) -> CaptionState:
        """The last window's unfrozen frames are committed as the latest update read them."""
        now = self._tail.t if now is None else now
        self._freeze(self._open)
        self._open = []
        self._commit(now, final=True)
        self._frozen, self._reading, self._after = [], False, None
        return self._flush_words([], now)


@dataclass(eq=False)
class LocalAgreementPolicy(CaptionPolicy):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._previous: list[TimedWord] = []  # the last hypothesis' words after the committed ones
        self._committed_until = -np.inf  # media time of the last committed word's end

    def update(self, logp: np.ndarray, times: np.ndarray, moving: np.ndarray) -> CaptionState:
        now = float(times[-1])
        moved = np.flatnonzero(moving)
        # A window that slid reads its start, up to where the lips begin to move, as the start of the
        # sentence spoken from there, and earlier frames not at all: the last read's words there are
        # committed as a stream's end there would have.
        lips = int(moved[0]) if len(moved) else len(times) - 1
        gone = self._next_window(times, moving, self._previous, float(times[lips]))
        onset = 0 if gone is None else lips
        gone = gone or []
        if gone:
            self._committed_until = self._committed_end(gone[-1])
        words = self._decode(logp).words
        # A window that ends inside a word reads only its beginning: such a word cannot be agreed on.
        complete = self._read_whole(words, logp, moved)
        current = [TimedWord(w.text, float(times[max(w.start, onset)]), float(times[max(w.end, onset)]), now)
                   for w in words]
        keep = [(w.start + w.end) / 2 > self._committed_until for w in current]
        complete -= sum(1 for k in keep[:max(complete, 0)] if not k)
        current = [w for w, k in zip(current, keep) if k]
        if self._repeated(current, times):
            current, complete = current[1:], complete - 1
        previous = self._previous[len(gone):]
        agreed = 0
        while agreed < min(complete, len(previous)) and current[agreed].text == previous[agreed].text:
            agreed += 1
        if agreed:
            self._commit_words(current[:agreed])
            self._committed_until = self._committed_end(current[agreed - 1])
        self._previous = current[agreed:]
        self._tail = self._shown(now, " ".join(w.text for w in self._previous))
        return self._tail

    def _repeated(self, current: list[TimedWord], times: np.ndarray) -> bool:
        """Whether a read's first word (the first after the committed ones by its time) is the last committed
        word read again: the same word, begun by the frame after that one ended (the same word said again
        would begin a space's frame later or more). A word's letters drift later as its window grows (`five`
        read at 10.78-10.94 s, committed, then at 10.86-11.06; a one-frame `f` a frame later), past the time
        filter, and the next read that agreed on it committed it twice (`five five`, `at f f two`)."""
        if not (current and self.words and current[0].text == self.words[-1].text):
            return False
        frame = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        return current[0].start <= self._committed_until + frame

    def flush(self, now: float | None = None) -> CaptionState:
        if self._previous:
            self._committed_until = self._previous[-1].end
        pending, self._previous = self._previous, []
        return self._flush_words(pending, now)


@dataclass(eq=False)
class PausePolicy(CaptionPolicy):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._start = -np.inf  # media time of the window's start: inside the last pause
        self._pending: list[TimedWord] = []  # the last window's words

    def window_start(self) -> float:
        return self._start

    def update(self, logp: np.ndarray, times: np.ndarray, moving: np.ndarray) -> CaptionState:
        now = float(times[-1])
        if self._start == -np.inf:  # a stream's first frame starts its first phrase
            self._start = float(times[0])
        moved = np.flatnonzero(moving)
        committed = len(self.words)
        gone = self._next_window(times, moving, self._pending, float(times[0]))
        committed_until = self._committed_end(gone[-1]) if gone else -np.inf  # of words committed as a read read them
        timed = []
        paused = False
        if not len(moved):
            # Resting lips: whatever the model reads here is not speech; keep the window short.
            if len(times) > 2 * self.options.still:
                self._start = float(times[-self.options.still])
        else:
            words = self._decode(logp).words
            timed = [TimedWord(w.text, float(times[w.start]), float(times[w.end]), now) for w in words
                     if (times[w.start] + times[w.end]) / 2 > committed_until]
            pauses = self._paused  # this window's, noted by _next_window
            paused = bool(pauses)
            if pauses:
                # The speaker paused (anywhere in the frames read, and more than once when reads are `hop`
                # frames apart): the window read the phrases before each pause whole, from rest to rest, a
                # phrase each. The model places a phrase's last word late in the pause, up to where the lips
                # move again.
                for _, resumed in pauses:
                    done = [w for w in timed if w.start < times[resumed]] if resumed < len(times) else timed
                    self._commit_words(done)
                    self._closed = True  # the words after are another phrase
                    timed = timed[len(done):]
                self._start = float(times[pauses[-1][0] + self.options.still - self.options.still // 2 - 1])
            elif len(timed) > 1 and times[0] > self._start:
                # The phrase outgrew the backend's window: commit its older half before it slides out.
                middle = times[len(times) // 2]
                old = [w for w in timed[:-1] if w.end < middle]
                if old:
                    self._commit_words(old)
                    # The next window starts on the frame after the last committed word, so a window
                    # that begins later than `_start` has again slid past the phrase's start.
                    self._start = float(times[np.searchsorted(times, old[-1].end, side="right")])
                    timed = timed[len(old):]
        self._pending = timed
        tentative = " ".join(w.text for w in timed)
        if not tentative and len(moved) and not paused and len(self.words) == committed:
            # A read that lost the words the last one showed, the lips still moving (they paused for a frame,
            # which the model reads as the phrase's end), is passed over: the words shown stay, where a line
            # begun would be withdrawn and the lines above it jump down and back.
            self._tail = replace(self._tail, t=now)
        else:
            self._tail = self._shown(now, tentative)
        return self._tail

    def flush(self, now: float | None = None) -> CaptionState:
        pending, self._pending, self._start = self._pending, [], -np.inf
        return self._flush_words(pending, now)


POLICY_CLASSES: dict[PolicyName, type[CaptionPolicy]] = {"pause": PausePolicy, "right-context": RightContextPolicy,
                                                         "local-agreement": LocalAgreementPolicy}
POLICIES: tuple[str, ...] = get_args(PolicyName)  # the names --policy takes, each a key of POLICY_CLASSES
