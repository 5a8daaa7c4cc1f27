"""The Prometheus text format (0.0.4), written for speed: the scrape-latency target is a p99 of 5 ms.

prometheus_client's generate_latest spends most of a scrape re-validating and re-escaping every label
and metric name of ~1,000 samples; ours are valid by construction (exporter/metrics.py, and the
library's own process/platform collectors), so only label values, the one part from configuration,
are escaped here. The output is the same as generate_latest's; tests run promtool on it, and
OpenMetrics is still the library's.

The recorder's own families are CompactFamily: rows of label values against the family's fixed label
names, written out through line prefixes (`name{labels} `) escaped and sorted once and kept across
scrapes. Building the library's Sample objects (a dict of labels each) and formatting them again cost
most of a scrape; a CompactFamily builds them only when something other than render_text asks (the
OpenMetrics encoder, get_sample_value in tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# OpenMetrics-only samples that the text format shows as gauges of their own, after the family.
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPE_IN_TEXT = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary",
                 "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}  # fmt: skip
# What the main sample's name adds to the family's, in the text format (and in the header's name).
_MAIN_SUFFIX = {"counter": "_total", "info": "_info"}
# floatToGoString's words for the values whose repr is not a number.
_NON_FINITE = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}
# Line prefixes kept per sample name before the cache starts over: far more than any configuration has
# (labels come from the cameras and closed sets); only reload after reload renaming cameras gets there.
PREFIXES_KEPT = 4096


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


def go_float(value: float) -> str:
    """floatToGoString's text for every value, without its checks for the short reprs most values have:
    a repr of at most 7 characters has its dot (if any) within the first 7, so needs no exponent."""
    text = repr(float(value))
    if len(text) < 8:
        return _NON_FINITE.get(text, text)
    return floatToGoString(value)


class LinePrefixes:
    """`name{label="value",...} ` per sample name and label values, escaped and sorted as _line does,
    kept across scrapes (the collector owns one)."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], str]] = {}

    def of(self, sample_name: str, label_names: tuple[str, ...]) -> dict[tuple[str, ...], str]:
        """The prefixes of one sample name, by label values; fill it with `prefix`."""
        key = (sample_name, label_names)
        found = self._by_name.get(key)
        if found is None or len(found) > PREFIXES_KEPT:
            found = self._by_name[key] = {}
        return found


def prefix(sample_name: str, label_names: tuple[str, ...], label_values: tuple[str, ...]) -> str:
    if not label_names:
        return f"{sample_name} "
    # Unequal lengths are cut short, as the library's dict(zip(names, values)) does.
    pairs = sorted(zip(label_names, label_values, strict=False))
    labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in pairs)
    return f"{sample_name}{{{labels}}} "


def _lines(
    out: list[str],
    sample_name: str,
    label_names: tuple[str, ...],
    known: dict[tuple[str, ...], str],
    rows: Iterable[tuple[tuple[str, ...], float]],
) -> None:
    for values, value in rows:
        start = known.get(values)
        if start is None:
            start = known[values] = prefix(sample_name, label_names, values)
        out.append(f"{start}{go_float(value)}\n")


# A histogram row's value: its buckets (upper bound as text, cumulative count) and its sum.
HistogramValue = tuple[Sequence[tuple[str, float]], float]


class CompactFamily(Metric):
    """A gauge, counter, histogram or info family of the recorder's, kept as rows until written.

    `samples` is the library's view (built on first use, exactly what its *MetricFamily classes
    make); `text()` is this family in the text format, the same as render_text makes of `samples`.
    """

    def __init__(
        self, name: str, documentation: str, type_: str, label_names: tuple[str, ...], prefixes: LinePrefixes
    ) -> None:
        # Not Metric.__init__: it would assign `samples`, which is computed here.
        self.name = name
        self.documentation = documentation
        self.unit = ""
        self.type = type_
        self.label_names = label_names
        self._prefixes = prefixes
        self._rows: list[tuple[tuple[str, ...], float | HistogramValue]] = []
        self._samples: list[Sample] | None = None

    def add(self, label_values: tuple[str, ...], value: float) -> None:
        """A gauge's or counter's sample; for an info family, `value` is ignored (always 1)."""
        self._rows.append((label_values, value))
        self._samples = None

    def add_histogram(self, label_values: tuple[str, ...], buckets: Sequence[tuple[str, float]], total: float) -> None:
        self._rows.append((label_values, (buckets, total)))
        self._samples = None

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self._library_family().samples
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        raise AttributeError("a CompactFamily's samples come from its rows")

    def _library_family(self) -> Metric:
        names = list(self.label_names)
        if self.type == "histogram":
            hist = HistogramMetricFamily(self.name, self.documentation, labels=names)
            for values, (buckets, total) in self._rows:  # type: ignore[misc]
                hist.add_metric(list(values), buckets, sum_value=total)
            return hist
        if self.type == "info":
            info = InfoMetricFamily(self.name, self.documentation, labels=[])
            for values, _ in self._rows:
                info.add_metric([], dict(zip(self.label_names, values, strict=False)))
            return info
        family_class = CounterMetricFamily if self.type == "counter" else GaugeMetricFamily
        family = family_class(self.name, self.documentation, labels=names)
        for values, value in self._rows:
            family.add_metric(list(values), value)  # type: ignore[arg-type]
        return family

    def text(self) -> str:
        main = self.name + _MAIN_SUFFIX.get(self.type, "")
        out = [_header(main, self.documentation, _TYPE_IN_TEXT[self.type])]
        if self.type == "histogram":
            self._histogram_lines(out)
        else:
            rows = self._rows
            if self.type == "info":
                rows = [(values, 1.0) for values, _ in rows]
            _lines(out, main, self.label_names, self._prefixes.of(main, self.label_names), rows)  # type: ignore[arg-type]
        return "".join(out)

    def _histogram_lines(self, out: list[str]) -> None:
        names = self.label_names
        bucket_names = (*names, "le")
        bucket_known = self._prefixes.of(self.name + "_bucket", bucket_names)
        count_known = self._prefixes.of(self.name + "_count", names)
        sum_known = self._prefixes.of(self.name + "_sum", names)
        for values, (buckets, total) in self._rows:  # type: ignore[misc]
            _lines(out, self.name + "_bucket", bucket_names, bucket_known, (((*values, le), n) for le, n in buckets))
            # As HistogramMetricFamily: no count and sum when a bucket bound is negative.
            if float(buckets[0][0]) >= 0 and total is not None:
                _lines(out, self.name + "_count", names, count_known, ((values, buckets[-1][1]),))
                _lines(out, self.name + "_sum", names, sum_known, ((values, total),))


def render_text(collector: Collector | Iterable[Collector]) -> bytes:
    """Every family the collector(s) yield, in the Prometheus text format."""
    collectors = [collector] if hasattr(collector, "collect") else list(collector)  # type: ignore[arg-type]
    out: list[str] = []
    for source in collectors:
        for metric in source.collect():
            if isinstance(metric, CompactFamily):
                out.append(metric.text())
                continue
            name = metric.name + _MAIN_SUFFIX.get(metric.type, "")
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
