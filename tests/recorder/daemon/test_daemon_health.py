"""The Recorder in-process: what counts as healthy, the watchdog during a slow reload, making room after ENOSPC,
and what retention must spare, on real filesystems with real FFmpeg."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import segment_file, small_config, wait_for

from recorder.config import Config
from recorder.daemon.recorder import Recorder
from recorder.daemon.sdnotify import Notifier
from recorder.ffmpeg.binary import find_tools
from recorder.footage.segments import CompletedSegment, segment_file_name
from recorder.storage.facade import Storage
from recorder.transcoding.worker import TranscodeWorker

MIB = 1 << 20


def _idle_transcoding() -> dict[str, Any]:
    """Transcoding on, in a window that does not open while the test runs: its thread idles, alive."""
    now = datetime.now()  # the window is local time, like run_schedule_start/end
    start, end = ((now + timedelta(hours=h)).strftime("%H:%M") for h in (2, 3))
    return {
        "enabled": True, "codec": "libx265", "preset": "ultrafast", "quality": 22, "min_age_days": 7,
        "max_cpu_percent": 100, "max_io_wait": 100, "min_free_space_gb": 0,
        "run_schedule_start": start, "run_schedule_end": end,
    }  # fmt: skip


def _recorder(config: Config, **kwargs: Any) -> Recorder:
    return Recorder(config, find_tools(config.system), **kwargs)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    # WatchdogSec=1: a ping is due every half second.
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    try:
        yield sock, env
    finally:
        sock.close()


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.setblocking(True)


# -- liveness checks ------------------------------------------------------------------------------


def test_registered_liveness_checks_and_the_daemons_own_threads_count_as_health(tmp_path: Path) -> None:
    config = small_config(tmp_path / "rec", transcoding=_idle_transcoding())
    recorder = _recorder(config)
    exporter_alive = [True]
    recorder.add_liveness_check("exporter", lambda: exporter_alive[0])
    try:
        recorder.start()
        wait_for(lambda: recorder.snapshot().ready, what="cam1 recording")
        assert recorder.stuck() == () and recorder.snapshot().healthy
        assert recorder.transcoder is not None and recorder.transcoder.alive

        exporter_alive[0] = False
        assert recorder.stuck() == ("exporter",)
        assert recorder.snapshot().stuck == ("exporter",)  # what /-/healthy answers from
        exporter_alive[0] = True

        def broken() -> bool:
            raise RuntimeError("the check itself failed")

        recorder.add_liveness_check("broken", broken)
        assert recorder.stuck() == ("broken",), "a check that raises counts as dead"
        recorder.add_liveness_check("broken", lambda: True)

        recorder.hotplug.stop()  # the monitor thread ends: hot-plug is no longer watched
        assert recorder.stuck() == ("hotplug",)
        recorder.transcoder.request_stop()  # the transcoding thread ends while the daemon keeps it
        wait_for(lambda: recorder.stuck() == ("hotplug", "transcoding"), what="the dead transcoder counted")
    finally:
        assert recorder.stop()


# -- the watchdog during a slow reload -------------------------------------------------------------


def test_a_slow_reload_keeps_feeding_the_watchdog_unless_something_wedges(
    tmp_path: Path, notify_socket: tuple[socket.socket, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reload runs in the loop that feeds the watchdog: a rescan of a big index longer than WatchdogSec
    must not get the daemon restarted; a loop that is dead meanwhile still stops the pings."""
    sock, env = notify_socket
    base = tmp_path / "rec"
    configs = [small_config(base, storage={"check_interval": 5 + n}) for n in range(3)]  # each reload re-reads
    loads = iter(configs[1:])
    recorder = _recorder(configs[0], notifier=Notifier(env), config_loader=lambda: next(loads))
    scan = Storage.scan

    def slow_scan(self: Storage) -> None:
        # Stands for the scan of hundreds of thousands of segments: slower than WatchdogSec (1 s).
        time.sleep(2.5)
        scan(self)

    try:
        recorder.start()
        wait_for(lambda: recorder.snapshot().ready, what="cam1 recording")
        monkeypatch.setattr(Storage, "scan", slow_scan)
        _drain(sock)
        assert recorder.reload()
        pings = [m for m in _drain(sock) if m == "WATCHDOG=1"]
        assert len(pings) >= 2, f"the watchdog went hungry through a 2.5 s reload: {pings}"

        recorder.add_liveness_check("wedged", lambda: False)
        assert recorder.reload()
        assert "WATCHDOG=1" not in _drain(sock), "a dead loop must stop the watchdog, reload or not"
    finally:
        monkeypatch.undo()
        assert recorder.stop()


# -- making room after ENOSPC ----------------------------------------------------------------------


def test_space_freed_by_the_reclaimers_alone_counts_as_freed_after_enospc(tmpfs: Path) -> None:
    """A kept transcode original removed by a reclaimer lists no deleted segment, yet the writer has room:
    the supervisor must retry, not escalate its backoff."""
    recorder = _recorder(small_config(tmpfs))
    kept_original = tmpfs / ".kept-original.mkv"
    kept_original.write_bytes(b"\0" * 4 * MIB)

    def reclaim_kept_originals(bytes_needed: int) -> int:
        if not kept_original.exists():
            return 0
        size = kept_original.stat().st_size
        kept_original.unlink()
        return size

    # The hook transcoding installs when originals are kept (recorder/transcoding/service.storage_hooks).
    recorder.storage.current._reclaimers = (reclaim_kept_originals,)
    free_space = recorder.supervisors["cam1"]._free_space  # what the supervisor calls on ENOSPC
    assert free_space() is True
    assert not kept_original.exists()
    assert free_space() is False, "nothing left to free: the backoff grows"


def test_deleted_footage_counts_as_freed_after_enospc(tmpfs: Path) -> None:
    recorder = _recorder(small_config(tmpfs, storage={"disk_usage_threshold": 50, "low_space_warning": 40}))
    for i in range(12):
        segment_file(tmpfs, "cam1", (100 - i) * 3600, MIB)
    recorder.index_recordings()
    assert recorder.supervisors["cam1"]._free_space() is True


# -- retention spares the night transcoder's source ------------------------------------------------


def test_retention_spares_the_segment_the_transcoder_is_working_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "rec"
    config = small_config(
        base,
        storage={"cleanup_enabled": True, "cleanup_days": 1},
        transcoding=_idle_transcoding(),
    )
    # What TranscodeWorker.busy_paths() reports while its FFmpeg reads `busy` (recorder/transcoding/worker).
    old_start = time.time() - 3 * 86400
    busy = base / "cam1" / segment_file_name("cam1", old_start)
    other = base / "cam1" / segment_file_name("cam1", old_start + 60)
    monkeypatch.setattr(TranscodeWorker, "busy_paths", lambda self: [busy], raising=False)
    recorder = _recorder(config)
    try:
        recorder.start()
        assert recorder.transcoder is not None
        # Indexed once the worker runs (the storage's own first pass at start comes before the worker).
        busy.parent.mkdir(parents=True, exist_ok=True)
        for path, start in ((busy, old_start), (other, old_start + 60)):
            path.write_bytes(b"\0" * 1000)
            assert recorder.storage.add_segment(CompletedSegment("cam1", path, start, 60.0, 1000))
        recorder.storage.request(None, "schedule")
        assert busy.exists(), "retention deleted the segment the transcoder was reading"
        assert not other.exists(), "max_age applies to the rest"
    finally:
        assert recorder.stop()
