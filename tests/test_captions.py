"""The caption policy's invariants: committed text only grows, and the final text is the committed
text plus the flushed tail; and on real GRID clips through the live pipeline, every word is read whatever
the hop, the first included."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

import pytest

import run_live
from realtime.captions import POLICIES, CaptionPolicy, CaptionState, PolicyOptions, make_policy, transcript
from realtime.capture import Frame
from realtime.decode import decode, greedy
from realtime.grid import sentence_from_code
from realtime.live import LiveOptions, LivePipeline
from tests.test_decode import V, matrix
from tests.test_live import MODEL, bundled_model, clip, run_headless
from tests.test_tracker import read_frames

SENTENCE = "__b_i_n_ _b_l_u_e_ _a_t_ _f_ _t_w_o_ _n_o_w______"


def lips_moving(logp: np.ndarray) -> np.ndarray:
    """The lips move from the first letter the model reads to the last (as realtime.activity sees it)."""
    best = np.argmax(logp, axis=-1)
    letters = np.flatnonzero((best != V.blank) & (best != V.charset.index(" ")))
    moving = np.zeros(len(logp), bool)
    moving[letters[0]:letters[-1] + 1] = True
    return moving


def stream(logp: np.ndarray, policy: CaptionPolicy, window: int, noise: float = 0.0, seed: int = 0,
           t0: float = 0.0, hop: int = 1):
    """Feed a policy the windows a streaming backend would give, ending at every `hop`-th frame and the last."""
    rng = np.random.default_rng(seed)
    states = []
    times = t0 + np.arange(len(logp)) / 25
    moving = lips_moving(logp)
    for end in range(1, len(logp) + 1):
        if end % hop and end != len(logp):
            continue
        start = max(end - window, int(np.searchsorted(times, policy.window_start())))
        start = min(start, end - 1)
        chunk = logp[start:end] + rng.normal(0, noise, size=(end - start, logp.shape[1]))
        states.append(policy.update(chunk, times[start:end], moving[start:end]))
    return states


@pytest.mark.parametrize("name", POLICIES)
def test_committed_only_grows_and_final_is_committed_plus_tail(name: str) -> None:
    logp = matrix(SENTENCE)
    policy = make_policy(V, PolicyOptions(name, right_context=4, gap=4))
    states = stream(logp, policy, window=20)
    for before, after in zip(states, states[1:]):
        assert after.committed.startswith(before.committed)
    last = states[-1]
    final = policy.flush()
    assert final.committed == " ".join(s for s in (last.committed, last.tentative) if s)
    assert final.committed == greedy(logp, V).text == "bin blue at f two now"
    assert final.tentative == ""


@pytest.mark.parametrize("name", POLICIES)
def test_words_are_committed_while_speech_goes_on(name: str) -> None:
    logp = matrix(SENTENCE)
    policy = make_policy(V, PolicyOptions(name, right_context=4, gap=4))
    states = stream(logp, policy, window=20)
    first_commit = next(i for i, s in enumerate(states) if s.committed)
    assert states[first_commit].committed == "bin"
    assert first_commit < len(SENTENCE) // 2  # "bin" is committed long before the sentence ends
    times = [w.committed_at for w in policy.words]
    assert times == sorted(times)
    for w in policy.words:
        assert w.start <= w.end <= w.committed_at


@pytest.mark.parametrize("name", POLICIES)
def test_invariants_hold_when_windows_disagree(name: str) -> None:
    """Each read's tail shown as read (`settle` 0): the flush commits what the last read read."""
    logp = matrix(SENTENCE, sharp=0.6)
    for seed in range(5):
        policy = make_policy(V, PolicyOptions(name, right_context=6, settle=0.0))
        states = stream(logp, policy, window=25, noise=1.0, seed=seed)
        for before, after in zip(states, states[1:]):
            assert after.committed.startswith(before.committed)
        last = states[-1]
        assert policy.flush().committed == " ".join(s for s in (last.committed, last.tentative) if s)


