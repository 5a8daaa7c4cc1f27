"""What the metrics read of the transcoder: its state, per-camera results, bytes and seconds, the backlog,
the last success, and the size ratio measured over every segment the ledger says was transcoded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from types import MappingProxyType

from recorder.domain.vocabulary import TranscodeResult, values
from recorder.state.snapshots import TranscodeSnapshot
from recorder.transcoding.gate import TranscodeState
from recorder.transcoding.ledger import LedgerEntry
from recorder.transcoding.planner import Candidate

# The counters were split out of worker.py: its logger name stays, so operators' log filters keep working.
log = logging.getLogger("recorder.transcoding.worker")

TRANSCODED = TranscodeResult.TRANSCODED.value


class TranscodeCounters:
    """Written by the job's thread, read by a scrape's: every access holds one lock."""

    def __init__(self, cameras: tuple[str, ...], ledger_entries: Iterable[LedgerEntry]) -> None:
        self.cameras = cameras
        self._lock = threading.Lock()
        self._state = TranscodeState.RUNNING
        self._segments = {(c, r): 0 for c in self.cameras for r in values(TranscodeResult)}
        self._in = dict.fromkeys(self.cameras, 0)
        self._out = dict.fromkeys(self.cameras, 0)
        self._seconds = dict.fromkeys(self.cameras, 0.0)
        self._backlog: dict[str, tuple[int, int]] = {}
        self._last_success: dict[str, float] = {}
        # Bytes before and after over every segment the ledger says was transcoded: the measured ratio.
        self._ratio_in = self._ratio_out = 0
        for e in ledger_entries:
            if e.result != TRANSCODED:
                continue
            self._ratio_in += e.input_bytes
            self._ratio_out += e.output_bytes
            if e.camera in self._in:
                self._last_success[e.camera] = max(self._last_success.get(e.camera, 0.0), e.at)

    def snapshot(self) -> TranscodeSnapshot:
        with self._lock:
            return TranscodeSnapshot(
                state=self._state,
                cameras=self.cameras,
                segments=MappingProxyType(dict(self._segments)),
                input_bytes=MappingProxyType(dict(self._in)),
                output_bytes=MappingProxyType(dict(self._out)),
                seconds=MappingProxyType(dict(self._seconds)),
                backlog_segments=MappingProxyType({c: n for c, (n, _) in self._backlog.items()}),
                backlog_bytes=MappingProxyType({c: b for c, (_, b) in self._backlog.items()}),
                last_success=MappingProxyType(dict(self._last_success)),
            )

    def size_ratio(self) -> float | None:
        """Transcoded bytes over original bytes, over every segment the ledger knows; None before the first."""
        with self._lock:
            return self._ratio_out / self._ratio_in if self._ratio_in else None

    def set_state(self, state: TranscodeState) -> None:
        with self._lock:
            changed = state is not self._state
            self._state = state
        if changed:
            log.info("transcoding: %s", state.value.replace("_", " "))

    def count_recovered(self, entries: Iterable[LedgerEntry]) -> None:
        """The "transcoded" lines recovery wrote for swaps a crash interrupted: they count in the ratio."""
        with self._lock:
            for e in entries:
                self._ratio_in += e.input_bytes
                self._ratio_out += e.output_bytes

    def publish_backlog(self, due: Iterable[Candidate]) -> None:
        backlog = {c: [0, 0] for c in self.cameras}
        for cand in due:
            backlog[cand.camera][0] += 1
            backlog[cand.camera][1] += cand.size
        with self._lock:
            self._backlog = {c: (n, b) for c, (n, b) in backlog.items()}

    def count_job(self, cand: Candidate, result: str, *, spent: float, output_bytes: int, at: float) -> None:
        """One finished job (not an aborted one): its result, its seconds (pauses not counted), the backlog
        one segment shorter, and for a transcoded segment its bytes before and after and the success time."""
        with self._lock:
            self._segments[(cand.camera, result)] += 1
            self._seconds[cand.camera] += spent
            n, b = self._backlog.get(cand.camera, (1, cand.size))
            self._backlog[cand.camera] = (max(n - 1, 0), max(b - cand.size, 0))
            if result == TRANSCODED:
                self._in[cand.camera] += cand.size
                self._out[cand.camera] += output_bytes
                self._last_success[cand.camera] = at
                self._ratio_in += cand.size
                self._ratio_out += output_bytes
