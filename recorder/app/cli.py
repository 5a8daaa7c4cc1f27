"""`camera-recorder`: the original's invocations (record, --detect, --validate, --stats, --cleanup,
--dry-run) plus --demo, --convert-config, --export and --version.

The composition root: it parses the command line (cli_args), runs a one-shot command (cli_commands, cli_demo)
or builds the Recorder and wires the exporter to it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from recorder.app.cli_args import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    build_parser,
    fail,
    starts_the_daemon,
    usage_error,
)
from recorder.app.commands import (
    NO_CAMERA_CHECKLIST,
    cleanup,
    convert_config,
    detect_cameras,
    print_commands,
    show_version,
    stats,
    transcode_now,
    validate,
)
from recorder.app.demo import demo_banner, demo_config, status_page_url
from recorder.app.logformat import CameraField, formatter_for
from recorder.config import Config, ConfigError, load_config, resolve_config_path, valid_listen_address
from recorder.ffmpeg.binary import find_tools

if TYPE_CHECKING:
    from exporter.webconfig import WebOptions
    from recorder.daemon.recorder import Recorder
    from recorder.storage.recordings_owner import FolderInUse

# What the tests, the systemd bundle and earlier importers take from here.
__all__ = [
    "EXIT_CONFIG", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "NO_CAMERA_CHECKLIST", "build_parser", "demo_config",
    "main", "run_recorder", "setup_logging",
]  # fmt: skip

log = logging.getLogger("recorder")


def setup_logging(level: str, log_format: str | None = None) -> None:
    under_journald = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, under_journald=under_journald))
    handler.addFilter(CameraField())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = usage_error(args)
    if problem is not None:
        return fail(problem, EXIT_USAGE)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        return EXIT_CONFIG if starts_the_daemon(args) else EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.version:
        return show_version(args)
    if args.convert_config:
        return convert_config(Path(args.convert_config), args.to, force=args.force)
    if args.detect:
        return detect_cameras(args)
    config = demo_config(args) if args.demo else load_config(resolve_config_path(args.config))
    config = _with_overrides(config, args)
    setup_logging(args.log_level or config.log_level, args.log_format)
    if args.validate:
        return validate(config)
    if args.export:
        from recorder.app.export_cli import export_command

        return export_command(
            config, args.export, args.since, args.until, Path(args.output), log_format=args.log_format
        )
    if args.stats or args.cleanup or args.dry_run or args.transcode:
        # Recording logs these itself at start; the one-shot commands say them here, once.
        for warning in config.warnings:
            print(f"camera-recorder: warning: {warning}", file=sys.stderr)
    if args.stats:
        return stats(config, as_json=args.json)
    if args.cleanup:
        return cleanup(config, dry_run=args.dry_run)
    if args.transcode:
        return transcode_now(config, dry_run=args.dry_run, log_format=args.log_format)
    if args.dry_run:
        return print_commands(config)
    return run_recorder(
        config,
        duration=args.duration,
        demo=args.demo,
        reload=_config_loader(args),
        web=_web_options(args),
        summary_to_log=args.log_format is not None,
    )


def _web_options(args: argparse.Namespace) -> WebOptions:
    from exporter.webconfig import WebOptions, load_web_config

    web_config = Path(args.web_config_file) if args.web_config_file else None
    if web_config is not None:
        load_web_config(web_config)  # a broken file is one line per problem now, not after the cameras start
    return WebOptions(web_config, args.telemetry_path, args.disable_exporter_metrics)


def _with_overrides(config: Config, args: argparse.Namespace) -> Config:
    if args.listen_address:
        if not valid_listen_address(args.listen_address):
            raise ConfigError(
                [f"--listen-address: expected HOST:PORT such as 0.0.0.0:9100, got {args.listen_address!r}"]
            )
        config = replace(config, exporter=replace(config.exporter, listen_address=args.listen_address))
    return config


def _config_loader(args: argparse.Namespace) -> Callable[[], Config]:
    """How SIGHUP reads the configuration again: the same file and the same command-line overrides."""

    def load() -> Config:
        config = demo_config(args) if args.demo else load_config(resolve_config_path(args.config))
        config = _with_overrides(config, args)
        if not args.log_level:  # --log-level keeps winning over the file
            logging.getLogger().setLevel(config.log_level)
        return config

    return load


def run_recorder(
    config: Config,
    *,
    duration: float | None = None,
    demo: bool = False,
    reload: Callable[[], Config] | None = None,
    web: WebOptions | None = None,
    summary_to_log: bool = False,
) -> int:
    """Record until SIGINT/SIGTERM (or `duration`), serving metrics; exit 0 when every segment closed.

    The run's summary goes to stdout, or into the log when the log is structured (logfmt, json) so a
    log shipper reading the journal sees only records it can parse.

    SIGHUP reads the configuration again with `reload` and applies it; SIGUSR1 logs a status line per camera.
    """
    from exporter import serve
    from exporter.server import ListenError
    from recorder.daemon.recorder import Recorder

    tools = find_tools(config.system)
    if tools.ffmpeg is None:
        return fail("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config", EXIT_CONFIG)
    recorder = Recorder(config, tools, config_loader=reload)
    try:
        recorder.take_recordings_folder()  # before the port: the folder is what a second daemon would harm
    except FolderInUse as exc:
        return fail(str(exc))

    # Handlers only set a flag: the housekeeping loop (recorder.run) does the work, outside the handler.
    def on_stop_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        recorder.request_stop()

    def on_reload_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received SIGHUP: reloading the configuration")
        recorder.request_reload()

    def on_status_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received SIGUSR1: logging each camera's status")
        recorder.request_status_log()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    # Both terminate a process by default, cutting every open segment: operators send SIGHUP to reload.
    signal.signal(signal.SIGHUP, on_reload_signal)
    signal.signal(signal.SIGUSR1, on_status_signal)
    try:
        server = serve(recorder, config.exporter, web)
    except ListenError as exc:
        return fail(str(exc))
    status_url = status_page_url(server.scheme, server.address)
    metrics_url = f"{status_url.rstrip('/')}{server.telemetry_path}"
    log.info("metrics on %s://%s%s", server.scheme, server.address, server.telemetry_path)
    log.info("status page on %s", status_url)
    if demo:
        print(demo_banner(status_url, metrics_url, config.recording.base_directory), flush=True)
    recorder.add_liveness_check("exporter", getattr(server, "alive", lambda: True))
    try:
        recorder.start()
    except OSError as exc:
        recorder.stop()
        server.stop()
        where = exc.filename or config.recording.base_directory
        return fail(f"recording.base_directory: cannot use {where}: {exc.strerror or exc}")
    try:
        recorder.run(duration)
    finally:
        ok = recorder.stop()
        server.stop()
    _print_run_summary(recorder, demo=demo, emit=log.info if summary_to_log else print)
    if not ok:
        log.error("some FFmpeg did not stop in time; its last segment may be cut")
        return EXIT_PROBLEMS
    return EXIT_OK


def _print_run_summary(recorder: Recorder, *, demo: bool, emit: Callable[[str], None] = print) -> None:
    """What this run recorded, per camera: segments, bytes, restarts and recording gaps.

    Every camera of the run, a camera a reload removed included (its counters as its last supervisor left them).
    """
    snap = recorder.snapshot()
    base = recorder.config.recording.base_directory
    emit(f"Demo recordings in {base}:" if demo else f"This run recorded into {base}:")
    removed = recorder.ledger.removed(view.config.id for view in snap.cameras)
    for view in (*snap.cameras, *removed):
        status = view.status
        label = f"{view.config.id} (removed by a reload)" if view in removed else view.config.id
        restarts = sum(status.restarts.values())
        why = f" ({', '.join(f'{reason} {n}' for reason, n in sorted(status.restarts.items()))})" if restarts else ""
        gap = status.gap_seconds_at(snap.monotonic_now)
        emit(
            f"  {label}: {status.segments_completed} segments, {status.written_bytes} bytes, "
            f"{status.frames} frames, {restarts} restarts{why}, "
            + (f"recording gaps {gap:.1f} s" if gap >= 0.05 else "no recording gaps")
        )
