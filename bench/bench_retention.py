"""Benchmark: scan and retention passes over many segment files on a real disk.

Creates `--files` one-byte segment files in 16 camera folders under a temporary folder on disk (not tmpfs),
then measures `Storage.scan()`, `resync()`, a max_age pass that deletes nothing, a disk_pressure dry run that
selects every file, and real disk_pressure passes, with the filesystem's usage faked (`fs_usage`) so the
threshold is crossed by a known number of bytes. Prints `key=value` lines and whether the targets are met.

    python bench/bench_retention.py [--files 200000] [--cameras 16] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

from recorder.config import parse_config
from recorder.footage.segments import CompletedSegment, segment_file_name
from recorder.storage.facade import Storage
from recorder.storage.retention.model import DiskUsage

TARGET_PASS_SECONDS = 2.0
TARGET_PASS_MB = 100.0
SEGMENT_TIME = 60
BLOCK = 4096
MB = 1e6
T = TypeVar("T")


class RssPeak:
    """Samples the process RSS in a thread while a step runs: before/after alone misses the peak."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.base = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssPeak:
        self.base = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / MB


def timed(step: Callable[[], T]) -> tuple[T, float, float]:
    """Run a step untraced: its result, wall seconds and the RSS peak above the start, in MB."""
    gc.collect()
    with RssPeak() as rss:
        started = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - started
    return result, seconds, rss.delta_mb


def traced(step: Callable[[], T]) -> tuple[T, float]:
    """Run a step under tracemalloc (slower, so timed separately): its result and peak Python allocation, MB."""
    gc.collect()
    tracemalloc.start()
    try:
        result = step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / MB


def segment_name(cam: str, start: float) -> str:
    return segment_file_name(cam, start)


