"""The CLI's side of transcoding: `--transcode [--dry-run]` (one pass now) and the `--stats` section."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, TextIO

from recorder.config import Codec, Config
from recorder.transcoding.gate import CpuReading, DiskReading, Gate, TranscodeState
from recorder.transcoding.job import ABORTED
from recorder.transcoding.ledger import Ledger
from recorder.transcoding.originals import kept_originals
from recorder.transcoding.planner import plan
from recorder.transcoding.worker import Transcoder

# What a dry run assumes before anything was measured here (transcoded / original size, stream-copied
# camera H.264): HEVC at the usual quality roughly halves it, an H.264 re-encode gains far less.
NOMINAL_SIZE_RATIO = {
    Codec.HEVC_QSV: 0.5, Codec.HEVC_VAAPI: 0.5, Codec.LIBX265: 0.5,
    Codec.H264_QSV: 0.8, Codec.H264_VAAPI: 0.8, Codec.LIBX264: 0.8,
}  # fmt: skip


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _disk(base: Path, low_space_warning: float) -> DiskReading | None:
    try:
        usage = shutil.disk_usage(base)
    except OSError:
        return None
    st = os.statvfs(base)
    avail = st.f_bavail * st.f_frsize
    return DiskReading(1 - avail / usage.total if usage.total else 1.0, avail, low_space_warning / 100.0)


def transcode_stats(config: Config, *, now: float | None = None) -> dict[str, Any]:
    """Transcoded vs original bytes of the segments on disk, kept originals, and what is still due."""
    base = Path(os.path.abspath(config.recording.base_directory))
    ledger = Ledger(base)
    transcoded = skipped = 0
    bytes_now = bytes_before = 0
    for camera in (c.id for c in config.cameras):
        folder = base / camera
        for entry in ledger.entries():
            if entry.camera != camera:
                continue
            if entry.result == "skipped_small_savings":
                skipped += 1
            if entry.result == "transcoded" and (folder / entry.name).exists():
                transcoded += 1
                bytes_now += (folder / entry.name).stat().st_size
                bytes_before += entry.input_bytes
    originals = kept_originals(base)
    due = plan(
        base, [c.id for c in config.cameras], ledger,
        now=time.time() if now is None else now, min_age_days=config.transcoding.min_age_days,
    )  # fmt: skip
    return {
        "enabled": config.transcoding.enabled,
        "transcoded_segments": transcoded,
        "transcoded_bytes": bytes_now,
        "original_bytes": bytes_before,
        "saved_bytes": bytes_before - bytes_now,
        "skipped_small_savings_segments": skipped,
        "kept_originals": len(originals),
        "kept_originals_bytes": sum(o.size for o in originals),
        "backlog_segments": len(due),
        "backlog_bytes": sum(c.size for c in due),
    }


def format_transcode_stats(stats: dict[str, Any]) -> str:
    saved = stats["saved_bytes"]
    before = stats["original_bytes"]
    share = f" ({100 * saved / before:.0f}% saved)" if before else ""
    return (
        f"Transcoding ({'enabled' if stats['enabled'] else 'disabled'}): {stats['transcoded_segments']} segments "
        f"transcoded, {_human(stats['transcoded_bytes'])} now vs {_human(before)} as recorded{share}; "
        f"{stats['skipped_small_savings_segments']} kept as recorded (small savings); "
        f"{stats['kept_originals']} originals kept ({_human(stats['kept_originals_bytes'])}); "
        f"{stats['backlog_segments']} segments due ({_human(stats['backlog_bytes'])})"
    )


def run_pass(
    config: Config, *, ffmpeg: str, ffprobe: str, dry_run: bool, out: TextIO, active: Collection[Path] = ()
) -> int:
    """`--transcode`: every due segment now, whatever the hour, but none in `active` (a running daemon's open
    segments); 0 when nothing failed."""
    base = Path(os.path.abspath(config.recording.base_directory))
    gate = Gate(
        config.transcoding,
        disk=lambda: _disk(base, config.storage.low_space_warning),
        # The operator asked for it now: CPU and I/O wait are not asked, only the free space.
        cpu=lambda: CpuReading(busy=0.0, iowait=0.0),
        ignore_window=True,
    )
    transcoder = Transcoder(config, ffmpeg=ffmpeg, ffprobe=ffprobe, gate=gate, active_paths=lambda: active)
    transcoder.acquire()  # TranscoderBusy while the daemon's worker runs
    try:
        if not dry_run:
            transcoder.recover()
        due = transcoder.plan()
        ratio = transcoder.size_ratio() or NOMINAL_SIZE_RATIO[config.transcoding.codec]
        failed = 0
        total_before = total_after = 0
        for cand in due:
            where = f"{cand.camera}/{cand.name}"
            if dry_run:
                estimate = int(cand.size * ratio)
                total_before += cand.size
                total_after += estimate
                print(
                    f"would transcode {where}: {_human(cand.size)} -> ~{_human(estimate)} "
                    f"(~{100 * (1 - ratio):.0f}% saved)",
                    file=out,
                )
                continue
            if gate.decide() is TranscodeState.PAUSED_LOW_SPACE or not gate.room_for(cand.size):
                print(f"stopped before {where}: too little free space for the temporary file", file=out)
                return 1
            result = transcoder.transcode_one(cand)
            snap_out = transcoder.ledger.final(cand.camera, cand.name)
            after = f" -> {_human(snap_out.output_bytes)}" if snap_out and result == "transcoded" else ""
            print(f"{result.replace('_', ' ')} {where}: {_human(cand.size)}{after}", file=out)
            failed += result.startswith("failed") or result == ABORTED
        if not dry_run:
            transcoder.retry_pending_swaps()  # any left are completed by recovery at the next start
        if dry_run:
            print(
                f"{len(due)} segments due: {_human(total_before)} -> ~{_human(total_after)} "
                f"(ratio {'measured' if transcoder.size_ratio() else 'assumed'} {ratio:.2f})",
                file=out,
            )
        else:
            print(f"{len(due)} segments processed, {failed} failed", file=out)
        return 1 if failed else 0
    finally:
        transcoder.release()
