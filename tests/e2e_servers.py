"""A real Prometheus and Alertmanager for the end-to-end tests, and the configs and rules they run with."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from conftest import mounted_tmpfs, wait_for
from daemon_harness import REPO, free_port

ALERTS_DIR = REPO / "alerts"
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
JOB = "camera-recorder"  # the job name the bundled rules and dashboards select


def http(
    url: str, *, method: str = "GET", data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """One request; HTTP errors come back as their status, not as exceptions."""
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _Server:
    """A server binary run in a work folder on a free loopback port, its output in a log file."""

    name = "server"

    def __init__(self, workdir: Path, argv: Sequence[str]) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(list(argv), cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _get_ok(self, url: str) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return http(url)[0] == 200
        except OSError:
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self._log.close()


@dataclass(frozen=True)
class Sample:
    """One row of a query result: its labels and its (last) value and timestamp."""

    labels: Mapping[str, str]
    value: float
    at: float
    values: tuple[tuple[float, float], ...] = ()  # every (timestamp, value) of a range-vector row

    def matches(self, **labels: str) -> bool:
        return all(self.labels.get(k) == v for k, v in labels.items())


class Prometheus(_Server):
    """Prometheus scraping the recorders every second, with the given rule files and Alertmanager."""

    name = "prometheus"

    def __init__(self, workdir: Path, rule_files: Sequence[Path], alertmanager: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self._rule_files = [str(p) for p in rule_files]
        self._alertmanager = alertmanager
        self.targets: tuple[str, ...] = ()
        self._write_config()
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        super().__init__(
            workdir,
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                # Alerts are sent again this often while they fire (the default is a minute).
                "--rules.alert.resend-delay=1s",
                "--log.level=info",
            ],
        )
        wait_for(lambda: self._get_ok(self.url + "/-/ready"), timeout=60, what=f"Prometheus ready at {self.url}")

    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": self._rule_files,
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [self._alertmanager]}]}]},
            # No job at all until targets are set: absent(up{job=...}) is what an empty fleet looks like.
            "scrape_configs": (
                [{"job_name": JOB, "static_configs": [{"targets": list(self.targets)}]}] if self.targets else []
            ),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def set_targets(self, targets: Sequence[str]) -> None:
        """Scrape exactly these host:port targets in the camera-recorder job, and wait until each is up."""
        self.targets = tuple(targets)
        self._write_config()
        status, body = http(self.url + "/-/reload", method="POST")
        assert status == 200, f"reload failed ({status}): {body}\n{self.log()[-3000:]}"

        def all_up() -> bool:
            up = {s.labels["instance"]: s.value for s in self.query(f'up{{job="{JOB}"}}')}
            return all(up.get(t) == 1 for t in self.targets)

        wait_for(all_up, timeout=60, what=f"Prometheus to scrape {self.targets}")

    # -- HTTP API ---------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http(url)
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            raise PromQLError(f"{path} {params}: {status} {data.get('errorType')}: {data.get('error')}")
        return data["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query (at `at`, Unix time, or now); a range selector gives every raw sample."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [Sample({}, _number(result[1]), float(result[0]))]
        if kind == "vector":
            return [Sample(r["metric"], _number(r["value"][1]), float(r["value"][0])) for r in result]
        if kind == "matrix":
            rows = []
            for r in result:
                values = tuple((float(t), _number(v)) for t, v in r["values"])
                rows.append(Sample(r["metric"], values[-1][1], values[-1][0], values))
            return rows
        raise AssertionError(f"unexpected result type {kind} for {expr}")

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])


class PromQLError(Exception):
    """Prometheus refused a query: a parse or evaluation error, with its message."""


def _number(text: str) -> float:
    return float(text)  # Prometheus writes NaN and +Inf/-Inf as Python's float() reads them


class Alertmanager(_Server):
    """Alertmanager without clustering, on a free loopback port."""

    name = "alertmanager"

    def __init__(self, workdir: Path, port: int, config: Mapping[str, Any]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        check = subprocess.run(
            ["amtool", "check-config", str(self.config_path)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, f"amtool check-config:\n{check.stdout}{check.stderr}"
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or "alertmanager"
        super().__init__(
            workdir,
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: a single Alertmanager
                "--log.level=debug",
            ],
        )
        wait_for(lambda: self._get_ok(self.url + "/-/ready"), timeout=60, what=f"Alertmanager ready at {self.url}")

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds (active, suppressed or unprocessed) with these labels."""
        params = [("filter", f'{k}="{v}"') for k, v in labels.items()]
        status, body = http(f"{self.url}/api/v2/alerts?" + urllib.parse.urlencode(params))
        assert status == 200, body
        return list(json.loads(body))

    def routes(self, **labels: str) -> list[str]:
        """The receivers `amtool config routes test` picks for these labels."""
        out = subprocess.run(
            ["amtool", "config", "routes", "test", f"--config.file={self.config_path}"]
            + [f"{k}={v}" for k, v in labels.items()],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().split(",")


# -- rules, Alertmanager config, dashboards ------------------------------------------------------------


def bundled_rule_files() -> list[Path]:
    return sorted(ALERTS_DIR.glob("*.rules.yml"))


def bundled_rules() -> list[dict[str, Any]]:
    """Every rule of the bundled files, as written there."""
    return [rule for path in bundled_rule_files() for group in _groups(path) for rule in group["rules"]]


def _groups(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["groups"])


def shortened_rules(dest: Path, durations: Mapping[str, str], default: str = "1s") -> list[Path]:
    """Copies of the bundled rule files with every alert's `for:` replaced; nothing else changes."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path in bundled_rule_files():
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = durations.get(rule["alert"], default)
        target = dest / path.name
        target.write_text(yaml.safe_dump(data, sort_keys=False))
        out.append(target)
    return out


def alertmanager_config(recorders: Mapping[str, str], token_file: Path) -> dict[str, Any]:
    """alerts/alertmanager.example.yml for the test: its routes and inhibitions, second-scale timings,
    the recorder webhook route once per recorder (instance -> base URL), the other receivers silent."""
    example = yaml.safe_load((ALERTS_DIR / "alertmanager.example.yml").read_text())
    route = example["route"]
    route.update(group_wait="1s", group_interval="1s", repeat_interval="1m")
    template = next(r for r in route["routes"] if r["receiver"] == "recorder-local-webhook")
    webhook_receiver = next(r for r in example["receivers"] if r["name"] == "recorder-local-webhook")
    routes: list[dict[str, Any]] = []
    receivers: list[dict[str, Any]] = []
    for i, (instance, url) in enumerate(recorders.items()):
        name = f"recorder-{i}-webhook"
        matchers = [m for m in template["matchers"] if not m.startswith("instance=")] + [f'instance="{instance}"']
        routes.append({**template, "receiver": name, "matchers": matchers, "group_wait": "1s", "group_interval": "1s"})
        config = dict(webhook_receiver["webhook_configs"][0])
        config["url"] = f"{url}/api/v1/alertmanager"
        config["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
        receivers.append({"name": name, "webhook_configs": [config]})
    route["routes"] = routes + [r for r in route["routes"] if r is not template]
    # Mail, pager and chat would leave this machine: same names, no integrations.
    receivers += [{"name": r["name"]} for r in example["receivers"] if r["name"] != "recorder-local-webhook"]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": route,
        "inhibit_rules": example["inhibit_rules"],
        "receivers": receivers,
    }


@dataclass(frozen=True)
class DashboardQuery:
    key: str  # "<dashboard file stem>/<panel title>/<refId>" or ".../var <name>" for template variables
    expr: str  # as Prometheus evaluates it: Grafana's variables substituted
    label: str | None = None  # for label_values(): the label that must be present


GRAFANA_SUBSTITUTIONS = (
    # Equality on a multi-value variable becomes a regex match: "All" means every value.
    (re.compile(r'(\w+)="\$(instance|camera)"'), r'\1=~".+"'),
    (re.compile(r'=~"\$(instance|camera|job)"'), '=~".+"'),
    (re.compile(r"\$__rate_interval|\$\{__rate_interval\}"), "1m"),
    (re.compile(r"\$__range|\$\{__range\}"), "1h"),
    (re.compile(r"\$__interval|\$\{__interval\}"), "15s"),
)
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<expr>.+),\s*(?P<label>\w+)\s*\)\s*$")


def grafana_to_promql(expr: str) -> str:
    for pattern, repl in GRAFANA_SUBSTITUTIONS:
        expr = pattern.sub(repl, expr)
    assert "$" not in expr, f"a Grafana variable is left in {expr!r}"
    return expr


def dashboard_queries() -> list[DashboardQuery]:
    """Every panel target (nested panels too) and every query variable of the bundled dashboards."""
    out: list[DashboardQuery] = []

    def walk(stem: str, panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    key = f"{stem}/{panel.get('title')}/{target.get('refId')}"
                    out.append(DashboardQuery(key, grafana_to_promql(target["expr"])))
            walk(stem, panel.get("panels") or [])

    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        walk(path.stem, dashboard.get("panels") or [])
        for var in (dashboard.get("templating") or {}).get("list") or []:
            if var.get("type") != "query":
                continue
            query = var.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(text or "")
            assert match, f"{path.name}: variable {var.get('name')}: unsupported query {text!r}"
            out.append(
                DashboardQuery(f"{path.stem}/var {var['name']}", grafana_to_promql(match["expr"]), match["label"])
            )
    return out


# -- the recordings filesystem ---------------------------------------------------------------------------


def tmpfs(path: Path, size: str) -> contextlib.AbstractContextManager[Path]:
    """The recordings' filesystem: mode 0755, not tmpfs's 1777, as a real disk's folder would be."""
    return mounted_tmpfs(path, size, options="mode=0755")


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def used_ratio(path: Path) -> float:
    """What the recorder calls the used ratio: 1 - f_bavail / f_blocks."""
    st = os.statvfs(path)
    return 1.0 - st.f_bavail / st.f_blocks


def prom_labels(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def window(since: float) -> str:
    """A range selector duration reaching back to `since` (Unix time)."""
    return f"{max(1, math.ceil(time.time() - since) + 1)}s"


# -- pushing alerts and webhook receivers (the recorder's webhook tests) ---------------------------------------


def push_alerts(alertmanager: Alertmanager, alerts: Sequence[Mapping[str, str]]) -> None:
    """Fire alerts with these label sets straight into Alertmanager (its v2 API), as Prometheus would."""
    body = json.dumps([{"labels": dict(labels), "annotations": {}} for labels in alerts]).encode()
    status, text = http(
        f"{alertmanager.url}/api/v2/alerts", method="POST", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 200, f"{status}: {text}"


def recorder_webhook_receiver(
    name: str,
    url: str,
    *,
    auth: Mapping[str, Any],
    ca_file: Path | None = None,
    client: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """A receiver sending to the recorder's webhook at `url` with `auth`, an http_config `authorization` or
    `basic_auth` block (Alertmanager takes one of them), over TLS verified with `ca_file`, optionally
    presenting the client certificate and key `client`."""
    http_config: dict[str, Any] = dict(auth)
    if ca_file is not None:
        tls: dict[str, Any] = {"ca_file": str(ca_file)}
        if client is not None:
            tls.update(cert_file=str(client[0]), key_file=str(client[1]))
        http_config["tls_config"] = tls
    webhook = {"url": f"{url}/api/v1/alertmanager", "send_resolved": False, "http_config": http_config}
    return {"name": name, "webhook_configs": [webhook]}
