"""The systemd unit's newer hardening, checked by running things rather than by reading only:

- every system call the daemon and FFmpeg make while recording (traced with strace) passes the unit's
  SystemCallFilter= (expanded with `systemd-analyze syscall-filter`);
- `systemd-analyze security --offline=yes` rates the unit at most 2.0;
- a configuration error exits with the status RestartPreventExitStatus= names, so systemd stops retrying;
- an unwritable recordings folder at start is a running unit in storage_error (READY=1), never a restart loop;
- where systemd is PID 1, the daemon records inside the unit's sandbox (systemd-run); elsewhere (a
  container without systemd, like the one these tests were written in) that test skips and says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from daemon_harness import free_port, write_config

from recorder.app.cli import EXIT_CONFIG

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "camera-recorder.service"
REAL_BINARY = "/opt/camera-recorder/venv/bin/camera-recorder"
MAX_EXPOSURE = 2.0


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install {package}"
    return path


def service_settings() -> list[tuple[str, str, str]]:
    """(key, value, comment above) of each [Service] directive."""
    out, section, comment = [], "", ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]")
        elif stripped.startswith("#"):
            comment = comment + "\n" + stripped if comment else stripped
            continue
        elif stripped and section == "Service":
            key, _, value = stripped.partition("=")
            out.append((key, value, comment))
        comment = ""
    return out


def settings(key: str) -> list[str]:
    return [value for k, value, _ in service_settings() if k == key]


def syscall_groups() -> dict[str, list[str]]:
    out = subprocess.run([tool("systemd-analyze", "systemd"), "syscall-filter"], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    names: set[str] = set()
    for item in items:
        names |= expand(groups[item], groups) if item.startswith("@") else {item}
    return names


def allowed_syscalls() -> set[str]:
    """What the unit's SystemCallFilter= lines allow, applied in order as systemd does."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for value in settings("SystemCallFilter"):
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), groups)
        else:
            allowed |= expand(value.split(), groups)
    return allowed


def test_unit_has_the_newer_hardening_each_with_its_reason() -> None:
    expected = {
        "UMask": ["0027"],
        "RemoveIPC": ["true"],
        "PrivateMounts": ["true"],
        "ProtectProc": ["invisible"],
        "SystemCallFilter": ["@system-service", "~@privileged"],
        "SystemCallErrorNumber": ["EPERM"],
        "RestartPreventExitStatus": [str(EXIT_CONFIG)],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
    }
    for key, values in expected.items():
        assert settings(key) == values, f"{key}={settings(key)}"
    for key, _value, comment in service_settings():
        if key in expected or key == "LimitNOFILE":
            assert comment, f"{key}= needs a comment above it saying why"
    ((limit, comment),) = [(value, comment) for key, value, comment in service_settings() if key == "LimitNOFILE"]
    assert int(limit) >= 1024 and "N cameras" in comment and re.search(r"\d+ \+ \d+ x N", comment)


