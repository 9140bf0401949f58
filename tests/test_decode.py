"""Decoders on hand-made probability matrices."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from realtime.decode import DECODERS, Grammar, beam_search, decode, grammar_search, greedy
from realtime.vocab import Vocabulary

V = Vocabulary()


def matrix(path: str, sharp: float = 0.9, noise: dict[int, tuple[str, float]] | None = None) -> np.ndarray:
    """Log-probabilities whose best path reads `path` ('_' is the blank, one character per frame)."""
    rest = (1 - sharp) / (V.size - 1)
    p = np.full((len(path), V.size), rest)
    for t, ch in enumerate(path):
        p[t, V.blank if ch == "_" else V.charset.index(ch)] = sharp
    for t, (ch, q) in (noise or {}).items():
        p[t] *= (1 - q) / (1 - p[t, V.charset.index(ch)])
        p[t, V.charset.index(ch)] = q
    return np.log(p / p.sum(axis=1, keepdims=True))


def test_greedy_merges_repeats_and_drops_blanks() -> None:
    hyp = greedy(matrix("bb_i_nn__ _ggrree_e_nn"), V)
    assert hyp.text == "bin green"
    assert [w.text for w in hyp.words] == ["bin", "green"]
    assert hyp.words[0].start == 0 and hyp.words[0].end == 5
    assert hyp.words[1].start > hyp.words[0].end


def test_beam_finds_what_greedy_misses() -> None:
    # Two frames split between "a" and blank: the best path is blank-blank, but "a" is more likely
    # summed over its paths (a_, _a, aa) - the textbook case for prefix beam search.
    p = np.array([[0.4, 0.6], [0.4, 0.6]])
    logp = np.full((2, V.size), -30.0)
    logp[:, V.charset.index("a")] = np.log(p[:, 0])
    logp[:, V.blank] = np.log(p[:, 1])
    assert greedy(logp, V).text == ""
    hyp = beam_search(logp, V, width=4)
    assert hyp.text == "a"
    assert math.isclose(math.exp(hyp.logp), 0.4 * 0.4 + 0.4 * 0.6 * 2, rel_tol=1e-4)


FEW = [V.charset.index(c) for c in " ab"] + [V.blank]  # the classes of the brute-force tests


def few_classes(p: np.ndarray) -> np.ndarray:
    """Log-probabilities (T, classes) in which FEW's classes have probabilities `p` (T, 4), the rest next to none."""
    logp = np.full((len(p), V.size), -40.0)
    logp[:, FEW] = np.log(p)
    return logp


def text_probabilities(p: np.ndarray, before: int | None = None, grammar: Grammar | None = None) -> dict[str, float]:
    """Each text's probability under few_classes(p), summed path by path over every path of FEW's classes; after
    `before` (the class read just before the frames), a path's first labels that go on with its run add nothing."""
    texts: dict[str, float] = {}
    for path in itertools.product(range(len(FEW)), repeat=len(p)):
        run = [before, *(FEW[k] for k in path)]  # the frames' labels, after the one read before them
        labels = [c for i, c in enumerate(run) if i > 0 and c != run[i - 1]]
        words = "".join(V.charset[c] for c in labels if c != V.blank).split()
        if grammar is None or fits(words, grammar):
            text = " ".join(words)
            texts[text] = texts.get(text, 0.0) + math.prod(p[t, k] for t, k in enumerate(path))
    return texts


def fits(words: list[str], grammar: Grammar) -> bool:
    """Whether words read in a row fit the grammar's slots: cyclic, from any slot on; otherwise one whole sentence."""
    n = len(grammar.slots)
    if not grammar.cyclic:
        return len(words) == n and all(w in slot for w, slot in zip(words, grammar.slots))
    return any(all(w in grammar.slots[(first + i) % n] for i, w in enumerate(words)) for first in range(n))


@pytest.mark.parametrize("previous", [None, "a", "_"], ids=["alone", "after-a", "after-blank"])
@pytest.mark.parametrize("grammar", [None, Grammar((("a", "ab"), ("b",)), cyclic=True),
                                     Grammar((("a", "ab"), ("b",)), cyclic=False)], ids=["free", "cyclic", "sentence"])
