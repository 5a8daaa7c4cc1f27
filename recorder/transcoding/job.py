"""One segment's job: encode to a temporary file, verify it, swap it in (the steps are swap.py's), and the
swaps that failed and wait to be tried again."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.config import Config, Container
from recorder.ffmpeg.presets import build_transcode_command
from recorder.transcoding.ledger import Ledger, LedgerEntry
from recorder.transcoding.pausable import PausableRunner
from recorder.transcoding.planner import Candidate
from recorder.transcoding.swap import OriginalVanished, complete_swap, fsync_file, mark_verified
from recorder.transcoding.verify import ToolInterrupted, Tools, probe, verify

# Split out of worker.py: its logger name stays, so operators' log filters keep working.
log = logging.getLogger("recorder.transcoding.worker")

# Outcomes that are not results: the job was interrupted (stop, window closed) or its segment vanished.
ABORTED = "aborted"

# Told (camera, path, start, duration, new size) after a swap, so retention accounts the new size.
OnReplaced = Callable[[str, Path, float, float, int], None]


@dataclass(frozen=True)
class JobOutcome:
    result: str  # a TranscodeResult value, or ABORTED
    output_bytes: int = 0  # the replacement's size, when transcoded
    at: float = 0.0  # when it was recorded as transcoded


class PendingSwaps:
    """Steps 3-4 of the swap for verified replacements. One that fails (ENOSPC making .originals, EIO) keeps
    `.verified` and the original and is retried before each job (and by recovery at the next start); the
    ledger says "transcoded" and the original still holds the name, so nothing is lost meanwhile."""

    def __init__(self, base: Path, *, keep_original: bool) -> None:
        self._base = base
        self._keep_original = keep_original
        # segment -> (camera, what to do once swapped: tell retention the new size)
        self._pending: dict[Path, tuple[str, Callable[[], None]]] = {}

    def swap(self, camera: str, segment: Path, swapped: Callable[[], None]) -> bool:
        """Steps 3-4, then `swapped()`; False when the segment was deleted meanwhile.

        A failing swap counts as transcoded, as the ledger already says; it is logged once here.
        """
        try:
            complete_swap(self._base, segment, keep_original=self._keep_original)
        except OriginalVanished as exc:
            log.info("transcoding: %s", exc)
            return False
        except OSError as exc:
            log.error("transcoding: %s/%s verified, but its swap failed (retried): %s", camera, segment.name, exc)
            self._pending[segment] = (camera, swapped)
            return True
        swapped()
        return True

    def retry(self) -> None:
        """Complete the swaps that failed earlier; each is logged once when it fails, once done."""
        for segment, (camera, swapped) in list(self._pending.items()):
            try:
                complete_swap(self._base, segment, keep_original=self._keep_original)
            except OriginalVanished as exc:
                log.info("transcoding: %s", exc)
            except FileNotFoundError:
                pass  # nothing verified left (removed by hand): the name holds what it holds
            except OSError:
                continue  # still failing: already logged, tried again before the next job
            else:
                log.info("transcoding: completed the delayed swap of %s/%s", camera, segment.name)
                swapped()
            del self._pending[segment]


class SegmentJob:
    """Transcodes, verifies and swaps one segment with the runner's pausable children."""

    def __init__(
        self,
        config: Config,
        *,
        ffmpeg: str,
        ffprobe: str,
        runner: PausableRunner,
        ledger: Ledger,
        swaps: PendingSwaps,
        clock: Callable[[], float],
        on_replaced: OnReplaced | None,
    ) -> None:
        self._config = config
        self._ffmpeg = ffmpeg
        self._runner = runner
        # Verification's tools run like the encode: paused by the gate, killed on stop.
        self._tools = Tools(ffmpeg=ffmpeg, ffprobe=ffprobe, run=runner.run_tool)
        self._ledger = ledger
        self._swaps = swaps
        self._clock = clock
        self._on_replaced = on_replaced

    def run(self, cand: Candidate, temp: Path) -> JobOutcome:
        """The job, its output written to `temp` (a unique name: swap.temp_path)."""
        tc = self._config.transcoding
        segment = cand.path
        container = Container(segment.suffix.lstrip("."))
        try:
            original = probe(segment, self._tools)
        except ToolInterrupted:
            return JobOutcome(ABORTED)
        if original is None:
            if not segment.exists():
                return JobOutcome(ABORTED)  # retention deleted it meanwhile
            return self._fail(cand, "failed", "the original cannot be probed")
        argv, env = build_transcode_command(self._config, segment, temp, container, self._ffmpeg)
        rc, errors = self._runner.encode(argv, env)
        if rc is None:
            _unlink_quietly(temp)
            return JobOutcome(ABORTED)
        if rc != 0:
            _unlink_quietly(temp)
            return self._fail(cand, "failed", f"FFmpeg exited with status {rc}: {errors}")
        fsync_file(temp)
        size = temp.stat().st_size
        savings = 100.0 * (1 - size / cand.size) if cand.size else 0.0
        if savings < tc.min_savings_percent:
            _unlink_quietly(temp)
            self._ledger.record(
                LedgerEntry(cand.camera, cand.name, "skipped_small_savings", cand.size, size, self._clock())
            )
            log.info(
                "transcoding: %s/%s kept as recorded: %.1f%% smaller, below min_savings_percent %g",
                cand.camera, cand.name, savings, tc.min_savings_percent,
            )  # fmt: skip
            return JobOutcome("skipped_small_savings")
        try:
            verdict = verify(
                segment, temp, container=container.value, check_quality=tc.verify_quality,
                original_facts=original, tools=self._tools,
            )  # fmt: skip
        except ToolInterrupted:
            _unlink_quietly(temp)
            return JobOutcome(ABORTED)
        if not verdict.ok:
            _unlink_quietly(temp)
            return self._fail(cand, "failed_verification", verdict.reason)
        if not segment.exists():
            _unlink_quietly(temp)
            return JobOutcome(ABORTED)
        verified = mark_verified(temp, segment)
        now = self._clock()
        # Recorded before the original moves: from here on recovery finishes the swap, never undoes it (and
        # writes this line itself if a crash comes first).
        try:
            self._ledger.record(LedgerEntry(cand.camera, cand.name, "transcoded", cand.size, size, now))
        except OSError as exc:
            # Without its ledger line the replacement must not go in: the original stays, tried again later.
            _unlink_quietly(verified)
            log.error("transcoding: %s/%s not swapped, the ledger cannot be written: %s", cand.camera, cand.name, exc)
            return JobOutcome(ABORTED)
        on_replaced = self._on_replaced

        def swapped() -> None:
            if on_replaced is not None:
                on_replaced(cand.camera, segment, cand.start, original.duration, size)

        if not self._swaps.swap(cand.camera, segment, swapped):
            return JobOutcome(ABORTED)
        log.info(
            "transcoding: %s/%s %s -> %s (%.1f%% smaller%s)", cand.camera, cand.name, cand.size, size, savings,
            f", SSIM {verdict.ssim:.4f}" if verdict.ssim is not None else "",
        )  # fmt: skip
        return JobOutcome("transcoded", size, now)

    def _fail(self, cand: Candidate, result: str, why: str) -> JobOutcome:
        log.warning("transcoding: %s/%s %s: %s", cand.camera, cand.name, result.replace("_", " "), why)
        self._ledger.record(LedgerEntry(cand.camera, cand.name, result, cand.size, 0, self._clock()))
        return JobOutcome(result)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
