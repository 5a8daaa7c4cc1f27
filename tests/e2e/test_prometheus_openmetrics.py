"""A real Prometheus scraping the real exporter negotiates OpenMetrics, gzipped, and reads it whole: the
form every production scrape takes, which no other test's client (curl-like, no Accept) asks for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import small_config, wait_for
from e2e_servers import JOB, Prometheus

from exporter import metrics as m
from exporter.server import ExporterServer
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExporterServer]:
    cameras = {cam: {"test_pattern": True} for cam in ("cam1", "cam2")}
    config = small_config(tmp_path / "rec", cameras, exporter={"listen_address": "127.0.0.1:0"})
    served = ExporterServer(config.exporter, Recorder(config, find_tools(config.system)))
    served.start()
    try:
        yield served
    finally:
        served.stop()


def test_prometheus_scrapes_openmetrics_gzipped(server: ExporterServer, tmp_path: Path) -> None:
    prometheus = Prometheus(tmp_path / "prometheus", [], alertmanager="127.0.0.1:9")
    try:
        prometheus.set_targets([server.address])
        wait_for(lambda: sum(server.scrapes.values()) >= 2, what="two scrapes")
        assert set(server.scrapes) == {("application/openmetrics-text", True)}, server.scrapes
        # Read whole: the info family (OpenMetrics' own type) and a histogram arrive as series.
        info = prometheus.query(f'{m.CAMERA_INFO.name}_info{{job="{JOB}"}}')
        assert {s.labels["camera"] for s in info} == {"cam1", "cam2"}
        buckets = prometheus.query(f'{m.SEGMENT_DURATION.name}_bucket{{job="{JOB}",camera="cam1",le="+Inf"}}')
        assert len(buckets) == 1
        scraped = prometheus.query(f'scrape_samples_scraped{{job="{JOB}"}}')
        assert scraped and scraped[0].value > 100
    finally:
        assert prometheus.stop() == 0