def test_beam_gives_each_text_the_probability_of_every_path_that_spells_it(grammar: Grammar | None,
                                                                          previous: str | None) -> None:
    """Spaces before the first word, after the last, or two in a row are pauses: " a", "a" and "a  " are one
    text. A beam wide enough to keep every prefix must find the likeliest text (of those the grammar allows)
    and its probability, summed over all its paths (counted here path by path), however its spellings split it.
    After `previous` (a letter read just before the frames, or a blank), a path's first labels that go on with
    its run add nothing."""
    rng = np.random.default_rng(0)
    before = None if previous is None else V.blank if previous == "_" else V.charset.index(previous)
    frames = 6
    for _ in range(20):
        p = 0.9 * rng.dirichlet(np.full(len(FEW), 0.7), size=frames) + 0.1 / len(FEW)  # none pruned
        texts = text_probabilities(p, before, grammar)
        likeliest = max(texts, key=lambda text: texts[text])
        hyp = beam_search(few_classes(p), V, width=len(FEW) ** frames, grammar=grammar, previous=before)
        assert hyp.text == likeliest
        assert math.isclose(math.exp(hyp.logp), texts[likeliest], rel_tol=1e-6)


@pytest.mark.parametrize("p, text", [
    ([[0.18, 0.18, 0.29, 0.35], [0.33, 0.27, 0.07, 0.33]], ""),
    ([[0.18, 0.18, 0.55, 0.09], [0.36, 0.14, 0.21, 0.29], [0.3, 0.2, 0.1, 0.4], [0.14, 0.21, 0.43, 0.22]], "b"),
], ids=["a-space-first", "two-spaces"])
def test_a_narrow_beam_keeps_a_texts_spellings_in_one_place(p: list[list[float]], text: str) -> None:
    """In a beam of two, a text spelled with a space before its first word, or with two in a row, takes no place
    of its own beside the same text spelled without: it would crowd out the likeliest text. These matrices
    (columns: space, a, b, blank) were found where it did, one for each of the two spellings."""
    texts = text_probabilities(np.array(p))
    assert max(texts, key=lambda t: texts[t]) == text
    assert beam_search(few_classes(np.array(p)), V, width=2).text == text


def test_grammar_corrects_a_misread_word() -> None:
    # "bin blue at f two now" with "blue" read as "blua" (not a GRID word): the grammar fixes it.
    path = "b_i_n_ _b_l_u_a_ _a_t_ _f_ _t_w_o_ _n_o_w"
    logp = matrix(path, noise={15: ("e", 0.3)})
    assert greedy(logp, V).text == "bin blua at f two now"
    assert grammar_search(logp, V, grammar=Grammar(cyclic=False)).text == "bin blue at f two now"


def test_grammar_falls_back_to_free_text() -> None:
    logp = matrix("h_e_l_l_o_ _w_o_r_l_d")
    assert grammar_search(logp, V).text == "hello world"


def test_cyclic_grammar_reads_a_window_that_starts_mid_sentence() -> None:
    logp = matrix("t_w_o_ _n_o_w_ _s_e_t_ _r_e_d")
    assert beam_search(logp, V, grammar=Grammar(cyclic=True)).text == "two now set red"
    # Word order matters: "red set" is not GRID in any slot, so the best GRID reading is far less
    # likely than the free one, and the grammar decoder returns the free text.
    constrained, free = (beam_search(matrix("r_e_d_ _s_e_t"), V, grammar=g) for g in (Grammar(), None))
    assert free.text == "red set" and constrained.logp < free.logp - 5
    assert grammar_search(matrix("r_e_d_ _s_e_t"), V).text == "red set"


def test_grammar_reads_spaces_before_a_word_and_between_words_as_pauses() -> None:
    """A window that starts on a space (right-context decodes from just after a committed word) or holds
    two in a row: the grammar reads them as the pause they are, not as a word made up to explain them."""
    for path in (" _ _b_i_n", "b_i_n_ _ _ _b_l_u_e", " _ _ _"):
        logp = matrix(path, sharp=0.6)
        assert beam_search(logp, V, 32, Grammar()).text == greedy(logp, V).text, path
        assert grammar_search(logp, V).text == greedy(logp, V).text, path


def test_decode_by_name() -> None:
    logp = matrix("b_i_n")
    assert {decode(logp, name, V).text for name in ("greedy", "beam", "grammar")} == {"bin"}
    with pytest.raises(ValueError):
        decode(logp, "nonsense", V)


def test_frames_that_begin_within_the_last_letter_read_do_not_read_it_again() -> None:
    """Right-context decodes from just after a committed word's last letter, whose run may go on into the
    frames: there it is that letter still (as in the frames read whole), while after a blank it is a new one.
    Every decoder agrees; the beam and grammar ones, which sum each text's spellings, had read it twice."""
    f = V.charset.index("f")
    for decoder in DECODERS:
        run_goes_on = matrix("f_ _t_w_o", sharp=0.6)
        assert decode(run_goes_on, decoder, V).text == "f two", decoder
        assert decode(run_goes_on, decoder, V, previous=f).text == "two", decoder
        assert decode(matrix("_f_ _t_w_o", sharp=0.6), decoder, V, previous=f).text == "f two", decoder
