"""`--version` says version, revision and build date as Prometheus does, from a checkout and from a wheel;
`camera_recorder_build_info` carries the revision; building the package prints no setuptools warnings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from daemon_harness import Daemon, write_config

from recorder.domain.buildinfo import build_info

REPO = Path(__file__).resolve().parents[3]
# Prometheus' own first two lines: "prometheus, version 2.45.0 (branch: HEAD, revision: 8ef767e...)"
# and "  build date:       20230623-15:09:49".
VERSION_LINE = re.compile(r"^camera-recorder, version \S+ \(branch: \S+, revision: (?P<revision>\S+)\)$")
BUILD_DATE_LINE = re.compile(r"^  build date:\s+(?P<date>\d{8}-\d{2}:\d{2}:\d{2})$")


def head_commit(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()  # fmt: skip


def version_output(python: str, cwd: Path, extra_path: Path | None = None) -> list[str]:
    code = "import sys; from recorder.app.cli import main; sys.exit(main(['--version']))"
    if extra_path is not None:
        code = f"import sys; sys.path.insert(0, {str(extra_path)!r}); " + code
    out = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.splitlines()


def test_version_from_a_checkout_names_its_commit() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    lines = version_output(sys.executable, REPO)
    match = VERSION_LINE.match(lines[0])
    assert match, lines
    assert match["revision"] == head_commit(REPO)
    assert BUILD_DATE_LINE.match(lines[1]), lines
    assert any(line.strip().startswith("ffmpeg:") for line in lines)


def test_build_info_metric_carries_the_revision(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        labels = {labels: value for (name, labels), value in daemon.samples().items()
                  if name == "camera_recorder_build_info"}  # fmt: skip
    finally:
        daemon.stop()
    ((label_pairs, value),) = labels.items()
    assert value == 1.0
    assert dict(label_pairs)["revision"] == build_info().revision != ""
    if (REPO / ".git").exists():
        assert dict(label_pairs)["revision"] == head_commit(REPO)


def test_a_wheel_built_from_a_clone_knows_its_revision_and_builds_quietly(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=60)
    # The working tree as it is (uncommitted edits included) on top of the clone's history.
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True, timeout=30).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(clone)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    noise = [line for line in built.stderr.splitlines() if "Warning" in line or "deprecated" in line.lower()]
    assert not noise, "\n".join(noise)
    (wheel,) = (tmp_path / "dist").glob("camera_recorder-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
        assert "MIT" in archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    assert (unpacked / "recorder" / "_build.py").exists()
    # Run from the unpacked wheel, away from any checkout: the revision comes from the stamp.
    lines = version_output(sys.executable, tmp_path, extra_path=unpacked)
    match = VERSION_LINE.match(lines[0])
    assert match and match["revision"] == head_commit(REPO), lines
    assert BUILD_DATE_LINE.match(lines[1]), lines
