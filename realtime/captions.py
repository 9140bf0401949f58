"""Streaming caption policies: overlapping window outputs in, committed and tentative text out.

Committed text never changes once shown; the tentative tail may. Policies are independent of the
backend: anything that gives per-frame log-probabilities over a sliding window, with each frame's media
time, can drive them. Three are here (README: how they compare, and why pause is the default):

- right-context (buffered CTC): a frame's probabilities are frozen from the first window in which it
  has `right_context` frames after it (a bidirectional model's reading of a frame settles once it sees
  what follows); a word is committed once its frozen frames show it finished: a space read after it, or
  a pause of `pause` frames.
- local-agreement (LocalAgreement-2, as in whisper_streaming): each window is decoded whole, and the
  longest run of words that two consecutive hypotheses agree on is committed.
- pause: the window starts in the last pause (the policy says where: `window_start`), grows while the
  person speaks, and its words are committed when their lips rest again (`still` frames). The model
  reads a phrase from silence to silence about as well as a whole clip offline, and far better than
  windows cut mid-speech; and pauses are taken from the lips, not from the model's blanks, because a
  bidirectional CTC model places some letters at its window's edges rather than where they are spoken.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from realtime.decode import Hypothesis, Word, decode
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


POLICIES = ("pause", "right-context", "local-agreement")


@dataclass(frozen=True)
class PolicyOptions:
    policy: str = "pause"
    decoder: str = "greedy"
    beam_width: int | None = None  # None: the decoder's default (realtime.decode.BEAM_WIDTH)
    right_context: int = 12  # frames after a frame before the model's reading of it settles
    pause: int = 6  # blank frames after a word that end it without a space
    still: int = 12  # frames of resting lips that end a phrase (pause policy)


@dataclass(eq=False)  # stateful: two policies are equal only when they are one
class CaptionPolicy:
    """What every policy shares: the committed words, and the decoder it reads windows with."""

    vocabulary: Vocabulary
    options: PolicyOptions = field(default_factory=PolicyOptions)

    def __post_init__(self) -> None:
        self.words: list[TimedWord] = []
        self._tail = CaptionState(0.0, "", "")
        self._space = self.vocabulary.charset.index(" ")
        self._moved = (-np.inf, np.inf)  # media times of the first and last frame the lips moved in, last window

    def _note_movement(self, times: np.ndarray, moving: np.ndarray) -> np.ndarray:
        """Note when the lips moved in this window; the indices of the frames they moved in."""
        moved = np.flatnonzero(moving)
        self._moved = (float(times[moved[0]]), float(times[moved[-1]])) if len(moved) else (-np.inf, np.inf)
        return moved

    def _commit_words(self, words: list[TimedWord]) -> None:
        """Commit words with their times held within the lips' movement in the window read. The model
        places a word's letters anywhere its window allows (a sentence's first word at the window's
        start, before the lips move; its last at the end), so its frames time the words only roughly;
        the lips say when the speech was."""
        low, high = self._moved
        self.words.extend(replace(w, start=min(max(w.start, low), high), end=min(max(w.end, low), high))
                          for w in words)

    @property
    def committed(self) -> str:
        return " ".join(w.text for w in self.words)

    def _quiet(self, logp: np.ndarray) -> tuple[np.ndarray, int]:
        """The best class per frame, and how many frames at the end read no letter (blank or space)."""
        best = np.argmax(logp, axis=-1)
        letters = np.nonzero((best != self.vocabulary.blank) & (best != self._space))[0]
        return best, len(best) - 1 - int(letters[-1]) if len(letters) else len(best)

    def _flush_words(self, words: list[TimedWord], now: float | None) -> CaptionState:
        """Commit the words still pending and show no tentative text."""
        self._commit_words(words)
        self._tail = CaptionState(self._tail.t if now is None else now, self.committed, "")
        return self._tail

    def _decode(self, logp: np.ndarray) -> Hypothesis:
        return decode(logp, self.options.decoder, self.vocabulary, self.options.beam_width)

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
    kinds = {"pause": PausePolicy, "right-context": RightContextPolicy, "local-agreement": LocalAgreementPolicy}
    if options.policy not in kinds:
        raise ValueError(f"unknown caption policy {options.policy!r} (choose from {', '.join(POLICIES)})")
    return kinds[options.policy](vocabulary, options)


@dataclass(eq=False)
class RightContextPolicy(CaptionPolicy):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._frozen: list[np.ndarray] = []  # log-probability rows of the open segment
        self._times: list[float] = []  # media time of each frozen row
        self._frozen_until = -np.inf  # media time of the newest frozen frame
        self._open: list[tuple[np.ndarray, float]] = []  # the newest window's frames not yet frozen

    def _commit(self, now: float, final: bool) -> None:
        """Move finished words of the frozen segment into `words` and drop their frames."""
        if not self._frozen:
            return
        logp = np.stack(self._frozen)
        hyp = self._decode(logp)
        if not hyp.words:  # silence: drop it but for its last frames, which may begin a word
            drop = len(logp) if final else max(0, len(logp) - self.options.pause)
            self._frozen, self._times = self._frozen[drop:], self._times[drop:]
            return
        best, quiet = self._quiet(logp)
        done: list[Word] = list(hyp.words) if final else []
        if not final:
            for i, w in enumerate(hyp.words):
                ended = i + 1 < len(hyp.words) or quiet >= self.options.pause or \
                    bool(np.any(best[w.end + 1:] == self._space))
                if ended:
                    done.append(w)
        if not done:
            return
        self._commit_words([TimedWord(w.text, self._times[w.start], self._times[w.end], now) for w in done])
        cut = len(logp)
        if not final:  # past the last committed character's whole run, so it is not read twice
            cut = done[-1].end + 1
            while cut < len(best) and best[cut] == best[done[-1].end]:
                cut += 1
        self._frozen, self._times = self._frozen[cut:], self._times[cut:]

    def update(self, logp: np.ndarray, times: np.ndarray, moving: np.ndarray) -> CaptionState:
        now = float(times[-1])
        self._note_movement(times, moving)
        settled = len(times) - self.options.right_context
        for row, t in zip(logp[:max(settled, 0)], times[:max(settled, 0)]):
            if t > self._frozen_until:
                self._frozen.append(row)
                self._times.append(float(t))
                self._frozen_until = float(t)
        self._commit(now, final=False)
        self._open = [(r, float(t)) for r, t in zip(logp, times) if t > self._frozen_until]
        rows = self._frozen + [r for r, _ in self._open]
        pending = np.stack(rows) if rows else np.zeros((0, logp.shape[1]), np.float32)
        tentative = self._decode(pending).text if len(pending) else ""
        self._tail = CaptionState(now, self.committed, tentative)
        return self._tail

    def flush(self, now: float | None = None) -> CaptionState:
        """The last window's unfrozen frames are committed as the latest update read them."""
        now = self._tail.t if now is None else now
        for row, t in self._open:
            self._frozen.append(row)
            self._times.append(t)
            self._frozen_until = max(self._frozen_until, t)
        self._open = []
        self._commit(now, final=True)
        self._frozen, self._times = [], []
        self._tail = CaptionState(now, self.committed, "")
        return self._tail


