"""Each camera's counters for the daemon's lifetime, kept apart from the supervisor that counted them.

A reload that restarts a camera stops its supervisor and builds another; the camera's frames, segments,
bytes, restarts, recording gap, last segment and restart timeline are the camera's, not the supervisor's.
The retiring supervisor's last snapshot goes into the ledger, and the camera's next supervisor starts from it
(CameraReport and CameraStateMachine take it as their starting point), so every counter a scrape reads only
ever grows while the daemon runs: across reloads, a rename, a camera removed and added again.

A camera removed by a reload leaves /metrics (its series end; `increase()` over them stays right) but stays
in the ledger: the run's summary still lists it, and if a later reload adds it again its counters go on from
where they stood. Everything starts from zero when the daemon restarts, as any Prometheus counter does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol

from recorder.config import CameraConfig
from recorder.state.snapshots import RECENT_RESTARTS_KEPT, CameraSnapshot, CameraView, ResourceUsage, RestartEvent


class Retiring(Protocol):
    """What the ledger reads of a supervisor that has stopped for good."""

    camera: CameraConfig

    @property
    def snapshot(self) -> CameraSnapshot: ...

    @property
    def resources(self) -> ResourceUsage: ...


@dataclass(frozen=True)
class Carried:
    """What a camera's next supervisor starts from: its predecessors' last snapshot and FFmpeg CPU time."""

    snapshot: CameraSnapshot
    cpu_seconds: float


class CameraLedger:
    """The counters of every camera this daemon has supervised, carried from one supervisor to the next.

    Written by the reload (one at a time) and read when a supervisor is built and at exit; a lock keeps the
    two apart, though neither is on a path that records.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._carried: dict[str, Carried] = {}
        self._configs: dict[str, CameraConfig] = {}

    def retire(self, supervisor: Retiring, *, restart: str | None = None, why: str = "") -> None:
        """`supervisor` has stopped: keep what it counted for the camera's next supervisor.

        `restart`: the camera is restarted (a reload changed its FFmpeg): counted as a restart for that reason,
        on the camera's timeline too, with `why` in place of an error.
        """
        snap = supervisor.snapshot
        if restart is not None:
            restarts = dict(snap.restarts)
            restarts[restart] = restarts.get(restart, 0) + 1
            event = RestartEvent(self._clock(), restart, why or None)
            snap = replace(
                snap,
                restarts=MappingProxyType(restarts),
                recent_restarts=(*snap.recent_restarts, event)[-RECENT_RESTARTS_KEPT:],
            )
        with self._lock:
            self._carried[supervisor.camera.id] = Carried(snap, supervisor.resources.cpu_seconds)
            self._configs[supervisor.camera.id] = supervisor.camera

    def carried(self, camera_id: str) -> Carried | None:
        """What the camera's earlier supervisors counted, or None for a camera not supervised before."""
        with self._lock:
            return self._carried.get(camera_id)

    def removed(self, supervised: Iterable[str]) -> tuple[CameraView, ...]:
        """The cameras supervised earlier in this run and not now (removed or disabled by a reload), as their
        last supervisor left them."""
        now = set(supervised)
        with self._lock:
            return tuple(
                CameraView(self._configs[cid], carried.snapshot, ResourceUsage(carried.cpu_seconds, 0))
                for cid, carried in self._carried.items()
                if cid not in now
            )
