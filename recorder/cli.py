"""`camera-recorder`: the original's invocations (record, --detect, --validate, --stats, --cleanup,
--dry-run) plus --demo, --convert-config, --export and --version."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import yaml

from recorder import legacy, legacy_writer, preflight
from recorder.config import (
    CameraConfig,
    Config,
    ConfigError,
    Resolution,
    SourceKind,
    load_config,
    load_raw,
    parse_config,
    resolve_config_path,
    valid_listen_address,
)
from recorder.ffmpeg_binary import ffmpeg_version, find_tools
from recorder.logformat import LOG_FORMATS, CameraField, formatter_for
from recorder.presets import build_command

if TYPE_CHECKING:
    from exporter.webconfig import WebOptions
    from recorder.daemon import Recorder

log = logging.getLogger("recorder")

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
# The daemon's exit status for an unusable configuration (sysexits' EX_CONFIG): the systemd unit's
# RestartPreventExitStatus= names it, so systemd does not restart into the same error forever.
EXIT_CONFIG = 78
DEMO_RESOLUTION = Resolution(640, 360)
DEMO_FRAMERATE = 15
DEMO_SEGMENT_TIME = 10
DEMO_CAMERAS = {"cam1": "Demo left", "cam2": "Demo right"}
NO_CAMERA_CHECKLIST = """What to check:
  - the camera is plugged in (and into a USB port that gives it enough power): `lsusb` lists it
  - the uvcvideo driver is loaded: `lsmod | grep uvcvideo`, else `sudo modprobe uvcvideo`
  - this user may open it: `ls -l /dev/video*` and `id` (the `video` group; log in again after adding it)
  - the kernel named it: `ls -l /dev/v4l/by-id/` and `dmesg | tail` right after plugging it in"""


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


def setup_logging(level: str, log_format: str | None = None) -> None:
    under_journald = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, under_journald=under_journald))
    handler.addFilter(CameraField())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _fail(message: str, code: int = EXIT_PROBLEMS) -> int:
    print(f"camera-recorder: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.json and not (args.detect or args.stats):
        return _fail("--json goes with --detect or --stats", EXIT_USAGE)
    if args.to and not args.convert_config:
        return _fail("--to goes with --convert-config", EXIT_USAGE)
    if args.output and not (args.demo or args.export):
        return _fail("--output goes with --demo or --export", EXIT_USAGE)
    if (args.since or args.until) and not args.export:
        return _fail("--since and --until go with --export", EXIT_USAGE)
    if args.export and not (args.since and args.output):
        return _fail("--export needs --since TIME and -o FILE (--until defaults to now)", EXIT_USAGE)
    if args.force and not args.convert_config:
        return _fail("--force goes with --convert-config", EXIT_USAGE)
    if args.duration is not None and args.duration <= 0:
        return _fail(f"--duration: expected a positive number of seconds, got {args.duration:g}", EXIT_USAGE)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        return EXIT_CONFIG if _starts_the_daemon(args) else EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130


def _starts_the_daemon(args: argparse.Namespace) -> bool:
    """Whether this invocation records (what systemd runs), rather than a one-shot command."""
    one_shot = (
        args.version, args.convert_config, args.detect, args.validate, args.stats, args.cleanup, args.dry_run,
        args.transcode,
    )  # fmt: skip
    return not any(one_shot) and not args.demo


def _dispatch(args: argparse.Namespace) -> int:
    if args.version:
        return _version(args)
    if args.convert_config:
        return _convert(Path(args.convert_config), args.to, force=args.force)
    if args.detect:
        return _detect(args)
    config = demo_config(args) if args.demo else load_config(resolve_config_path(args.config))
    config = _with_overrides(config, args)
    setup_logging(args.log_level or config.log_level, args.log_format)
    if args.validate:
        return _validate(config)
    if args.export:
        from recorder.export_cli import export_command

        return export_command(config, args.export, args.since, args.until, Path(args.output))
    if args.stats or args.cleanup or args.dry_run or args.transcode:
        # Recording logs these itself at start; the one-shot commands say them here, once.
        for warning in config.warnings:
            print(f"camera-recorder: warning: {warning}", file=sys.stderr)
    if args.stats:
        return _stats(config, as_json=args.json)
    if args.cleanup:
        return _cleanup(config, dry_run=args.dry_run)
    if args.transcode:
        return _transcode(config, dry_run=args.dry_run)
    if args.dry_run:
        return _dry_run(config)
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


def demo_config(args: argparse.Namespace) -> Config:
    """Two cheap synthetic cameras (or the config's cameras made synthetic), recorded into --output."""
    output = Path(args.output or "demo-recordings").absolute()
    if args.config:
        base = load_config(resolve_config_path(args.config))
        cameras = tuple(_synthetic(cam) for cam in base.cameras)
        recording = replace(base.recording, base_directory=output, segment_time=DEMO_SEGMENT_TIME)
        return _with_demo_patterns(replace(base, cameras=cameras, recording=recording))
    raw = {
        "cameras": {
            cam_id: {
                "test_pattern": True,
                "name": name,
                "resolution": str(DEMO_RESOLUTION),
                "framerate": DEMO_FRAMERATE,
            }
            for cam_id, name in DEMO_CAMERAS.items()
        },
        "recording": {"segment_time": DEMO_SEGMENT_TIME, "base_directory": str(output)},
    }
    return _with_demo_patterns(parse_config(raw, source="--demo"))


def _with_demo_patterns(config: Config) -> Config:
    """Each synthetic camera its own pattern, titled with its name and the time (see recorder/demo.py)."""
    from recorder import demo

    ffmpeg = find_tools(config.system).ffmpeg or "ffmpeg"
    font = demo.find_font()
    missing = demo.describe_text_support(ffmpeg)
    if missing:
        print(f"camera-recorder: note: {missing}", file=sys.stderr)
    cameras = tuple(
        replace(cam, location=demo.demo_pattern(cam, index, ffmpeg, font)) for index, cam in enumerate(config.cameras)
    )
    return replace(config, cameras=cameras)


def _synthetic(camera: CameraConfig) -> CameraConfig:
    return replace(
        camera, source=SourceKind.TEST_PATTERN, location="", match=None, input_format=None,
        resolution=DEMO_RESOLUTION, framerate=DEMO_FRAMERATE,
    )  # fmt: skip


def _version(args: argparse.Namespace) -> int:
    system = load_config(resolve_config_path(args.config)).system if args.config else None
    from recorder.config import SystemConfig

    tools = find_tools(system or SystemConfig())
    from recorder.buildinfo import version_text

    found = f"{tools.ffmpeg} {ffmpeg_version(tools.ffmpeg)}" if tools.ffmpeg else "no FFmpeg found"
    print(version_text(found))
    return EXIT_OK


def _convert(path: Path, target: str | None, *, force: bool = False) -> int:
    raw, notes = load_raw(path)
    is_legacy = legacy.looks_legacy(path, path.read_text(encoding="utf-8"))
    target = target or ("yaml" if is_legacy else "legacy")
    config = parse_config(raw, source=str(path))  # validate before converting
    if target == "yaml":
        sys.stdout.write(legacy.raw_to_yaml(raw))
    else:
        text, unsupported = legacy_writer.config_to_legacy(config)
        notes = [*notes, *(f"{u}" for u in unsupported)]
        sys.stdout.write(text)
        dropped = legacy_writer.dropped_cameras(config)
        if dropped:
            # Comments, so the output still reads as a config; the caller decides with --force.
            for camera_id, why in dropped:
                print(f"# dropped camera {camera_id}: {why}")
            if not force:
                for note in notes:
                    print(f"camera-recorder: not converted: {note}", file=sys.stderr)
                return _fail(
                    f"{len(dropped)} camera(s) have no legacy form and were dropped: "
                    f"{', '.join(c for c, _ in dropped)}; pass --force to accept that"
                )
    for note in notes:
        print(f"camera-recorder: not converted: {note}", file=sys.stderr)
    return EXIT_OK


def _detect(args: argparse.Namespace) -> int:
    from recorder.v4l2.probe import detect, resolve_v4l2_ctl
    from recorder.v4l2.render import devices_to_json, render_human

    configured = None
    if args.config or os.environ.get("CAMERA_RECORDER_CONFIG"):
        configured = load_config(resolve_config_path(args.config)).system.v4l2_ctl
    devices = detect(resolve_v4l2_ctl(configured))
    if args.json:
        print(json.dumps(devices_to_json(devices), indent=2))
    else:
        print(render_human(devices))
        if not devices:
            print(NO_CAMERA_CHECKLIST)
    return EXIT_OK


def _validate(config: Config) -> int:
    problems, notes = preflight.run_checks(config)
    for note in notes:
        print(f"ok: {note}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s) found" if problems else "configuration and system look ready")
    return EXIT_PROBLEMS if problems else EXIT_OK


def _dry_run(config: Config) -> int:
    tools = find_tools(config.system)
    ffmpeg = tools.ffmpeg or "ffmpeg"
    for camera in config.cameras:
        node = None
        if camera.source is SourceKind.DEVICE and not camera.location and camera.match is not None:
            node = (
                "<device matching "
                + yaml.safe_dump({k: v for k, v in vars(camera.match).items() if v}, default_flow_style=True).strip()
                + ">"
            )
        command = build_command(camera, config, ffmpeg, device_node=node)
        state = "" if camera.enabled else " (disabled)"
        print(f"# {camera.id} ({camera.name}){state}")
        print(command.shell())
    return EXIT_OK


def _stats(config: Config, *, as_json: bool) -> int:
    from recorder.storage import Storage, format_stats

    base = config.recording.base_directory
    if not base.exists():
        # Before the first recording the folder is not there yet: that is news, not a fault to warn about.
        return _stats_before_first_recording(config, as_json=as_json)
    from recorder.transcoding.ledger import Ledger
    from recorder.transcoding.report import format_transcode_stats, transcode_stats
    from recorder.transcoding.service import storage_hooks

    ledger = Ledger(base.absolute())
    storage = Storage(config, **storage_hooks(config, ledger.size_ratio))  # capacity counts transcoded bytes/hour
    storage.scan()
    storage.refresh_filesystem()  # not check(): --stats only looks, it never deletes
    text = format_stats(storage.snapshot(), config, as_json=as_json)
    transcoding = transcode_stats(config)
    if as_json:
        print(json.dumps({**json.loads(text), "transcoding": transcoding}, indent=2))
    else:
        print(text)
        print(format_transcode_stats(transcoding))
    return EXIT_OK


def _stats_before_first_recording(config: Config, *, as_json: bool) -> int:
    """`--stats` when the recordings folder does not exist yet: nothing recorded, and where it will go."""
    import shutil

    base = config.recording.base_directory
    existing = next((folder for folder in (base, *base.parents) if folder.is_dir()), None)
    usage = shutil.disk_usage(existing) if existing is not None else None
    cameras = [camera.id for camera in config.cameras]
    if as_json:
        filesystem = (
            {"path": str(existing), "size_bytes": usage.total, "avail_bytes": usage.free,
             "used_ratio": round(1 - usage.free / usage.total, 4) if usage.total else None}
            if usage is not None and existing is not None
            else None
        )  # fmt: skip
        report = {
            "path": str(base),
            "nothing_recorded_yet": True,
            "filesystem": filesystem,
            "total": {"files": 0, "bytes": 0, "write_rate_bytes_per_second": 0.0},
            "cameras": [{"camera": camera, "files": 0, "bytes": 0} for camera in cameras],
        }
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"Recordings in {base}: nothing recorded yet (the folder is created at the first recording)")
    if usage is not None and usage.total:
        gib = 1024**3
        print(
            f"Its filesystem ({existing}): {usage.total / gib:.1f} GiB, {usage.free / gib:.1f} GiB available, "
            f"{(1 - usage.free / usage.total) * 100:.1f}% used"  # as the recorder counts: what is not available
        )
    print(f"Cameras: {', '.join(cameras) or 'none configured'}")
    return EXIT_OK


