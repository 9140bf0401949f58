from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from realtime.grid import AlignError, Token, code_from_sentence, find_clips, read_align, sentence, sentence_from_code
from realtime.vocab import GRID_GRAMMAR


def test_read_align_gives_frame_indices(grid_s1: Path):
    tokens = read_align(grid_s1 / "align" / "bbaf2n.align")
    assert tokens[0] == Token(0.0, 23.75, "sil")
    assert tokens[1] == Token(23.75, 29.5, "bin")
    assert tokens[-1] == Token(53.0, 74.5, "sil")
    assert [t.is_word for t in tokens] == [False, True, True, True, True, True, True, False]


def test_sentence_drops_silence_and_pauses(grid_s1: Path):
    assert sentence(read_align(grid_s1 / "align" / "bbaf2n.align")) == "bin blue at f two now"
    tokens = [Token(0, 10, "sil"), Token(10, 20, "set"), Token(20, 21, "sp"), Token(21, 30, "red"),
              Token(30, 40, "sil")]
    assert sentence(tokens) == "set red"


def test_every_real_align_matches_its_file_name(grid_s1: Path):
    """The align files and the sentence codes in the file names are two readings of the same sentence."""
    aligns = sorted((grid_s1 / "align").glob("*.align"))
    assert len(aligns) == 900
    for path in aligns:
        assert sentence(read_align(path)) == sentence_from_code(path.stem), path


def test_sentence_from_code():
    assert sentence_from_code("bbaf2n") == "bin blue at f two now"
    assert sentence_from_code("lgizzs") == "lay green in z zero soon"
    assert sentence_from_code("PRWV9A") == "place red with v nine again"


@pytest.mark.parametrize("digit", "z0123456789")
def test_each_digit_of_a_code_is_its_grammar_word(digit: str):
    """z and 0 are both zero, the grammar's first digit word (GRID's names use z); the codes made from
    sentences use z."""
    text = sentence_from_code(f"bbaf{digit}n")
    assert text.split()[4] == GRID_GRAMMAR[4][0 if digit == "z" else int(digit)]
    assert code_from_sentence(text) == f"bbaf{'z' if digit == '0' else digit}n"


@pytest.mark.parametrize("code", ["bbaf2", "bbaf2nn", "xbaf2n", "bxaf2n", "bbxf2n", "bbaw2n", "bbafxn", "bbaf2x"])
def test_sentence_from_code_rejects_invalid_codes(code: str):
    with pytest.raises(ValueError, match=code):
        sentence_from_code(code)


def test_times_that_are_not_whole_frames_do_not_go_backwards(tmp_path: Path):
    """8050 / 1000 * 1000 is 8050.000000000001 in floating point; the next token starting at 8050 is fine."""
    path = tmp_path / "a.align"
    path.write_text("0 8050 sil\n8050 9000 bin\n9000 12000 sil\n")
    assert read_align(path)[1] == Token(8.05, 9.0, "bin")


@pytest.mark.parametrize("bad_line, problem", [
    ("23750 29500", "expected 'start end word'"),
    ("23750 29500 bin blue", "expected 'start end word'"),
    ("23750 29500.5 bin", "must be integers"),
    ("23750 abc bin", "must be integers"),
    ("20000 29500 bin", "backwards"),  # starts before the previous token ends
    ("29500 23750 bin", "backwards"),  # ends before it starts
])
def test_malformed_align_names_file_and_line(tmp_path: Path, bad_line: str, problem: str):
    path = tmp_path / "bad.align"
    path.write_text(f"0 23750 sil\n\n{bad_line}\n29500 34000 blue\n")
    with pytest.raises(AlignError, match=problem) as error:
        read_align(path)
    assert f"{path}:3:" in str(error.value)


def test_align_without_words_is_an_error(tmp_path: Path):
    path = tmp_path / "silent.align"
    path.write_text("0 40000 sil\n40000 74500 sp\n")
    with pytest.raises(AlignError, match="no words"):
        read_align(path)


def test_find_clips_in_the_shared_layout(grid_s1: Path):
    clips = find_clips(grid_s1)
    assert len(clips) == 900
    assert {c.speaker for c in clips} == {"s1"}
    first = clips[0]
    assert (first.name, first.video, first.align) == \
        ("bbaf2n", grid_s1 / "video" / "bbaf2n.mp4", grid_s1 / "align" / "bbaf2n.align")
    assert all(c.align is not None and c.align.stem == c.video.stem for c in clips)
    # The folder above the speakers works too.
    assert find_clips(grid_s1.parent) == clips


def test_find_clips_in_the_corpus_layout(grid_s1: Path, tmp_path: Path):
    """GRID as downloaded: SPEAKER/*.mpg next to alignments/SPEAKER/*.align."""
    (tmp_path / "s1").mkdir()
    (tmp_path / "alignments" / "s1").mkdir(parents=True)
    for name in ("bbaf2n", "bbaf3s"):
        (tmp_path / "s1" / f"{name}.mpg").symlink_to(grid_s1 / "video" / f"{name}.mp4")
    (tmp_path / "alignments" / "s1" / "bbaf2n.align").symlink_to(grid_s1 / "align" / "bbaf2n.align")

    for root in (tmp_path, tmp_path / "s1"):
        clips = find_clips(root)
        assert [(c.speaker, c.name) for c in clips] == [("s1", "bbaf2n"), ("s1", "bbaf3s")]
        assert clips[0].align == tmp_path / "alignments" / "s1" / "bbaf2n.align"
        assert clips[1].align is None  # no align file: prepare falls back to the name's sentence code
    assert sentence(read_align(clips[0].align)) == "bin blue at f two now"

    capture = cv2.VideoCapture(str(clips[0].video))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (288, 360, 3)


def test_find_clips_needs_a_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        find_clips(tmp_path / "missing")
