"""The daemon's housekeeping loop: what signals ask for (stop, reload, a status log), systemd's watchdog and
STATUS=, and the CPU temperature. Signal handlers only set a flag and wake the loop, which does the work.
Here too the two things the loop says about the cameras: the STATUS= line and SIGUSR1's status log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import psutil

from recorder.camera.supervisor import CameraSupervisor
from recorder.daemon.sdnotify import Notifier
from recorder.state.snapshots import RecorderSnapshot

# Status lines are the daemon's: operators grep for recorder.daemon.
log = logging.getLogger("recorder.daemon")

# Every wake-up of an idle daemon costs CPU that counts against FFmpeg's (cheap) stream copy, so the
# housekeeping loop ticks slowly; what must be prompt arrives by callback (retention's pause) or by
# signal (stop), and the watchdog shortens the tick when WatchdogSec asks for more.
HOUSEKEEPING_TICK = 5.0
TEMPERATURE_EVERY = 15.0


def hottest_cpu_sensor() -> float | None:
    """The hottest CPU temperature psutil can read, or None on hosts without sensors."""
    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    preferred = [
        s for name, entries in sensors.items() if name in ("coretemp", "k10temp", "cpu_thermal") for s in entries
    ]
    readings = preferred or [s for entries in sensors.values() for s in entries]
    values = [s.current for s in readings if s.current is not None and s.current > -50]
    return max(values) if values else None


class Housekeeping:
    """Runs the daemon's main thread until a stop is requested (or a duration ends)."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        reload: Callable[[], object],
        log_status: Callable[[], None],
        feed_watchdog: Callable[[], None],
        status_line: Callable[[], str],
    ) -> None:
        self._notifier = notifier
        self._reload = reload
        self._log_status = log_status
        self._feed_watchdog = feed_watchdog
        self._status_line = status_line
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._status_requested = threading.Event()
        self._wakeup = threading.Event()
        self.temperature: float | None = None  # the last reading, for the snapshot

    # Called from signal handlers: they only set a flag and wake the loop.

    def request_stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    def request_reload(self) -> None:
        self._reload_requested.set()
        self._wakeup.set()

    def request_status_log(self) -> None:
        self._status_requested.set()
        self._wakeup.set()

    def read_temperature(self) -> None:
        self.temperature = hottest_cpu_sensor()

    def run(self, duration: float | None = None) -> None:
        """Until stopped: requested reloads and status logs, the watchdog, STATUS= when it changes, temperature."""
        deadline = None if duration is None else time.monotonic() + duration
        next_temperature = time.monotonic() + TEMPERATURE_EVERY
        last_status = ""
        watchdog = self._notifier.watchdog_interval
        tick = min(HOUSEKEEPING_TICK, watchdog) if watchdog is not None else HOUSEKEEPING_TICK
        while not self._stop.is_set():
            # Cleared before the flags are read: a signal arriving after the reads wakes the wait below.
            self._wakeup.clear()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self._reload()
            if self._status_requested.is_set():
                self._status_requested.clear()
                self._log_status()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            self._feed_watchdog()
            status = self._status_line()
            if status != last_status:
                self._notifier.status(status)
                last_status = status
            if now >= next_temperature:
                self.read_temperature()
                next_temperature = now + TEMPERATURE_EVERY
            self._wakeup.wait(tick if deadline is None else min(tick, deadline - now))


def status_line(supervisors: Iterable[CameraSupervisor]) -> str:
    """One line for systemd's STATUS=: each camera's state."""
    parts = [f"{sup.camera.id}: {sup.snapshot.state.value}" for sup in supervisors]
    return ", ".join(parts) or "no cameras enabled"


def log_status(snap: RecorderSnapshot) -> None:
    """One line per camera: what SIGUSR1 asks for (and what an operator wants before acting)."""
    log.info(
        "status: %d camera(s), FFmpeg %s, %s, last config reload %s",
        len(snap.cameras), snap.ffmpeg_version, "healthy" if snap.healthy else "stuck: " + ", ".join(snap.stuck),
        "succeeded" if snap.config_reload_successful else "FAILED (running the previous configuration)",
    )  # fmt: skip
    for view in snap.cameras:
        st = view.status
        restarts = ", ".join(f"{reason} {n}" for reason, n in sorted(st.restarts.items())) or "none"
        log.info(
            "status: %s, FFmpeg pid %s, %.1f fps, %d frames, %d segments, restarts: %s, gap %.1f s%s",
            st.state.value, st.ffmpeg_pid or "-", st.fps, st.frames, st.segments_completed, restarts,
            st.gap_seconds_at(snap.monotonic_now), f", last error: {st.last_error}" if st.last_error else "",
            extra={"camera": view.config.id},
        )  # fmt: skip
