"""Scrape latency over TLS, quiet and under a handshake flood (issue 22: "handshakes off the I/O path").

Starts the real daemon (`python -m recorder`, two test-pattern cameras) serving TLS through
--web.config.file, then for --seconds each: one keep-alive TLS scraper alone, then the same scraper while
--flood processes each do full new TLS handshakes in a loop (connect, handshake, close). Prints the scrape
p50/p99/max and the handshakes per second the flood achieved.

    .venv/bin/python bench/bench_tls_handshake.py [--seconds 10] [--flood 8] [--key rsa|ec] [--code DIR]

--code runs the daemon from another checkout (e.g. /work/main, to measure before the change): its code is
imported from there, only this script comes from here. --key picks the server key: rsa (2048 bits, the
costlier signature, the default) or ec (P-256).

The load stays on 127.0.0.1 and each phase is bounded by --seconds. On a shared 2-core machine the flood's
processes and the daemon share the cores, so the figures are noisy: run it twice and compare orders of
magnitude, not milliseconds.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_support import free_port

REPO = Path(__file__).resolve().parent.parent


def make_certificate(folder: Path, key: str) -> tuple[Path, Path]:
    cert, private = folder / "server.pem", folder / "server.key"
    kind = ["-newkey", "rsa:2048"] if key == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(
        ["openssl", "req", "-x509", *kind, "-nodes", "-subj", "/CN=localhost", "-days", "1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(private), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, private


def client_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def flood(port: int, cafile: str, until: float, counter: multiprocessing.sharedctypes.Synchronized) -> None:  # type: ignore[name-defined]
    """In a process of its own: full new handshakes (no session reuse) until `until` (time.time())."""
    context = client_context(Path(cafile))
    done = 0
    while time.time() < until:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                done += 1
        except OSError:
            pass
    with counter.get_lock():
        counter.value += done


def scrape_for(port: int, cafile: Path, seconds: float) -> tuple[list[float], int]:
    """Scrape /metrics on one kept-alive connection for `seconds`: latencies (s), errors."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=client_context(cafile))
    latencies: list[float] = []
    errors = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                errors += 1
            else:
                latencies.append(time.perf_counter() - start)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=client_context(cafile))
        time.sleep(0.02)  # a scraper's pace, not a load of its own (50 scrapes/s at most)
    conn.close()
    return latencies, errors


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def report(name: str, latencies: list[float], errors: int) -> None:
    if not latencies:
        print(f"{name:>6}: no scrape answered, {errors} errors")
        return
    ms = [v * 1000 for v in latencies]
    print(f"{name:>6}: {len(ms)} scrapes, p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
          f"max {max(ms):.1f} ms, {errors} errors")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--flood", type=int, default=8, help="processes doing new handshakes in a loop")
    parser.add_argument("--key", choices=("rsa", "ec"), default="rsa", help="the server's key type")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout the daemon runs from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        folder = Path(tmp)
        cert, key = make_certificate(folder, args.key)
        web = folder / "web.yml"
        web.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}}))
        config = folder / "config.yaml"
        cameras = {cam: {"test_pattern": True, "resolution": "160x120", "framerate": 25} for cam in ("cam1", "cam2")}
        config.write_text(yaml.safe_dump({"cameras": cameras, "recording": {"base_directory": str(folder / "rec")}}))
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(args.code.resolve()), "PYTHONDONTWRITEBYTECODE": "1"}
        with (folder / "daemon.log").open("wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{port}",
                 "--web.config.file", str(web)],
                cwd=args.code, stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not scrape_for(port, cert, 0.05)[0]:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    print("the daemon did not serve TLS:\n" + (folder / "daemon.log").read_text(), file=sys.stderr)
                    return 1
            print(f"daemon from {args.code}, {args.key} key, {args.flood} flood processes, {args.seconds:g} s a phase")
            report("quiet", *scrape_for(port, cert, args.seconds))
            spawn = multiprocessing.get_context("spawn")
            counter = spawn.Value("q", 0)
            until = time.time() + args.seconds + 1.0
            flooders = [spawn.Process(target=flood, args=(port, str(cert), until, counter)) for _ in range(args.flood)]
            for process in flooders:
                process.start()
            time.sleep(1.0)  # the flood's processes start (a measurement's warm-up, not a synchronisation)
            started = time.monotonic()
            latencies, errors = scrape_for(port, cert, args.seconds)
            for process in flooders:
                process.join(30)
            elapsed = time.monotonic() - started + 1.0
            report("flood", latencies, errors)
            print(f"handshakes: {counter.value} in {elapsed:.1f} s, {counter.value / elapsed:.0f}/s")
        finally:
            daemon.terminate()
            daemon.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
