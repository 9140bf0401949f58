"""CTC decoding: greedy, prefix beam search, and beam search constrained to the GRID grammar.

All decoders take log-probabilities of shape (T, classes), blank last, and return a Hypothesis
whose words carry the frames they were read from, so the caption policy can time them.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, get_args

import numpy as np

from realtime.vocab import GRID_GRAMMAR, Vocabulary


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # frame of the word's first character
    end: int  # frame of its last character


@dataclass(frozen=True)
class Hypothesis:
    text: str
    words: tuple[Word, ...]
    logp: float  # log-probability of its text, summed over the paths that spell it (greedy: its best path's)


def _words(chars: list[tuple[str, int]]) -> tuple[Word, ...]:
    """Group (character, frame) emissions into words at spaces."""
    words: list[Word] = []
    current: list[tuple[str, int]] = []
    for ch, frame in chars + [(" ", -1)]:
        if ch == " ":
            if current:
                words.append(Word("".join(c for c, _ in current), current[0][1], current[-1][1]))
            current = []
        else:
            current.append((ch, frame))
    return tuple(words)


def _hypothesis(chars: list[tuple[str, int]], logp: float) -> Hypothesis:
    words = _words(chars)
    return Hypothesis(" ".join(w.text for w in words), words, float(logp))


def greedy_path(logp: np.ndarray, blank: int, previous: int | None = None) -> list[tuple[int, int]]:
    """(class, frame) of each emitted label: the best path with repeats merged and blanks removed; `previous`
    is decode's."""
    best = np.argmax(logp, axis=-1)
    keep = np.ones(len(best), dtype=bool)
    if len(best):
        keep[0] = best[0] != previous
    keep[1:] = best[1:] != best[:-1]
    keep &= best != blank
    frames = np.nonzero(keep)[0]
    return [(int(best[f]), int(f)) for f in frames]


def greedy(logp: np.ndarray, vocabulary: Vocabulary, previous: int | None = None) -> Hypothesis:
    path = greedy_path(logp, vocabulary.blank, previous)
    score = float(np.max(logp, axis=-1).sum()) if len(logp) else 0.0
    return _hypothesis([(vocabulary.charset[c], f) for c, f in path], score)


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


# A grammar state is a frozenset of (slot, partial word) pairs; None means unconstrained.
State = frozenset | None


@dataclass(frozen=True)
class Grammar:
    """Words in slots, read in order. `cyclic`: sentences follow one another and a window may
    start in any slot (a live stream); otherwise one whole sentence from the first slot to the last, and
    then only a pause (the state past the last slot)."""

    slots: tuple[tuple[str, ...], ...] = GRID_GRAMMAR
    cyclic: bool = True

    def start(self) -> frozenset:
        first = range(len(self.slots)) if self.cyclic else (0,)
        return frozenset((s, "") for s in first)

    @lru_cache(maxsize=None)
    def step(self, state: frozenset, ch: str) -> frozenset:
        """The state after reading `ch`; empty when `ch` is not allowed."""
        out = set()
        end = len(self.slots)
        for slot, partial in state:
            if ch == " ":
                if partial == "":  # a space before any word, or after one's own: a pause, no word ended
                    out.add((slot, ""))
                elif partial in self.slots[slot]:
                    out.add((0 if self.cyclic and slot + 1 == end else slot + 1, ""))
            elif slot < end and any(w.startswith(partial + ch) for w in self.slots[slot]):
                out.add((slot, partial + ch))
        return frozenset(out)

    def accepts(self, state: frozenset) -> bool:
        """Whether the text read so far may end here: cyclic, at a word's end or a pause; otherwise once the
        sentence's last word is read."""
        end = len(self.slots)
        for slot, partial in state:
            if self.cyclic and (partial == "" or partial in self.slots[slot]):
                return True
            if not self.cyclic and (slot == end or (slot == end - 1 and partial in self.slots[slot])):
                return True
        return False


DecoderName = Literal["greedy", "beam", "grammar"]
DECODERS: tuple[str, ...] = get_args(DecoderName)
BEAM_WIDTH = 8  # prefixes the beam and grammar searches keep
SEARCHES = ("beam", "grammar")  # the decoders that keep a beam: --beam-width is theirs
PRUNE = -8.0  # log-probability below which a class is not tried as an extension: CTC output is peaky
# The log-likelihood ratio per frame of the free reading over the GRID one past which speech is not GRID.
FALLBACK_NATS_PER_FRAME = 0.15


