"""The CLI's side of transcoding: `--transcode [--dry-run]` (one pass now) and the `--stats` section."""

from __future__ import annotations

import collections
import os
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TextIO

from recorder.app.progress_display import ProgressLine, ProgressStyle
from recorder.config import Codec, Config
from recorder.domain.units import human_bytes, human_seconds
from recorder.ffmpeg.progress import Progress
from recorder.footage.segments import parse_segment_name
from recorder.transcoding.gate import CpuReading, DiskReading, Gate, TranscodeState
from recorder.transcoding.job import ABORTED
from recorder.transcoding.ledger import Ledger
from recorder.transcoding.originals import kept_originals
from recorder.transcoding.planner import DAY, plan
from recorder.transcoding.worker import Transcoder

# What a dry run assumes before anything was measured here (transcoded / original size, stream-copied
# camera H.264): HEVC at the usual quality roughly halves it, an H.264 re-encode gains far less.
NOMINAL_SIZE_RATIO = {
    Codec.HEVC_QSV: 0.5, Codec.HEVC_VAAPI: 0.5, Codec.LIBX265: 0.5,
    Codec.H264_QSV: 0.8, Codec.H264_VAAPI: 0.8, Codec.LIBX264: 0.8,
}  # fmt: skip


_human = human_bytes  # one unit system: recorder/domain/units.py


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
    config: Config,
    *,
    ffmpeg: str,
    ffprobe: str,
    dry_run: bool,
    out: TextIO,
    style: ProgressStyle | None = None,
    clock: Callable[[], float] = time.monotonic,
    active: Collection[Path] = (),
) -> int:
    """`--transcode`: every due segment now, whatever the hour, but none in `active` (the segments a running
    daemon may still be writing); 0 when nothing failed.

    With a `style`, each encode's progress (FFmpeg's own -progress) is shown on stderr as it runs; the
    results and the totals go to `out`, and when nothing is due it says why.
    """
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
    started = clock()
    try:
        if not dry_run:
            transcoder.recover()
        if not config.transcoding.enabled:
            print(
                "transcoding.enabled is false: the daemon never transcodes on its own; this pass runs because "
                "--transcode asked for it",
                file=out,
            )
        due = transcoder.plan()
        if not due:
            print(f"0 segments due: {nothing_due_reason(config, transcoder.ledger, now=time.time())}", file=out)
            return 0
        ratio = transcoder.size_ratio() or NOMINAL_SIZE_RATIO[config.transcoding.codec]
        failed = 0
        total_before = total_after = 0
        results: collections.Counter[str] = collections.Counter()
        for number, cand in enumerate(due, start=1):
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
                _print_totals(out, results, total_before, total_after, clock() - started, left=len(due) - number + 1)
                return 1
            bar = _progress_for(style, f"[{number}/{len(due)}] {where}", cand.path, ffprobe)
            transcoder.listen_to_progress(None if bar is None else _updater(bar))
            try:
                result = transcoder.transcode_one(cand)
            finally:
                transcoder.listen_to_progress(None)
                if bar is not None:
                    bar.close()
            snap_out = transcoder.ledger.final(cand.camera, cand.name)
            after = f" -> {_human(snap_out.output_bytes)}" if snap_out and result == "transcoded" else ""
            print(f"{result.replace('_', ' ')} {where}: {_human(cand.size)}{after}", file=out)
            results[result] += 1
            if result == "transcoded" and snap_out is not None:
                total_before += cand.size
                total_after += snap_out.output_bytes
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
            _print_totals(out, results, total_before, total_after, clock() - started)
        return 1 if failed else 0
    finally:
        transcoder.release()


def _updater(bar: ProgressLine) -> Callable[[Progress], None]:
    return lambda progress: bar.update(progress.out_time_seconds, ended=progress.ended)


def _progress_for(style: ProgressStyle | None, what: str, segment: Path, ffprobe: str) -> ProgressLine | None:
    if style is None:
        return None
    from recorder.storage.export import probe_clip_duration

    duration = probe_clip_duration(ffprobe, segment) or 0.0
    return ProgressLine(
        what, duration, style, describe=lambda done, total: f"{human_seconds(done)} of {human_seconds(total)} encoded"
    )


def _print_totals(
    out: TextIO, results: collections.Counter[str], before: int, after: int, elapsed: float, *, left: int = 0
) -> None:
    """The pass's totals: how many of each result, the bytes saved by those transcoded, the time it took."""
    processed = sum(results.values())
    failed = sum(n for result, n in results.items() if result.startswith("failed") or result == ABORTED)
    kinds = ", ".join(f"{n} {result.replace('_', ' ')}" for result, n in sorted(results.items()))
    saved = before - after
    share = f" ({100 * saved / before:.0f}%)" if before else ""
    line = f"{processed} segments processed, {failed} failed"
    line += f" ({kinds})" if kinds else ""
    line += f"; {_human(before)} -> {_human(after)}, {_human(saved)} saved{share}" if results["transcoded"] else ""
    line += f"; {left} not started" if left else ""
    print(f"{line}; took {human_seconds(elapsed)}", file=out)


def nothing_due_reason(config: Config, ledger: Ledger, *, now: float) -> str:
    """Why no segment is due: none recorded, all done already, or all younger than min_age_days (and when the
    first one becomes due)."""
    base = Path(os.path.abspath(config.recording.base_directory))
    min_age = config.transcoding.min_age_days
    segments = finished = 0
    youngest_due_at: float | None = None
    for camera in (c.id for c in config.cameras):
        try:
            names = os.listdir(base / camera)
        except OSError:
            continue
        for name in names:
            parsed = parse_segment_name(name)
            if parsed is None or parsed.camera != camera:
                continue
            segments += 1
            if ledger.finished(camera, name):
                finished += 1
            else:
                due_at = parsed.start + min_age * DAY
                youngest_due_at = due_at if youngest_due_at is None else min(youngest_due_at, due_at)
    if segments == 0:
        return f"no recordings in {base} yet"
    age = f"transcoding.min_age_days ({min_age:g} days)"
    if youngest_due_at is None:
        return f"all {segments} segments are done already (transcoded, or kept as recorded for small savings)"
    waiting = segments - finished
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(youngest_due_at))
    done = f"{finished} done already, " if finished else ""
    return f"{done}{waiting} younger than {age}; the first becomes due at {when}"
