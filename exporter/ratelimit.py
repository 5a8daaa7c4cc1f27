"""Log lines that a hostile or broken client could repeat at will: at most one per interval, with a count."""

from __future__ import annotations

import logging
import threading
import time
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
