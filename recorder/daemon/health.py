"""The daemon's health: which loops are stuck (for /-/healthy) and systemd's watchdog, fed only while none is."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping

from recorder.camera.supervisor import CameraSupervisor
from recorder.daemon.sdnotify import Notifier

# Logged under the daemon's name: operators grep for recorder.daemon.
log = logging.getLogger("recorder.daemon")

# A supervisor whose loop has not gone round for this long is wedged (its loop beats every 5 s; a check
# of a cut-off segment may take 20 s): the watchdog pings stop and systemd restarts the daemon.
HEARTBEAT_STALE_AFTER = 60.0


class Health:
    """Answers "what is stuck?" over the cameras' supervisors and the named threads beside them, and feeds
    systemd's watchdog (WATCHDOG=1) only while the answer is "nothing"."""

    def __init__(
        self,
        supervisors: Callable[[], Mapping[str, CameraSupervisor]],
        notifier: Notifier,
        *,
        heartbeat_stale_after: float = HEARTBEAT_STALE_AFTER,
    ) -> None:
        self._supervisors = supervisors  # read at each check: a reload replaces the mapping
        self._notifier = notifier
        self._heartbeat_stale_after = heartbeat_stale_after
        # Threads beyond the supervisors whose death makes the daemon unhealthy: name -> alive().
        self._liveness_checks: dict[str, Callable[[], bool]] = {}
        self._replacing: set[str] = set()  # checks whose thread a reload is swapping: not dead meanwhile
        self.supervisors_started = False  # before start() nothing runs (the first scan), so nothing is stuck
        self.retiring: set[int] = set()  # ids of supervisors a reload is stopping: not stuck meanwhile
        self._next_watchdog = 0.0  # monotonic time the watchdog is due; also fed during a slow reload

    def add_liveness_check(self, name: str, alive: Callable[[], bool]) -> None:
        """Count `name` as stuck whenever `alive()` is false or raises (checked in the order added)."""
        self._liveness_checks[name] = alive

    @contextlib.contextmanager
    def replacing(self, name: str) -> Iterator[None]:
        """While a reload stops one `name` thread and starts the next, its liveness check passes."""
        self._replacing.add(name)
        try:
            yield
        finally:
            self._replacing.discard(name)

    def stuck(self) -> tuple[str, ...]:
        """Cameras whose supervision loop has not gone round lately, then each named thread that died."""
        if not self.supervisors_started:
            return ()
        stale, retiring = self._heartbeat_stale_after, self.retiring
        stuck = [
            cid for cid, sup in list(self._supervisors().items()) if id(sup) not in retiring and not sup.healthy(stale)
        ]
        for name, alive in list(self._liveness_checks.items()):
            if name in self._replacing:
                continue
            try:
                ok = alive()
            except Exception:
                log.exception("liveness check %s failed", name)
                ok = False
            if not ok:
                stuck.append(name)
        return tuple(stuck)

    def watchdog_due_now(self) -> None:
        """The housekeeping loop starts: the first WATCHDOG=1 goes out at its first round."""
        self._next_watchdog = time.monotonic()

    def feed_watchdog(self) -> None:
        """WATCHDOG=1 when due and nothing is stuck: from the housekeeping loop, and from inside a slow reload."""
        interval = self._notifier.watchdog_interval
        now = time.monotonic()
        if interval is not None and now >= self._next_watchdog and not self.stuck():
            self._notifier.watchdog()
            self._next_watchdog = now + interval
