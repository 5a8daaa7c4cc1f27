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


def test_a_recorder_module_importing_the_exporter_breaks_a_contract(tmp_path: Path) -> None:
    """The contract can fail: a copy of the tree with one domain module importing exporter.metrics."""
    for package in ("recorder", "exporter"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    vocabulary = tmp_path / "recorder" / "vocabulary.py"
    vocabulary.write_text(vocabulary.read_text(encoding="utf-8") + "\nimport exporter.metrics\n", encoding="utf-8")
    result = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "recorder.vocabulary -> exporter.metrics" in result.stdout
