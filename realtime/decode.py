"""CTC decoding: greedy, prefix beam search, and beam search constrained to the GRID grammar.

All decoders take log-probabilities of shape (T, classes), blank last, and return a Hypothesis
whose words carry the frames they were read from, so the caption policy can time them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache, reduce

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
    logp: float  # log-probability of the hypothesis (greedy: of its best path)


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


def greedy_path(logp: np.ndarray, blank: int) -> list[tuple[int, int]]:
    """(class, frame) of each emitted label: the best path with repeats merged and blanks removed."""
    best = np.argmax(logp, axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != blank
    frames = np.nonzero(keep)[0]
    return [(int(best[f]), int(f)) for f in frames]


def greedy(logp: np.ndarray, vocabulary: Vocabulary) -> Hypothesis:
    path = greedy_path(logp, vocabulary.blank)
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
    start in any slot (a live stream); otherwise one whole sentence from the first slot to the last."""

    slots: tuple[tuple[str, ...], ...] = GRID_GRAMMAR
    cyclic: bool = True

    def start(self) -> frozenset:
        first = range(len(self.slots)) if self.cyclic else (0,)
        return frozenset((s, "") for s in first)

    @lru_cache(maxsize=None)
    def step(self, state: frozenset, ch: str) -> frozenset:
        """The state after reading `ch`; empty when `ch` is not allowed."""
        out = set()
        for slot, partial in state:
            if ch == " ":
                if partial == "":  # a space before any word, or after one's own: a pause, no word ended
                    out.add((slot, ""))
                elif partial in self.slots[slot]:
                    nxt = slot + 1
                    if nxt == len(self.slots):
                        if not self.cyclic:
                            continue
                        nxt = 0
                    out.add((nxt, ""))
            elif any(w.startswith(partial + ch) for w in self.slots[slot]):
                out.add((slot, partial + ch))
        return frozenset(out)

    def accepts(self, state: frozenset) -> bool:
        """Whether the text read so far may end here."""
        last = len(self.slots) - 1
        for slot, partial in state:
            if partial in self.slots[slot] and (self.cyclic or slot == last):
                return True
            if self.cyclic and partial == "":
                return True
        return False


DECODERS = ("greedy", "beam", "grammar")
BEAM_WIDTH = {"beam": 8, "grammar": 32}
PRUNE = -8.0  # log-probability below which a class is not tried as an extension: CTC output is peaky
# The log-likelihood ratio per frame of the free reading over the GRID one past which speech is not GRID.
FALLBACK_NATS_PER_FRAME = 0.15


def beam_search(logp: np.ndarray, vocabulary: Vocabulary, width: int = BEAM_WIDTH["beam"],
                grammar: Grammar | None = None) -> Hypothesis:
    """CTC prefix beam search; with a grammar, only prefixes the grammar allows survive.

    Returns an empty hypothesis with logp -inf when the grammar admits no complete reading.
    """
    blank = vocabulary.blank
    charset = vocabulary.charset
    space = charset.index(" ")
    start: State = grammar.start() if grammar else None
    # key: (prefix of class ids, grammar state) -> [logp ending in blank, logp ending in non-blank, frames]
    beams: dict[tuple[tuple[int, ...], State], list] = {((), start): [0.0, -math.inf, ()]}
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
            last = prefix[-1] if prefix else None
            if last is not None:
                add((prefix, state), -math.inf, pnb + float(row[last]), frames)
            for c in candidates:
                p = pb if c == last else total
                # A space before any word, or after another, spells the same text: its paths stay with this
                # prefix, not in a beam of their own that would split the text's probability with it.
                if c == space and last is None:  # before any word: read as a blank
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
        beams = dict(sorted(nxt.items(), key=lambda kv: -_logaddexp(kv[1][0], kv[1][1]))[:width])

    # A text with and without a space at its end: one reading, its probability the sum of the two.
    readings: dict[str, list[Hypothesis]] = {}
    for (prefix, state), (pb, pnb, frames) in beams.items():
        if grammar is None or (state is not None and grammar.accepts(state)):
            hyp = _hypothesis([(charset[c], f) for c, f in zip(prefix, frames)], _logaddexp(pb, pnb))
            readings.setdefault(hyp.text, []).append(hyp)
    if not readings:
        return Hypothesis("", (), -math.inf)
    merged = [replace(max(hyps, key=lambda h: h.logp), logp=reduce(_logaddexp, (h.logp for h in hyps)))
              for hyps in readings.values()]
    return max(merged, key=lambda h: h.logp)


def grammar_search(logp: np.ndarray, vocabulary: Vocabulary, width: int = BEAM_WIDTH["grammar"],
                   grammar: Grammar = Grammar()) -> Hypothesis:
    """The GRID reading of the frames, unless free text is far more likely: then the free reading.

    Speech that is not GRID makes the constrained hypothesis much less likely than the free one;
    past FALLBACK_NATS_PER_FRAME the free text is returned.
    The constrained search needs a wider beam than free text: with 8 prefixes, readings such as
    "s eight" heard as "sight" fill the beam with prefixes the grammar later rejects (measured on the
    validation clips: width 8 found no GRID reading for 5 of 53 clips, 32 for none; 64 reads the same).
    """
    constrained = beam_search(logp, vocabulary, width, grammar)
    free = beam_search(logp, vocabulary, width)
    frames = max(len(logp), 1)
    if constrained.logp == -math.inf or (free.logp - constrained.logp) / frames > FALLBACK_NATS_PER_FRAME:
        return free
    return constrained


def decode(logp: np.ndarray, decoder: str, vocabulary: Vocabulary,
           width: int | None = None, grammar: Grammar = Grammar()) -> Hypothesis:
    """Decode with a decoder named on the command line; `width` None: the decoder's own default."""
    if decoder == "greedy":
        return greedy(logp, vocabulary)
    if decoder == "beam":
        return beam_search(logp, vocabulary, width or BEAM_WIDTH[decoder])
    if decoder == "grammar":
        return grammar_search(logp, vocabulary, width or BEAM_WIDTH[decoder], grammar)
    raise ValueError(f"unknown decoder {decoder!r} (choose from {', '.join(DECODERS)})")
