"""Scrapes while clips stream to slow clients, and what a streamed clip costs.

The real exporter (in process) over noisy lossless segments of one camera: first a clip downloaded as fast
as loopback takes it (throughput, memory growth); then MAX_CONCURRENT_EXPORTS clips read by clients taking
4 kB every --pause seconds while one keep-alive connection scrapes /metrics (latency figures).

    .venv/bin/python bench/bench_export_stream.py [--seconds 8] [--scrapes 500] [--pause 0.5]
    .venv/bin/python bench/bench_export_stream.py --hour [--read-seconds 30] [--rate 262144]

--hour: a 1-hour clip of 2560x1440 at 60 fps (360 segments of 10 s, links to one encoded segment) streamed
to one client reading --rate bytes per second, while /metrics is scraped with Prometheus's own headers: the
scrape latency, the client's pace, the process's RSS while the clip streams, and that FFmpeg stops and the
export slot comes back once the client leaves after --read-seconds.

Target: scrape p99 with slow clips streaming within a few ms of the p99 without; memory growth per clip
bounded, not the clip's size.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

from exporter.routes.operator import MAX_CONCURRENT_EXPORTS
from exporter.server import ExporterServer
from recorder.config import parse_config
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools
from recorder.footage.segments import segment_file_name

SEGMENT_SECONDS = 4


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def noisy_segment(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
         "-i", "nullsrc=size=480x360:rate=25,geq=lum='random(1)*255':cb=128:cr=128", "-t", str(SEGMENT_SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "25", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=300,
    )  # fmt: skip


HOUR_SEGMENT_SECONDS = 10
# What Prometheus 2.x sends on every scrape.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding": "gzip",
}


def scrape_times(port: int, count: int, headers: dict[str, str] | None = None) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    took = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("GET", "/metrics", headers=headers or {})
        conn.getresponse().read()
        took.append(time.perf_counter() - began)
    conn.close()
    return took


def slow_reader(port: int, path: str, pause: float, stop: threading.Event, got: list[int]) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    while not stop.is_set():
        data = sock.recv(4096)
        if not data:
            break
        got.append(len(data))
        stop.wait(pause)
    sock.close()


def export_ffmpegs() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any("pieces.ffconcat" in arg for arg in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def hour_clip(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        base = Path(tmp)
        t0 = float(int(time.time()) - 2 * 3600)
        one = base / "one.mkv"
        began = time.perf_counter()
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
             "-i", "testsrc2=size=2560x1440:rate=60", "-t", str(HOUR_SEGMENT_SECONDS), "-c:v", "libx264",
             "-preset", "ultrafast", "-b:v", "8M", "-g", "60", "-pix_fmt", "yuv420p", str(one)],
            check=True, timeout=900,
        )  # fmt: skip
        encoded = time.perf_counter() - began
        print(f"one 10 s 1440p60 segment: {one.stat().st_size / 1e6:.1f} MB, encoded in {encoded:.0f} s")
        (base / "cam1").mkdir()
        for i in range(3600 // HOUR_SEGMENT_SECONDS):
            os.link(one, base / "cam1" / segment_file_name("cam1", t0 + i * HOUR_SEGMENT_SECONDS))
        config = parse_config(
            {
                "cameras": {"cam1": {"test_pattern": True}},
                "recording": {"base_directory": str(base), "segment_time": HOUR_SEGMENT_SECONDS},
                "exporter": {"listen_address": "127.0.0.1:0"},
            }
        )
        recorder = Recorder(config, find_tools(config.system))
        recorder.storage.scan()
        server = ExporterServer(config.exporter, recorder)
        server.start()
        me = psutil.Process()
        try:
            quiet = scrape_times(server.port, args.scrapes, PROMETHEUS_HEADERS)
            rss_before = me.memory_info().rss
            stop = threading.Event()
            got: list[int] = []
            pause = 4096 / args.rate
            path = f"/api/v1/export?camera=cam1&from={t0:.0f}&to={t0 + 3600:.0f}"
            reader = threading.Thread(target=slow_reader, args=(server.port, path, pause, stop, got), daemon=True)
            reader.start()
            while not got:
                time.sleep(0.05)
            streaming_since = time.monotonic()
            busy: list[float] = []
            rss_peak = rss_before
            while time.monotonic() - streaming_since < args.read_seconds:
                busy += scrape_times(server.port, 20, PROMETHEUS_HEADERS)
                rss_peak = max(rss_peak, me.memory_info().rss)
                time.sleep(0.2)
            received, ffmpegs = sum(got), len(export_ffmpegs())
            stop.set()
            reader.join(10)
            left = time.monotonic()
            while export_ffmpegs() or server.operator.exports_free != MAX_CONCURRENT_EXPORTS:
                if time.monotonic() - left > 30:
                    break
                time.sleep(0.05)
            print(f"1-hour clip to a reader of {args.rate / 1024:.0f} KiB/s for {args.read_seconds} s: "
                  f"{received / 1e6:.1f} MB received ({received / args.read_seconds / 1024:.0f} KiB/s), "
                  f"{ffmpegs} FFmpeg cutting meanwhile")  # fmt: skip
            print(f"process RSS: {rss_before / 2**20:.1f} MiB before, peak {rss_peak / 2**20:.1f} MiB while streaming")
            print(f"after the reader left: FFmpeg gone and slot free in {time.monotonic() - left:.2f} s "
                  f"(ffmpeg left: {len(export_ffmpegs())}, free slots {server.operator.exports_free})")  # fmt: skip
            for name, took_list in (("alone", quiet), ("while the 1-hour clip streams", busy)):
                print(f"scrapes (Prometheus headers) {name}: n={len(took_list)} median "
                      f"{statistics.median(took_list) * 1000:.2f} ms, p99 {percentile(took_list, 99) * 1000:.2f} ms, "
                      f"max {max(took_list) * 1000:.2f} ms")  # fmt: skip
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="recorded seconds in the clip")
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--pause", type=float, default=0.5, help="the slow clients' pause between 4 kB reads")
    parser.add_argument("--hour", action="store_true", help="a 1-hour 1440p60 clip to one slow reader")
    parser.add_argument("--read-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=256 * 1024, help="--hour's reader, bytes per second")
    args = parser.parse_args()
    if args.hour:
        hour_clip(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t0 = float(int(time.time()) - 3600)
        starts = [t0 + i * SEGMENT_SECONDS for i in range(args.seconds // SEGMENT_SECONDS + 1)]
        for start in starts:
            noisy_segment(base / "cam1" / segment_file_name("cam1", start))
        config = parse_config(
            {
                "cameras": {"cam1": {"test_pattern": True}},
                "recording": {"base_directory": str(base), "segment_time": SEGMENT_SECONDS},
                "exporter": {"listen_address": "127.0.0.1:0"},
            }
        )
        recorder = Recorder(config, find_tools(config.system))
        recorder.storage.scan()
        server = ExporterServer(config.exporter, recorder)
        server.start()
        path = f"/api/v1/export?camera=cam1&from={t0:.0f}&to={t0 + args.seconds:.0f}"
        try:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            began = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("GET", path)
            response = conn.getresponse()
            size = 0
            while piece := response.read(1 << 16):  # read and dropped: the client holds no clip in memory
                size += len(piece)
            conn.close()
            took = time.perf_counter() - began
            growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            print(f"fast clip: {size / 1e6:.1f} MB in {took:.2f} s ({size / 1e6 / took:.0f} MB/s); "
                  f"peak RSS growth {growth / 1024:.1f} MiB")  # fmt: skip
            quiet = scrape_times(server.port, args.scrapes)
            stop = threading.Event()
            got: list[list[int]] = [[] for _ in range(MAX_CONCURRENT_EXPORTS)]
            readers = [
                threading.Thread(target=slow_reader, args=(server.port, path, args.pause, stop, g), daemon=True)
                for g in got
            ]
            for reader in readers:
                reader.start()
            while not all(got):
                time.sleep(0.05)
            busy = scrape_times(server.port, args.scrapes)
            stop.set()
            for reader in readers:
                reader.join(10)
            for name, took_list in (("alone", quiet), (f"with {len(readers)} slow clips", busy)):
                print(f"scrapes {name}: median {statistics.median(took_list) * 1000:.2f} ms, "
                      f"p99 {percentile(took_list, 99) * 1000:.2f} ms, max {max(took_list) * 1000:.2f} ms")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
