"""Runs the real daemon (`python -m recorder`) as a process, with HTTP helpers to talk to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import yaml
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, base: Path, **sections: Any) -> Path:
    raw: dict[str, Any] = {
        "cameras": {
            "cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Left"},
            "cam2": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Right"},
        },
        "recording": {"base_directory": str(base), "segment_time": 2},
        "supervisor": {"stall_timeout": 3, "backoff_initial": 0.05, "stop_timeout": 5},
        "storage": {"check_interval": 1},
    }
    for key, value in sections.items():
        # Cameras replace the default pair; other sections amend the defaults.
        merge = isinstance(value, dict) and key != "cameras"
        raw[key] = {**raw.get(key, {}), **value} if merge else value
    path.write_text(yaml.safe_dump(raw))
    return path


class Daemon:
    """The recorder as operators run it, on a free loopback port."""

    def __init__(self, config: Path, *, extra_args: tuple[str, ...] = (), env: Mapping[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.with_suffix(".log")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{self.port}",
             *extra_args],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
        wait_for(self._serving, timeout=20, what=f"the daemon to serve on {self.url}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.get("/-/healthy")[0] == 200
        except OSError:
            return False

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str, Mapping[str, str]]:
        return request(self.url + path, headers=headers)

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        status, text, _ = request(self.url + path, data=body, headers=headers)
        return status, text

    def metrics_text(self) -> str:
        status, text, _ = self.get("/metrics")
        assert status == 200
        return text

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of a scrape, keyed by name and sorted labels."""
        out = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))

    def ffmpeg_pids(self) -> set[int]:
        return ffmpeg_descendants(self.proc.pid)

    def ffmpeg_pid_by_camera(self) -> dict[str, int]:
        return ffmpeg_pid_by_camera(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            self._log.close()
        if code != 0:
            # Shown by pytest with the failing test, whichever assertion about the exit code fails.
            print(f"daemon exited with {code}; its log:\n{self.log()}", file=sys.stderr)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def request(
    url: str, *, data: bytes | None = None, headers: Mapping[str, str] | None = None, context: Any = None
) -> tuple[int, str, Mapping[str, str]]:
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def recording_ffmpegs(root_pid: int) -> dict[int, str]:
    """The live FFmpeg processes below root_pid that write into a camera's folder, with that camera (the
    folder of the output, FFmpeg's last argument). Not listed: the daemon's short `ffmpeg -version` checks,
    and a process that exits while being looked at."""
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    found = {}
    for child in children:
        try:
            if child.name() != "ffmpeg" or child.status() == psutil.STATUS_ZOMBIE:
                continue
            args = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        output = Path(args[-1]) if args else None
        if output is not None and output.is_absolute():
            found[child.pid] = output.parent.name
    return found


def ffmpeg_descendants(root_pid: int) -> set[int]:
    return set(recording_ffmpegs(root_pid))


def ffmpeg_pid_by_camera(root_pid: int) -> dict[str, int]:
    return {camera: pid for pid, camera in recording_ffmpegs(root_pid).items()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: it holds no camera.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
