"""Issue 13, item 4: a real Alertmanager reaches the webhook of a recorder serving TLS with basic auth on.

Alertmanager can send only one Authorization header (amtool refuses bearer and basic auth together), so the
webhook authenticates by its own token, which Alertmanager may send either way; the exporter's basic auth,
which Prometheus uses, does not stand in the way. Alertmanager also presents a client certificate, since the
web config asks every client for one.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from pathlib import Path

import bcrypt
from conftest import wait_for
from daemon_harness import free_port, write_config
from e2e_servers import Alertmanager, push_alerts, recorder_webhook_receiver
from test_http_hardening import RawDaemon
from tls_certs import make_ca, make_cert

TOKEN = "alertmanager-webhook-token"
INSTANCE = "recorder-under-test:9100"


def test_alertmanager_delivers_to_a_tls_and_basic_auth_exporter_with_bearer_or_basic_credentials(
    tmp_path: Path,
) -> None:
    ca = make_ca(tmp_path)
    server = make_cert(tmp_path, "server", ca)
    am_client = make_cert(tmp_path, "alertmanager", ca, cn="alertmanager")
    prom_client = make_cert(tmp_path, "prometheus", ca, cn="prometheus")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    hashed = bcrypt.hashpw(b"scrape-password", bcrypt.gensalt(10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n  client_ca_file: {ca.cert}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "rec",
        exporter={"webhook_token_file": str(token_file), "instance_names": [INSTANCE]},
    )
    recorder = RawDaemon(config, extra_args=("--web.config.file", str(web)))
    url = f"https://127.0.0.1:{recorder.port}"
    client = (am_client.cert, am_client.key)
    am_config = {
        "route": {
            "receiver": "bearer",
            "group_by": ["alertname", "auth"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": [
                {"receiver": "bearer", "matchers": ['auth="bearer"']},
                {"receiver": "basic", "matchers": ['auth="basic"']},
            ],
        },
        "receivers": [
            recorder_webhook_receiver(
                "bearer", url, auth={"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                ca_file=ca.cert, client=client,
            ),
            recorder_webhook_receiver(
                "basic", url, auth={"basic_auth": {"username": "alertmanager", "password_file": str(token_file)}},
                ca_file=ca.cert, client=client,
            ),
        ],
    }  # fmt: skip
    alertmanager = Alertmanager(tmp_path / "alertmanager", free_port(), am_config)
    scrape_context = ssl.create_default_context(cafile=str(ca.cert))
    scrape_context.load_cert_chain(prom_client.cert, prom_client.key)
    scrape_auth = {"Authorization": "Basic " + base64.b64encode(b"prometheus:scrape-password").decode()}

    def webhook_results(headers: dict[str, str] | None = None) -> tuple[int, dict[str, float]]:
        conn = http.client.HTTPSConnection("127.0.0.1", recorder.port, timeout=10, context=scrape_context)
        try:
            conn.request("GET", "/metrics", headers=headers if headers is not None else scrape_auth)
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        results = {}
        for line in text.splitlines():
            if line.startswith("camera_recorder_alert_webhook_requests_total{"):
                results[line.split('result="')[1].split('"')[0]] = float(line.split()[-1])
        return response.status, results

    try:
        assert webhook_results({})[0] == 401  # basic auth is really on for everything but the webhook
        labels = {"alertname": "CameraRecorderDiskAboveRetentionThreshold", "instance": INSTANCE,
                  "retention_action": "enforce_max_age", "severity": "warning"}  # fmt: skip
        push_alerts(alertmanager, [{**labels, "auth": "bearer"}, {**labels, "auth": "basic"}])
        wait_for(
            lambda: webhook_results()[1].get("accepted", 0) >= 2,
            timeout=30,
            what=f"both receivers to be accepted\n{alertmanager.log()[-3000:]}",
        )
        results = webhook_results()[1]
        assert results["unauthorized"] == 0 and results["invalid"] == 0, results
        assert "notify success" in alertmanager.log().lower() or "Notify success" in alertmanager.log()
    finally:
        alertmanager.stop()
        assert recorder.stop() == 0