def test_systemd_analyze_security_rates_the_unit_at_most_2(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(f"ExecStart={REAL_BINARY} ", "ExecStart=/bin/true "))
    result = subprocess.run(
        [tool("systemd-analyze", "systemd"), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def test_every_system_call_of_a_recording_passes_the_unit_filter(tmp_path: Path) -> None:
    """The daemon records two segments, serves a scrape and stops, under strace; each call it and its
    FFmpeg made must be one the unit's SystemCallFilter= allows."""
    strace = tool("strace", "strace")
    camera = {"test_pattern": True, "resolution": "160x120", "framerate": 10}
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec", recording={"segment_time": 1},
                          cameras={"cam1": camera})  # fmt: skip
    trace = tmp_path / "trace"
    port = free_port()
    daemon = subprocess.Popen(
        [strace, "-f", "-qq", "-o", str(trace), sys.executable, "-m", "recorder", "-c", str(config),
         "--listen-address", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "NOTIFY_SOCKET": ""},
    )  # fmt: skip
    try:
        from daemon_harness import request

        def scraped() -> bool:
            try:
                return request(f"http://127.0.0.1:{port}/metrics")[0] == 200
            except OSError:
                return False

        wait_for(scraped, timeout=60, what="the traced daemon to serve")
        wait_for(lambda: len(list((tmp_path / "rec" / "cam1").glob("*.mkv"))) >= 3, timeout=60,
                 what="segments from the traced daemon")  # fmt: skip
    finally:
        # The daemon itself stops (strace would only detach): it is strace's one child.
        for child in psutil.Process(daemon.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        finally:
            if daemon.poll() is None:
                for child in psutil.Process(daemon.pid).children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
                daemon.kill()
                daemon.wait(10)
    calls = set()
    for line in trace.read_text(errors="replace").splitlines():
        match = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed)", line)
        if match:
            calls.add(match[1])
    assert {"execve", "openat", "write"} <= calls, "the trace saw the daemon and FFmpeg work"
    denied = sorted(calls - allowed_syscalls())
    assert not denied, f"the unit's SystemCallFilter= would refuse {denied}"


def test_a_configuration_error_exits_with_the_status_systemd_does_not_restart(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("cameras:\n  cam1: {test_pattern: true, framerate: sixty}\n")
    daemon = subprocess.run([sys.executable, "-m", "recorder", "-c", str(bad)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert daemon.returncode == EXIT_CONFIG == int(settings("RestartPreventExitStatus")[0]), daemon.stderr
    assert "framerate" in daemon.stderr
    one_shot = subprocess.run([sys.executable, "-m", "recorder", "-c", str(bad), "--dry-run"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert one_shot.returncode == 1, "one-shot commands keep their plain non-zero status"


SANDBOX_KEYS = (
    "ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "CapabilityBoundingSet", "UMask",
    "RemoveIPC", "PrivateMounts", "ProtectProc", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictAddressFamilies",
    "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "SystemCallArchitectures",
    "SystemCallFilter", "SystemCallErrorNumber", "LimitNOFILE",
)  # fmt: skip


def test_the_daemon_records_inside_the_unit_sandbox(tmp_path: Path) -> None:
    if not Path("/run/systemd/system").is_dir():
        pytest.skip("systemd is not PID 1 on this machine (a container?): the unit cannot run for real here")
    properties = [f"--property={key}={value}" for key, value, _ in service_settings() if key in SANDBOX_KEYS]
    output = tmp_path / "demo"
    result = subprocess.run(
        [tool("systemd-run", "systemd"), "--wait", "--collect", "--quiet", "--pipe",
         f"--property=ReadWritePaths={tmp_path}", f"--working-directory={ROOT}", *properties,
         sys.executable, "-m", "recorder", "--demo", "--duration", "8", "--output", str(output),
         "--listen-address", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert list((output / "cam1").glob("cam1_*.mkv")), "the sandboxed daemon recorded"


def test_an_unwritable_recordings_folder_at_start_is_a_running_unit_not_a_restart_loop() -> None:
    """Issue 21, one behaviour: the daemon, as an unprivileged user whose base_directory it may not create,
    tells systemd READY=1 and stays up in storage_error (metric and alert), with the command that fixes it
    in the log. It never exits on this, so Restart=always has nothing to restart every RestartSec=; it
    exits 0 when stopped, a status systemd counts as success."""
    assert settings("Restart") == ["always"] and settings("Type") == ["notify"]
    folder = Path(tempfile.mkdtemp(prefix="camera-recorder-unwritable-"))  # nobody must reach it: not tmp_path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        folder.chmod(0o755)
        (folder / "storage").mkdir(mode=0o755)  # root's, as /storage is before `chown camera-recorder:`
        base = folder / "storage" / "recordings"
        config = write_config(folder / "config.yaml", base, cameras={"cam1": {"test_pattern": True}})
        config.chmod(0o644)
        notify = folder / "notify.sock"
        sock.bind(str(notify))
        notify.chmod(0o777)
        sock.setblocking(False)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
        runnable = subprocess.run([*nobody, sys.executable, "-c", "import recorder"], cwd=ROOT,
                                  capture_output=True, check=False)  # fmt: skip
        if runnable.returncode != 0:
            pytest.skip(f"{sys.executable} cannot run as nobody: {runnable.stderr.decode().strip()[:200]}")
        port = free_port()
        log = folder / "daemon.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [*nobody, sys.executable, "-m", "recorder", "-c", str(config), "--listen-address",
                 f"127.0.0.1:{port}"],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NOTIFY_SOCKET": str(notify)},
            )  # fmt: skip
        received: list[str] = []

        def notified(text: str) -> bool:
            while True:
                try:
                    received.extend(sock.recv(4096).decode().splitlines())
                except BlockingIOError:
                    return any(text in line for line in received)

        try:
            wait_for(lambda: notified("READY=1"), timeout=30, what=f"READY=1\n{log.read_text()}")
            wait_for(lambda: notified("STATUS=cam1: storage_error"), timeout=15, what=f"storage_error {received}")
            from daemon_harness import request

            metrics = request(f"http://127.0.0.1:{port}/metrics")[1]
            assert f'camera_recorder_storage_writable{{path="{base}"}} 0.0' in metrics
            assert daemon.poll() is None, "exited: systemd would restart it every RestartSec="
            text = log.read_text()
            assert f"cannot create {base}: Permission denied" in text
            assert f"run `mkdir -p {base} && chown nobody: {base}`" in text
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
        assert code == 0 and str(code) not in settings("RestartPreventExitStatus")
    finally:
        sock.close()
        shutil.rmtree(folder)
