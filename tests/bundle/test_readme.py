"""The README's promises: the metrics table is the metric module's list, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

from exporter import metrics as m

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _exposed(fam: m.Family) -> str:
    return f"{fam.name}_info" if fam.type == "info" else fam.exposed_name


def test_metrics_table_lists_exactly_the_families_with_their_types_and_labels() -> None:
    rows = re.findall(r"^\| `(camera_recorder_\w+)` \| (\w+) \| ([^|]*) \|", README, re.MULTILINE)
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
