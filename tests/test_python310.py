"""Python 3.10 (Ubuntu 22.04's system Python) is supported, and checked mechanically.

`vermin` reads every module for features newer than 3.10; the 3.10 shim behaves as 3.11's StrEnum; and,
where a 3.10 interpreter is found (on PATH or under pyenv), the unit tests run under it. That last test
skips, saying so, on machines without one.
"""

from __future__ import annotations

import enum
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recorder.domain.compat import BackportedStrEnum, StrEnum

REPO = Path(__file__).resolve().parents[1]
CHECKED_TREES = ["recorder", "exporter", "tests", "bench", "setup.py"]
# Fast tests that touch every module's import path and need no daemon, no root mount and no network.
UNIT_TESTS_UNDER_310 = [
    "tests/recorder/config/test_config.py",
    "tests/recorder/app/test_cli_config.py",
    "tests/recorder/config/test_legacy.py",
    "tests/recorder/ffmpeg/test_presets.py",
    "tests/recorder/footage/test_segments.py",
    "tests/recorder/ffmpeg/test_ffmpeg_errors.py",
    "tests/recorder/devices/test_v4l2.py",
    "tests/recorder/camera/test_states.py",
    "tests/recorder/storage/test_retention_planner.py",
    "tests/exporter/test_scrape_golden.py",
    "tests/recorder/footage/test_recordings.py",
    "tests/test_python310.py",
]


def test_no_module_needs_more_than_python_310() -> None:
    vermin = Path(sys.executable).with_name("vermin")
    command = [str(vermin)] if vermin.exists() else [sys.executable, "-m", "vermin"]
    out = subprocess.run(
        [*command, "--target=3.10-", "--no-tips", "--violations", *CHECKED_TREES],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


class Colour(BackportedStrEnum):
    RED = "red"
    DARK_BLUE = enum.auto()


@pytest.mark.parametrize("strenum", [BackportedStrEnum, StrEnum], ids=["backport", "in-use"])
def test_strenum_members_print_as_their_value(strenum: type[enum.Enum]) -> None:
    Shade = strenum("Shade", {"LIGHT": "light"})  # type: ignore[call-overload]
    assert str(Shade.LIGHT) == "light"
    assert f"{Shade.LIGHT}" == "light"
    assert f"{Shade.LIGHT:>7}" == "  light"
    assert "%s" % Shade.LIGHT == "light"  # noqa: UP031 (logging formats this way)
    assert Shade.LIGHT == "light"
    assert Shade("light") is Shade.LIGHT


def test_backported_auto_is_the_lower_case_name() -> None:
    assert Colour.DARK_BLUE == "dark_blue"
    assert isinstance(Colour.RED, str)


def find_python310() -> str | None:
    """A Python 3.10 other than the one running, on PATH or under pyenv."""
    if sys.version_info[:2] == (3, 10):
        return None  # already running under it: this very run is the check
    found = shutil.which("python3.10")
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [found] if found else []
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.10*/bin/python3.10"), reverse=True)
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 10)":
            return candidate
    return None


def test_unit_tests_pass_under_python_310(tmp_path: Path) -> None:
    python310 = find_python310()
    if python310 is None:
        pytest.skip("no Python 3.10 interpreter on PATH or under pyenv (vermin above still checks the code)")
    # A copy of the tracked files, so installing builds nothing inside the working tree.
    source = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    ).stdout
    files = [name for name in tracked.decode().split("\0") if name] if tracked else []
    if files:
        for name in files:
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / name).is_file():
                shutil.copy2(REPO / name, target)
    else:  # not a git checkout (an unpacked archive)
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", "*.egg-info", "build", "__pycache__"))
    env_dir = tmp_path / "venv310"
    subprocess.run([python310, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{source}[test]"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.skip(f"cannot install the project's dependencies for 3.10 here: {install.stderr.strip()[-300:]}")
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TESTS_UNDER_310],
        cwd=source, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout.splitlines()[-1]
