"""Camera supervision states: their groupings (and, re-exported, the snapshot of one camera)."""

from __future__ import annotations

from recorder.snapshots import RECENT_RESTARTS_KEPT, CameraSnapshot, Histogram, RestartEvent, recent_restarts
from recorder.vocabulary import CameraState

__all__ = [
    "GAP_STATES",
    "RECENT_RESTARTS_KEPT",
    "CameraSnapshot",
    "CameraState",
    "Histogram",
    "RestartEvent",
    "recent_restarts",
]

# States in which the camera should be recording: time spent in them is a recording gap. So is time
# `stopped` by retention's stop_recording policy (the supervisor says so); a shutdown is not.
GAP_STATES = frozenset(
    {
        CameraState.STARTING,
        CameraState.BACKOFF,
        CameraState.STALLED,
        CameraState.WAITING_FOR_DEVICE,
        CameraState.FAILED,
        CameraState.STORAGE_ERROR,
    }
)