def _cleanup(config: Config, *, dry_run: bool) -> int:
    from recorder.storage import Storage, format_report

    storage = Storage(config)
    storage.scan()
    report = storage.run_pass("manual", dry_run=dry_run)
    print(format_report(report, dry_run=dry_run))
    return EXIT_OK


def _transcode(config: Config, *, dry_run: bool) -> int:
    from recorder.ffmpeg_binary import find_tools
    from recorder.transcoding.report import run_pass
    from recorder.transcoding.worker import TranscoderBusy

    tools = find_tools(config.system)
    if tools.ffmpeg is None or tools.ffprobe is None:
        return _fail("no FFmpeg/ffprobe found: install ffmpeg or set system.ffmpeg")
    if not config.recording.base_directory.is_dir():
        print(f"Recordings in {config.recording.base_directory}: nothing recorded yet, nothing to transcode")
        return EXIT_OK
    try:
        failed = run_pass(config, ffmpeg=tools.ffmpeg, ffprobe=tools.ffprobe, dry_run=dry_run, out=sys.stdout)
    except TranscoderBusy as exc:
        return _fail(str(exc))
    return EXIT_PROBLEMS if failed else EXIT_OK


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
    from recorder.daemon import Recorder

    tools = find_tools(config.system)
    if tools.ffmpeg is None:
        return _fail("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config", EXIT_CONFIG)
    recorder = Recorder(config, tools, config_loader=reload)

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
        return _fail(str(exc))
    log.info("metrics on %s://%s%s", server.scheme, server.address, server.telemetry_path)
    recorder.add_liveness_check("exporter", getattr(server, "alive", lambda: True))
    try:
        recorder.start()
    except OSError as exc:
        recorder.stop()
        server.stop()
        where = exc.filename or config.recording.base_directory
        return _fail(f"recording.base_directory: cannot use {where}: {exc.strerror or exc}")
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
    """What this run recorded, per camera: segments, bytes, restarts and recording gaps."""
    snap = recorder.snapshot()
    base = recorder.config.recording.base_directory
    emit(f"Demo recordings in {base}:" if demo else f"This run recorded into {base}:")
    for view in snap.cameras:
        status = view.status
        restarts = sum(status.restarts.values())
        why = f" ({', '.join(f'{reason} {n}' for reason, n in sorted(status.restarts.items()))})" if restarts else ""
        gap = status.gap_seconds_at(snap.monotonic_now)
        emit(
            f"  {view.config.id}: {status.segments_completed} segments, {status.written_bytes} bytes, "
            f"{status.frames} frames, {restarts} restarts{why}, "
            + (f"recording gaps {gap:.1f} s" if gap >= 0.05 else "no recording gaps")
        )