def test_a_tentative_word_is_shown_once_reads_have_given_it_for_settle_seconds() -> None:
    """Reads a frame apart (25 fps) whose tails spell and guess (`s`, `se` for `bin`), change a word for one
    read (`bluw`), drop one for one read, then drop a word shown for good: each place of the tail shows a word
    (or none) once the reads have given it there for 0.06 s (three reads), and keeps it until they give
    another as long. The flush commits the last read, shown or not."""
    policy = make_policy(V, PolicyOptions("pause"))
    reads = ["s", "se", "bin", "bin", "bin", "bin blue", "bin blue", "bin blue", "bin bluw", "bin blue", "bin",
             "bin blue", "bin blue at", "bin blue at", "bin blue at", "bin blue", "bin blue", "bin blue", "bin blue i"]
    shown = []
    for k, said in enumerate(reads):
        frames = "_".join(said).ljust(30 + k, "_")  # a window one frame longer each read
        state = policy.update(matrix(frames), np.arange(len(frames)) / 25, np.ones(len(frames), bool))
        shown.append(state.tentative)
    assert shown == ["", "", "", "", "bin", "bin", "bin", "bin blue", "bin blue", "bin blue", "bin blue",
                     "bin blue", "bin blue", "bin blue", "bin blue at", "bin blue at", "bin blue at", "bin blue",
                     "bin blue"]
    assert policy.flush().committed == "bin blue i"


def test_a_word_committed_is_not_shown_again_in_the_tail() -> None:
    """The pause policy decodes a phrase again to commit it at the pause, so it may commit fewer words than the
    tail showed (here `bin` of `i bin`, the model's guess before it read the phrase whole); the tail's places
    then keep no word the new read does not give, nor do reads that lose every word while the lips move."""
    moving = np.array([True] * 10 + [False] * 12 + [True] * 30)
    times = np.arange(len(moving)) / 25
    guess, right = "i_ b_i_n_", "__b_i_n__"
    reads = [guess + "_" * k for k in range(1, 4)] + [right + "_" * 13] + [right + "_" * (13 + k) for k in range(1, 30)]
    policy = make_policy(V, PolicyOptions("pause"))
    states = []
    for frames in reads:
        start = min(int(np.searchsorted(times, policy.window_start())), len(frames) - 1)
        states.append(policy.update(matrix(frames[start:]), times[start:len(frames)], moving[start:len(frames)]))
    assert states[2].tentative == "i bin"
    assert states[3].committed == "bin"
    assert all(state.tentative == "" for state in states[3:]), [state.tentative for state in states]


@pytest.mark.parametrize("name", POLICIES)
def test_flush_then_new_stream_keeps_the_transcript(name: str) -> None:
    policy = make_policy(V, PolicyOptions(name, right_context=4, gap=4))
    stream(matrix(SENTENCE), policy, window=20)
    policy.flush()
    stream(matrix("__s_e_t_ _r_e_d____"), policy, window=20, t0=10.0)
    assert policy.flush().committed == "bin blue at f two now set red"


def test_pause_policy_commits_when_the_lips_rest_whatever_the_window_edge_reads() -> None:
    """A bidirectional model may place a word's last letters at the window's newest frame; the pause
    is taken from the lips, so the phrase still commits `still` frames after they rest."""
    options = PolicyOptions("pause", still=8)
    policy = make_policy(V, options)
    logp = matrix("__b_i_n_ _b_l_u" + "_" * 30)
    moving = lips_moving(logp)
    rest = int(np.flatnonzero(moving)[-1]) + 1
    times = np.arange(len(logp)) / 25
    edge = matrix("e")[0]
    committed_at = None
    for end in range(1, len(logp) + 1):
        start = min(int(np.searchsorted(times, policy.window_start())), end - 1)
        chunk = logp[start:end].copy()
        if end > rest:
            chunk[-1] = edge  # the last letter of "blue", read only at the window's edge
        state = policy.update(chunk, times[start:end], moving[start:end])
        if state.committed and committed_at is None:
            committed_at = end
    assert committed_at == rest + options.still
    assert policy.committed == "bin blue"
    assert policy.window_start() > times[rest]  # the next phrase starts inside the pause


