"""Shared fixtures: the real GRID clips next to the repo, and one real cache prepared from a few of them."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import resource
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.prepare import main as prepare_main

GRID_S1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid" / "s1"

# bbizzn starts with 12 corrupt frames (no face), so preparing it trims them.
PREPARED_CLIPS = ("bbaf2n", "bbaf3s", "bbizzn")


def pytest_configure(config: pytest.Config) -> None:
    """The Ctrl-C tests need Ctrl-C to reach this process and the commands it starts: a suite started in
    the background by a shell without job control (`cmd &` in a script) inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def grid_s1() -> Path:
    """GRID speaker 1 (video/*.mp4, align/*.align); a missing folder is an error, not a reason to skip."""
    if not (GRID_S1 / "video").is_dir() or not (GRID_S1 / "align").is_dir():
        pytest.fail(f"real GRID clips not found: expected {GRID_S1}/video and {GRID_S1}/align "
                    "(the shared data folder next to the repo, see ../shared/data/README.md)", pytrace=False)
    return GRID_S1


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict]) -> dict:
    """What `make` made in a fresh folder, as the JSON-able description it returned, made once per test run.
    The suite's worker processes (pytest-xdist) share it through their run's common temporary folder: the
    first to ask makes it holding a lock, the others wait on the lock, then read its description. A maker
    that fails leaves no description, so the next worker to ask makes it afresh (and fails on its own)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: nothing to share
        return make(tmp_path_factory.mktemp(name))
    run = tmp_path_factory.getbasetemp().parent  # this run's; each worker's own folder is below it
    described = run / f"{name}.json"
    with open(run / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
        if described.is_file():
            return json.loads(described.read_text())
        description = make(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=run)))
        partial = described.with_suffix(".partial")
        partial.write_text(json.dumps(description))
        partial.replace(described)
        return description


def maps(pid: int, library: str) -> bool:
    """Whether process `pid` has loaded a shared library whose path holds `library` (how far it got)."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # gone, or not started yet
        return False


def writes_as_read(pid: int, fd: int = 1) -> bool:
    """Whether process `pid` is writing to its pipe `fd` as the pipe's reader makes room: realtime.files'
    write_as_read makes the pipe non-blocking meanwhile (the file's flags in /proc)."""
    try:
        fdinfo = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    except OSError:  # gone, or not started yet
        return False
    flags = next(line.split()[1] for line in fdinfo.splitlines() if line.startswith("flags:"))
    return bool(int(flags, 8) & os.O_NONBLOCK)


