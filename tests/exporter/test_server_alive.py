"""ExporterServer.alive(): the liveness of its I/O thread's event loop, for /-/healthy and the systemd watchdog."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import small_config, wait_for

from exporter.server import ExporterServer
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the injected failure
def test_alive_while_the_io_thread_runs_and_not_after_it_died(tmp_path: Path) -> None:
    config = small_config(tmp_path, exporter={"listen_address": "127.0.0.1:0"})
    server = ExporterServer(config.exporter, Recorder(config, find_tools(config.system)))
    assert not server.alive()  # not started
    server.start()
    try:
        assert server.alive()

        loop = server.web_server._loop
        assert loop is not None
        loop.call_soon_threadsafe(loop.stop)  # the loop ends with its work undone, as after a bug in it
        wait_for(lambda: not server.alive(), timeout=5, what="the I/O thread to end")
    finally:
        server.stop()
