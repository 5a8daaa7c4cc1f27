"""The Prometheus text format (0.0.4), written for speed: the scrape-latency target is a p99 of 5 ms.

prometheus_client's generate_latest spends most of a scrape re-validating and re-escaping every label
and metric name of ~1,000 samples; ours are valid by construction (exporter/metrics.py, and the
library's own process/platform collectors), so only label values, the one part from configuration,
are escaped here. The output is the same as generate_latest's; tests run promtool on it, and
OpenMetrics is still the library's.

The recorder's own families are CompactFamily: rows of label values against the family's fixed label
names, written out through line prefixes (`name{labels} `) escaped and sorted once and kept across
scrapes, and not written at all when they did not change since the last scrape (KeptText). Building the
library's Sample objects (a dict of labels each) and formatting them again cost most of a scrape; a
CompactFamily builds them only when something other than render_text asks (the OpenMetrics encoder,
get_sample_value in tests).
"""

from __future__ import annotations

from array import array
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


class KeptText:
    """What a collector's families keep between scrapes, so that a scrape writes only what changed: each
    sample's line prefix `name{label="value",...} ` (escaped and sorted as _line does) and each family's
    last text with what it was written from. Families whose samples did not change since the last scrape
    (most counters, the one-hot states, the histograms between segments) cost a comparison."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], str]] = {}
        self._families: dict[str, tuple[tuple[object, ...], str]] = {}

    def prefixes(self, sample_name: str, label_names: tuple[str, ...]) -> dict[tuple[str, ...], str]:
        """The prefixes of one sample name, by label values; fill it with `prefix`."""
        key = (sample_name, label_names)
        found = self._prefixes.get(key)
        if found is None or len(found) > PREFIXES_KEPT:
            found = self._prefixes[key] = {}
        return found

    def family_text(self, name: str, signature: tuple[object, ...]) -> str | None:
        kept = self._families.get(name)
        return kept[1] if kept is not None and kept[0] == signature else None

    def keep_family_text(self, name: str, signature: tuple[object, ...], text: str) -> None:
        # One assignment: a render in another thread (OpenMetrics and text at once) sees old or new, whole.
        self._families[name] = (signature, text)


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


class CompactFamily(Metric):
    """A gauge, counter, histogram or info family of the recorder's, kept as rows until written.

    `samples` is the library's view (built on first use, exactly what its *MetricFamily classes
    make); `text()` is this family in the text format, the same as render_text makes of `samples`.
    """

    def __init__(self, name: str, documentation: str, type_: str, label_names: tuple[str, ...], kept: KeptText) -> None:
        # Not Metric.__init__: it would assign `samples`, which is computed here.
        self.name = name
        self.documentation = documentation
        self.unit = ""
        self.type = type_
        self.label_names = label_names
        self._kept = kept
        # One entry per row: its label values, and its value (a histogram's: its sum).
        self._labels: list[tuple[str, ...]] = []
        self._values: list[float] = []
        # Histograms only, per row: the buckets' upper bounds as text (+Inf last) and cumulative counts.
        self._bounds: list[tuple[str, ...]] = []
        self._counts: list[Sequence[float]] = []
        self._samples: list[Sample] = []  # the library's view of the first `_samples_of` rows
        self._samples_of = 0

    def add(self, label_values: tuple[str, ...], value: float) -> None:
        """A gauge's or counter's sample; for an info family, `value` is ignored (always 1)."""
        self._labels.append(label_values)
        self._values.append(value)

    def extend(self, label_values: Sequence[tuple[str, ...]], values: Sequence[float]) -> None:
        """Several samples at once (a camera's over a closed set of reasons): one call, not one per sample."""
        if len(label_values) != len(values):
            raise ValueError(f"{self.name}: {len(label_values)} label values for {len(values)} values")
        self._labels.extend(label_values)
        self._values.extend(values)

    def add_histogram(
        self, label_values: tuple[str, ...], bounds: tuple[str, ...], counts: Sequence[float], total: float
    ) -> None:
        if len(bounds) != len(counts):
            raise ValueError(f"{self.name}: {len(bounds)} bucket bounds for {len(counts)} counts")
        self._bounds.append(bounds)
        self._counts.append(counts)
        self.add(label_values, total)

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        if self._samples_of != len(self._labels):  # built again only after rows were added
            self._samples, self._samples_of = self._library_family().samples, len(self._labels)
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        raise AttributeError("a CompactFamily's samples come from its rows")

    def _library_family(self) -> Metric:
        names = list(self.label_names)
        if self.type == "histogram":
            hist = HistogramMetricFamily(self.name, self.documentation, labels=names)
            rows = zip(self._labels, self._bounds, self._counts, self._values, strict=True)
            for values, bounds, counts, total in rows:
                hist.add_metric(list(values), list(zip(bounds, counts, strict=True)), sum_value=total)
            return hist
        if self.type == "info":
            info = InfoMetricFamily(self.name, self.documentation, labels=[])
            for values in self._labels:
                info.add_metric([], dict(zip(self.label_names, values, strict=False)))
            return info
        family_class = CounterMetricFamily if self.type == "counter" else GaugeMetricFamily
        family = family_class(self.name, self.documentation, labels=names)
        for values, value in zip(self._labels, self._values, strict=True):
            family.add_metric(list(values), value)
        return family

    def text(self) -> str:
        """This family in the text format: the last scrape's text when nothing in it changed."""
        signature = self._signature()
        if signature is not None:
            kept = self._kept.family_text(self.name, signature)
            if kept is not None:
                return kept
        text = self._write()
        if signature is not None:
            self._kept.keep_family_text(self.name, signature, text)
        return text

    def _signature(self) -> tuple[object, ...] | None:
        """Everything the text is written from. Numbers are compared as their doubles' bytes: 0.0 and
        -0.0 are equal as floats but not in text. None (not kept) for values that are not numbers."""
        try:
            numbers = array("d", self._values)
            for counts in self._counts:
                numbers.extend(counts)
        except (TypeError, OverflowError):
            return None
        # The numbers first: they are what changes between scrapes, so a changed family fails fast.
        return (numbers.tobytes(), self._labels, self._bounds, self.type, self.documentation, self.label_names)

    def _write(self) -> str:
        main = self.name + _MAIN_SUFFIX.get(self.type, "")
        out = [_header(main, self.documentation, _TYPE_IN_TEXT[self.type])]
        if self.type == "histogram":
            self._histogram_lines(out)
        else:
            values = self._values if self.type != "info" else [1.0] * len(self._labels)  # as InfoMetricFamily
            known = self._kept.prefixes(main, self.label_names)
            _lines(out, main, self.label_names, known, zip(self._labels, values, strict=True))
        return "".join(out)

    def _histogram_lines(self, out: list[str]) -> None:
        names = self.label_names
        bucket_names = (*names, "le")
        bucket_known = self._kept.prefixes(self.name + "_bucket", bucket_names)
        count_known = self._kept.prefixes(self.name + "_count", names)
        sum_known = self._kept.prefixes(self.name + "_sum", names)
        for values, bounds, counts, total in zip(self._labels, self._bounds, self._counts, self._values, strict=True):
            bucket_rows = (((*values, le), n) for le, n in zip(bounds, counts, strict=True))
            _lines(out, self.name + "_bucket", bucket_names, bucket_known, bucket_rows)
            # As HistogramMetricFamily: no count and sum when a bucket bound is negative.
            if float(bounds[0]) >= 0 and total is not None:
                _lines(out, self.name + "_count", names, count_known, ((values, counts[-1]),))
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
