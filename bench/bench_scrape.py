"""Scrape latency with 16 cameras and 200,000 segment files on disk, beside a scrape that walks them.

The real exporter serves the real collector over HTTP (one keep-alive connection, as Prometheus
does); the recorder's storage index is built from the files by one scan, as at start. The "walk"
figure is what the original did on each look at the disk: os.walk plus a stat per file.

    .venv/bin/python bench/bench_scrape.py [--files 200000] [--small 2000] [--scrapes 1000] [--walks 10] [--cameras 16]

Each size is scraped twice: with Prometheus's own request headers (its Accept, which asks for OpenMetrics
first, and Accept-Encoding: gzip: what every real scrape sends) and with none (the text format, uncompressed,
as curl asks). The bytes are those of the body on the wire.

Target: p99 <= 5 ms, independent of the number of files. The CPU figure (process time of client and server
per scrape) is steadier than the wall-clock one on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

from bench_retention import create_files

from exporter.server import ExporterServer
from recorder.config import parse_config
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools

# What Prometheus 2.x sends on every scrape (scrape/scrape.go's scrapeAcceptHeader and Accept-Encoding).
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding": "gzip",
}
HEADER_SETS = {"prometheus": PROMETHEUS_HEADERS, "none": {}}


def camera_ids(count: int) -> list[str]:
    return [f"cam{i:02d}" for i in range(1, count + 1)]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def walk_scrape(base: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _, names in os.walk(base):
        for name in names:
            files += 1
            size += os.stat(os.path.join(folder, name)).st_size
    return files, size


def timed_scrapes(port: int, scrapes: int, headers: dict[str, str]) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    # CPU time of the whole process (client and server threads) per scrape: less sensitive than wall time
    # to neighbours on a shared machine, which delay a scrape without making it cost more.
    cpu_times = []
    try:
        for _ in range(scrapes):
            started, cpu_started = time.perf_counter(), time.process_time()
            conn.request("GET", "/metrics", headers=headers)
            response = conn.getresponse()
            body = response.read()
            latencies.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        encoding = response.getheader("Content-Encoding")
        text = gzip.decompress(body) if encoding == "gzip" else body
        assert b"camera_recorder_recordings_files" in text
    finally:
        conn.close()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_p50_ms": statistics.median(cpu_times) * 1000,
        "cpu_mean_ms": statistics.fmean(cpu_times) * 1000,
        "bytes": len(body),
        "content_type": response.getheader("Content-Type", ""),
        "encoding": encoding or "identity",
    }


def measure(root: Path, files: int, scrapes: int, walks: int, cameras: list[str]) -> dict[str, object]:
    base = root / f"rec-{files}"
    base.mkdir()
    create_files(base, cameras, files, time.time())
    config = parse_config(
        {
            "cameras": {cam: {"test_pattern": True} for cam in cameras},
            "recording": {"base_directory": str(base)},
            "exporter": {"listen_address": "127.0.0.1:0"},
        }
    )
    recorder = Recorder(config, find_tools(config.system))
    recorder.index_recordings()  # as the daemon's start does
    recorder.storage.refresh_filesystem()
    server = ExporterServer(config.exporter, recorder)
    server.start()
    try:
        scraped = {name: timed_scrapes(server.port, scrapes, headers) for name, headers in HEADER_SETS.items()}
    finally:
        server.stop()
    walk_times = []
    for _ in range(walks):
        started = time.perf_counter()
        counted, _ = walk_scrape(base)
        walk_times.append(time.perf_counter() - started)
    shutil.rmtree(base)
    return {
        "files": files,
        "indexed": recorder.storage.snapshot().files,
        "walked": counted,
        "scraped": scraped,
        "walk_p50_ms": statistics.median(walk_times) * 1000,
        "walk_p99_ms": percentile(walk_times, 99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("--walks", type=int, default=10)
    parser.add_argument("--dir", default="/var/tmp", help="on disk, not tmpfs")
    parser.add_argument("--cameras", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scrape-", dir=args.dir) as tmp:
        cameras = camera_ids(args.cameras)
        results = [measure(Path(tmp), n, args.scrapes, args.walks, cameras) for n in (args.small, args.files)]
    for r in results:
        n = r["files"]
        print(f"cameras={args.cameras} files={n} indexed={r['indexed']}")
        for name, f in r["scraped"].items():  # type: ignore[attr-defined]
            print(f"files={n} headers={name} content_type={f['content_type']!r} encoding={f['encoding']} "
                  f"scrape_bytes={f['bytes']}")  # fmt: skip
            print(f"files={n} headers={name} scrape_p50_ms={f['p50_ms']:.2f} scrape_p99_ms={f['p99_ms']:.2f} "
                  f"(over {args.scrapes})")  # fmt: skip
            cpu = f"scrape_cpu_p50_ms={f['cpu_p50_ms']:.2f} scrape_cpu_mean_ms={f['cpu_mean_ms']:.2f}"
            print(f"files={n} headers={name} {cpu} (process CPU)")
        print(f"files={n} walk_p50_ms={r['walk_p50_ms']:.1f} walk_p99_ms={r['walk_p99_ms']:.1f} (over {args.walks})")
    for name in HEADER_SETS:
        big = results[-1]["scraped"][name]["p99_ms"]  # type: ignore[index]
        small = results[0]["scraped"][name]["p99_ms"]  # type: ignore[index]
        print(f"headers={name} scrape_p99_ms_at_{args.files}={big:.2f} target<=5 {'met' if big <= 5 else 'MISSED'}")
        print(f"headers={name} scrape_p99_ratio_{args.files}_vs_{args.small}={big / small:.2f} (1.0 = independent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