def beam_search(logp: np.ndarray, vocabulary: Vocabulary, width: int = BEAM_WIDTH,
                grammar: Grammar | None = None, previous: int | None = None) -> Hypothesis:
    """CTC prefix beam search; with a grammar, only prefixes the grammar allows survive. Spaces before,
    between and after words are pauses: a text's probability is summed over every spelling of it.

    Returns an empty hypothesis with logp -inf when the grammar admits no complete reading. `previous` is
    decode's.
    """
    blank = vocabulary.blank
    charset = vocabulary.charset
    space = charset.index(" ")
    previous = None if previous == blank else previous  # a blank's run goes on as any blank would
    start: State = grammar.start() if grammar else None
    # key: (prefix of class ids, grammar state) -> [logp ending in blank, logp ending in non-blank, frames]
    # (With `previous`, the frames begin within its run: the empty prefix ends in it, not in a blank.)
    beams: dict[tuple[tuple[int, ...], State], list] = {
        ((), start): [0.0, -math.inf, ()] if previous is None else [-math.inf, 0.0, ()]}
    for t in range(len(logp)):
        row = logp[t]
        candidates = [int(c) for c in np.nonzero(row > PRUNE)[0] if c != blank]
        nxt: dict[tuple[tuple[int, ...], State], list] = {}

        def add(key: tuple, pb: float, pnb: float, frames: tuple[int, ...]) -> None:
            entry = nxt.get(key)
            if entry is None:
                nxt[key] = [pb, pnb, frames]
            else:
                entry[0] = _logaddexp(entry[0], pb)
                entry[1] = _logaddexp(entry[1], pnb)

        for (prefix, state), (pb, pnb, frames) in beams.items():
            total = _logaddexp(pb, pnb)
            add((prefix, state), total + float(row[blank]), -math.inf, frames)
            last = prefix[-1] if prefix else previous
            if last is not None:
                add((prefix, state), -math.inf, pnb + float(row[last]), frames)
            for c in candidates:
                p = pb if c == last else total
                # A space before any word, or after another, spells the same text: its paths stay with this
                # prefix, not in a beam of their own that would split the text's probability with it.
                if c == space and not prefix:  # before any word: read as a blank
                    add((prefix, state), p + float(row[c]), -math.inf, frames)
                    continue
                if c == space and last == space:  # after a space: the pause goes on (the repeat is added above)
                    add((prefix, state), -math.inf, p + float(row[c]), frames)
                    continue
                if grammar is not None:
                    new_state = grammar.step(state, charset[c])
                    if not new_state:
                        continue
                else:
                    new_state = None
                add((prefix + (c,), new_state), -math.inf, p + float(row[c]), frames + (t,))
        beams = dict(heapq.nlargest(width, nxt.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1])))

    # A reading with and without a space after its last word is one text, whose probability is the two's sum.
    best: dict[str, Hypothesis] = {}  # each text's likeliest spelling, for its words' frames
    summed: dict[str, float] = {}
    for (prefix, state), (pb, pnb, frames) in beams.items():
        if grammar is None or (state is not None and grammar.accepts(state)):
            hyp = _hypothesis([(charset[c], f) for c, f in zip(prefix, frames)], _logaddexp(pb, pnb))
            if hyp.text not in best or hyp.logp > best[hyp.text].logp:
                best[hyp.text] = hyp
            summed[hyp.text] = _logaddexp(summed.get(hyp.text, -math.inf), hyp.logp)
    if not best:
        return Hypothesis("", (), -math.inf)
    text = max(summed, key=summed.__getitem__)
    return replace(best[text], logp=summed[text])


def grammar_search(logp: np.ndarray, vocabulary: Vocabulary, width: int = BEAM_WIDTH,
                   grammar: Grammar = Grammar(), previous: int | None = None) -> Hypothesis:
    """The GRID reading of the frames, unless free text is far more likely: then the free reading.

    Speech that is not GRID makes the constrained hypothesis much less likely than the free one;
    past FALLBACK_NATS_PER_FRAME the free text is returned.
    Eight prefixes find every validation clip's GRID reading and read them as 16 and 32 do, also from outputs
    made up to three times less peaky (as a weaker model's; one word of 318 lost), in 15 ms a 75-frame clip
    where 32 took 38 ms, and 87 with the live grammar, whose frames then fell behind (2026-12-07).
    """
    constrained = beam_search(logp, vocabulary, width, grammar, previous)
    free = beam_search(logp, vocabulary, width, previous=previous)
    frames = max(len(logp), 1)
    if constrained.logp == -math.inf or (free.logp - constrained.logp) / frames > FALLBACK_NATS_PER_FRAME:
        return free
    return constrained


def decode(logp: np.ndarray, decoder: str, vocabulary: Vocabulary, width: int | None = None,
           grammar: Grammar = Grammar(), previous: int | None = None) -> Hypothesis:
    """Decode with a decoder named on the command line; `width` None: the decoder's own default.
    `previous`: the class read just before these frames (a committed word's last letter), whose run may go on
    into them: there it is the same letter, not a new one, as it would be in the frames read whole."""
    if decoder == "greedy":
        return greedy(logp, vocabulary, previous)
    if decoder == "beam":
        return beam_search(logp, vocabulary, width or BEAM_WIDTH, previous=previous)
    if decoder == "grammar":
        return grammar_search(logp, vocabulary, width or BEAM_WIDTH, grammar, previous)
    raise ValueError(f"unknown decoder {decoder!r} (choose from {', '.join(DECODERS)})")
