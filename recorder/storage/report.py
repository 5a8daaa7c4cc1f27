"""What the CLI prints about storage: the `--stats` table (or JSON) and the `--cleanup` report."""

from __future__ import annotations

import json
from datetime import datetime

from recorder.config import Config
from recorder.domain.vocabulary import DeletionReason, values
from recorder.state.snapshots import CameraStorage, StorageSnapshot
from recorder.storage.retention.model import DAY, RetentionReport, human_bytes

DELETION_REASONS: tuple[str, ...] = values(DeletionReason)
ORPHAN_MARK = "(not configured)"


def _local_time(ts: float | None) -> str:
    """The operator's local wall-clock time of a Unix time ('-' for none); segment names themselves are UTC."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts is not None else "-"


def _days(seconds: float | None) -> str:
    return f"{seconds / DAY:.1f} d" if seconds is not None else "-"


def _kept_seconds(cam: CameraStorage) -> float | None:
    """Span between a camera's oldest and newest segment start: how far back its recordings reach."""
    if cam.oldest_start is None or cam.newest_start is None:
        return None
    return cam.newest_start - cam.oldest_start


def _stats_dict(snap: StorageSnapshot, config: Config) -> dict[str, object]:
    configured = {c.id: c for c in config.cameras}
    cameras = []
    for cam in (*snap.cameras.values(), *snap.orphans.values()):
        cfg = configured.get(cam.camera) if cam.configured else None
        cameras.append(
            {
                "camera": cam.camera,
                "name": cfg.name if cfg else cam.camera,
                "enabled": cfg.enabled if cfg else False,
                # False: the folder of a camera not in the configuration (removed or renamed), aged by the
                # storage section's cleanup_days and deleted first under disk pressure.
                "configured": cam.configured,
                "files": cam.files,
                "bytes": cam.bytes,
                "oldest_start": cam.oldest_start,
                "newest_start": cam.newest_start,
                "kept_seconds": _kept_seconds(cam),
                "write_rate_bytes_per_second": cam.write_rate_bytes_per_second,
                "max_age_seconds": cam.max_age_seconds,
                # An orphan's deletions are counted for all orphans together (`orphaned` below).
                "deleted_files": {r: snap.deleted_files.get((cam.camera, r), 0) for r in DELETION_REASONS},
                "deleted_bytes": {r: snap.deleted_bytes.get((cam.camera, r), 0) for r in DELETION_REASONS},
            }
        )
    capacity = snap.capacity_seconds
    return {
        "path": snap.path,
        "filesystem": {
            "size_bytes": snap.filesystem_size_bytes,
            "avail_bytes": snap.filesystem_avail_bytes,
            "used_ratio": snap.used_ratio,
            "writable": snap.writable,
            "checked_at": snap.checked_at,
        },
        "retention": {
            "disk_usage_threshold_ratio": snap.disk_usage_threshold_ratio,
            "low_space_warning_ratio": snap.low_space_warning_ratio,
            "pressure_target_ratio": snap.pressure_target_ratio,
            "on_threshold": config.storage.on_threshold.value,
            "recording_allowed": snap.recording_allowed,
            "max_age_seconds": snap.max_age_seconds,
            "capacity_seconds": capacity,
            "capacity_days": capacity / DAY if capacity is not None else None,
            "runs": dict(snap.runs),
            "last_run_timestamp": snap.last_run_timestamp,
        },
        "total": {
            "files": snap.files + snap.orphaned_files,
            "bytes": snap.bytes + snap.orphaned_bytes,
            "write_rate_bytes_per_second": snap.write_rate_bytes_per_second,
        },
        "cameras": cameras,
        "orphaned": {
            "folders": len(snap.orphans),
            "files": snap.orphaned_files,
            "bytes": snap.orphaned_bytes,
            "max_age_seconds": snap.max_age_seconds,  # the storage section's, which orphans age by
            "deleted_files": dict(snap.orphaned_deleted_files),
            "deleted_bytes": dict(snap.orphaned_deleted_bytes),
        },
    }


