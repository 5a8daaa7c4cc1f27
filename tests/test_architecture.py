"""The import contracts in pyproject.toml hold: the recorder never imports the exporter, layers point down."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    beside_python = Path(sys.executable).with_name("lint-imports")
    found = str(beside_python) if beside_python.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports not installed: pip install -e '.[test]'")
    return found


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _lint_copy_with(tmp_path: Path, module: str, added_import: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the tree where `module` (a path under the root) gains one import line."""
    for package in ("recorder", "exporter"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    changed = tmp_path / module
    changed.write_text(changed.read_text(encoding="utf-8") + f"\n{added_import}\n", encoding="utf-8")
    return subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


def test_a_recorder_module_importing_the_exporter_breaks_a_contract(tmp_path: Path) -> None:
    """The contract can fail: a copy of the tree with one domain module importing exporter.metrics."""
    result = _lint_copy_with(tmp_path, "recorder/domain/vocabulary.py", "import exporter.metrics")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "recorder.domain.vocabulary -> exporter.metrics" in result.stdout


@pytest.mark.parametrize(
    "forbidden", ["recorder.daemon.recorder", "recorder.ffmpeg.presets", "recorder.storage.facade"]
)
def test_the_exporter_importing_the_daemon_machinery_breaks_a_contract(tmp_path: Path, forbidden: str) -> None:
    """Issue 12: the exporter reads snapshots and config (recorder.state.ports), never the daemon's machinery."""
    result = _lint_copy_with(tmp_path, "exporter/status_page.py", f"import {forbidden}")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and f"exporter.status_page -> {forbidden}" in result.stdout
