"""Scrape latency with verified basic-auth credentials while a crowd sends wrong passwords.

The real exporter (in process, the recorder not running) with one bcrypt user at cost 10: a scraper on one
keep-alive connection, and every --interval seconds a burst of --burst new connections each guessing a new
password (each would need a bcrypt), for --seconds, from another loopback address (--crowd-address, another
host). Meanwhile a second scraper with good credentials never verified (as after every restart) tries every
half second: how long until it gets in, and its answers.

    .venv/bin/python bench/bench_auth_flood.py [--seconds 5] [--burst 20] [--interval 0.5]

Target: scrape p99 within a few ms of the quiet figure; the crowd answered 401 after its bcrypt, 503 at
once beyond the auth pool's bounded queue, 429 once its address failed 10 times; the newcomer in within a
scrape interval (a try or two after the crowd's address is refused).
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not an install

import bcrypt

from exporter.server import ExporterServer
from exporter.webconfig import WebOptions
from recorder.config import parse_config
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def scrape_latencies(port: int, until: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    while time.monotonic() < until:
        started = time.monotonic()
        conn.request("GET", "/metrics", headers={"Authorization": basic("prometheus", "s3cret")})
        conn.getresponse().read()
        latencies.append(time.monotonic() - started)
        time.sleep(0.02)
    conn.close()
    return latencies


def crowd(
    port: int, until: float, burst: int, interval: float, answers: collections.Counter[str], address: str
) -> None:
    guess = 0
    while time.monotonic() < until:
        socks = []
        for _ in range(burst):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(address, 0))
            header = basic("prometheus", f"guess{guess}")
            sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {header}\r\n\r\n".encode())
            socks.append(sock)
            guess += 1
        time.sleep(interval)
        for sock in socks:
            try:
                sock.settimeout(0.001)
                answers[sock.recv(64).split(b" ", 2)[1].decode()] += 1
            except (OSError, IndexError):
                answers["unanswered within the interval"] += 1
            sock.close()


def newcomer(port: int, until: float, started: float) -> str:
    tries = []
    while time.monotonic() < until:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/metrics", headers={"Authorization": basic("newcomer", "fresh")})
        response = conn.getresponse()
        response.read()
        conn.close()
        tries.append(response.status)
        if response.status == 200:
            return f"in after {time.monotonic() - started:.1f} s, answers {tries}"
        time.sleep(0.5)
    return f"not in within the run, answers {tries}"


def figures(name: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:22s} n={len(ms):4d}  median {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms  max {ms[-1]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--crowd-address", default="127.0.0.2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        web = Path(tmp) / "web.yml"
        users = {"prometheus": b"s3cret", "newcomer": b"fresh"}
        web.write_text(
            "basic_auth_users:\n"
            + "".join(f"  {user}: '{bcrypt.hashpw(pw, bcrypt.gensalt(10)).decode()}'\n" for user, pw in users.items())
        )
        config = parse_config(
            {
                "cameras": {"cam1": {"test_pattern": True}},
                "recording": {"base_directory": str(Path(tmp) / "rec")},
                "exporter": {"listen_address": "127.0.0.1:0"},
            }
        )
        recorder = Recorder(config, find_tools(config.system))
        server = ExporterServer(config.exporter, recorder, WebOptions(config_file=web))
        server.start()
        try:
            figures("quiet", scrape_latencies(server.port, time.monotonic() + args.seconds / 2))
            answers: collections.Counter[str] = collections.Counter()
            until = time.monotonic() + args.seconds
            guessing = threading.Thread(
                target=crowd, args=(server.port, until, args.burst, args.interval, answers, args.crowd_address)
            )
            started = time.monotonic()
            guessing.start()
            late: list[str] = []
            arriving = threading.Thread(target=lambda: late.append(newcomer(server.port, until, started)))
            arriving.start()
            figures("with the crowd", scrape_latencies(server.port, until))
            guessing.join()
            arriving.join()
            print(f"new credentials during the crowd: {late[0]}")
            print(f"crowd answers: {dict(answers)}; bcrypt runs: {server.auth.bcrypt_checks}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