def test_pause_policy_commits_nothing_while_the_lips_rest() -> None:
    """Windows in silence that the model reads as the start of a sentence ("bi") are not speech."""
    policy = make_policy(V, PolicyOptions("pause", still=8))
    times = np.arange(200) / 25
    for end in range(1, len(times) + 1):
        start = min(max(end - 60, int(np.searchsorted(times, policy.window_start()))), end - 1)
        chunk = matrix("b_i" + "_" * (end - start))[:end - start]
        state = policy.update(chunk, times[start:end], np.zeros(end - start, bool))
        assert state.committed == "" and state.tentative == ""
        assert end - start <= 2 * 8 + 1  # the window stays short in silence
    assert policy.flush().committed == ""


def test_pause_policy_commits_a_phrase_longer_than_the_window_from_full_windows() -> None:
    """Without a rest, a phrase outgrows the backend's window: its older half is committed before it
    slides out, each time read from a whole window, never from a short one cut into the speech."""
    logp = matrix(SENTENCE[:-6] + "_ _" + SENTENCE[2:])  # two sentences without a pause between them
    policy = make_policy(V, PolicyOptions("pause", still=8))
    times, moving, window = np.arange(len(logp)) / 25, lips_moving(logp), 20
    committing_windows = []
    for end in range(1, len(logp) + 1):
        start = min(max(end - window, int(np.searchsorted(times, policy.window_start()))), end - 1)
        before = len(policy.words)
        state = policy.update(logp[start:end], times[start:end], moving[start:end])
        if len(policy.words) > before:
            committing_windows.append(end - start)
        assert state.phrases == ((0,) if state.committed or state.tentative else ())  # the lips never rest
    assert len(committing_windows) >= 3
    assert set(committing_windows) == {window}
    assert policy.flush().committed == "bin blue at f two now bin blue at f two now"


def test_pause_policy_reads_each_pause_of_a_read_as_a_phrase_s_end() -> None:
    """Reads far apart (`--hop`) may each hold two pauses: the words before each are a phrase of their own."""
    said = "__s_e_t_ _r_e_d_ " + "_" * 8 + "b_i_n_ _b_l_u_e" + "_" * 10
    logp, times = matrix(said), np.arange(len(said)) / 25
    moving = np.array([i in range(2, 15) or i in range(25, 40) for i in range(len(said))])
    policy = make_policy(V, PolicyOptions("pause", still=6))
    state = policy.update(logp, times, moving)  # one read of the whole
    assert (state.committed, state.phrases) == ("set red bin blue", (0, 2))


def test_right_context_policy_keeps_only_the_last_frames_of_a_silence() -> None:
    """Frames read as silence are dropped as they settle, so a long silence costs no more to read
    than a short one."""
    options = PolicyOptions("right-context", right_context=4, gap=4)
    policy = make_policy(V, options)
    times = np.arange(400) / 25
    for end in range(1, 401):  # 16 s of silence
        start = max(0, end - 20)
        policy.update(matrix("_" * (end - start)), times[start:end], np.zeros(end - start, bool))
    assert len(policy._frozen) <= options.gap
    stream(matrix(SENTENCE), policy, window=20, t0=20.0)
    assert policy.flush().committed == "bin blue at f two now"


def spoken_words(logp: np.ndarray) -> list[tuple[str, int, int]]:
    """Each word and the frames of its first and last letters, as a whole reading of the clip places them."""
    return [(w.text, w.start, w.end) for w in greedy(logp, V).words]


def committed_words(policy: CaptionPolicy) -> list[tuple[str, int, int]]:
    return [(w.text, round(w.start * 25), round(w.end * 25)) for w in policy.words]


