"""Training samples from cached clips: what LipNet used plus what a webcam and a live stream bring.

A sample is a list of (clip, frame) references, so every temporal transform (sub-sentences, windows
across concatenated clips, speed change, frame drops and repeats) is an index operation and the word
labels follow the frames. Pixel transforms (flip, small affine, colour) act on the gathered frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from realtime.grid import WORD_CLASSES
from realtime.spec import ModelSpec
from realtime.vocab import Vocabulary

_WORD_CLASS = {w: i for i, w in enumerate(WORD_CLASSES)}
OTHER_WORD = _WORD_CLASS["<other>"]
UNKNOWN = -1  # no per-frame word label (clips without an align file; padding)
SPEECH_MARGIN = 2  # frames: lips move before and after the sound the align file times


@dataclass(frozen=True)
class CachedClip:
    key: str  # speaker/name
    mouth: np.ndarray  # (T, H, W, C) uint8
    text: str
    words: tuple[str, ...]
    spans: np.ndarray  # (W, 2) frame spans; empty without an align file
    speech: np.ndarray | None = None  # (T, D) what was heard at each frame (training.speech), if known

    def frame_chars(self, vocabulary: Vocabulary, target: str = "spread") -> np.ndarray:
        """Per-frame targets for the CTC head of the whole clip, blank in silence; within words, by `target`:

        - "spread": a guessed alignment, each word's characters spread evenly over its span (see
          `spread`). Dense: the CTC head learns to read long before CTC finds alignments itself, but it
          fights CTC's peaky emissions once CTC has found them.
        - "silence": UNKNOWN over each word and SPEECH_MARGIN frames around it, so CTC places letters
          freely inside the words but emits nothing in silence: no letters held back to a window's
          edge or to the next sentence, which is what a streaming caption policy needs."""
        chars = np.full(len(self.mouth), vocabulary.blank, dtype=np.int32)
        if not len(self.spans):
            return np.full(len(self.mouth), UNKNOWN, dtype=np.int32)
        if target == "silence":
            for start, end in np.round(self.spans).astype(int):
                chars[max(0, start - SPEECH_MARGIN):end + SPEECH_MARGIN] = UNKNOWN
            return chars
        for i, (word, (start, end)) in enumerate(zip(self.words, self.spans)):
            a, b = int(round(start)), min(int(round(end)), len(chars))
            chars[a:b] = spread(word, max(0, b - a), bool(i), vocabulary)
        return chars

    @property
    def frame_words(self) -> np.ndarray:
        """Index into `words` of the word spoken at each frame, -1 in silence."""
        owner = np.full(len(self.mouth), -1, dtype=np.int32)
        for i, (start, end) in enumerate(self.spans):
            owner[int(round(start)):int(round(end))] = i
        return owner


def spread(words: str, frames: int, spaced: bool, vocabulary: Vocabulary) -> np.ndarray:
    """The characters of a word (or of a few, spelt together) spread evenly over its `frames`, a space first
    when `spaced` (it follows another word of the text) and a blank between repeated letters, so that the
    frames collapse to exactly what the text says; UNKNOWN throughout when they are too few to hold it."""
    seq: list[int] = [vocabulary.encode(" ")[0]] if spaced else []
    for c in vocabulary.encode(words):
        if seq and seq[-1] == c:
            seq.append(vocabulary.blank)
        seq.append(int(c))
    if frames < len(seq):
        return np.full(frames, UNKNOWN, dtype=np.int32)
    return np.array(seq, dtype=np.int32)[(np.arange(frames) * len(seq)) // frames]


@dataclass(frozen=True)
class AugmentOptions:
    flip: float = 0.5
    jitter: float = 0.05  # per frame: probability of deletion, and again of duplication
    speed: tuple[float, float] = (0.8, 1.2)
    speed_p: float = 0.5
    shift_px: float = 3.0
    scale: float = 0.05
    rotate_deg: float = 4.0
    affine_p: float = 0.5
    colour_p: float = 0.5
    colour_swap: float = 0.0  # share of samples whose colour channels are permuted: hues no gain jitter reaches
    time_mask: int = 0  # per second of a sample, up to this many consecutive frames replaced by its mean frame
    fps: float = ModelSpec.fps  # the frame rate the model reads (its spec), which time_mask counts seconds in
    min_visible: float = 0.5  # a word counts in a window when this share of its frames is in it
    char_target: Literal["spread", "silence"] = "spread"  # the per-frame character target (CachedClip.frame_chars)

    def lipnet_only(self) -> AugmentOptions:
        """LipNet's own pixel augmentation (flip, frame jitter) without what a webcam brings (speed,
        affine and colour jitter): the baseline that measures what the webcam augmentation is worth."""
        return replace(self, speed_p=0.0, affine_p=0.0, colour_p=0.0, colour_swap=0.0, time_mask=0)


@dataclass(frozen=True)
class Sample:
    frames: np.ndarray  # (T, H, W, C) uint8
    text: str
    frame_classes: np.ndarray  # (T,) word class per frame, UNKNOWN where not known
    frame_chars: np.ndarray  # (T,) guessed character class per frame, UNKNOWN where not known
    frame_speech: np.ndarray | None = None  # (T, D) speech features, NaN where not known; None: not asked


class Sampler:
    """Draws samples of four kinds: whole sentences, sub-sentences cut at word boundaries (single
    words included), sentences spliced from the words of several clips, and windows cut anywhere
    across concatenated clips (a continuous stream)."""

    def __init__(self, clips: list[CachedClip], options: AugmentOptions = AugmentOptions(), seed: int = 0,
                 vocabulary: Vocabulary = Vocabulary(), speech_dims: int = 0):
        self.clips = clips
        self.speech_dims = speech_dims  # > 0: samples carry the speech features of their frames
        self.options = options
        self.vocabulary = vocabulary
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.owners = [c.frame_words for c in clips]
        self.chars = [c.frame_chars(vocabulary, options.char_target) for c in clips]
        self.aligned = [i for i, c in enumerate(clips) if len(c.spans)]
        counts = [len(clips[i].spans) for i in self.aligned]
        usual = max(set(counts), key=counts.count, default=0)  # splice slot by slot: GRID's six words
        self.spliceable = [i for i, n in zip(self.aligned, counts) if n == usual]

    def start_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s samples from (seed, epoch) alone: the same whatever was drawn before it."""
        self.rng = np.random.default_rng((self.seed, epoch))

    # --- index plans: arrays of (clip, frame) ---
    def sentence(self) -> np.ndarray:
        return self._whole(int(self.rng.integers(len(self.clips))))

    def _whole(self, i: int) -> np.ndarray:
        n = len(self.clips[i].mouth)
        return np.stack([np.full(n, i), np.arange(n)], axis=1)

    def sub_sentence(self) -> np.ndarray:
        if not self.aligned:
            return self.sentence()
        i = int(self.rng.choice(self.aligned))
        clip = self.clips[i]
        n_words = len(clip.spans)
        first = int(self.rng.integers(n_words))
        last = int(self.rng.integers(first, min(n_words, first + 1 + int(self.rng.integers(1, n_words + 1)))))
        margin = self.rng.integers(0, 4, size=2)
        start = max(0, int(np.floor(clip.spans[first, 0])) - int(margin[0]))
        end = min(len(clip.mouth), int(np.ceil(clip.spans[last, 1])) + int(margin[1]))
        return np.stack([np.full(end - start, i), np.arange(start, end)], axis=1)

    def splice(self) -> np.ndarray:
        """A sentence never filmed: each word, with the pause after it, from a clip drawn for that word
        alone (the same slot of another sentence, so the grammar holds). A word is then read from its
        own frames, not from which sentence its neighbours say it is in: 845 sentences become every
        combination of their words. Leading and trailing silence come with the first and last word."""
        if len(self.spliceable) < 2:
            return self.sentence()
        n_words = len(self.clips[self.spliceable[0]].spans)
        parts = []
        for slot, i in enumerate(self.rng.choice(self.spliceable, size=n_words)):
            starts = np.round(self.clips[i].spans[:, 0]).astype(int)
            start = 0 if slot == 0 else int(starts[slot])
            end = len(self.clips[i].mouth) if slot == n_words - 1 else int(starts[slot + 1])
            parts.append(np.stack([np.full(end - start, int(i)), np.arange(start, end)], axis=1))
        return np.concatenate(parts)

    def stream(self, length: int) -> np.ndarray:
        """A window cut anywhere across aligned clips (only their words tell what a part of them says);
        a whole sentence when no clip is aligned."""
        if not self.aligned:
            return self.sentence()
        parts, total = [], 0
        while total < length * 2:
            part = self._whole(self.aligned[int(self.rng.integers(len(self.aligned)))])  # all aligned: as sentence()
            parts.append(part)
            total += len(part)
        plan = np.concatenate(parts)
        start = int(self.rng.integers(0, len(plan) - length + 1))
        return plan[start:start + length]

    def retime(self, plan: np.ndarray) -> np.ndarray:
        """Speed change and LipNet's temporal jitter (frames deleted or repeated)."""
        o, rng = self.options, self.rng
        if rng.random() < o.speed_p:
            factor = rng.uniform(*o.speed)
            n = max(2, int(round(len(plan) / factor)))
            plan = plan[np.round(np.linspace(0, len(plan) - 1, n)).astype(int)]
        if o.jitter:
            keep = rng.random(len(plan)) >= o.jitter
            if not keep.any():  # a word of two frames can lose both: a sample keeps one
                keep[rng.integers(len(keep))] = True
            repeat = 1 + (rng.random(len(plan)) < o.jitter)
            plan = np.repeat(plan, repeat * keep, axis=0)
        return plan

    # --- labels and pixels ---
    def labels(self, plan: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
        """The words spoken in the plan, in order; each frame's word class and character.

        Per stretch of one clip: a word inside the stretch counts however retiming thinned or skipped
        its frames (it was still spoken); a word the window cuts at either end counts when mostly visible.
        With the "spread" target, each counted word's characters are spread over its frames in the plan,
        a space first unless it begins the text, so that the targets spell the text."""
        classes = np.full(len(plan), UNKNOWN, dtype=np.int32)
        chars = np.array([self.chars[c][f] for c, f in plan], dtype=np.int32)
        words: list[str] = []
        breaks = np.nonzero((np.diff(plan[:, 0]) != 0) | (np.diff(plan[:, 1]) < 0))[0] + 1
        for rows in np.split(np.arange(len(plan)), breaks):
            c = int(plan[rows[0], 0])
            clip = self.clips[c]
            if not len(clip.spans):
                continue
            frames = plan[rows, 1]
            owner = self.owners[c][frames]
            classes[rows] = [0 if w < 0 else _WORD_CLASS.get(clip.words[w], OTHER_WORD) for w in owner]
            counted: list[tuple[str, np.ndarray]] = []  # the stretch's words in the text, and their rows
            for w, (start, end) in enumerate(np.round(clip.spans).astype(int)):
                visible = len(np.unique(frames[owner == w]))
                inside = frames[0] <= start and end <= frames[-1] + 1
                if inside or (visible and visible >= self.options.min_visible * max(1, end - start)):
                    counted.append((clip.words[w], rows[owner == w]))
                elif visible:  # cut at the window's edge: not in the text, so no character targets either
                    chars[rows[owner == w]] = UNKNOWN
            if self.options.char_target == "spread":
                self.spell(chars, counted, spaced=bool(words))
            words += [word for word, _ in counted]
        if not any(len(self.clips[c].spans) for c in np.unique(plan[:, 0])):
            # Unaligned clips only come whole (sub_sentence, splice and stream take aligned clips), so their
            # text is exact.
            words = self.clips[int(plan[0, 0])].text.split()
        return " ".join(words), classes, chars

    def spell(self, chars: np.ndarray, counted: list[tuple[str, np.ndarray]], spaced: bool) -> None:
        """Spread each counted word's characters over its rows of `chars` (a space first but for the text's
        first word); a word retiming left no frame of is spelt with the next word that has frames, or else
        the one before, so that the targets spell the stretch's words (a stretch whose counted words all
        lost their frames, which retiming rarely does, spells none of them)."""
        groups: list[tuple[list[str], np.ndarray]] = []
        pending: list[str] = []
        for word, rows in counted:
            pending.append(word)
            if len(rows):
                groups.append((pending, rows))
                pending = []
        if groups:
            groups[-1][0].extend(pending)
        for i, (group, rows) in enumerate(groups):
            chars[rows] = spread(" ".join(group), len(rows), spaced or i > 0, self.vocabulary)

    def pixels(self, frames: np.ndarray) -> np.ndarray:
        o, rng = self.options, self.rng
        frames = frames.copy()
        if rng.random() < o.flip:
            frames = frames[:, :, ::-1]
        t, h, w, _ = frames.shape
        if rng.random() < o.affine_p:
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rng.uniform(-o.rotate_deg, o.rotate_deg),
                                        1 + rng.uniform(-o.scale, o.scale))
            m[:, 2] = m[:, 2] + rng.uniform(-o.shift_px, o.shift_px, size=2)
            frames = np.stack([cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE).reshape(f.shape)
                               for f in frames])  # reshape: OpenCV drops a grey crop's channel axis
        if rng.random() < o.colour_p:
            # Standardising each frame (realtime.spec.normalise) undoes a gain and bias common to all channels
            # except where they clip, as an over- or under-exposed webcam does; the per-channel gain is a colour cast.
            gain = rng.uniform(0.7, 1.3) * rng.uniform(0.9, 1.1, size=frames.shape[-1])
            bias = rng.uniform(-30, 30)
            frames = np.clip(frames.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        if o.colour_swap and frames.shape[-1] > 1 and rng.random() < o.colour_swap:  # no draw when off: runs repeat
            frames = frames[..., self.swapped_order(frames.shape[-1])]
        if o.time_mask:
            frames = self.mask_time(frames)
        return np.ascontiguousarray(frames)

    def swapped_order(self, channels: int) -> np.ndarray:
        """A channel order other than the identity: a face under another light, or a camera that
        delivers its channels in another order, which the bundled RGB model read as nothing (docs/experiments.md)."""
        while True:
            order = self.rng.permutation(channels)
            if (order != np.arange(channels)).any():
                return order

    def mask_time(self, frames: np.ndarray) -> np.ndarray:
        """Time masking (Ma et al. 2022, "Visual speech recognition for multiple languages"): per second,
        a run of up to `time_mask` frames becomes the sample's mean frame, labels unchanged, so the model
        reads a word from its context when a few frames are missing or blurred, and over-fits less."""
        mean = frames.mean(axis=0).astype(np.uint8)
        for _ in range(max(1, int(round(len(frames) / self.options.fps)))):
            width = int(self.rng.integers(0, self.options.time_mask + 1))
            start = int(self.rng.integers(0, max(1, len(frames) - width + 1)))
            frames[start:start + width] = mean
        return frames

    def draw(self, kind: str, length: int = 75) -> Sample:
        plan = {"sentence": self.sentence, "words": self.sub_sentence, "splice": self.splice,
                "stream": lambda: self.stream(length)}[kind]()
        if kind != "stream" or any(len(self.clips[c].spans) for c in np.unique(plan[:, 0])):
            plan = self.retime(plan)
        text, classes, chars = self.labels(plan)
        frames = np.stack([self.clips[c].mouth[f] for c, f in plan])
        return Sample(self.pixels(frames), text, classes, chars, self.speech(plan))

    def speech(self, plan: np.ndarray) -> np.ndarray | None:
        """The speech features of the plan's frames (NaN for clips without sound); None when not asked."""
        if not self.speech_dims:
            return None
        unknown = np.full(self.speech_dims, np.nan, dtype=np.float32)
        rows = [unknown if self.clips[c].speech is None else self.clips[c].speech[f] for c, f in plan]
        return np.stack(rows).astype(np.float32)  # cached as float16