@dataclass(eq=False)
class LocalAgreementPolicy(CaptionPolicy):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._previous: list[TimedWord] = []  # the last hypothesis' words after the committed ones
        self._committed_until = -np.inf  # media time of the last committed word's end

    def update(self, logp: np.ndarray, times: np.ndarray, moving: np.ndarray) -> CaptionState:
        now = float(times[-1])
        self._note_movement(times, moving)
        words = self._decode(logp).words
        # A window that ends inside a word reads only its beginning: such a word cannot be agreed on.
        _, quiet = self._quiet(logp)
        complete = len(words) if quiet >= self.options.pause else len(words) - 1
        current = [TimedWord(w.text, float(times[w.start]), float(times[w.end]), now) for w in words]
        keep = [(w.start + w.end) / 2 > self._committed_until for w in current]
        complete -= sum(1 for k in keep[:max(complete, 0)] if not k)
        current = [w for w, k in zip(current, keep) if k]
        agreed = 0
        while agreed < min(complete, len(self._previous)) and current[agreed].text == self._previous[agreed].text:
            agreed += 1
        if agreed:
            self._commit_words(current[:agreed])
            self._committed_until = current[agreed - 1].end
        self._previous = current[agreed:]
        self._tail = CaptionState(now, self.committed, " ".join(w.text for w in self._previous))
        return self._tail

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
        moved = self._note_movement(times, moving)
        still = len(moving) - 1 - int(moved[-1]) if len(moved) else len(moving)
        timed = []
        if not len(moved):
            # Resting lips: whatever the model reads here is not speech; keep the window short.
            if len(times) > 2 * self.options.still:
                self._start = float(times[-self.options.still])
        else:
            words = self._decode(logp).words
            timed = [TimedWord(w.text, float(times[w.start]), float(times[w.end]), now) for w in words]
            if still >= self.options.still:
                # The speaker paused: the window read a whole phrase, from rest to rest.
                self._commit_words(timed)
                self._start = float(times[len(times) - still // 2 - 1])
                timed = []
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
        self._tail = CaptionState(now, self.committed, " ".join(w.text for w in timed))
        return self._tail

    def flush(self, now: float | None = None) -> CaptionState:
        pending, self._pending, self._start = self._pending, [], -np.inf
        return self._flush_words(pending, now)
