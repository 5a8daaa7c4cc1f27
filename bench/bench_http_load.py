"""A crowd of scrapers against a real recording daemon: 200 concurrent clients x 5 scrapes on 127.0.0.1.

Starts `python -m recorder` with two test-pattern cameras, then runs the clients (asyncio, one thread, a
fresh connection per scrape unless --keepalive) while the cameras record. Prints errors (target 0),
latency p50/p99 (target p99 <= 250 ms), the daemon's CPU during the load, and whether recording was
unaffected: every camera's frame counter rose at its frame rate, with no gap, restart or state change.

    .venv/bin/python bench/bench_http_load.py [--clients 200] [--scrapes 5] [--keepalive] [--basic-auth]
        [--prometheus-headers] [--nofile 256 --idle-crowd 400]

--nofile lowers the running daemon's fd limit (`prlimit --pid`) once it records, and --idle-crowd opens that
many idle connections before the load: the most descriptors the daemon held during the load is printed
against the limit, with the reserve the exporter keeps for recording (scrapes beyond what fits are refused
at connect, counted as errors: that is the point of the reserve).

--prometheus-headers sends what Prometheus sends on every scrape (its Accept, asking for OpenMetrics first,
and Accept-Encoding: gzip); without it the clients send neither (the text format, uncompressed). The
daemon's RSS is printed before and after the load (run --scrapes 50 for 10,000 requests).

--basic-auth serves through --web.config.file with a bcrypt (cost 10) user, and every client sends the
credentials: bcrypt costs ~50 ms, so the figures show that a verified password is cached.

The load stays on 127.0.0.1 and is bounded: clients x scrapes requests, each with a 10 s timeout, and
the whole run with a deadline. On a shared 2-core machine the figures are noisy: run it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import bcrypt
import psutil
import yaml
from bench_support import free_port
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ("cam1", "cam2")
FRAMERATE = 25
REQUEST_TIMEOUT = 10.0
RUN_DEADLINE = 300.0  # the whole load, whatever the arguments
# asyncio.wait_for raises asyncio.TimeoutError, a class of its own before Python 3.11.
TIMEOUTS: tuple[type[BaseException], ...] = (asyncio.TimeoutError, TimeoutError)
SETTLE_SECONDS = 4.0  # from the load's start to the "after" sample of the frame counters


PROMETHEUS_HEADERS = (
    "Accept: application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\nAccept-Encoding: gzip\r\n"
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def scrape(port: int, authorization: str | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": authorization} if authorization else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    text = urllib.request.urlopen(request, timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def camera_values(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], camera: str) -> dict[str, float]:
    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted({"camera": camera, **labels}.items()))), float("nan"))

    return {
        "frames": value("camera_recorder_frames_total"),
        "progress_at": value("camera_recorder_last_progress_timestamp_seconds"),
        "gap": value("camera_recorder_recording_gap_seconds_total"),
        "recording": value("camera_recorder_camera_recording"),
        "restarts": sum(
            v
            for (n, labels), v in samples.items()
            if n == "camera_recorder_ffmpeg_restarts_total" and ("camera", camera) in labels
        ),
    }


async def one_scrape(
    port: int, extra_headers: str, reader_writer: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
) -> tuple[float, str | None, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
    """(latency, error or None, the connection to reuse with --keepalive)."""
    started = time.perf_counter()
    keepalive = reader_writer is not None
    try:
        if reader_writer is None or reader_writer[1].is_closing():
            reader_writer = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = reader_writer
        connection = "keep-alive" if keepalive else "close"
        head = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n{extra_headers}\r\n"
        writer.write(head.encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        body = await reader.readexactly(length)
        latency = time.perf_counter() - started
        if b"content-encoding: gzip" in head.lower():
            body = gzip.decompress(body)
        if status != 200 or b"camera_recorder_build_info" not in body:
            return latency, f"status {status}", reader_writer
        if not keepalive:
            writer.close()
            reader_writer = None
        return latency, None, reader_writer
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, StopIteration) as exc:
        if reader_writer is not None:
            reader_writer[1].close()
        return time.perf_counter() - started, type(exc).__name__, None


async def client(
    port: int, extra_headers: str, scrapes: int, keepalive: bool, latencies: list[float], errors: list[str]
) -> None:
    connection = None
    for _ in range(scrapes):
        try:
            latency, error, connection = await asyncio.wait_for(
                one_scrape(port, extra_headers, connection if keepalive else None), REQUEST_TIMEOUT
            )
        except TIMEOUTS:
            latency, error, connection = REQUEST_TIMEOUT, "timeout", None
        latencies.append(latency)
        if error:
            errors.append(error)
        if not keepalive and connection is not None:
            connection[1].close()
    if connection is not None:
        connection[1].close()


async def load(
    port: int, extra_headers: str, clients: int, scrapes: int, keepalive: bool
) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    tasks = [client(port, extra_headers, scrapes, keepalive, latencies, errors) for _ in range(clients)]
    await asyncio.wait_for(asyncio.gather(*tasks), RUN_DEADLINE)
    return latencies, errors, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=5, help="per client")
    parser.add_argument("--keepalive", action="store_true", help="one connection per client, as Prometheus does")
    parser.add_argument("--basic-auth", action="store_true", help="a bcrypt user in --web.config.file")
    parser.add_argument("--prometheus-headers", action="store_true", help="Prometheus's Accept and Accept-Encoding")
    parser.add_argument("--nofile", type=int, help="lower the running daemon's fd limit to this (prlimit --pid)")
    parser.add_argument("--idle-crowd", type=int, default=0, help="idle connections opened before the load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "cameras": {
                        cam: {"test_pattern": True, "resolution": "160x120", "framerate": FRAMERATE} for cam in CAMERAS
                    },
                    "recording": {"base_directory": str(Path(tmp) / "rec"), "segment_time": 2},
                }
            )
        )
        port = free_port()
        flags: list[str] = []
        authorization = None
        if args.basic_auth:
            hashed = bcrypt.hashpw(b"bench-password", bcrypt.gensalt(10)).decode()
            web = Path(tmp) / "web.yml"
            web.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
            flags = ["--web.config.file", str(web)]
            authorization = "Basic " + base64.b64encode(b"prometheus:bench-password").decode()
        extra_headers = f"Authorization: {authorization}\r\n" if authorization else ""
        if args.prometheus_headers:
            extra_headers += PROMETHEUS_HEADERS
        log = (Path(tmp) / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{port}", *flags],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    before = scrape(port, authorization)
                    if all(camera_values(before, cam)["recording"] == 1 for cam in CAMERAS):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    print("the daemon did not start recording in 30 s", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            process = psutil.Process(daemon.pid)
            if args.nofile:
                subprocess.run(["prlimit", f"--pid={daemon.pid}", f"--nofile={args.nofile}:{args.nofile}"], check=True)
            crowd = []
            for _ in range(args.idle_crowd):
                try:
                    crowd.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    break
            most_fds = [0]
            sampling = threading.Event()

            def sample_fds() -> None:
                while not sampling.is_set():
                    most_fds[0] = max(most_fds[0], len(os.listdir(f"/proc/{daemon.pid}/fd")))
                    sampling.wait(0.05)

            sampler = threading.Thread(target=sample_fds, daemon=True)
            sampler.start()
            cpu_before = sum(process.cpu_times()[:2])
            rss_before = process.memory_info().rss
            started = time.monotonic()
            latencies, errors, elapsed = asyncio.run(
                load(port, extra_headers, args.clients, args.scrapes, args.keepalive)
            )
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            sampling.set()
            sampler.join()
            for sock in crowd:
                sock.close()
            rss_after = process.memory_info().rss
            # The frame counters move with FFmpeg's progress reports: look again once a few have come in.
            time.sleep(max(0.0, started + SETTLE_SECONDS - time.monotonic()))
            after = scrape(port, authorization)
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.close()
    requests = args.clients * args.scrapes
    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 99) * 1000
    mode = "keep-alive" if args.keepalive else "a connection per scrape"
    if args.basic_auth:
        mode += ", basic auth with a bcrypt cost-10 hash"
    mode += ", Prometheus's Accept and Accept-Encoding" if args.prometheus_headers else ", no Accept header"
    print(f"clients={args.clients} scrapes_per_client={args.scrapes} requests={requests} ({mode})")
    print(
        f"errors={len(errors)} target=0 {'met' if not errors else 'MISSED'}"
        + (f" kinds={sorted(set(errors))}" if errors else "")
    )
    print(f"latency_p50_ms={p50:.1f} latency_p99_ms={p99:.1f} latency_max_ms={max(latencies) * 1000:.1f} "
          f"target_p99<=250 {'met' if p99 <= 250 else 'MISSED'}")  # fmt: skip
    print(f"throughput_rps={requests / elapsed:.0f} load_seconds={elapsed:.2f} daemon_cpu_seconds={cpu:.2f}")
    print(f"daemon_rss_mib_before={rss_before / 2**20:.1f} daemon_rss_mib_after={rss_after / 2**20:.1f} "
          f"(+{(rss_after - rss_before) / 2**20:.1f} over {requests} requests)")  # fmt: skip
    if args.nofile or args.idle_crowd:
        soft = args.nofile or "unchanged"
        print(f"fd_limit={soft} idle_crowd={args.idle_crowd} daemon_fds_max={most_fds[0]} "
              f"(the exporter keeps 32 + 16 per camera free for recording)")  # fmt: skip
    unaffected = True
    for cam in CAMERAS:
        b, a = camera_values(before, cam), camera_values(after, cam)
        # Frames between two progress reports over the time between them: exact, whenever the samples fell.
        span = a["progress_at"] - b["progress_at"]
        rate = (a["frames"] - b["frames"]) / span if span > 0 else 0.0
        steady = a["gap"] == b["gap"] and a["restarts"] == b["restarts"] and a["recording"] == 1
        unaffected &= steady and rate >= 0.8 * FRAMERATE
        print(
            f"{cam}: frames +{a['frames'] - b['frames']:.0f} in {span:.1f} s of progress reports ({rate:.1f}/s of "
            f"{FRAMERATE}) "
            f"gap_seconds +{a['gap'] - b['gap']:.2f} restarts +{a['restarts'] - b['restarts']:.0f} "
            f"recording={a['recording']:.0f}"
        )
    print(f"recording_unaffected={'yes' if unaffected else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
