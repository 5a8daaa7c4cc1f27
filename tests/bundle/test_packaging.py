"""The wheel carries every package of the checkout: a package missing from it fails only once installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_package_of_the_checkout(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("camera_recorder-*.whl")
    in_wheel = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith("/__init__.py")}
    in_checkout = {
        str(init.relative_to(REPO)) for top in ("recorder", "exporter") for init in (REPO / top).rglob("__init__.py")
    }
    assert in_checkout <= in_wheel, f"missing from the wheel: {sorted(in_checkout - in_wheel)}"
