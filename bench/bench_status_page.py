"""Server time of the status page (`/`) with 16 cameras and 200,000 segments in the index.

The real exporter serves the real page over HTTP (one keep-alive connection); the storage index is built
from one-byte segment files by one scan, as at the daemon's start. Segments are `--segment-time` apart,
so the last 24 hours hold 86400 / segment_time of them per camera (1440 at the default 60 s: 23,040 on
the page). `--day` asks for a day in the middle of the recordings instead of the last 24 h.

    .venv/bin/python bench/bench_status_page.py [--files 200000] [--requests 200] [--segment-time 60]

Target: the page <= 50 ms server time (p99 here includes the loopback round trip, so it is an upper bound).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

from exporter.server import ExporterServer
from recorder.config import parse_config
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools

CAMERAS = [f"cam{i:02d}" for i in range(1, 17)]
TARGET_MS = 50.0


def create_files(base: Path, total: int, newest: float, segment_time: int) -> None:
    per_camera = total // len(CAMERAS)
    for offset, cam in enumerate(CAMERAS):
        folder = base / cam
        folder.mkdir()
        made, start = 0, newest - segment_time - offset
        while made < per_camera:
            # A gap of an hour every day, so the timelines have something to draw besides green.
            if int(start // 3600) % 24 != 3:
                (folder / f"{cam}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime(start))}.mkv").write_bytes(b"x")
                made += 1
            start -= segment_time


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--segment-time", type=int, default=60)
    parser.add_argument("--dir", default="/var/tmp", help="on disk, not tmpfs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-", dir=args.dir) as tmp:
        base = Path(tmp)
        now = time.time()
        create_files(base, args.files, now, args.segment_time)
        config = parse_config(
            {
                "cameras": {cam: {"test_pattern": True} for cam in CAMERAS},
                "recording": {"base_directory": str(base), "segment_time": args.segment_time},
                "exporter": {"listen_address": "127.0.0.1:0"},
            }
        )
        recorder = Recorder(config, find_tools(config.system))
        recorder.index_recordings()
        recorder.storage.refresh_filesystem()
        server = ExporterServer(config.exporter, recorder)
        server.start()
        span_days = args.files // len(CAMERAS) * args.segment_time / 86400
        middle_day = datetime.fromtimestamp(now - span_days / 2 * 86400).strftime("%Y-%m-%d")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        results = {}
        try:
            for label, path in (("last 24 h", "/"), (f"day {middle_day}", f"/?day={middle_day}")):
                latencies = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert response.status == 200, body[:200]
                assert body.count(b'class="camera"') == len(CAMERAS)
                results[label] = (latencies, len(body))
        finally:
            conn.close()
            server.stop()
    print(f"files={recorder.storage.snapshot().files} cameras={len(CAMERAS)} segment_time={args.segment_time}s")
    worst = 0.0
    for label, (latencies, size) in results.items():
        p50, p99 = statistics.median(latencies), percentile(latencies, 99)
        worst = max(worst, p99)
        print(f"page {label}: p50_ms={p50:.1f} p99_ms={p99:.1f} max_ms={max(latencies):.1f} bytes={size}")
    print(f"status_page_p99_ms={worst:.1f} target<={TARGET_MS:g} {'met' if worst <= TARGET_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
