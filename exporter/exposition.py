"""The Prometheus text format (0.0.4), written for speed: the scrape-latency target is a p99 of 5 ms.

prometheus_client's generate_latest spends most of a scrape re-validating and re-escaping every label
and metric name of ~1,000 samples; ours are valid by construction (exporter/metrics.py, and the
library's own process/platform collectors), so only label values, the one part from configuration,
are escaped here. The output is the same as generate_latest's; tests run promtool on it, and
OpenMetrics is still the library's.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# OpenMetrics-only samples that the text format shows as gauges of their own, after the family.
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPE_IN_TEXT = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary",
                 "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}  # fmt: skip


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(sample: Sample) -> str:
    if sample.labels:
        labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(sample.labels.items()))
        return f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}\n"
    return f"{sample.name} {floatToGoString(sample.value)}\n"


def _header(name: str, help_text: str, type_: str) -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {type_}\n"


def render_text(collector: Collector | Iterable[Collector]) -> bytes:
    """Every family the collector(s) yield, in the Prometheus text format."""
    collectors = [collector] if hasattr(collector, "collect") else list(collector)  # type: ignore[arg-type]
    out: list[str] = []
    for source in collectors:
        for metric in source.collect():
            name = metric.name + {"counter": "_total", "info": "_info"}.get(metric.type, "")
            out.append(_header(name, metric.documentation, _TYPE_IN_TEXT[metric.type]))
            extra: dict[str, list[str]] = {}
            for sample in metric.samples:
                suffix = sample.name[len(metric.name) :]
                if suffix in _OM_SUFFIXES:
                    extra.setdefault(suffix, []).append(_line(sample))
                else:
                    out.append(_line(sample))
            for suffix, lines in sorted(extra.items()):
                out.append(_header(metric.name + suffix, metric.documentation, "gauge"))
                out.extend(lines)
    return "".join(out).encode("utf-8")
