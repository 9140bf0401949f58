"""lipstream as pip installs it: a wheel built from this checkout carries the bundled model, and the
`lipstream-live` command it installs captions a real clip from a folder outside the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

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
    # From Python too, the installed package's transcribe() with the model installed beside it.
    code = ("import realtime.transcribe as api; print(api.__file__); "
            f"print(api.transcribe({str(grid_s1 / 'video' / 'bram2n.mp4')!r}).text)")
    api = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=300)
    assert api.stdout.splitlines() == [str(site / "realtime" / "transcribe.py"), spoken], api.stderr


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
    orphaned = shared / "orphaned"  # made for this checkout by a Python since uninstalled
    (orphaned / "bin").mkdir(parents=True)
    (orphaned / "bin" / "python").symlink_to(tmp_path / "uninstalled" / "python3.12")
    (orphaned / ".lipstream-stamp").write_text((sys.prefix / Path(".lipstream-stamp")).read_text())
    shared.chmod(0o555)
    command = [str(ROOT / "lipstream"), "python", "-c", "print('ran')"]
    if os.geteuid() == 0:  # root is run without its power to write anywhere
        command = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    try:
        ready, outdated, broken = (subprocess.run(command, capture_output=True, text=True, timeout=120,
                                                  env={**os.environ, "LIPSTREAM_VENV": str(shared / name)})
                                   for name in ("venv", "stale", "orphaned"))
    finally:
        shared.chmod(0o755)
    assert (ready.returncode, ready.stdout, ready.stderr) == (0, "ran\n", "")
    # One that still needs setting up is said to, in one line, not attempted without the lock; so is one whose
    # stamp is right but whose Python is gone (it was run, and failed in bash's words, exit 127).
    for needing, folder in ((outdated, stale), (broken, orphaned)):
        assert (needing.returncode, needing.stdout) == (1, "")
        assert needing.stderr == (f"lipstream: the environment in {folder} needs setting up, and this user may not "
                                  "write beside it: run ./lipstream python once as its owner\n")
    assert sorted(p.name for p in shared.iterdir()) == ["orphaned", "stale", "venv"]
    assert (stale / ".lipstream-stamp").read_text() == "another version\n"


def test_a_folder_that_is_no_environment_is_never_cleared_to_make_one(tmp_path: Path) -> None:
    """LIPSTREAM_VENV naming a folder of the user's files, or one that holds the checkout, is refused in one line:
    making an environment there (`python -m venv --clear`) would delete what it holds."""
    own = tmp_path / "mydata"
    own.mkdir()
    (own / "notes.txt").write_text("precious\n")
    checkout = tmp_path / "env" / "src"  # a checkout inside an environment's folder
    checkout.mkdir(parents=True)
    (checkout.parent / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for name in ("lipstream", "pyproject.toml"):
        shutil.copy(ROOT / name, checkout / name)
    cases = [(ROOT / "lipstream", own, f"lipstream: {own} holds files and is no Python environment, so it is not made "
                                       "into one: LIPSTREAM_VENV must name a new folder or an environment\n")]
    for named, folder in (("..", checkout.parent), (".", checkout)):
        cases.append((checkout / "lipstream", Path(named), f"lipstream: LIPSTREAM_VENV names {folder}, which holds "
                                                           "the checkout: name a folder of its own\n"))
    for launcher, venv, says in cases:
        run = subprocess.run([str(launcher), "python", "-c", "print('ran')"], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "LIPSTREAM_VENV": str(venv)})
        assert (run.returncode, run.stdout, run.stderr) == (2, "", says)
    assert [p.name for p in own.iterdir()] == ["notes.txt"] and (own / "notes.txt").read_text() == "precious\n"
    assert sorted(p.name for p in checkout.parent.iterdir()) == ["pyvenv.cfg", "src", "src.lock"]  # the locks
    assert sorted(p.name for p in checkout.iterdir()) == ["lipstream", "pyproject.toml"]  # beside each one named


def test_a_set_up_cut_short_by_ctrl_c_says_so_in_one_line(tmp_path: Path) -> None:
    """Ctrl-C while the environment is made: one line, not the installer's log, and exit 130."""
    process = subprocess.Popen([str(ROOT / "lipstream"), "python", "-c", "print('ran')"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "LIPSTREAM_VENV": str(tmp_path / "venv")})
    assert process.stderr.readline().startswith(f"lipstream: preparing the Python environment in {tmp_path / 'venv'}")
    time.sleep(1)  # making the environment (about 3 s) or installing into it
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
    out, err = process.communicate(timeout=60)
    assert (process.returncode, out, err) == (130, "", "lipstream: set-up interrupted; the next run finishes it\n")


def test_a_user_without_sudo_is_told_the_packages_to_ask_for() -> None:
    """A user who may not install system packages is told which, in one line, before anything is made."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as a user without sudo")
    with tempfile.TemporaryDirectory() as folder:  # one the other user may reach (pytest's are root's alone)
        place, tools = Path(folder), Path(folder) / "bin"
        place.chmod(0o777)  # the other user's lock file goes beside the environment
        tools.mkdir()  # the launcher's tools, and no sudo (a machine may have one)
        for tool in ("bash", "readlink", "dirname", "realpath", "mkdir", "flock", "id"):
            (tools / tool).symlink_to(shutil.which(tool))
        for tool, code in (("dpkg", 1), ("python3", 0)):  # every package missing; a Python that makes environments
            (tools / tool).write_text(f"#!/bin/sh\nexit {code}\n")
            (tools / tool).chmod(0o755)
        run = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                              str(ROOT / "lipstream"), "live", "--help"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PATH": str(tools), "LIPSTREAM_VENV": str(place / "venv")})
        assert (run.returncode, run.stdout) == (1, "")
        assert run.stderr == ("lipstream: needs system packages this user cannot install (no sudo): ask an "
                              "administrator to run \"apt-get install libgl1 libglib2.0-0 libportaudio2\", then run "
                              "this again\n")
        assert sorted(p.name for p in place.iterdir()) == ["bin", "venv.lock"]