def ignores_sigint(pid: int) -> bool:
    """Whether process `pid` ignores SIGINT now (its status' SigIgn mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(mask >> (signal.SIGINT - 1) & 1)


@contextlib.contextmanager
def disk_full_past(size: int) -> Iterator[None]:
    """Within the block, a write that would make a file larger than `size` bytes fails (EFBIG, "File too
    large"), as on a disk that fills up: the process's file size limit, lowered and restored. Python writes
    no bytecode meanwhile (a module compiled in the block would leave a cut-off .pyc)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails, rather than the process
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
        sys.dont_write_bytecode = bytecode


def transcript(json_lines: Iterable[dict]) -> str:
    """The committed text of run_live's JSON lines: each caption change's commit, joined."""
    return "".join(line.get("commit", "") for line in json_lines)


def link_clip(grid_s1: Path, name: str, speaker_dir: Path) -> None:
    """Make clip `name` appear in `speaker_dir` (shared layout) without copying the data."""
    (speaker_dir / "video").mkdir(parents=True, exist_ok=True)
    (speaker_dir / "align").mkdir(parents=True, exist_ok=True)
    (speaker_dir / "video" / f"{name}.mp4").symlink_to(grid_s1 / "video" / f"{name}.mp4")
    (speaker_dir / "align" / f"{name}.align").symlink_to(grid_s1 / "align" / f"{name}.align")


@pytest.fixture
def grid_subset(grid_s1: Path, tmp_path: Path):
    """A function making a GRID folder of the named real clips (speaker s1) under tmp_path."""
    def make(names: tuple[str, ...]) -> Path:
        for name in names:
            link_clip(grid_s1, name, tmp_path / "grid" / "s1")
        return tmp_path / "grid"
    return make


@dataclass(frozen=True)
class PreparedRun:
    grid: Path  # a GRID folder: s1/ with the real clips and one unreadable x.mp4
    out: Path  # the finished cache
    exit_code: int
    log: str  # what the run wrote to stderr


@pytest.fixture(scope="session")
def prepared(grid_s1: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedRun:
    """`python -m training.prepare` run once over three real clips plus a text file named x.mp4."""
    def make(root: Path) -> dict:
        speaker = root / "grid" / "s1"
        for name in PREPARED_CLIPS:
            link_clip(grid_s1, name, speaker)
        (speaker / "video" / "x.mp4").write_text("not a video\n")
        (speaker / "align" / "x.align").write_text("0 20000 sil\n20000 30000 bin\n30000 74500 sil\n")
        out = root / "s1.h5"
        log = io.StringIO()
        with contextlib.redirect_stderr(log):
            code = prepare_main(["--grid", str(root / "grid"), "--out", str(out), "--workers", "2"])
        return {"grid": str(root / "grid"), "out": str(out), "exit_code": code, "log": log.getvalue()}

    run = made_once(tmp_path_factory, "prepared", make)
    return PreparedRun(Path(run["grid"]), Path(run["out"]), run["exit_code"], run["log"])


# Eight real clips for the training and export tests. bbaf5a, bbbf8p and bgbh7a fall in the 6% validation
# split (training.split.is_validation) that training.train validates on and python -m export gates on.
CACHED_CLIPS = ("bbaf2n", "bbaf3s", "bbaf4p", "bbaf5a", "bbal6n", "bbal7s", "bbbf8p", "bgbh7a")


@pytest.fixture(scope="session")
def small_cache(grid_s1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real mouth-crop cache of CACHED_CLIPS, made once per test run by training.prepare."""
    from training.prepare import prepare

    def make(root: Path) -> dict:
        for name in CACHED_CLIPS:
            link_clip(grid_s1, name, root / "s1")
        out = root / "s1.h5"
        skipped = prepare(root, out, workers=2)
        assert not skipped, f"clips skipped: {skipped}"
        return {"cache": str(out)}

    return Path(made_once(tmp_path_factory, "small_cache", make)["cache"])


@dataclass(frozen=True)
class TinyRun:
    model: Path  # the inference model, saved with training.model.save
    keys: tuple[str, ...]  # the clips it was trained on
    cer: tuple[float, ...]  # greedy CER on them before training, then every 10 steps
    steps: int


@pytest.fixture(scope="session")
def tiny_run(small_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The tiny config, compiled as training.train compiles it, over-fitted to three whole real clips
    (no augmentation) until its greedy CER on them is at most 0.1, for at most 200 steps; once per test run."""
    run = made_once(tmp_path_factory, "tiny_run", lambda folder: over_fit_tiny(small_cache, folder))
    return TinyRun(Path(run["model"]), tuple(run["keys"]), tuple(run["cer"]), run["steps"])


def over_fit_tiny(small_cache: Path, folder: Path) -> dict:
    """tiny_run's training, its model saved in `folder`: the run's description."""
    import jiwer
    import keras
    import numpy as np

    from realtime.decode import greedy
    from realtime.spec import ModelSpec
    from realtime.vocab import Vocabulary
    from training.augment import Sample
    from training.cache import load_clips, read_crop_spec
    from training.dataset import pad_batch
    from realtime.grid import WORD_CLASSES
    from training.model import CONFIGS, build, context_frames, forward, inference_model, save
    from training.train import compile_model

    keras.utils.set_random_seed(0)
    vocabulary, config, crop = Vocabulary(), CONFIGS["tiny"], read_crop_spec(small_cache)
    clips = load_clips(small_cache)[:3]
    samples = []
    for c in clips:
        classes = np.array([0] + [WORD_CLASSES.index(w) for w in c.words], np.int32)[c.frame_words + 1]
        samples.append(Sample(c.mouth, c.text, classes, c.frame_chars(vocabulary)))
    x, y = pad_batch(samples, vocabulary)
    model = build(config, crop.height, crop.width, crop.channels, vocabulary)
    compile_model(model, vocabulary, lr=3e-3, aux_weight=0.5, char_weight=1.0)
    runtime, read = inference_model(model), forward(model)

    def cer() -> float:
        logp = read(x)
        return float(jiwer.cer([c.text for c in clips],
                               [greedy(lp[:len(c.mouth)], vocabulary).text for lp, c in zip(logp, clips)]))

    history, step = [cer()], 0
    while history[-1] > 0.1 and step < 200:
        for _ in range(10):
            model.train_on_batch(x, y)
        step += 10
        history.append(cer())
    path = folder / "tiny.keras"
    save(runtime, path, ModelSpec(vocabulary=vocabulary, crop=crop, context=context_frames(config), config="tiny"))
    return {"model": str(path), "keys": [c.key for c in clips], "cer": history, "steps": step}
