"""Real HTTP scrapes of a real recorder: the metric contract, promtool, and counters that move."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from daemon_harness import Daemon, free_port, request, write_config
from prometheus_client.parser import text_string_to_metric_families

from exporter import metrics as m

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "families.txt"
# Families that are only present when the host or the moment has them: a CPU sensor.
HOST_DEPENDENT = {m.CPU_TEMPERATURE.name}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("exporter")
    config = write_config(
        tmp / "config.yaml",
        tmp / "rec",
        cameras={
            "cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Left"},
            "cam2": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Right"},
        },
    )
    d = Daemon(config)
    wait_for(lambda: (d.value("camera_recorder_segments_completed_total", camera="cam1") or 0) >= 1, what="a segment")
    wait_for(
        lambda: d.value("camera_recorder_retention_last_run_timestamp_seconds", path=str(tmp / "rec")), what="retention"
    )
    yield d
    assert d.stop() == 0


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_family_of_the_contract_is_scraped_with_its_type_and_labels(daemon: Daemon) -> None:
    families = _families(daemon.metrics_text())
    for fam in m.ALL_FAMILIES:
        if fam.name in HOST_DEPENDENT:
            continue
        # The text format shows an info family as a gauge named with _info; counters lose _total.
        name = f"{fam.name}_info" if fam.type == "info" else fam.name
        assert name in families, f"{name} missing from the scrape"
        scraped = families[name]
        expected_type = {"histogram": "histogram", "counter": "counter"}.get(fam.type, "gauge")
        assert scraped.type == expected_type, fam.name
        for sample in scraped.samples:
            if sample.name.endswith("_bucket"):
                assert set(sample.labels) == {*fam.labels, "le"}
            elif not sample.name.endswith(("_sum", "_count", "_created")):
                assert set(sample.labels) == set(fam.labels), (sample.name, sample.labels)
    assert any(name.startswith("process_") for name in families)
    assert any(name.startswith("python_") for name in families)


def test_scrape_matches_the_golden_family_list(daemon: Daemon) -> None:
    scraped = sorted(name for name in _families(daemon.metrics_text()) if name.startswith(m.NAMESPACE))
    assert scraped == GOLDEN.read_text().split(), "update tests/golden/families.txt with a reason in the commit"


def test_promtool_check_metrics_is_clean(daemon: Daemon) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=daemon.metrics_text(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result


def test_closed_label_sets_are_all_present(daemon: Daemon) -> None:
    samples = daemon.samples()
    for reason in m.RESTART_REASONS:
        assert (m.FFMPEG_RESTARTS.exposed_name, (("camera", "cam1"), ("reason", reason))) in samples
    states = {
        dict(k[1])["state"]: v for k, v in samples.items() if k[0] == m.CAMERA_STATE.name and ("camera", "cam2") in k[1]
    }
    assert set(states) == set(m.CAMERA_STATES)
    assert sum(states.values()) == 1


def test_counters_move_after_real_events(daemon: Daemon) -> None:
    segments = daemon.value("camera_recorder_segments_completed_total", camera="cam2") or 0
    histogram = daemon.value("camera_recorder_segment_duration_seconds_count", camera="cam2") or 0
    wait_for(
        lambda: (daemon.value("camera_recorder_segments_completed_total", camera="cam2") or 0) > segments,
        what="a segment to complete",
    )
    assert (daemon.value("camera_recorder_segment_duration_seconds_count", camera="cam2") or 0) > histogram
    assert (daemon.value("camera_recorder_written_bytes_total", camera="cam2") or 0) > 0
    crashed = daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam2", reason="crashed") or 0
    gap = daemon.value("camera_recorder_recording_gap_seconds_total", camera="cam2") or 0
    os.kill(daemon.ffmpeg_pid_by_camera()["cam2"], signal.SIGKILL)
    wait_for(
        lambda: daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam2", reason="crashed") == crashed + 1,
        what="the restart counter",
    )
    wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam2") == 1, what="recording again")
    assert (daemon.value("camera_recorder_recording_gap_seconds_total", camera="cam2") or 0) > gap


def test_landing_health_and_readiness(daemon: Daemon) -> None:
    wait_for(lambda: daemon.get("/-/ready")[0] == 200, what="ready")
    status, body, _ = daemon.get("/-/ready")
    assert json.loads(body) == {"ready": True, "cameras": {"cam1": "recording", "cam2": "recording"}}
    status, body, headers = daemon.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "cam1" in body and "Right" in body and 'href="metrics"' in body and "recording" in body
    assert daemon.get("/-/healthy")[0] == 200
    assert daemon.get("/nope")[0] == 404
    assert daemon.post("/metrics", b"x")[0] == 405


def test_openmetrics_when_asked(daemon: Daemon) -> None:
    status, body, headers = daemon.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    assert "camera_recorder_camera_info{" in body


def test_readiness_names_a_camera_that_is_not_recording(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "rec",
        cameras={
            "cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25},
            "gone": {"file": str(tmp_path / "missing.mkv")},
        },
    )
    daemon = Daemon(config)
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="cam1")
        status, body, _ = daemon.get("/-/ready")
        assert status == 503
        cameras = json.loads(body)["cameras"]
        assert cameras["cam1"] == "recording" and cameras["gone"] in ("starting", "backoff")
    finally:
        assert daemon.stop() == 0


def test_basic_auth_and_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    (tmp_path / "password").write_text("s3cret\n")
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "rec",
        exporter={
            "tls_cert_file": str(cert),
            "tls_key_file": str(key),
            "basic_auth_username": "prometheus",
            "basic_auth_password_file": str(tmp_path / "password"),
        },
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    port = free_port()
    proc = subprocess.Popen(
        [os.sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{port}"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}/metrics"
    good = {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"prometheus:wrong").decode()}
    try:

        def up() -> bool:
            try:
                return request(url, headers=good, context=context)[0] == 200
            except OSError:
                return False

        wait_for(up, what="the TLS endpoint")
        import socket

        with socket.create_connection(("127.0.0.1", port)):
            # A client that connects and never says a word must not hold up anybody else.
            assert request(url, headers=good, context=context)[0] == 200
        assert request(url, context=context)[0] == 401
        non_ascii = {"Authorization": "Basic " + base64.b64encode("prométheus:sécret".encode()).decode()}
        assert request(url, headers=non_ascii, context=context)[0] == 401
        assert request(url, headers=bad, context=context)[0] == 401
        status, body, _ = request(url, headers=good, context=context)
        assert status == 200 and "camera_recorder_build_info" in body
        with pytest.raises(OSError):
            request(f"http://127.0.0.1:{port}/metrics", headers=good)  # plain HTTP is refused by TLS
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_taken_port_is_one_clear_line_naming_the_flag(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
        result = subprocess.run(
            [os.sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{port}"],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    lines = [ln for ln in result.stderr.splitlines() if "cannot listen" in ln]
    assert len(lines) == 1 and "--listen-address" in lines[0] and "Address already in use" in lines[0]
