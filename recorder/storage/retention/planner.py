"""Which files a retention pass deletes, decided from numbers only: no clock, no filesystem, no lock.

Disk pressure rules (the alert rules and the README say the same):

- Above `threshold` (a used ratio), free down to `target`.
- `min_free_minutes` wishes for that many minutes of writing to stay free at the current write rate. It
  may make retention act *before* the threshold is reached, but it never deletes below `target`: a wish
  larger than the space between the target and a full disk is capped there, and reported as unmet
  (footage is worth more than the wish).
- Footage of cameras not in the configuration (orphans: removed or renamed) goes first, oldest first, and
  only when none of it is left to delete does a configured camera's footage go. Orphans age by the storage
  section's `cleanup_days`.
- The next check is scheduled from the time until the threshold is reached at the current write rate,
  so a disk that fills at full speed is looked at well before it is full.

A pass applies its trigger's policies in order (`policies`), each picking among what the earlier ones left;
`plan_pass` returns the whole choice, which the storage then deletes and accounts.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from recorder.config import Config, ThresholdAction
from recorder.domain.compat import StrEnum
from recorder.domain.vocabulary import AlertAction, DeletionReason, RetentionTrigger
from recorder.storage.retention.model import DAY, DeletedFile, DiskUsage, Entry, allocated

# A camera's newest segment started less than this many segment times ago may still be open in FFmpeg,
# even when the supervisor's list of open files is momentarily stale.
NEWEST_GRACE_SEGMENTS = 1.5

# Look again after this share of the time the disk needs to reach the threshold at the current rate.
TIME_TO_FULL_SHARE = 0.25
# Never check more often than this: statvfs is cheap, a wake-up of the storage thread is not free.
MIN_CHECK_DELAY = 0.2


@dataclass(frozen=True)
class PressureNeed:
    """What the disk_pressure policy must do now."""

    bytes_to_free: int  # 0: nothing to delete
    min_free_unmet: bool  # min_free_minutes wants more than retention may free without going below target


def bytes_above(size: int, used: int, ratio: float, *, strict: bool) -> int:
    """Bytes to free so that `used / size` is at most `ratio` (below it when `strict`)."""
    excess = used - ratio * size
    if strict:
        return math.floor(excess) + 1 if excess >= 0 else 0
    return math.ceil(excess) if excess > 0 else 0


def pressure_need(
    *,
    size: int,
    avail: int,
    rate: float,
    threshold: float,
    target: float,
    min_free_minutes: float,
) -> PressureNeed:
    """Bytes to delete now on a filesystem of `size` bytes with `avail` free, written at `rate` B/s."""
    if size <= 0:
        return PressureNeed(0, False)
    used = size - avail
    # Everything retention may ever free without deleting below the target.
    above_target = bytes_above(size, used, target, strict=False)
    need = above_target if used / size > threshold else 0
    unmet = False
    if rate > 0 and min_free_minutes > 0:
        wanted_avail = min_free_minutes * 60.0 * rate
        # The most avail can be made by deleting down to the target; a wish beyond that is unmet.
        unmet = wanted_avail > size - target * size
        if avail < wanted_avail:
            need = max(need, min(math.ceil(wanted_avail - avail), above_target))
    return PressureNeed(need, unmet)


def next_check_delay(
    *,
    size: int,
    avail: int,
    rate: float,
    threshold: float,
    check_interval: float,
) -> float:
    """Seconds until the pressure check should look again: `check_interval`, or sooner when filling fast."""
    if size <= 0 or rate <= 0:
        return check_interval
    headroom = threshold * size - (size - avail)  # bytes until the threshold is reached
    if headroom <= 0:
        return MIN_CHECK_DELAY
    return max(MIN_CHECK_DELAY, min(check_interval, TIME_TO_FULL_SHARE * headroom / rate))


class Policy(StrEnum):
    """One rule a pass applies; a trigger or alert action calls for one or more, in order."""

    MAX_AGE = "max_age"  # every segment older than its camera's maximum age
    DISK_PRESSURE = "disk_pressure"  # oldest first until the disk is down to the pressure target
    # Oldest first until the disk is below the low-space warning (an alert asks), but never below the pressure
    # target: retention's promise holds whoever asks.
    FREE_SPACE = "free_space"


def policies(trigger: str, action: str | None) -> tuple[Policy, ...]:
    """The policies a pass applies for its trigger, or for the alert action that asked for it."""
    if action == AlertAction.ENFORCE_MAX_AGE:
        return (Policy.MAX_AGE,)
    if action == AlertAction.FREE_SPACE:
        return (Policy.FREE_SPACE,)
    if trigger == RetentionTrigger.SCHEDULE:
        return (Policy.MAX_AGE,)
    if trigger == RetentionTrigger.DISK_PRESSURE:
        return (Policy.DISK_PRESSURE,)
    return (Policy.MAX_AGE, Policy.DISK_PRESSURE)  # manual: what the scheduler and the pressure check would do


@dataclass(frozen=True)
class RetentionSettings:
    """What the storage section of the configuration asks of retention, as ratios and seconds."""

    max_age: Mapping[str, float | None]  # camera -> seconds; None: age cleanup is off for it
    threshold: float  # used ratio at which disk_pressure acts
    target: float  # used ratio disk_pressure frees down to
    low_space: float  # used ratio a free_space alert frees below (never below `target`: see alert_floor)
    min_free_minutes: float
    on_threshold: ThresholdAction
    segment_time: float  # seconds
    alerts_delete: bool = True  # StorageConfig.alerts_may_delete: False, a free_space alert deletes nothing
    # Maximum age of an unconfigured camera's footage: the storage section's cleanup_days; None: off.
    orphan_max_age: float | None = None

    @property
    def alert_floor(self) -> float:
        """The used ratio a free_space alert frees down to: below the low-space warning, but never below the
        pressure target, which no deletion goes under."""
        return max(self.low_space, self.target)

    @classmethod
    def from_config(cls, config: Config) -> RetentionSettings:
        st = config.storage
        max_age = {}
        for cam in config.cameras:
            days = config.max_age_days(cam)
            max_age[cam.id] = days * DAY if days is not None else None
        return cls(
            max_age=max_age,
            threshold=st.disk_usage_threshold / 100.0,
            target=st.effective_pressure_target / 100.0,
            low_space=st.low_space_warning / 100.0,
            min_free_minutes=st.min_free_minutes,
            on_threshold=st.on_threshold,
            segment_time=float(config.recording.segment_time),
            alerts_delete=st.alerts_may_delete,
            orphan_max_age=st.cleanup_days * DAY if st.cleanup_enabled else None,
        )

    def pressure(self, usage: DiskUsage, rate: float) -> PressureNeed:
        """What the disk_pressure policy must free now on this reading at `rate` bytes per second."""
        return pressure_need(
            size=usage.size,
            avail=usage.avail,
            rate=rate,
            threshold=self.threshold,
            target=self.target,
            min_free_minutes=self.min_free_minutes,
        )


@dataclass(frozen=True)
class IndexView:
    """What a pass sees of the index: copies taken under the lock, read without it."""

    entries: Mapping[str, Sequence[Entry]]  # camera -> its segments, oldest first
    rate: float  # total write rate, bytes per second
    active: Collection[tuple[str, str]]  # (camera, name) of every file FFmpeg has open now
    folders_ok: Mapping[str, bool]  # camera -> its folder may be entered (missing means no)
    orphans: Collection[str] = frozenset()  # cameras in `entries` that are not configured


@dataclass(frozen=True)
class PassPlan:
    """The files a pass deletes, and what the storage must know of how they were chosen."""

    victims: tuple[DeletedFile, ...]  # oldest first within each policy
    unread_policies: tuple[Policy, ...]  # skipped because the filesystem could not be read
    pressure: PressureNeed | None  # the disk_pressure policy's need, when it was worked out


def plan_pass(
    view: IndexView,
    usage: DiskUsage | None,
    now: float,
    settings: RetentionSettings,
    *,
    trigger: str,
    action: str | None,
) -> PassPlan:
    """Pick what a pass deletes: each policy in turn, never a protected file, never one file twice; no
    free_space for an alert when the configuration keeps alerts from deleting (RetentionSettings.alerts_delete:
    an enforce_max_age alert only does sooner what the configured max age does on schedule)."""
    protected = set(view.active)
    horizon = now - NEWEST_GRACE_SEGMENTS * settings.segment_time
    for cam, entries in view.entries.items():
        if entries and entries[-1].start >= horizon:
            protected.add((cam, entries[-1].name))
    victims: list[DeletedFile] = []
    chosen: set[tuple[str, str]] = set()
    unread: list[Policy] = []
    pressure: PressureNeed | None = None
    estimated_freed = 0
    for policy in policies(trigger, action):
        if policy is Policy.MAX_AGE:
            picked = _pick_max_age(view, settings, now, protected, chosen)
        else:
            if policy is Policy.DISK_PRESSURE and settings.on_threshold is ThresholdAction.STOP_RECORDING:
                continue  # the daemon stops cameras instead of deleting footage
            if policy is Policy.FREE_SPACE and not settings.alerts_delete:
                continue  # stop_recording keeps every file the age limit does not take, unless told otherwise
            if usage is None:
                unread.append(policy)
                continue
            if policy is Policy.FREE_SPACE:
                need = bytes_above(usage.size, usage.used, settings.alert_floor, strict=True)
                reason = DeletionReason.ALERT
            else:
                pressure = settings.pressure(usage, view.rate)
                need = pressure.bytes_to_free
                reason = DeletionReason.DISK_PRESSURE
            # What earlier policies of this pass picked counts as freed already (matters in dry runs).
            need -= estimated_freed
            picked = _pick_oldest(view, need, usage.block_size, reason, protected, chosen)
        if usage is not None:
            estimated_freed += sum(allocated(f.size, usage.block_size) for f in picked)
        victims.extend(picked)
        chosen.update((f.camera, f.name) for f in picked)
    return PassPlan(tuple(victims), tuple(unread), pressure)


def _pick_max_age(
    view: IndexView,
    settings: RetentionSettings,
    now: float,
    protected: set[tuple[str, str]],
    chosen: set[tuple[str, str]],
) -> list[DeletedFile]:
    picked: list[DeletedFile] = []
    orphans = view.orphans
    for cam, entries in view.entries.items():
        limit = settings.orphan_max_age if cam in orphans else settings.max_age.get(cam)
        if limit is None or not entries or not view.folders_ok.get(cam):
            continue
        # Entries sort by start, so the ones older than the cutoff are a prefix.
        end = bisect.bisect_left(entries, (now - limit,))
        for i in range(end):
            e = entries[i]
            key = (cam, e.name)
            if key not in protected and key not in chosen:
                picked.append(DeletedFile(cam, e.name, DeletionReason.MAX_AGE, e.size, e.start))
    picked.sort(key=lambda f: f.start)  # oldest first across cameras, like the other policies
    return picked


def _pick_oldest(
    view: IndexView,
    need: int,
    block_size: int,
    reason: str,
    protected: set[tuple[str, str]],
    chosen: set[tuple[str, str]],
) -> list[DeletedFile]:
    """Oldest segments until their allocated size reaches `need`: the orphans' first, then the configured
    cameras' (each a k-way merge across its cameras)."""
    picked: list[DeletedFile] = []
    if need <= 0:
        return picked
    orphans = view.orphans
    freed = 0
    for group in ([c for c in view.entries if c in orphans], [c for c in view.entries if c not in orphans]):
        freed = _merge_oldest(view, group, need, freed, block_size, reason, protected, chosen, picked)
    return picked


def _merge_oldest(
    view: IndexView,
    cameras: list[str],
    need: int,
    freed: int,
    block_size: int,
    reason: str,
    protected: set[tuple[str, str]],
    chosen: set[tuple[str, str]],
    picked: list[DeletedFile],
) -> int:
    """Append the oldest segments of `cameras` to `picked` until `freed` reaches `need`; the new `freed`."""
    lists = view.entries
    heap = [(lists[cam][0].start, cam, 0) for cam in cameras if lists[cam] and view.folders_ok.get(cam)]
    heapq.heapify(heap)
    while heap and freed < need:
        start, cam, i = heapq.heappop(heap)
        entries = lists[cam]
        if i + 1 < len(entries):
            heapq.heappush(heap, (entries[i + 1].start, cam, i + 1))
        e = entries[i]
        key = (cam, e.name)
        if key in protected or key in chosen:
            continue
        picked.append(DeletedFile(cam, e.name, reason, e.size, start))
        freed += allocated(e.size, block_size)
    return freed
