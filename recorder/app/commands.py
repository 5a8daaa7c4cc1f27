"""`camera-recorder`'s one-shot operator commands: --version, --convert-config, --detect, --validate,
--dry-run, --stats, --cleanup and --transcode. Each prints its answer and returns the exit status."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from recorder.app.cli_args import EXIT_OK, EXIT_PROBLEMS, fail
from recorder.config import (
    Config,
    ConfigError,
    SourceKind,
    SystemConfig,
    legacy,
    legacy_writer,
    load_config,
    parse_config,
    parse_legacy,
    read_source,
    resolve_config_path,
)
from recorder.daemon import preflight
from recorder.devices.v4l2.probe import stable_paths
from recorder.ffmpeg.binary import ffmpeg_version, find_tools
from recorder.ffmpeg.presets import ALWAYS_SET_MOVFLAGS, build_command
from recorder.storage.recordings_owner import open_segments

NO_CAMERA_CHECKLIST = """What to check:
  - the camera is plugged in (and into a USB port that gives it enough power): `lsusb` lists it
  - the uvcvideo driver is loaded: `lsmod | grep uvcvideo`, else `sudo modprobe uvcvideo`
  - this user may open it: `ls -l /dev/video*` and `id` (the `video` group; log in again after adding it)
  - the kernel named it: `ls -l /dev/v4l/by-id/` and `dmesg | tail` right after plugging it in"""


def show_version(args: argparse.Namespace) -> int:
    system = load_config(resolve_config_path(args.config)).system if args.config else None
    tools = find_tools(system or SystemConfig())
    from recorder.domain.buildinfo import version_text

    found = f"{tools.ffmpeg} {ffmpeg_version(tools.ffmpeg)}" if tools.ffmpeg else "no FFmpeg found"
    print(version_text(found))
    return EXIT_OK


def convert_config(path: Path, target: str | None, *, force: bool = False) -> int:
    raw, notes, read = read_source(path)
    target = target or ("yaml" if read is not None else "legacy")
    # Validated before converting; a legacy file's problems name its own keys and lines.
    config = parse_legacy(read, source=str(path)) if read is not None else parse_config(raw, source=str(path))
    if target == "yaml":
        converted = [] if read is None else _without_meaningless(read)
        sys.stdout.write(legacy.raw_to_yaml(raw))
        for note in converted:
            print(f"camera-recorder: {note}", file=sys.stderr)
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
                return fail(
                    f"{len(dropped)} camera(s) have no legacy form and were dropped: "
                    f"{', '.join(c for c, _ in dropped)}; pass --force to accept that"
                )
    for note in notes:
        print(f"camera-recorder: not converted: {note}", file=sys.stderr)
    return EXIT_OK


def _by_id_link(device: str) -> str | None:
    """The /dev/v4l/by-id link of a kernel-numbered node, or None. The links live beside the node:
    /dev/video2 -> /dev/v4l/by-id/ (a test's fake /dev alike)."""
    links = [p for p in stable_paths(device, os.path.dirname(device) or "/dev") if "/by-id/" in p]
    return links[0] if links else None


def _without_meaningless(read: legacy.LegacyFile) -> list[str]:
    """Rewrite a legacy file's raw mapping for YAML: by-id paths for kernel-numbered devices, no movflags the
    recorder always sets (or refuses). A line for each change ("converted: ") or kept risk ("check: "), naming
    the legacy key and its line."""
    notes: list[str] = []
    for camera_id, assignment, by_id in legacy.stable_device_proposals(read, _by_id_link):
        where = f"line {assignment.line}: {assignment.key}"
        if by_id is not None:
            read.raw["cameras"][camera_id]["device"] = by_id
            notes.append(
                f"converted: {where}: {assignment.value} -> {by_id} (the same camera now; /dev/videoN numbers "
                "follow plug order)"
            )
        else:
            notes.append(
                f"check: {where}: {assignment.value} kept, but its number follows plug order; no /dev/v4l/by-id link "
                "points at it now (is the camera plugged in?): `camera-recorder --detect` shows the stable path"
            )
    recording = read.raw.get("recording", {})
    movflags = recording.get("movflags")
    if isinstance(movflags, str):
        kept = [flag for flag in movflags.replace("+", " ").split() if flag not in ALWAYS_SET_MOVFLAGS]
        origin = read.origins["recording.movflags"]
        if not kept:
            del recording["movflags"]
            notes.append(
                f"converted: line {origin.line}: MOVFLAGS: {movflags!r} left out: "
                "MP4 segments are always written fragmented"
            )
        elif len(kept) != len(movflags.replace("+", " ").split()):
            recording["movflags"] = "+" + "+".join(kept)
            notes.append(
                f"converted: line {origin.line}: MOVFLAGS: {movflags!r} -> {recording['movflags']!r}: "
                "MP4 segments are always written fragmented"
            )
    return notes


def detect_cameras(args: argparse.Namespace) -> int:
    from recorder.devices.v4l2.probe import detect, resolve_v4l2_ctl
    from recorder.devices.v4l2.render import devices_to_json, render_human

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


def validate(config: Config) -> int:
    problems, notes = preflight.run_checks(config)
    read = _legacy_source(config)
    if read is not None:
        # The operator edits camera-mapping.conf: its key and line, not the YAML key it became.
        problems = [read.explain(problem) for problem in problems]
    for note in notes:
        print(f"ok: {note}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s) found" if problems else "configuration and system look ready")
    return EXIT_PROBLEMS if problems else EXIT_OK


def _legacy_source(config: Config) -> legacy.LegacyFile | None:
    """The legacy file `config` was read from (to name its keys in messages), or None for YAML or no file."""
    if config.source is None:
        return None
    try:
        return read_source(Path(config.source))[2]
    except ConfigError:  # changed since it was read: the messages keep their YAML key paths
        return None


def print_commands(config: Config) -> int:
    """--dry-run: each camera's FFmpeg command, as a shell line; nothing starts."""
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


def stats(config: Config, *, as_json: bool) -> int:
    from recorder.storage.facade import Storage
    from recorder.storage.report import format_stats

    base = config.recording.base_directory
    if not base.exists():
        # Before the first recording the folder is not there yet: that is news, not a fault to warn about.
        return _stats_before_first_recording(config, as_json=as_json)
    from recorder.app.transcode_cli import format_transcode_stats, transcode_stats
    from recorder.transcoding.ledger import Ledger
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


def cleanup(config: Config, *, dry_run: bool) -> int:
    from recorder.storage.facade import Storage
    from recorder.storage.report import format_report

    storage = Storage(config, active_paths=lambda: _segments_a_daemon_writes(config))
    storage.scan()
    report = storage.run_pass("manual", dry_run=dry_run)
    print(format_report(report, dry_run=dry_run))
    return EXIT_OK


def _segments_a_daemon_writes(config: Config) -> frozenset[Path]:
    """The segments a daemon recording into the same folder may still be writing: never touched from here."""
    base = Path(os.path.abspath(config.recording.base_directory))
    return open_segments(base, [camera.id for camera in config.cameras], stall_timeout=config.supervisor.stall_timeout)


def transcode_now(config: Config, *, dry_run: bool, log_format: str | None = None) -> int:
    from recorder.app.progress_display import progress_style
    from recorder.app.transcode_cli import run_pass
    from recorder.transcoding.worker import TranscoderBusy

    tools = find_tools(config.system)
    if tools.ffmpeg is None or tools.ffprobe is None:
        return fail("no FFmpeg/ffprobe found: install ffmpeg or set system.ffmpeg")
    if not config.recording.base_directory.is_dir():
        print(f"Recordings in {config.recording.base_directory}: nothing recorded yet, nothing to transcode")
        return EXIT_OK
    active = _segments_a_daemon_writes(config)
    try:
        failed = run_pass(
            config, ffmpeg=tools.ffmpeg, ffprobe=tools.ffprobe, dry_run=dry_run, out=sys.stdout,
            style=progress_style(log_format), active=active,
        )  # fmt: skip
    except TranscoderBusy as exc:
        return fail(str(exc))
    return EXIT_PROBLEMS if failed else EXIT_OK
