"""Checks the monitoring and deployment bundle: alerts/, grafana/ and systemd/.

The tools are Debian's prometheus (promtool), prometheus-alertmanager (amtool) and systemd
(systemd-analyze, systemd-sysusers); a missing tool fails the test, it is never skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the console-script pytest does not put the project root on sys.path
    sys.path.insert(0, str(ROOT))

from exporter import metrics  # noqa: E402

ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))
RUNBOOK = ALERTS / "RUNBOOK.md"
AM_CONFIG = ALERTS / "alertmanager.example.yml"
PROM_CONFIG = ALERTS / "prometheus.example.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "camera-recorder.service"

RUNBOOK_BASE = "https://github.com/camera-recorder/camera-recorder/blob/main/alerts/RUNBOOK.md#"
SEVERITIES = {"critical", "warning", "info"}
JOB = "camera-recorder"
TOOL_PACKAGES = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
}


def run(tool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a bundle tool, failing (not skipping) when it is not installed."""
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: apt-get install {TOOL_PACKAGES[tool]}"
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules() -> list[dict]:
    """Every rule of every rules file, each with its file under `_file` and its group under `_group`."""
    out = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                out.append({**rule, "_file": path.name, "_group": group["name"]})
    return out


def alert_rules() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def recording_rule_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def walk_panels(panels: list[dict]):
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable of every dashboard."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text(encoding="utf-8"))
        for panel in walk_panels(dash["panels"]):
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']}", target["expr"]))
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                out.append((f"{path.name}: ${var['name']}", query))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    return [(f"{r['_file']}: {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str | None) -> float:
    """A Prometheus duration such as 1h30m in seconds; None or '' is 0."""
    if not duration:
        return 0.0
    parts = _DURATION.findall(str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"bad duration {duration!r}"
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --- the metric contract ---------------------------------------------------------------------------


def exposed_names() -> dict[str, metrics.Family]:
    """Every sample name the exporter can expose, mapped to its family."""
    names: dict[str, metrics.Family] = {}
    for fam in metrics.ALL_FAMILIES:
        if fam.type == "counter":
            suffixes = ("_total", "_created")
        elif fam.type == "histogram":
            suffixes = ("_bucket", "_sum", "_count", "_created")
        elif fam.type == "info":
            suffixes = ("_info",)
        else:
            suffixes = ("",)
        for suffix in suffixes:
            names[fam.name + suffix] = fam
    return names


def closed_label_values() -> dict[tuple[str, str], tuple[str, ...]]:
    """(family name, label) -> the only values that label takes."""
    by_family = {
        "camera_state": {"state": metrics.CAMERA_STATES},
        "ffmpeg_restarts": {"reason": metrics.RESTART_REASONS},
        "segments_discarded": {"reason": metrics.DISCARD_REASONS},
        "retention_deleted_files": {"reason": metrics.DELETION_REASONS},
        "retention_deleted_bytes": {"reason": metrics.DELETION_REASONS},
        "retention_runs": {"trigger": metrics.RETENTION_TRIGGERS},
        "hotplug_events": {"action": metrics.HOTPLUG_ACTIONS, "matched": ("true", "false")},
        "alert_webhook_requests": {"result": metrics.WEBHOOK_RESULTS},
        "scrape_collector_duration_seconds": {"collector": metrics.SUB_COLLECTORS},
        "scrape_collector_success": {"collector": metrics.SUB_COLLECTORS},
        "camera": {"source": metrics.SOURCE_KINDS},
    }
    return {
        (f"{metrics.NAMESPACE}_{fam}", label): values
        for fam, labels in by_family.items()
        for label, values in labels.items()
    }


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_METRIC = re.compile(r"(?<![\w:$])[A-Za-z_:][\w:]*")
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    """Names in a PromQL expression that are ours: camera_recorder_* and recording rules (a colon)."""
    bare = _STRING.sub('""', expr)
    return {n for n in _METRIC.findall(bare) if n.startswith(f"{metrics.NAMESPACE}_") or ":" in n}


def all_exprs() -> list[tuple[str, str]]:
    return rule_exprs() + dashboard_exprs()


def expr_params() -> list:
    return [pytest.param(where, expr, id=where) for where, expr in all_exprs()]


@pytest.mark.parametrize(("where", "expr"), expr_params())
def test_expr_uses_only_contract_metrics(where: str, expr: str) -> None:
    known = exposed_names()
    records = recording_rule_names()
    unknown = {n for n in metric_names(expr) if n not in known and n not in records}
    assert not unknown, f"{where}: not in exporter.metrics.ALL_FAMILIES nor a recording rule: {unknown}"


@pytest.mark.parametrize(("where", "expr"), expr_params())
def test_expr_selectors_use_the_family_labels_and_values(where: str, expr: str) -> None:
    known = exposed_names()
    closed = closed_label_values()
    for name, matchers in _SELECTOR.findall(expr):
        fam = known.get(name)
        if fam is None:
            continue
        allowed = {*fam.labels, "instance", "job"} | ({"le"} if name.endswith("_bucket") else set())
        for label, op, value in _MATCHER.findall(matchers):
            assert label in allowed, f"{where}: {name} has no label {label!r} (it has {sorted(allowed)})"
            values = closed.get((fam.name, label))
            if values is None or "$" in value:
                continue
            if op in ("=", "!="):
                assert value in values, f"{where}: {name}{{{label}={value!r}}}: not one of {values}"
            elif re.fullmatch(r"[\w|]+", value):
                for alternative in value.split("|"):
                    assert alternative in values, f"{where}: {name} {label}=~{value!r}: {alternative!r}"


def test_every_recording_rule_is_used_by_an_alert_or_a_dashboard() -> None:
    users = [expr for where, expr in all_exprs()]
    for name in recording_rule_names():
        assert re.fullmatch(r"[a-z_]+:camera_recorder_[a-z_]+:[a-z0-9_]+", name), f"{name}: level:metric:ops"
        assert any(name in metric_names(expr) for expr in users), f"recording rule {name} is used nowhere"


def test_job_matchers_name_the_example_scrape_job() -> None:
    jobs = {c["job_name"] for c in load_yaml(PROM_CONFIG)["scrape_configs"]}
    assert JOB in jobs
    for where, expr in all_exprs():
        for job in re.findall(r'job\s*=\s*"([^"]*)"', expr):
            assert job in jobs, f"{where}: job {job!r} is not scraped by {PROM_CONFIG.name}"


# --- alert rules -------------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no alerts/*.rules.yml"
    result = run("promtool", "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    assert TEST_FILES, "no alerts/tests/*.yml"
    result = run("promtool", "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_names_are_unique_and_follow_the_convention() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for name in names:
        assert re.fullmatch(r"CameraRecorder[A-Z][A-Za-z0-9]+", name), name


def test_rules_files_start_with_their_knobs() -> None:
    for path in RULE_FILES:
        head = path.read_text(encoding="utf-8").split("groups:", 1)[0]
        assert "# Knobs" in head, f"{path.name}: thresholds must be listed as knobs at the top"
        for rule in (r for group in load_yaml(path)["groups"] for r in group["rules"]):
            if "alert" in rule:
                short = rule["alert"].removeprefix("CameraRecorder")
                assert short in head, f"{path.name}: no knob names {rule['alert']}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_labels_and_annotations(rule: dict) -> None:
    name = rule["alert"]
    labels = rule.get("labels", {})
    ann = rule.get("annotations", {})
    assert labels.get("severity") in SEVERITIES, f"{name}: severity"
    assert set(ann) >= {"summary", "description", "runbook_url", "dashboard_url"}, f"{name}: annotations"
    assert "{{" not in ann["summary"], f"{name}: summary must be a constant sentence"
    description = ann["description"]
    if not rule["expr"].lstrip().startswith("absent("):
        assert "$labels.instance" in description, f"{name}: description must name the instance"
    if rule["_group"] == "camera-recorder-camera":
        assert "$labels.camera" in description, f"{name}: description must name the camera"
    if rule["_group"] == "camera-recorder-storage":
        assert "$labels.path" in description, f"{name}: description must name the path"
    assert ann["runbook_url"] == RUNBOOK_BASE + name.lower(), f"{name}: runbook_url"
    uids = {p.stem for p in DASHBOARDS}
    match = re.search(r"/d/([\w-]+)", ann["dashboard_url"])
    assert match and match.group(1) in uids, f"{name}: dashboard_url must open one of {uids}"


def test_disk_threshold_alert_asks_the_recorder_to_free_space() -> None:
    actions = {r["alert"]: r["labels"].get("retention_action") for r in alert_rules()}
    assert actions["CameraRecorderDiskAboveRetentionThreshold"] == "free_space"


def test_runbook_has_a_section_per_alert_and_none_stale() -> None:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE)
    anchors = {github_anchor(h) for h in headings}
    alerts = {r["alert"] for r in alert_rules()}
    for name in alerts:
        assert name.lower() in anchors, f"RUNBOOK.md has no section {name}"
    stale = {h for h in headings if h.startswith("CameraRecorder") and h not in alerts}
    assert not stale, f"RUNBOOK.md sections for alerts that no longer exist: {stale}"
    for link in re.findall(r"\]\(#([\w-]+)\)", RUNBOOK.read_text(encoding="utf-8")):
        assert link in anchors, f"RUNBOOK.md links to a missing section #{link}"


def alert_cases() -> list[dict]:
    """Every alert_rule_test case: alertname, eval time, firing or not, and its test group."""
    cases = []
    for path in TEST_FILES:
        for index, group in enumerate(load_yaml(path)["tests"]):
            for case in group.get("alert_rule_test", []):
                cases.append(
                    {
                        "alertname": case["alertname"],
                        "at": seconds(case["eval_time"]),
                        "fires": bool(case.get("exp_alerts")),
                        "group": (path.name, index),
                    }
                )
    return cases


def test_alert_tests_name_existing_alerts() -> None:
    # promtool accepts any alertname: a typo would test nothing.
    alerts = {r["alert"] for r in alert_rules()}
    for case in alert_cases():
        assert case["alertname"] in alerts, f"{case['group']}: no alert {case['alertname']}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_firing_pending_and_silent_cases(rule: dict) -> None:
    name = rule["alert"]
    cases = [c for c in alert_cases() if c["alertname"] == name]
    firing = [c for c in cases if c["fires"]]
    assert firing, f"{name}: no test case where it fires"
    # Before `for:` has passed: silent earlier in a group where it later fires.
    pending = [
        c for c in cases if not c["fires"] and any(f["group"] == c["group"] and f["at"] > c["at"] for f in firing)
    ]
    assert pending, f"{name}: no silent case before `for: {rule.get('for')}` has passed"
    # Must not fire: in a group where it never fires, or after it resolved.
    silent = [
        c
        for c in cases
        if not c["fires"]
        and c["at"] >= seconds(rule.get("for"))
        and all(f["group"] != c["group"] or f["at"] < c["at"] for f in firing)
    ]
    assert silent, f"{name}: no case where it must stay silent"


# --- Alertmanager and Prometheus examples -------------------------------------------------------------


def test_amtool_check_config() -> None:
    result = run("amtool", "check-config", AM_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=CameraRecorderCameraNotRecording"], "pager"),
        (["severity=warning", "alertname=CameraRecorderDiskLowSpace"], "team"),
        (["severity=info"], "null"),
        (
            ["severity=warning", "retention_action=free_space", "instance=recorder.local:9100"],
            "recorder-local-webhook,team",
        ),
    ],
)
def test_alertmanager_routes(labels: list[str], receivers: str) -> None:
    result = run("amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_alertmanager_webhook_receiver() -> None:
    config = load_yaml(AM_CONFIG)
    route = next(r for r in config["route"]["routes"] if 'retention_action=~".+"' in r.get("matchers", []))
    assert route["continue"] is True
    receiver = next(r for r in config["receivers"] if r["name"] == route["receiver"])
    hook = receiver["webhook_configs"][0]
    assert hook["url"].endswith(":9100/api/v1/alertmanager")
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/camera-recorder/webhook-token",
    }


def test_promtool_check_config() -> None:
    result = run("promtool", "check", "config", PROM_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_example_loads_every_rules_file() -> None:
    assert sorted(load_yaml(PROM_CONFIG)["rule_files"]) == sorted(p.name for p in RULE_FILES)


# --- Grafana -------------------------------------------------------------------------------------------

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".+",
    "$instance": ".+",
    "$camera": ".+",
}


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: wrap each dashboard query in a recording rule.
    records = []
    for index, (where, expr) in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unknown Grafana variable in {expr}"
        if expr.startswith("label_values("):
            expr = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr).group(1)
        records.append({"record": f"dashboard_expr_{index}", "expr": expr})
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}), encoding="utf-8")
    result = run("promtool", "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} >= {"camera-recorder-fleet", "camera-recorder-camera"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard(path: Path) -> None:
    dash = json.loads(path.read_text(encoding="utf-8"))
    assert dash["uid"] == path.stem
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for name in ("instance", "camera"):
        var = variables[name]
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert var["type"] == "query" and query.startswith("label_values("), name
        assert query.rstrip().endswith(f", {name})"), f"{name}: label_values(..., {name})"
        assert var["datasource"]["uid"] == "${datasource}"
    ids = set()
    for panel in walk_panels(dash["panels"]):
        title = panel.get("title")
        assert panel["id"] not in ids, f"{path.name}: duplicate panel id {panel['id']}"
        ids.add(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"{path.name}: {title}: description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{path.name}: {title}: unit"
        assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {title}: datasource"
        assert panel["targets"], f"{path.name}: {title}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", f"{path.name}: {title}: target datasource"
            assert target["expr"].strip(), f"{path.name}: {title}: empty expr"


def test_grafana_provisioning() -> None:
    datasources = load_yaml(ROOT / "grafana/provisioning/datasources/prometheus.yml")
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    # A second default data source stops Grafana from starting; the dashboards choose theirs anyway.
    assert not any("isDefault" in d for d in datasources["datasources"])
    providers = load_yaml(ROOT / "grafana/provisioning/dashboards/camera-recorder.yml")["providers"]
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/camera-recorder"


# --- systemd -------------------------------------------------------------------------------------------

REAL_BINARY = "/opt/camera-recorder/venv/bin/camera-recorder"


def unit_directives(text: str) -> list[tuple[str, str, str, str]]:
    """(section, key, value, comment line just above or '') for each directive of a unit file."""
    out, section, previous = [], "", ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]")
        elif stripped and not stripped.startswith(("#", ";")):
            key, _, value = stripped.partition("=")
            out.append((section, key, value, previous))
        previous = stripped if stripped.startswith("#") else ""
    return out


def test_systemd_unit_directives() -> None:
    directives = unit_directives(UNIT.read_text(encoding="utf-8"))
    service = {}
    for section, key, value, _ in directives:
        if section == "Service":
            service.setdefault(key, []).append(value)
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "WatchdogSec": ["30"],
        "Restart": ["always"],
        "RestartSec": ["2"],
        "KillSignal": ["SIGTERM"],
        "KillMode": ["mixed"],
        "TimeoutStopSec": ["30"],
        "User": ["camera-recorder"],
        "Group": ["camera-recorder"],
        "SupplementaryGroups": ["video render"],
        "EnvironmentFile": ["-/etc/default/camera-recorder"],
        "DevicePolicy": ["closed"],
        "DeviceAllow": ["char-video4linux rw", "char-drm rw"],
        "ReadWritePaths": ["/storage/recordings"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
        "StateDirectory": ["camera-recorder"],
        "RuntimeDirectory": ["camera-recorder"],
        "ExecStart": [f"{REAL_BINARY} --config /etc/camera-recorder/config.yaml $CAMERA_RECORDER_ARGS"],
    }
    for key, values in expected.items():
        assert service.get(key) == values, f"{key}={service.get(key)}"
    assert "PrivateDevices" not in service, "PrivateDevices= hides the cameras"


HARDENING = (
    "ProtectSystem",
    "ReadWritePaths",
    "ProtectHome",
    "PrivateTmp",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "DevicePolicy",
    "DeviceAllow",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "SystemCallArchitectures",
)


def test_systemd_hardening_each_has_its_reason() -> None:
    for _section, key, value, comment in unit_directives(UNIT.read_text(encoding="utf-8")):
        if key in HARDENING:
            assert comment, f"{key}={value} needs a comment line above it saying why"


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart's binary, which is not installed here, replaced by /bin/true."""
    original = UNIT.read_text(encoding="utf-8")
    rewritten = original.replace(f"ExecStart={REAL_BINARY} ", "ExecStart=/bin/true ")
    changed = [(a, b) for a, b in zip(original.splitlines(), rewritten.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith("ExecStart="), "only ExecStart may be rewritten"
    path = tmp_path / UNIT.name
    path.write_text(rewritten, encoding="utf-8")
    return path


def test_systemd_analyze_verify(verifiable_unit: Path) -> None:
    result = run("systemd-analyze", "verify", "--man=no", verifiable_unit)
    assert result.returncode == 0, result.stdout + result.stderr
    # Unknown keys and unparsable values are only warnings with exit code 0.
    ours = [line for line in result.stderr.splitlines() if UNIT.name in line or UNIT.stem in line]
    assert not ours, "\n".join(ours)


def test_systemd_analyze_security(verifiable_unit: Path) -> None:
    # 1.6 ("OK", 16 on the threshold's 0-100 scale) since the system call filter; the issue asks <= 2.0.
    result = run("systemd-analyze", "security", "--offline=true", "--threshold=20", verifiable_unit)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_sysusers_creates_the_user_in_video_and_render(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    conf = SYSTEMD / "camera-recorder.sysusers.conf"
    result = run("systemd-sysusers", "--dry-run", f"--root={tmp_path}", conf)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Creating user 'camera-recorder'" in output, output
    lines = [line.split() for line in conf.read_text(encoding="utf-8").splitlines() if line[:1] == "m"]
    assert sorted(group for _, _, group in lines) == ["render", "video"]


def test_environment_file_example_defines_the_args_variable() -> None:
    text = (SYSTEMD / "camera-recorder.default").read_text(encoding="utf-8")
    assert re.search(r"^CAMERA_RECORDER_ARGS=", text, re.MULTILINE)