@pytest.mark.parametrize("name", POLICIES)
def test_words_the_window_slides_past_keep_the_times_they_were_read_at(name: str) -> None:
    """With reads 12 frames apart a 20-frame window slides past words between two reads; they are
    committed as the last read read them, held within the lips' movement in that read, not the next."""
    logp = matrix("_" * 5 + SENTENCE[2:] + "_" * 24)
    policy = make_policy(V, PolicyOptions(name, right_context=4, gap=4, still=6))
    stream(logp, policy, window=20, hop=12)
    policy.flush()
    assert committed_words(policy) == spoken_words(logp)


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("lead", [5, 10])
def test_reads_as_far_apart_as_the_window_allows_lose_no_frame(name: str, lead: int) -> None:
    """Right-context settles nothing before the window has read into the speech; frames the window
    slides past before then are frozen as the last read read them, so every hop the window less the
    right context allows reads the whole sentence. The other policies decode each read whole: a word
    is read whole by some read when reads overlap by its length (here "blue", 7 frames)."""
    logp = matrix("_" * lead + SENTENCE[2:] + "_" * 24)
    window, right_context = 20, 4
    largest = window - right_context if name == "right-context" else window - len("b_l_u_e")
    for hop in range(1, largest + 1):
        policy = make_policy(V, PolicyOptions(name, right_context=right_context, gap=4, still=6))
        stream(logp, policy, window=window, hop=hop)
        assert policy.flush().committed == "bin blue at f two now", hop
        assert committed_words(policy) == spoken_words(logp), hop


@pytest.mark.parametrize("clip_name", ["bbaf2n", "bbal7s"])
def test_right_context_with_the_grammar_reads_no_word_twice(clip_name: str, tmp_path: Path) -> None:
    """Right-context decodes each frozen stretch from just after the last committed word: it starts on a
    space, which the grammar reads as a pause (it had made up a word to explain it: `at f f two`)."""
    code, lines = run_headless(tmp_path, clip(clip_name), "--policy", "right-context", "--decoder", "grammar")
    assert code == 0 and lines[-1]["text"] == sentence_from_code(clip_name)


@pytest.mark.parametrize("decoder", ["beam", "grammar"])
@pytest.mark.parametrize("hop", [1, 3])
def test_right_context_goes_on_from_the_committed_words_last_letter(decoder: str, hop: int) -> None:
    """The beam places bin's n at a frame where a blank is likelier (n 0.3 after n 0.45: together the
    likelier reading); the n's run then goes on for two frames. The stretch after the committed "bin"
    begins within that run, so it is decoded as going on from n, the word's last letter, and skips the
    run, not as going on from the frame's likeliest class, which reads the run as a new word "n"."""
    logp = matrix("__b_i___nn_ _b_l_u_e_ _a_t_" + "_" * 24, noise={6: ("n", 0.45), 7: ("n", 0.3)})
    (placed,) = [w.end for w in decode(logp, decoder, V).words if w.text == "bin"]
    assert np.argmax(logp[placed]) == V.blank
    policy = make_policy(V, PolicyOptions("right-context", decoder=decoder, right_context=4, gap=4))
    stream(logp, policy, window=20, hop=hop)
    assert policy.flush().committed == "bin blue at"


# Four sentences of one take (no cut between them, so one stream), as the live loop reads a talk.
TAKE = ("bbaf2n", "bbaf3s", "bbaf4p", "bbaf5a")
SPOKEN = "bin blue at f two now bin blue at f three soon bin blue at f four please bin blue at a five again"


