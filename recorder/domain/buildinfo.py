"""What build this is: version, revision (git commit) and build date, as Prometheus' own `--version` says them.

An installed wheel carries `recorder/_build.py`, written when the wheel was built (setup.py). A checkout
(an editable install, `python -m recorder` from the source) asks git for the commit it runs.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from recorder import __version__
from recorder.domain.compat import UTC

UNKNOWN = "unknown"
# Prometheus' `build date` layout, e.g. 20240623-15:09:49 (UTC).
DATE_FORMAT = "%Y%m%d-%H:%M:%S"
_CHECKOUT = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class BuildInfo:
    version: str
    revision: str
    branch: str
    build_date: str


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_CHECKOUT), *args],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
            env={**os.environ, "TZ": "UTC0", "GIT_OPTIONAL_LOCKS": "0"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def from_checkout() -> BuildInfo | None:
    """The build a git checkout of the source is: its commit, branch and commit date."""
    if not (_CHECKOUT / ".git").exists():
        return None
    revision = _git("rev-parse", "HEAD")
    if revision is None:
        return None
    branch = _git("rev-parse", "--abbrev-ref", "HEAD") or UNKNOWN
    stamp = _git("log", "-1", "--format=%ct", "HEAD")
    date = datetime.fromtimestamp(int(stamp), UTC).strftime(DATE_FORMAT) if stamp else UNKNOWN
    return BuildInfo(__version__, revision, branch, date)


@functools.lru_cache(maxsize=1)
def build_info() -> BuildInfo:
    """This build, looked up once per process."""
    try:
        from recorder import _build  # type: ignore[attr-defined]  # written into wheels only
    except ImportError:
        return from_checkout() or BuildInfo(__version__, UNKNOWN, UNKNOWN, UNKNOWN)
    return BuildInfo(__version__, _build.REVISION, _build.BRANCH, _build.BUILD_DATE)


def version_text(ffmpeg: str) -> str:
    """`--version`, in the layout of Prometheus' and node_exporter's."""
    info = build_info()
    return (
        f"camera-recorder, version {info.version} (branch: {info.branch}, revision: {info.revision})\n"
        f"  build date:       {info.build_date}\n"
        f"  python version:   {platform.python_version()}\n"
        f"  platform:         {platform.system().lower()}/{platform.machine()}\n"
        f"  ffmpeg:           {ffmpeg}"
    )
