"""Stamps the revision (git commit) and build date into a built wheel as recorder/_build.py.

Everything else is in pyproject.toml; an editable install reads the commit from git at run time instead.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))


class BuildPyWithBuildInfo(build_py):
    def run(self) -> None:
        super().run()
        from recorder.domain.buildinfo import DATE_FORMAT, UNKNOWN, from_checkout

        checkout = from_checkout()
        # SOURCE_DATE_EPOCH: a reproducible build stamps the date it is told.
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        built_at = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
        target = Path(self.build_lib, "recorder", "_build.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            '"""Written by setup.py when this wheel was built."""\n\n'
            f"REVISION = {checkout.revision if checkout else UNKNOWN!r}\n"
            f"BRANCH = {checkout.branch if checkout else UNKNOWN!r}\n"
            f"BUILD_DATE = {built_at.strftime(DATE_FORMAT)!r}\n"
        )


setup(cmdclass={"build_py": BuildPyWithBuildInfo})
