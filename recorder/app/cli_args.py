"""`camera-recorder`'s command line: its flags, which go together, and the exit statuses."""

from __future__ import annotations

import argparse
import sys

from recorder.app.logformat import LOG_FORMATS

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
# The daemon's exit status for an unusable configuration (sysexits' EX_CONFIG): the systemd unit's
# RestartPreventExitStatus= names it, so systemd does not restart into the same error forever.
EXIT_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camera-recorder",
        description="Records cameras with FFmpeg into crash-safe segments and reports to Prometheus.",
    )
    parser.add_argument(
        "-c", "--config", "--config.file", dest="config", metavar="FILE",
        help="YAML config or legacy camera-mapping.conf (default: $CAMERA_RECORDER_CONFIG, "
        "then /etc/camera-recorder/config.yaml)",
    )  # fmt: skip
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument("--validate", action="store_true", help="run preflight checks and exit")
    actions.add_argument("--detect", action="store_true", help="list V4L2 cameras and what they can do")
    actions.add_argument("--stats", action="store_true", help="recordings per camera and disk usage")
    actions.add_argument("--cleanup", action="store_true", help="run one retention pass now")
    actions.add_argument(
        "--transcode", action="store_true", help="run one night-transcoding pass now, whatever the hour"
    )
    actions.add_argument("--demo", action="store_true", help="record two synthetic cameras (no hardware needed)")
    actions.add_argument("--convert-config", metavar="FILE", help="print FILE converted (legacy <-> YAML)")
    actions.add_argument("--version", action="store_true", help="print version, revision, build date, FFmpeg found")
    actions.add_argument(
        "--export", metavar="CAMERA", help="write a clip of CAMERA from --since to --until into --output (-o)"
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print each camera's FFmpeg command and start nothing; with --cleanup, delete nothing; "
        "with --transcode, list each due file with its estimated savings",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="with --detect or --stats: JSON output")
    parser.add_argument("--to", choices=("yaml", "legacy"), help="with --convert-config: the target format")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "-o", "--output", metavar="PATH",
        help="with --demo: where to record (default ./demo-recordings); with --export: the clip (.mp4 or .mkv)",
    )  # fmt: skip
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="with --export: start, e.g. '2026-11-25 14:03' (local time), '2026-11-25 14:03Z' (UTC), --since=-10min",
    )
    parser.add_argument("--until", metavar="TIME", help="with --export: end (default now)")
    parser.add_argument(
        "--force", action="store_true", help="with --convert-config --to legacy: write even if cameras are dropped"
    )
    parser.add_argument(
        "--listen-address", "--web.listen-address", dest="listen_address", metavar="HOST:PORT",
        help="metrics and status address (default from config: 0.0.0.0:9100)",
    )  # fmt: skip
    parser.add_argument(
        "--log.level", "--log-level", dest="log_level", type=_log_level, metavar="LEVEL",
        help="debug, info, warn or error (default from config)",
    )  # fmt: skip
    parser.add_argument(
        "--log.format", "--log-format", dest="log_format", choices=LOG_FORMATS,
        help="logfmt or json, as Prometheus writes them (default: the human format)",
    )  # fmt: skip
    parser.add_argument(
        "--web.config.file", dest="web_config_file", metavar="FILE",
        help="exporter-toolkit web config: tls_server_config and basic_auth_users (bcrypt)",
    )  # fmt: skip
    parser.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
        help="where metrics are served (default /metrics)",
    )  # fmt: skip
    parser.add_argument(
        "--web.disable-exporter-metrics", dest="disable_exporter_metrics", action="store_true",
        help="leave out the process_* and python_* metrics about the daemon itself",
    )  # fmt: skip
    return parser


def _log_level(value: str) -> str:
    """`--log.level`: Prometheus' spellings (debug, info, warn, error) and the older upper-case ones."""
    level = {"WARN": "WARNING"}.get(value.upper(), value.upper())
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise argparse.ArgumentTypeError(f"expected debug, info, warn or error, got {value!r}")
    return level


def usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with how these flags are combined, or None."""
    if args.json and not (args.detect or args.stats):
        return "--json goes with --detect or --stats"
    if args.to and not args.convert_config:
        return "--to goes with --convert-config"
    if args.output and not (args.demo or args.export):
        return "--output goes with --demo or --export"
    if (args.since or args.until) and not args.export:
        return "--since and --until go with --export"
    if args.export and not (args.since and args.output):
        return "--export needs --since TIME and -o FILE (--until defaults to now)"
    if args.force and not args.convert_config:
        return "--force goes with --convert-config"
    if args.duration is not None and args.duration <= 0:
        return f"--duration: expected a positive number of seconds, got {args.duration:g}"
    return None


def starts_the_daemon(args: argparse.Namespace) -> bool:
    """Whether this invocation records (what systemd runs), rather than a one-shot command."""
    one_shot = (
        args.version, args.convert_config, args.detect, args.validate, args.stats, args.cleanup, args.dry_run,
        args.transcode,
    )  # fmt: skip
    return not any(one_shot) and not args.demo


def fail(message: str, code: int = EXIT_PROBLEMS) -> int:
    """Say what went wrong on stderr, as every command does, and return its exit status."""
    print(f"camera-recorder: {message}", file=sys.stderr)
    return code