@pytest.fixture(scope="module")
def one_take(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four clips joined without re-encoding: 12 s in which the window slides over three pauses."""
    folder = tmp_path_factory.mktemp("take")
    listing = folder / "clips.txt"
    listing.write_text("".join(f"file '{clip(name)}'\n" for name in TAKE))
    video = folder / "four.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", str(video)], check=True)
    return video


@pytest.mark.parametrize("name", POLICIES)
def test_reads_hop_frames_apart_lose_no_word(name: str, one_take: Path, tmp_path: Path) -> None:
    """With --hop 75, the most the default window allows, a read sees each frame twice: a pause between two
    reads still ends a phrase, each sentence a line (local-agreement, which commits a phrase a read after
    its pause, ran three into one: its window began past the pause), and words the window slides past
    between two reads are committed as the last read saw them."""
    code, lines = run_headless(tmp_path, one_take, "--policy", name, "--hop", "75")
    assert code == 0
    read = lines[-1]["text"].splitlines()
    sentences = [" ".join(SPOKEN.split()[i:i + 6]) for i in range(0, 24, 6)]
    if name == "right-context":  # it may split a word where its frozen frames end (`p lease`), but loses no letter
        assert [line.replace(" ", "") for line in read] == [sentence.replace(" ", "") for sentence in sentences]
    else:
        assert read == sentences


def test_a_phrase_s_first_word_read_before_the_lips_move_is_committed_once(one_take: Path, tmp_path: Path) -> None:
    """--window 100 --hop 40: a read's window starts in the last pause and reads the next phrase's `bin` at its
    start, before the lips move; the window slides past it before the next read, which commits it retimed to
    where the lips began, and read `bin` again at its own start, after the first one's end as read: `bin bin
    blue at f three soon`. A word committed ends, for later reads, where it ends as read or as retimed,
    whichever is later."""
    code, lines = run_headless(tmp_path, one_take, "--window", "100", "--hop", "40")
    assert code == 0
    assert lines[-1]["text"] == "\n".join(" ".join(SPOKEN.split()[i:i + 6]) for i in range(0, 24, 6))


@pytest.mark.parametrize("options", [("--decoder", "grammar", "--hop", "2"), ("--window", "100", "--hop", "40")])
def test_local_agreement_commits_a_word_read_again_a_little_later_once(options: tuple[str, ...], one_take: Path,
                                                                        tmp_path: Path) -> None:
    """A word's letters drift later as its window grows: `five`, committed at 10.78-10.94 s, read at 10.86-11.06
    by a later window, or a one-frame `f` a frame later. Past the time filter, the next read that agreed on it
    committed it again: `bin blue in a f five five again` with the grammar, `bin blue at f f two now` with reads
    1.6 s apart. The take says no word twice in a row."""
    code, lines = run_headless(tmp_path, one_take, "--policy", "local-agreement", *options)
    assert code == 0
    words = lines[-1]["text"].split()
    assert all(a != b for a, b in zip(words, words[1:])), words


def test_json_lines_break_their_commits_where_a_phrase_begins(one_take: Path, tmp_path: Path) -> None:
    """The JSON lines' commits joined are the transcript a run prints, a phrase a line: a commit that begins a
    phrase begins with a line break, so a reader of them breaks its lines where the window does."""
    code, lines = run_headless(tmp_path, one_take)
    assert code == 0
    sentences = [" ".join(SPOKEN.split()[i:i + 6]) for i in range(0, 24, 6)]
    assert lines[-1] == {"final": True, "text": "\n".join(sentences)}
    commits = [line["commit"] for line in lines[:-1] if line["commit"]]
    assert "".join(commits) == lines[-1]["text"]
    assert sum(commit.startswith("\n") for commit in commits) == 3


def test_each_phrase_begins_a_caption_line_from_its_first_tentative_word(one_take: Path) -> None:
    """Through the live pipeline with the pause policy, each sentence of the take, which the lips rest after, is
    a phrase (the window begins a caption line at each), and nothing else is; a phrase's first word begins one
    from when it is first shown, tentative, so the window never moves a phrase's words to a new line as they
    are committed, and a phrase committed stays one. Nor is a line, once begun, withdrawn: a read that loses
    the words a new phrase began with, for a frame the lips pause in, keeps them shown (the code before it
    withdrew 3 lines in this take, each for a frame or two, the lines above jumping down and back)."""
    pipeline = LivePipeline(bundled_model(), LiveOptions())
    states = [pipeline.step(Frame(image, i / 25, i, 0.0)).caption for i, image in enumerate(read_frames(one_take))]
    states.append(pipeline.finish())
    pipeline.close()
    assert states[-1].committed == SPOKEN
    assert states[-1].phrases == (0, 6, 12, 18)
    for before, after in zip(states, states[1:]):
        shown, committed = len(before.committed.split()), len(after.committed.split())
        assert {i for i in before.phrases if i < shown} <= set(after.phrases)
        assert {i for i in after.phrases if shown <= i < committed} <= set(before.phrases), (before, after)
        assert len(after.phrases) >= len(before.phrases), (before, after)
    assert {i for state in states for i in state.phrases} == {0, 6, 12, 18}


def test_the_transcript_a_run_prints_holds_a_phrase_a_line(one_take: Path, capsys: pytest.CaptureFixture) -> None:
    """As whisper's text output holds a segment a line: each sentence of the take on a line of its own. A phrase
    that only the tentative words begin is not the transcript's."""
    assert run_live.main(["--source", str(one_take), "--model", str(MODEL), "--headless", "--fast"]) == 0
    spoken = SPOKEN.split()
    assert capsys.readouterr().out.splitlines() == [" ".join(spoken[i:i + 6]) for i in range(0, len(spoken), 6)]
    assert transcript(CaptionState(1.0, "bin blue set red", "lay", (0, 2, 4))) == "bin blue\nset red"


@pytest.mark.parametrize("name", POLICIES)
def test_each_sentence_of_a_take_is_a_phrase_timed_within_its_own_clip(name: str, one_take: Path) -> None:
    """The model places a phrase's last word late in the pause after it, up to where the lips move again:
    right-context and local-agreement timed `now`, said before 2.1 s, at 3.26 s, in the next sentence's
    subtitle cue, and took the whole take for one phrase. Whatever the policy, a word read from a pause on
    ends where the lips stopped, and the word after a pause begins a phrase: each sentence is a line of the
    transcript, and its words are timed within its own 3-second clip."""
    pipeline = LivePipeline(bundled_model(), LiveOptions(policy=PolicyOptions(name)))
    for i, image in enumerate(read_frames(one_take)):
        pipeline.step(Frame(image, i / 25, i, 0.0))
    lines = transcript(pipeline.finish()).splitlines()
    pipeline.close()
    words = pipeline.policy.words
    bounds = [*pipeline.policy.phrase_starts, len(words)]
    assert len(lines) == len(bounds) - 1 == len(TAKE), lines
    for k, (line, a, b) in enumerate(zip(lines, bounds, bounds[1:])):
        # each line from the sentence's first word to its last (the streaming policies read some words between
        # wrong: `it` for `at`; right-context may split one where its frozen frames end, `p lease`)
        last = SPOKEN.split()[6 * k + 5]
        assert line.startswith("bin ") and line.replace(" ", "").endswith(last), (line, last)
        assert all(3 * k <= w.start <= w.end < 3 * k + 3 for w in words[a:b]), (k, words[a:b])


def test_a_new_stream_begins_a_phrase_with_every_policy() -> None:
    """The end of a stream (a face lost, a camera paused) ends a phrase, whatever the policy."""
    for name in POLICIES:
        policy = make_policy(V, PolicyOptions(name, right_context=4, gap=4))
        states = stream(matrix("__s_e_t_ _r_e_d_" + "_" * 4), policy, window=20)
        assert policy.flush().phrases == (0,)
        states += stream(matrix("__b_i_n_ _b_l_u_e_" + "_" * 4), policy, window=20, t0=10.0)
        assert policy.flush().phrases == (0, 2), name
        # Within a stream, words committed and tentative alike go on the phrase begun; a new stream's first
        # word, tentative, begins one.
        assert all(s.phrases == (0,) for s in states if s.t < 10.0 and (s.committed or s.tentative)), name
        assert all(s.phrases == (0, 2) for s in states if s.t >= 10.0 and (s.tentative or s.committed != "set red"))


@pytest.mark.parametrize("name, clip_name, spoken", [
    ("right-context", "bbaf2n", "bin blue at f two now"),
    ("local-agreement", "bbal7s", "bin blue at l seven soon"),
])
def test_the_first_word_is_not_the_model_s_guess_before_the_lips_move(name: str, clip_name: str, spoken: str,
                                                                      tmp_path: Path) -> None:
    """The model reads a sentence's first word at its window's start, guessing (`i`, `in`) until it has
    read into the speech: nothing is agreed or frozen before then, and the clip's last word, after which
    the lips rest, is committed."""
    code, lines = run_headless(tmp_path, clip(clip_name), "--policy", name)
    assert code == 0
    assert lines[-1]["text"] == spoken
