"""The dashboards speak the monitoring mixins' dialect, checked on every panel, variable and annotation:

- a `job` variable, and `job=~"$job"` in every selector of every query (several jobs may scrape recorders);
- `$__rate_interval` as the range of every rate(), irate() and increase();
- annotations for FFmpeg restarts and daemon restarts;
- every camera state and restart reason exporter/metrics.py lists, wherever a panel enumerates them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
JOB_MATCHER = 'job=~"$job"'
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_NAME = re.compile(r"(?<![\w:$\"])([A-Za-z_:][\w:]*)(?![\w:])")
_RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase)\s*\(([^()]*)\)")
# Words in PromQL that are not series names.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "time", "vector", "rate", "irate", "increase", "changes", "predict_linear",
    "label_values", "offset", "bool", "histogram_quantile", "le", "job", "instance", "camera", "reason",
}  # fmt: skip
# A state that is not trouble; every other one is coloured as trouble where states get colours.
HEALTHY_STATES = {"recording", "starting"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, query variable but `job` itself, and annotation."""
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query" and var["name"] != "job":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            yield f"variable ${var['name']}", query
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def dashboard_params() -> list[Any]:
    return [pytest.param(path, id=path.name) for path in DASHBOARDS]


def query_params() -> list[Any]:
    return [pytest.param(where, expr, id=f"{path.stem}: {where}") for path in DASHBOARDS
            for where, expr in queries(load(path))]  # fmt: skip


def test_there_are_dashboards_and_queries() -> None:
    assert len(DASHBOARDS) >= 2 and len(query_params()) > 40


@pytest.mark.parametrize("path", dashboard_params())
def test_job_variable(path: Path) -> None:
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    job = variables["job"]
    query = job["query"]["query"] if isinstance(job["query"], dict) else job["query"]
    assert job["type"] == "query" and query == "label_values(camera_recorder_build_info, job)"
    assert job["includeAll"] and job["multi"]
    # "All" must mean the jobs that scrape a recorder (Grafana's alternation of them), not every job.
    assert "allValue" not in job
    assert job["datasource"]["uid"] == "${datasource}"
    order = list(variables)
    assert order.index("datasource") < order.index("job") < order.index("instance"), "job narrows instance"


@pytest.mark.parametrize(("where", "expr"), query_params())
def test_every_selector_matches_the_job_variable(where: str, expr: str) -> None:
    selectors = _SELECTOR.findall(expr)
    assert selectors, f"{where}: no selector in {expr}"
    for name, matchers in selectors:
        assert JOB_MATCHER in matchers, f"{where}: {name}{{{matchers}}} lacks {JOB_MATCHER}"
    # A bare series name would bypass the variable.
    bare = _SELECTOR.sub("", _STRING.sub('""', re.sub(r"\[[^\]]*\]", "", expr)))
    names = {n for n in _NAME.findall(bare) if n not in _PROMQL_WORDS and not re.fullmatch(r"[\d.e]+", n)}
    assert not names, f"{where}: series without a selector: {names}"


@pytest.mark.parametrize(("where", "expr"), query_params())
def test_every_rate_and_increase_uses_rate_interval(where: str, expr: str) -> None:
    for function, argument in _RANGE_FUNCTION.findall(expr):
        ranges = re.findall(r"\[([^\]]*)\]", argument)
        assert ranges == ["$__rate_interval"], f"{where}: {function}({argument}) must range over $__rate_interval"


@pytest.mark.parametrize("path", dashboard_params())
def test_restart_annotations(path: Path) -> None:
    annotations = {a["name"]: a for a in load(path)["annotations"]["list"]}
    ffmpeg = annotations["FFmpeg restarts"]
    daemon = annotations["Daemon restarts"]
    assert "camera_recorder_ffmpeg_restarts_total" in ffmpeg["expr"] and "{{reason}}" in ffmpeg["textFormat"]
    assert "changes(camera_recorder_start_time_seconds" in daemon["expr"]
    for annotation in (ffmpeg, daemon):
        assert annotation["enable"] and annotation["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("path", dashboard_params())
def test_enumerated_states_and_reasons_are_complete(path: Path) -> None:
    """Where a panel lists states or reasons (description, colour overrides), it lists all of them."""
    seen_states = seen_reasons = False
    for panel in panels(load(path)["panels"]):
        description = panel.get("description", "")
        if "waiting_for_device" in description:
            seen_states = True
            missing = [s for s in metrics.CAMERA_STATES if s not in description]
            assert not missing, f"{panel['title']}: description misses states {missing}"
        if "device_busy" in description:
            seen_reasons = True
            missing = [r for r in metrics.RESTART_REASONS if r not in description]
            assert not missing, f"{panel['title']}: description misses restart reasons {missing}"
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            pattern = override["matcher"].get("options", "")
            if override["matcher"]["id"] == "byRegexp" and "waiting_for_device" in pattern:
                trouble = [s for s in metrics.CAMERA_STATES if s not in HEALTHY_STATES]
                missing = [s for s in trouble if not re.fullmatch(pattern, s)]
                assert not missing, f"{panel['title']}: colour override misses {missing}"
    if path.stem.endswith("-camera"):
        assert seen_states and seen_reasons, "the camera dashboard enumerates states and restart reasons"
