"""Scrapes while clips stream to slow clients, and what a streamed clip costs.

The real exporter (in process) over noisy lossless segments of one camera: first a clip downloaded as fast
as loopback takes it (throughput, memory growth); then MAX_CONCURRENT_EXPORTS clips read by clients taking
4 kB every --pause seconds while one keep-alive connection scrapes /metrics (latency figures).

    .venv/bin/python bench/bench_export_stream.py [--seconds 8] [--scrapes 500] [--pause 0.5]

Target: scrape p99 with slow clips streaming within a few ms of the p99 without; memory growth per clip
bounded near the transport's 1 MiB stream buffer, not the clip's size.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

from exporter.operator_routes import MAX_CONCURRENT_EXPORTS
from exporter.server import ExporterServer
from recorder.config import parse_config
from recorder.daemon import Recorder
from recorder.ffmpeg_binary import find_tools
from recorder.segments import segment_file_name

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


def scrape_times(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    took = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("GET", "/metrics")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="recorded seconds in the clip")
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--pause", type=float, default=0.5, help="the slow clients' pause between 4 kB reads")
    args = parser.parse_args()
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
