"""Log lines that a hostile or broken client could repeat at will: at most one per interval, with a count."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class RateLimitedLog:
    """One line per `interval` seconds per key; the next line says how many were left out meanwhile."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log `message` unless a line with this key went out less than `interval` ago; True if it was logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d more like this since the last such line)"
            args = (*args, suppressed)
        self._logger.log(level, message, *args)
        return True


class FailureLimiter:
    """Failed logins per client address in a sliding window (as Home Assistant's ban middleware counts
    them, but without a permanent ban): past `max_failures` in `window` seconds, that address's requests
    with credentials not yet known are refused at once, without bcrypt. A guessing client then costs one
    hash per few seconds, and a scraper elsewhere whose credentials are new (every restart empties the
    cache) finds the bcrypt queue free. Bounded: past `max_clients` addresses the least recent is forgotten.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        max_clients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.max_failures)
                if len(self._failures) > self._max_clients:
                    self._failures.popitem(last=False)
            self._failures.move_to_end(client)
            times.append(now)

    def retry_after(self, client: str) -> float:
        """Seconds until this client may try new credentials again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(0.0, self.window - (now - times[0]))