def format_stats(snapshot: StorageSnapshot, config: Config, *, as_json: bool) -> str:
    """`--stats`: per camera files, size, oldest, newest, write rate, plus disk usage and retention capacity."""
    if as_json:
        return json.dumps(_stats_dict(snapshot, config), indent=2)
    snap = snapshot
    lines = []
    if snap.filesystem_size_bytes is not None and snap.used_ratio is not None:
        state = {True: "writable", False: "NOT WRITABLE", None: "not probed"}[snap.writable]
        lines.append(
            f"Recordings in {snap.path}: filesystem {human_bytes(snap.filesystem_size_bytes)}, "
            f"{human_bytes(snap.filesystem_avail_bytes or 0)} available, {snap.used_ratio * 100:.1f}% used, {state}"
        )
    else:
        lines.append(f"Recordings in {snap.path}: filesystem not readable")
    header = ("CAMERA", "FILES", "SIZE", "OLDEST", "NEWEST", "KEPT", "RATE", "MAX AGE")
    rows = [header]
    for cam in (*snap.cameras.values(), *snap.orphans.values()):
        rows.append(
            (
                cam.camera if cam.configured else f"{cam.camera} {ORPHAN_MARK}",
                str(cam.files),
                human_bytes(cam.bytes),
                _local_time(cam.oldest_start),
                _local_time(cam.newest_start),
                _days(_kept_seconds(cam)),
                human_bytes(cam.write_rate_bytes_per_second) + "/s",
                _days(cam.max_age_seconds) if cam.max_age_seconds is not None else "off",
            )
        )
    total_rate = human_bytes(snap.write_rate_bytes_per_second) + "/s"
    files, size = snap.files + snap.orphaned_files, snap.bytes + snap.orphaned_bytes
    rows.append(("TOTAL", str(files), human_bytes(size), "", "", "", total_rate, ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    capacity = (
        f"{snap.capacity_seconds / DAY:.1f} days fit below the threshold at the current write rate"
        if snap.capacity_seconds is not None
        else "capacity unknown (no write rate yet)"
    )
    lines.append(
        f"Retention: delete above {snap.disk_usage_threshold_ratio * 100:g}% used down to "
        f"{snap.pressure_target_ratio * 100:g}% ({config.storage.on_threshold.value}), warn at "
        f"{snap.low_space_warning_ratio * 100:g}%; {capacity}"
    )
    if snap.orphans:
        lines.append(
            f"{ORPHAN_MARK}: {len(snap.orphans)} folder(s) of cameras not in the configuration, "
            f"{human_bytes(snap.orphaned_bytes)}: aged by the storage section's cleanup_days, deleted before "
            "any configured camera's footage under disk pressure"
        )
    if not snap.recording_allowed:
        lines.append("Recording is stopped: the disk is above the threshold")
    return "\n".join(lines)


def format_report(report: RetentionReport, *, dry_run: bool | None = None) -> str:
    """`--cleanup`: each file deleted (or that would be) with its reason and size, then the totals."""
    dry = report.dry_run if dry_run is None else dry_run
    verb = "would delete" if dry else "deleted"
    lines = [f"{verb} {report.path(f)} ({f.reason}, {human_bytes(f.size)}, {f.size} bytes)" for f in report.files]
    for cam, name, error in report.failed:
        lines.append(f"could not delete {report.base_directory / cam / name}: {error}")
    for (cam, reason), (files, size) in sorted(report.totals().items()):
        mark = f" {ORPHAN_MARK}" if cam in report.orphans else ""
        lines.append(f"camera {cam}{mark}: {files} files, {size} bytes ({human_bytes(size)}) {reason}")
    lines.append(
        f"total: {report.file_count} files, {report.total_bytes} bytes ({human_bytes(report.total_bytes)}) "
        f"{verb}" + (f", {len(report.failed)} failed" if report.failed else "")
    )
    if report.used_ratio_before is not None:
        after = f" -> {report.used_ratio_after * 100:.1f}%" if report.used_ratio_after is not None and not dry else ""
        lines.append(f"disk usage: {report.used_ratio_before * 100:.1f}%{after}")
    return "\n".join(lines)
