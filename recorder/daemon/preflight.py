"""`--validate`: everything that would stop recording, checked before anything is started."""

from __future__ import annotations

import errno
import os
import pwd
import tempfile
from pathlib import Path

from recorder.config import Codec, Config, SourceKind
from recorder.devices.identity import resolve_device
from recorder.devices.v4l2.modes import check_mode
from recorder.devices.v4l2.probe import probe, resolve_v4l2_ctl
from recorder.domain.input_formats import fourccs_for
from recorder.ffmpeg.binary import ffmpeg_encoders, ffmpeg_version, find_tools
from recorder.ffmpeg.presets import encoder_preset

HARDWARE_CODECS = frozenset({Codec.H264_QSV, Codec.HEVC_QSV, Codec.H264_VAAPI, Codec.HEVC_VAAPI})


def run_checks(config: Config, *, dev_root: str = "/dev") -> tuple[list[str], list[str]]:
    """Problems (one line each, naming the culprit) and the checks that passed."""
    problems: list[str] = []
    notes: list[str] = [f"config {config.source or ''} is valid".replace("  ", " ")]
    tools = find_tools(config.system)
    if tools.ffmpeg is None:
        where = config.system.ffmpeg or "jellyfin-ffmpeg, ffmpeg-qsv or ffmpeg on PATH"
        problems.append(f"system.ffmpeg: no FFmpeg found ({where})")
    else:
        notes.append(f"ffmpeg {tools.ffmpeg} ({ffmpeg_version(tools.ffmpeg)})")
        encoders = ffmpeg_encoders(tools.ffmpeg)
        for camera in config.enabled_cameras:
            codec, _ = encoder_preset(camera, config)
            if codec is not Codec.COPY and codec.value not in encoders:
                problems.append(f"encoding.codec: {tools.ffmpeg} has no {codec.value} encoder (camera {camera.id})")
    if tools.ffprobe is None:
        problems.append("system.ffprobe: no ffprobe found (needed to check segments cut off by a crash)")
    if config.encoding.codec in HARDWARE_CODECS and not os.path.exists(config.system.hw_device):
        problems.append(
            f"system.hw_device: {config.system.hw_device} does not exist; "
            f"{config.encoding.codec.value} needs an Intel GPU render node (/dev/dri)"
        )
    problems += _check_recordings_folder(config.recording.base_directory)
    for camera in config.enabled_cameras:
        folder = config.recording.base_directory / camera.id
        if folder.is_symlink():
            # Refused rather than followed: retention never deletes through a symlink, so recording into one
            # would fill a disk that nothing cleans. The camera waits in storage_error until it is a folder.
            problems.append(
                f"cameras.{camera.id}: {folder} is a symlink; camera folders must be real folders "
                "(point recording.base_directory at the other disk instead)"
            )
        elif folder.exists() and not folder.is_dir():
            problems.append(f"cameras.{camera.id}: {folder} is not a folder")
    for camera in config.enabled_cameras:
        if camera.source is SourceKind.FILE and not os.access(camera.location, os.R_OK):
            problems.append(f"cameras.{camera.id}.file: {camera.location} is not a readable file")
        if camera.source is not SourceKind.DEVICE:
            continue
        node = resolve_device(camera, context=None, dev_root=dev_root)
        if node is None:
            what = camera.location or "a device matching cameras." + camera.id + ".match"
            problems.append(f"cameras.{camera.id}.device: {what} is not present")
            continue
        if not os.access(node, os.R_OK | os.W_OK):
            problems.append(
                f"cameras.{camera.id}.device: {node} is not readable and writable by this user "
                "(add it to the 'video' group)"
            )
            continue
        if camera.input_format or (camera.resolution and camera.framerate):
            device = probe(node, resolve_v4l2_ctl(config.system.v4l2_ctl), dev_root=dev_root)
            if device.error or not device.capture:
                why = device.error or "it is not a video capture node"
                problems.append(f"cameras.{camera.id}.device: cannot check {node}: {why}")
                continue
            if not (camera.resolution and camera.framerate):
                # Only the format is asked for: the camera picks size and rate, the format must exist.
                offered = {f.fourcc for f in device.formats}
                if camera.input_format and not offered & set(fourccs_for(camera.input_format)):
                    problems.append(
                        f"cameras.{camera.id}.input_format: {camera.input_format} not offered by {node}; "
                        f"offered: {', '.join(sorted(offered)) or 'nothing'}"
                    )
                continue
            mismatch = check_mode(
                device, camera.input_format, camera.resolution.width, camera.resolution.height, camera.framerate
            )
            if mismatch:
                problems.append(f"cameras.{camera.id}: {mismatch}")
            else:
                notes.append(f"camera {camera.id}: {node} offers {camera.resolution}@{camera.framerate}")
    return problems, notes


def _check_recordings_folder(base: Path) -> list[str]:
    existing = base
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [f"recording.base_directory: {existing} is not a folder"]
    # A real write, not os.access: root passes every access check, yet /proc or a read-only mount refuse.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        where = str(existing) if existing == base else f"{base} (nearest existing folder: {existing})"
        return [f"recording.base_directory: cannot write in {where}: {exc.strerror or exc}; {folder_hint(base, exc)}"]
    return []


def folder_hint(base: Path, exc: OSError) -> str:
    """What the operator runs so that this user can record into `base`, after `exc` refused it."""
    if exc.errno == errno.EROFS:
        return (
            "it is on a read-only filesystem: mount it read-write (under systemd, the unit's ReadWritePaths= "
            "must name it)"
        )
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    create = "" if base.exists() else f"mkdir -p {base} && "
    fix = f"{create}chown {user}: {base}"
    if exc.errno == errno.EPERM:
        return f"run `{fix}` (or `chattr -i` if lsattr shows it immutable)"
    return f"run `{fix}`"


def recordings_folder_at_start(base: Path) -> str | None:
    """Create the recordings folder if needed; None when it exists, else the one line saying why and what to run.

    The daemon does not exit on this: it stays up with every camera in storage_error (the metric and the
    alert say so) and records as soon as the folder can be written.
    """
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (
            f"recording.base_directory: cannot create {base}: {exc.strerror or exc}; every camera waits in "
            f"storage_error until it can be written: {folder_hint(base, exc)}"
        )
    return None