def create_files(base: Path, cameras: list[str], total: int, newest: float) -> int:
    """One-byte segment files, `SEGMENT_TIME` apart per camera, the newest of each just before `newest`."""
    per_camera = total // len(cameras)
    made = 0
    for offset, cam in enumerate(cameras):
        folder = base / cam
        folder.mkdir()
        fd_dir = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(per_camera):
                start = newest - (per_camera - i) * SEGMENT_TIME - offset
                name = segment_name(cam, start)
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd_dir)
                os.write(fd, b"x")
                os.close(fd)
                made += 1
        finally:
            os.close(fd_dir)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--dir", default="/var/tmp", help="parent folder of the temporary tree (on disk)")
    parser.add_argument(
        "--delete", type=int, default=None, help="files each of the two real disk_pressure passes deletes"
    )
    args = parser.parse_args(argv)

    # The faked filesystem never reflects deletions, so every pressure pass would warn that it is still full.
    logging.getLogger("recorder.storage").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="bench-retention-", dir=args.dir))
    try:
        delete = args.delete if args.delete is not None else min(10_000, args.files // 20)
        return run(root, args.files, args.cameras, delete)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, files: int, camera_count: int, delete: int) -> int:
    cameras = [f"cam{i:02d}" for i in range(camera_count)]
    now = time.time()
    cfg = parse_config(
        {
            "cameras": {cam: {"test_pattern": True} for cam in cameras},
            "recording": {"base_directory": str(root), "segment_time": SEGMENT_TIME},
            "storage": {"cleanup_days": 3650, "disk_usage_threshold": 90},
        }
    )
    # Faked filesystem: 95 % used, sized so that getting down to the 85 % pressure target means freeing
    # exactly `files_to_free` one-byte files (each gives back one 4 KiB block).
    usage = {"size": 1 << 30, "avail": 1 << 30}

    def set_need(files_to_free: int) -> None:
        need = files_to_free * BLOCK
        size = max(need * 10, BLOCK * 1000)
        usage["size"], usage["avail"] = size, size - (int(0.85 * size) + need) if need else size

    def fake_usage(path: Path) -> DiskUsage:
        return DiskUsage(usage["size"], usage["avail"], BLOCK)

    clock = {"now": now}
    storage = Storage(cfg, clock=lambda: clock["now"], fs_usage=fake_usage)

    print(f"dir={root}")
    started = time.perf_counter()
    made = create_files(root, cameras, files, now)
    print(f"files={made}")
    print(f"cameras={camera_count}")
    print(f"create_seconds={time.perf_counter() - started:.2f}")

    _, scan_s, scan_rss = timed(storage.scan)
    print(f"scan_seconds={scan_s:.3f}")
    print(f"scan_rss_delta_mb={scan_rss:.1f}")
    assert storage.snapshot().files == made, storage.snapshot().files
    _, resync_s, resync_rss = timed(storage.resync)
    print(f"resync_seconds={resync_s:.3f}")
    print(f"resync_rss_peak_delta_mb={resync_rss:.1f}")
    _, resync_peak = traced(storage.resync)
    print(f"resync_tracemalloc_peak_mb={resync_peak:.1f}")

    pass_seconds: dict[str, float] = {}
    pass_mb: dict[str, float] = {}

    set_need(0)
    report, s, rss = timed(lambda: storage.run_pass("schedule"))
    assert report.file_count == 0
    _, peak = traced(lambda: storage.run_pass("schedule"))
    pass_seconds["max_age_none"], pass_mb["max_age_none"] = s, peak
    print(f"max_age_pass_seconds={s:.3f}")
    print(f"max_age_pass_tracemalloc_peak_mb={peak:.1f}")
    print(f"max_age_pass_rss_peak_delta_mb={rss:.1f}")

    set_need(made * 2)  # more than everything: the selection walks every file
    report, s, rss = timed(lambda: storage.run_pass("disk_pressure", dry_run=True))
    _, peak = traced(lambda: storage.run_pass("disk_pressure", dry_run=True))
    pass_seconds["pressure_dry_all"], pass_mb["pressure_dry_all"] = s, peak
    print(f"pressure_dry_run_selected_files={report.file_count}")
    print(f"pressure_dry_run_seconds={s:.3f}")
    print(f"pressure_dry_run_tracemalloc_peak_mb={peak:.1f}")
    print(f"pressure_dry_run_rss_peak_delta_mb={rss:.1f}")

    set_need(delete)
    report, s, rss = timed(lambda: storage.run_pass("disk_pressure"))
    assert report.file_count == delete, report.file_count
    set_need(delete)
    report2, peak = traced(lambda: storage.run_pass("disk_pressure"))
    assert report2.file_count == delete, report2.file_count
    pass_seconds["pressure_delete"], pass_mb["pressure_delete"] = s, peak
    print(f"pressure_pass_deleted_files={report.file_count}")
    print(f"pressure_pass_seconds={s:.3f}")
    print(f"pressure_pass_tracemalloc_peak_mb={peak:.1f}")
    print(f"pressure_pass_rss_peak_delta_mb={rss:.1f}")
    remaining = storage.snapshot().files
    assert remaining == made - 2 * delete, remaining
    on_disk = sum(len(os.listdir(root / cam)) for cam in cameras)
    assert on_disk == remaining, (on_disk, remaining)

    # The supervisors' call: must stay cheap with a large index.
    cam = cameras[0]
    calls = 2000
    segs = [
        CompletedSegment(cam, root / cam / segment_name(cam, now + i * SEGMENT_TIME), 0, SEGMENT_TIME, 1)
        for i in range(calls)
    ]
    clock["now"] = now + calls * SEGMENT_TIME  # they all completed by then
    started = time.perf_counter()
    for seg in segs:
        storage.add_segment(seg)
    print(f"add_segment_microseconds={(time.perf_counter() - started) / calls * 1e6:.1f}")

    worst_s = max(pass_seconds.values())
    worst_mb = max(pass_mb.values())
    print(f"retention_pass_seconds={worst_s:.3f}")
    print(f"retention_pass_peak_mb={worst_mb:.1f}")
    s_ok = worst_s <= TARGET_PASS_SECONDS
    mb_ok = worst_mb <= TARGET_PASS_MB
    print(f"target_pass_seconds_le_{TARGET_PASS_SECONDS:g}={'met' if s_ok else 'NOT met'}")
    print(f"target_pass_peak_mb_le_{TARGET_PASS_MB:g}={'met' if mb_ok else 'NOT met'}")
    return 0 if s_ok and mb_ok else 1


if __name__ == "__main__":
    sys.exit(main())
