"""Reading the GRID corpus: align files, sentences, and the two folder layouts it comes in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from realtime.vocab import GRID_GRAMMAR, GRID_WORDS

NON_WORDS = frozenset({"sil", "sp"})
CLIP_SUFFIXES = (".mp4", ".mpg", ".mov", ".avi")  # the videos find_clips takes for clips
ALIGN_UNITS_PER_FRAME = 1000  # GRID align times are in 1/1000 of a 25 fps frame
GRID_FPS = 25.0
# Per-frame word classes for the auxiliary loss: silence, each GRID word, any other word.
WORD_CLASSES = ("<sil>",) + GRID_WORDS + ("<other>",)

_DIGITS = {str(i): word for i, word in enumerate(GRID_GRAMMAR[4])} | {"z": GRID_GRAMMAR[4][0]}  # z: GRID's zero


class AlignError(ValueError):
    """A malformed align file; the message names the file and line."""


@dataclass(frozen=True)
class Token:
    start: float  # frame index (may be fractional)
    end: float
    word: str

    @property
    def is_word(self) -> bool:
        return self.word not in NON_WORDS


@dataclass(frozen=True)
class Clip:
    speaker: str
    name: str
    video: Path
    align: Path | None

    @property
    def key(self) -> str:
        """`speaker/name`: the clip's name in a cache and in the validation split."""
        return f"{self.speaker}/{self.name}"

    @property
    def aligned(self) -> Path:
        """Its align file, for a clip that must have one (training.split.select_clips gives only those)."""
        if self.align is None:
            raise AlignError(f"{self.video} has no align file")
        return self.align


def video_fps(video: Path) -> float:
    """The frame rate of the video file at `video`; GRID's where its container gives none (capture_fps)."""
    from realtime.capture import Video, capture_fps  # OpenCV: imported here, reading align files needs none

    capture = Video(str(video))
    try:
        return capture_fps(capture, GRID_FPS)
    finally:
        capture.release()


def read_align(path: Path) -> list[Token]:
    """Parse `start end word` lines; times become frame indices of GRID's 25 fps video (the unit is 1/1000 of
    such a frame, 40 us), whatever the rate of a video beside it: a word's second is its frame / GRID_FPS."""
    tokens: list[Token] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise AlignError(f"{path}:{number}: expected 'start end word', got {line.strip()!r}")
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise AlignError(f"{path}:{number}: times must be integers, got {line.strip()!r}") from None
        if end < start or (tokens and start < round(tokens[-1].end * ALIGN_UNITS_PER_FRAME)):
            raise AlignError(f"{path}:{number}: times go backwards in {line.strip()!r}")
        word = parts[2].lower()
        if not word.isalpha():
            raise AlignError(f"{path}:{number}: word {parts[2]!r} is not a word")
        tokens.append(Token(start / ALIGN_UNITS_PER_FRAME, end / ALIGN_UNITS_PER_FRAME, word))
    if not any(t.is_word for t in tokens):
        raise AlignError(f"{path}: no words")
    return tokens


def align_text(tokens: Iterable[Token]) -> str:
    """GRID align lines of `tokens` (times in frames), as read_align reads them: in GRID's units."""
    return "".join(f"{round(t.start * ALIGN_UNITS_PER_FRAME)} {round(t.end * ALIGN_UNITS_PER_FRAME)} {t.word}\n"
                   for t in tokens)


def sentence(tokens: list[Token]) -> str:
    return " ".join(t.word for t in tokens if t.is_word)


def sentence_from_code(code: str) -> str:
    """`bbaf2n` -> "bin blue at f two now": one character a word, digit `z` = zero."""
    if len(code) != len(GRID_GRAMMAR):
        raise ValueError(f"GRID code {code!r} must have {len(GRID_GRAMMAR)} characters")
    words = []
    for ch, slot in zip(code.lower(), GRID_GRAMMAR):
        if slot is GRID_GRAMMAR[4]:
            word = _DIGITS.get(ch)
        elif slot is GRID_GRAMMAR[3]:
            word = ch if ch in slot else None
        else:
            word = next((w for w in slot if w[0] == ch), None)
        if word is None:
            raise ValueError(f"GRID code {code!r}: {ch!r} is not a word of its slot")
        words.append(word)
    return " ".join(words)


def is_grid_sentence(words: list[str]) -> bool:
    return len(words) == len(GRID_GRAMMAR) and all(w in slot for w, slot in zip(words, GRID_GRAMMAR))


def code_from_sentence(text: str) -> str:
    """"bin blue at f two now" -> `bbaf2n`, the inverse of sentence_from_code: GRID's clip names."""
    words = text.lower().split()
    if not is_grid_sentence(words):
        raise ValueError(f"{text!r} is not a GRID sentence")
    digit = GRID_GRAMMAR[4].index(words[4])
    return "".join(w[0] for w in words[:4]) + ("z" if digit == 0 else str(digit)) + words[5][0]


RIVALS = sum(len(slot) - 1 for slot in GRID_GRAMMAR)  # 45 GRID sentences are one word away from each


def rivals(text: str) -> list[str]:
    """Every GRID sentence one word away from `text` (RIVALS of them), or none when `text` is not a GRID
    sentence: the readings the grammar decoder weighs a clip's sentence against."""
    words = text.split()
    if not is_grid_sentence(words):
        return []
    return [" ".join([*words[:i], other, *words[i + 1:]])
            for i, slot in enumerate(GRID_GRAMMAR) for other in slot if other != words[i]]


def clip_files(speaker_dir: Path, name: str) -> tuple[Path, Path]:
    """The video and align file of clip `name` as lipstream's tools write a speaker's clips:
    SPEAKER/video/NAME.mp4 and SPEAKER/align/NAME.align."""
    return speaker_dir / "video" / f"{name}.mp4", speaker_dir / "align" / f"{name}.align"


def align_of(video: Path) -> Path:
    """Where the align file of `video` is in either layout find_clips reads (it may not exist)."""
    if video.parent.name == "video":
        return video.parent.parent / "align" / f"{video.stem}.align"
    return video.parent.parent / "alignments" / video.parent.name / f"{video.stem}.align"


def find_clips(root: Path) -> list[Clip]:
    """Clips under a GRID folder, a speaker folder, or the corpus' own layout.

    Accepts `SPEAKER/video/*.mp4` + `SPEAKER/align/*.align` and `SPEAKER/*.mpg` +
    `alignments/SPEAKER/*.align`, a video being any of CLIP_SUFFIXES. Hidden files (a video still being
    written) are not clips.
    Two videos with one key (speaker/name: two recording sessions of one speaker under one folder) are
    refused: a cache keeps one clip a key, so one would be lost.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    clips: list[Clip] = []
    videos = (p for p in root.rglob("*") if p.suffix.lower() in CLIP_SUFFIXES and not p.name.startswith("."))
    for video in sorted(videos):
        speaker_dir = video.parent.parent if video.parent.name == "video" else video.parent
        align = align_of(video)
        clips.append(Clip(speaker_dir.name, video.stem, video, align if align.is_file() else None))
    seen: dict[str, Clip] = {}
    for clip in clips:
        if clip.key in seen:
            raise ValueError(f"{seen[clip.key].video} and {clip.video} are both clip {clip.key}: record each "
                             "session under its own --speaker (realtime.record)")
        seen[clip.key] = clip
    return clips
