"""The command line on its own: the seed's invocations parse and go together, and only the plain one records
(its configuration errors exit 78 so that systemd stops restarting; a one-shot command's exit 1)."""

from __future__ import annotations

import pytest

from recorder.app.cli_args import build_parser, starts_the_daemon, usage_error

ONE_SHOT = [
    ["--detect"], ["--detect", "--json"], ["--validate"], ["--stats"], ["--stats", "--json"], ["--cleanup"],
    ["--cleanup", "--dry-run"], ["--dry-run"], ["--transcode"], ["--version"], ["--convert-config", "x.conf"],
]  # fmt: skip


@pytest.mark.parametrize("argv", [[], ["-c", "config.yaml"], ["--duration", "5"], *ONE_SHOT], ids=" ".join)
def test_the_seeds_invocations_go_together(argv: list[str]) -> None:
    assert usage_error(build_parser().parse_args(argv)) is None


@pytest.mark.parametrize("argv", [*ONE_SHOT, ["--demo"]], ids=" ".join)
def test_only_the_plain_invocation_starts_the_daemon(argv: list[str]) -> None:
    assert not starts_the_daemon(build_parser().parse_args(argv))
    assert starts_the_daemon(build_parser().parse_args(["--config", "config.yaml", "--log-level", "warn"]))


def test_a_flag_without_its_command_is_named() -> None:
    assert usage_error(build_parser().parse_args(["--json"])) == "--json goes with --detect or --stats"
    assert usage_error(build_parser().parse_args(["--duration", "0"])) == (
        "--duration: expected a positive number of seconds, got 0"
    )
