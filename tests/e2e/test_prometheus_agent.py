"""alerts/prometheus-agent.example.yml: a Prometheus in agent mode on the device, for sites the central
Prometheus cannot reach, pushing with remote_write. promtool checks it as an agent config, and a real
agent built from it carries a real recorder's metrics to a real central Prometheus."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import wait_for
from daemon_harness import Daemon, free_port, write_config
from e2e_servers import JOB, Prometheus, _Server

ROOT = Path(__file__).resolve().parents[2]
AGENT_CONFIG = ROOT / "alerts" / "prometheus-agent.example.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is not installed: apt-get install prometheus"
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def load() -> dict[str, Any]:
    return yaml.safe_load(AGENT_CONFIG.read_text(encoding="utf-8"))


def test_promtool_accepts_it_as_an_agent_config() -> None:
    result = promtool("check", "config", "--agent", AGENT_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_agent_check_refuses_what_an_agent_cannot_do(tmp_path: Path) -> None:
    """The check above means something: with rules (which an agent cannot evaluate) it fails."""
    config = load()
    config["rule_files"] = ["camera-recorder.rules.yml"]
    path = tmp_path / "agent-with-rules.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert promtool("check", "config", "--agent", path).returncode != 0


def test_it_scrapes_the_recorder_job_under_a_name_of_its_own_and_writes_remotely() -> None:
    config = load()
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB, "the job the rules and dashboards select"
    (targets,) = job["static_configs"]
    assert targets["targets"] == ["localhost:9100"]
    assert targets["labels"]["instance"] != "localhost:9100", "every box would otherwise be the same instance"
    assert config["global"]["external_labels"]
    assert config["remote_write"][0]["url"].endswith("/api/v1/write")
    assert "rule_files" not in config and "alerting" not in config


class CentralPrometheus(Prometheus):
    """A Prometheus that only receives remote writes (no scrapes, no rules)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "central.yml"
        self.config_path.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"}, "scrape_configs": []}))
        _Server.__init__(self, workdir, [
            shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
        ])  # fmt: skip
        wait_for(lambda: self._get_ok(self.url + "/-/ready"), timeout=60, what="the central Prometheus")


class Agent(_Server):
    name = "prometheus-agent"

    def __init__(self, workdir: Path, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(workdir, [
            shutil.which("prometheus") or "/usr/bin/prometheus", "--enable-feature=agent",
            f"--config.file={config}", f"--storage.agent.path={workdir / 'wal'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ])  # fmt: skip
        wait_for(lambda: self._get_ok(self.url + "/-/ready"), timeout=60, what="the Prometheus agent")


def test_a_real_agent_carries_a_recorders_metrics_to_the_central_prometheus(tmp_path: Path) -> None:
    central = CentralPrometheus(tmp_path / "central")
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    agent = None
    try:
        # The example as shipped, pointed at this test's recorder and central Prometheus, and faster.
        config = load()
        config["global"]["scrape_interval"] = "1s"
        config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{daemon.port}"]
        remote = config["remote_write"][0]
        remote["url"] = f"{central.url}/api/v1/write"
        remote["queue_config"]["batch_send_deadline"] = "1s"
        password = tmp_path / "remote-write.password"
        password.write_text("secret\n")
        remote["basic_auth"]["password_file"] = str(password)
        (tmp_path / "agent").mkdir()
        agent_config = tmp_path / "agent" / "agent.yml"
        agent_config.write_text(yaml.safe_dump(config))
        agent = Agent(tmp_path / "agent", agent_config)
        labels = config["scrape_configs"][0]["static_configs"][0]["labels"]
        site = config["global"]["external_labels"]["site"]
        selector = f'{{job="{JOB}", instance="{labels["instance"]}", site="{site}"}}'
        rows = wait_for(lambda: central.query(f"camera_recorder_build_info{selector}"), timeout=60,
                        what="the recorder's metrics at the central Prometheus")  # fmt: skip
        assert rows[0].value == 1
        assert wait_for(lambda: central.query(f"up{selector} == 1"), timeout=30, what="up, sent by the agent")
    finally:
        if agent is not None:
            agent.stop()
        daemon.stop()
        central.stop()
