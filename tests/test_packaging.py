"""lipstream as pip installs it: a wheel built from this checkout carries the bundled model, and the
`lipstream-live` command it installs captions a real clip from a folder outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from realtime.grid import read_align

ROOT = Path(__file__).resolve().parents[1]
# what a checkout may hold beside its sources that a wheel build must not see
LOCAL = (".venv", ".git", "cache", "runs", "out", "build", "*.egg-info", "__pycache__", ".pytest_cache")


def test_installed_wheel_captions_with_its_bundled_model(tmp_path: Path, grid_s1: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LOCAL))
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("lipstream-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    shipped = site / "realtime" / "models"
    for name in ("lipstream-lite.onnx", "lipstream-lite.step.onnx", "lipstream-lite.back.onnx"):
        assert (shipped / name).read_bytes() == (ROOT / "models" / name).read_bytes(), name

    run = subprocess.run([str(site / "bin" / "lipstream-live"), "--source", str(grid_s1 / "video" / "bram2n.mp4"),
                          "--headless", "--fast"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "model lipstream-lite.onnx" in run.stderr
    spoken = " ".join(t.word for t in read_align(grid_s1 / "align" / "bram2n.align") if t.is_word)
    assert run.stdout.strip() == spoken  # a held-out clip the bundled model reads right


def test_the_entry_point_s_help_says_its_commands_and_installs_nothing(tmp_path: Path) -> None:
    """`./lipstream --help` on a machine without the environment: the usage, and no environment made."""
    venv = tmp_path / "venv"
    for asked in ("--help", "-h", "help"):
        run = subprocess.run([str(ROOT / "lipstream"), asked], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "LIPSTREAM_VENV": str(venv)})
        assert run.returncode == 0 and not run.stderr, run.stderr
        assert all(f"./lipstream {command} " in run.stdout for command in ("live", "test", "python"))
    assert not list(tmp_path.iterdir())


def test_an_unknown_command_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    """A mistyped command is told in one line, and no environment is made for it (any command but live would
    install the training packages first)."""
    run = subprocess.run([str(ROOT / "lipstream"), "lvie"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LIPSTREAM_VENV": str(tmp_path / "venv")})
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "lipstream: unknown command 'lvie' (use: live, test, python; --help says more)\n"
    assert not list(tmp_path.iterdir())


def test_a_set_up_environment_runs_for_a_user_who_may_not_write_to_it(tmp_path: Path) -> None:
    """A checkout set up by one user and run by another who may not write beside it (a shared install):
    the launcher runs the command as it stands, without the lock file that only a set-up needs."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "venv").symlink_to(sys.prefix)  # this suite's environment, set up by ./lipstream
    stale = shared / "stale"  # an environment made for another version of the checkout
    (stale / "bin").mkdir(parents=True)
    (stale / "bin" / "python").symlink_to(sys.executable)
    (stale / ".lipstream-stamp").write_text("another version\n")
    shared.chmod(0o555)
    command = [str(ROOT / "lipstream"), "python", "-c", "print('ran')"]
    if os.geteuid() == 0:  # root is run without its power to write anywhere
        command = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    try:
        ready, outdated = (subprocess.run(command, capture_output=True, text=True, timeout=120,
                                          env={**os.environ, "LIPSTREAM_VENV": str(shared / name)})
                           for name in ("venv", "stale"))
    finally:
        shared.chmod(0o755)
    assert (ready.returncode, ready.stdout, ready.stderr) == (0, "ran\n", "")
    # One that still needs setting up is said to, in one line, not attempted without the lock.
    assert (outdated.returncode, outdated.stdout) == (1, "")
    assert outdated.stderr == (f"lipstream: the environment in {stale} needs setting up, and this user may not "
                               "write beside it: run ./lipstream python once as its owner\n")
    assert sorted(p.name for p in shared.iterdir()) == ["stale", "venv"]
    assert (stale / ".lipstream-stamp").read_text() == "another version\n"
