"""The README's promises: CI runs its test command, its links lead somewhere, and the metrics table in
docs/metrics.md is the metric module's list."""

from __future__ import annotations

import re
from pathlib import Path

from exporter import metrics as m

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
METRICS_DOC = (REPO / "docs" / "metrics.md").read_text()


def _exposed(fam: m.Family) -> str:
    return f"{fam.name}_info" if fam.type == "info" else fam.exposed_name


def test_metrics_table_lists_exactly_the_families_with_their_types_and_labels() -> None:
    rows = re.findall(r"^\| `(camera_recorder_\w+)` \| (\w+) \| ([^|]*) \|", METRICS_DOC, re.MULTILINE)
    table = {name: (type_, tuple(re.findall(r"`(\w+)`", labels))) for name, type_, labels in rows}
    expected = {_exposed(f): (f.type, f.labels) for f in m.ALL_FAMILIES}
    assert table == expected


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    commands = re.findall(r"```sh\n(.+?)\n```", README)
    assert commands[:2] == [
        "./setup.sh && .venv/bin/camera-recorder --demo --duration 60",
        "./setup.sh && .venv/bin/pytest -q",
    ]
    assert commands[1] in (REPO / ".ci" / "run").read_text()


def test_every_relative_link_in_the_readme_and_docs_names_a_file_of_the_checkout() -> None:
    documents = [REPO / "README.md", REPO / "MIGRATION.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" in target:
                continue
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(REPO)} -> {target}")
    assert broken == []


def test_the_readme_links_each_reference_document() -> None:
    for name in ("configuration.md", "cli.md", "http-api.md", "metrics.md", "transcoding.md"):
        assert f"(docs/{name})" in README
