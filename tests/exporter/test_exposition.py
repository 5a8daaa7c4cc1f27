"""Our fast text exposition says exactly what prometheus_client's generate_latest says."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, StateSetMetricFamily
from prometheus_client.utils import floatToGoString

from exporter.exposition import go_float, render_text


class _Families:
    """Families of every kind the recorder's collector yields, with label values that need escaping."""

    def collect(self):  # type: ignore[no-untyped-def]
        gauge = GaugeMetricFamily("t_gauge", "A gauge\nwith a newline and a \\ backslash.", labels=["camera", "name"])
        gauge.add_metric(["cam1", 'Door "north"\\gate\nB'], 1.5)
        gauge.add_metric(["cam2", ""], float("nan"))
        yield gauge
        counter = CounterMetricFamily("t_events", "Events.", labels=["reason"])
        counter.add_metric(["crashed"], 3)
        yield counter
        created = CounterMetricFamily("t_created", "With a created sample.", labels=["x"])
        created.add_metric(["y"], 1, created=1700000000.5)
        yield created
        info = InfoMetricFamily("t_build", "Build.")
        info.add_metric([], {"version": "1.0", "python_version": "3.11"})
        yield info
        stateset = StateSetMetricFamily("t_state", "State.", labels=["camera"])
        stateset.add_metric(["cam1"], {"recording": True, "stalled": False})
        yield stateset
        yield GaugeMetricFamily("t_empty", "A family without samples.")


def test_render_text_equals_generate_latest() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())  # type: ignore[arg-type]
    Counter("t_requests", "Requests.", ["code"], registry=registry).labels("200").inc(7)
    Gauge("t_inf", "Infinity.", registry=registry).set(float("inf"))
    Histogram("t_seconds", "Durations.", buckets=(0.1, 1.0), registry=registry).observe(0.5)
    Info("t_info", "Info.", registry=registry).info({"a": "b"})
    assert render_text(registry) == generate_latest(registry)


@pytest.mark.parametrize(
    "value",
    [0, 0.0, -0.0, 1, True, 0.5, -2.25, 1e-05, 123456.0, 1234567.0, 12345678.0, -12345678.0, 1e22, 2**60,
     1_700_000_123.456, float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308],
)  # fmt: skip
def test_go_float_is_the_librarys_text(value: float) -> None:
    assert go_float(value) == floatToGoString(value)
