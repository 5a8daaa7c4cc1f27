"""The architecture holds: contracts kept and able to fail, no import cycle, no forwarding module, and
every package says what it owns."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
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
    result = _lint_copy_with(tmp_path, "exporter/routes/status_page.py", f"import {forbidden}")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and f"exporter.routes.status_page -> {forbidden}" in result.stdout


# Each row: a module that gains one wrong import, and the line lint-imports must print. The layers contract
# (app > exporter > daemon > camera | devices | storage | transcoding > ffmpeg > footage > state > config > domain)
# is tried from the bottom, from the middle and between siblings.
WRONG_IMPORTS = [  # (module, what it imports, the layer it is in, the layer it may not import)
    ("recorder/transcoding/ledger.py", "recorder.daemon.recorder", "recorder.transcoding", "recorder.daemon"),
    ("recorder/devices/v4l2/probe.py", "recorder.daemon.recorder", "recorder.devices", "recorder.daemon"),
    ("recorder/domain/vocabulary.py", "recorder.config", "recorder.domain", "recorder.config"),
    ("recorder/config/model.py", "recorder.state.snapshots", "recorder.config", "recorder.state"),
    ("recorder/ffmpeg/presets.py", "recorder.camera.supervisor", "recorder.ffmpeg", "recorder.camera"),
    ("recorder/footage/segments.py", "recorder.ffmpeg.run", "recorder.footage", "recorder.ffmpeg"),
    ("recorder/daemon/health.py", "recorder.app.cli", "recorder.daemon", "recorder.app"),
    ("recorder/camera/supervisor.py", "recorder.storage.facade", "recorder.camera", "recorder.storage"),
    ("recorder/storage/facade.py", "recorder.transcoding.worker", "recorder.storage", "recorder.transcoding"),
    ("recorder/transcoding/worker.py", "recorder.devices.hotplug", "recorder.transcoding", "recorder.devices"),
    ("exporter/collector.py", "recorder.app.commands", "exporter", "recorder.app"),
]


@pytest.mark.parametrize(("module", "imported", "layer", "above"), WRONG_IMPORTS, ids=[row[0] for row in WRONG_IMPORTS])
def test_a_wrong_import_breaks_the_layers(tmp_path: Path, module: str, imported: str, layer: str, above: str) -> None:
    result = _lint_copy_with(tmp_path, module, f"import {imported}")
    assert result.returncode != 0
    assert f"{layer} is not allowed to import {above}" in result.stdout, result.stdout


def test_the_recorder_has_no_import_cycle() -> None:
    """Not even one hidden by an import inside a function: grimp sees those too."""
    graph = grimp.build_graph("recorder", "exporter")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append(" -> ".join((importer, *back)))
    assert cycles == []


def _modules() -> list[Path]:
    return sorted(path for package in ("recorder", "exporter") for path in (ROOT / package).rglob("*.py"))


def _only_forwards(tree: ast.Module) -> bool:
    """Imports, aliases (`x = y`, `x = y.z`), `__all__` and a docstring, and nothing of its own."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Name, ast.Attribute, ast.List, ast.Tuple)):
            continue
        return False
    return True


def test_no_module_only_forwards() -> None:
    """A module that only re-exports names sends its reader one hop further; the package facade
    recorder/config/__init__.py is the one public face kept (every layer imports the config from it)."""
    forwarding = [
        str(path.relative_to(ROOT))
        for path in _modules()
        if path.name != "__main__.py"
        and path != ROOT / "recorder" / "config" / "__init__.py"
        and any(not isinstance(node, ast.Expr) for node in ast.parse(path.read_text(encoding="utf-8")).body)
        and _only_forwards(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert forwarding == []


def test_every_package_says_what_it_owns() -> None:
    packages = sorted(path.parent for path in _modules() if path.name == "__init__.py")
    missing = []
    for package in packages:
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
        if len(docstring.split()) < 12:
            missing.append(str(package.relative_to(ROOT)))
    assert missing == []
