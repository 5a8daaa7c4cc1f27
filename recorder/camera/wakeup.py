"""The pipe a supervisor thread sleeps on: other threads write a byte to wake it (stop, hot-plug, pause)."""

from __future__ import annotations

import os
import selectors
from collections.abc import Callable

from recorder.ffmpeg.run import HEARTBEAT_EVERY, drain


class WakeUp:
    """Sleeps until woken or a timeout passes, and remembers when its thread last showed it is alive."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.heartbeat = monotonic()  # when the sleeping thread last went round

    def wake(self) -> None:
        """Called from any thread; never blocks."""
        if self._write_fd < 0:
            return  # closed for good: nothing left to wake
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:
            pass  # already awake: the pipe is full of wake-ups

    def wait(self, seconds: float | None) -> None:
        """Sleep until woken or `seconds` have passed (None: until woken), beating the heart meanwhile."""
        deadline = None if seconds is None else self._monotonic() + seconds
        # poll(2) needs no descriptor of its own, unlike epoll: waiting works even with the fd table full.
        with selectors.PollSelector() as sel:
            sel.register(self.read_fd, selectors.EVENT_READ)
            while True:
                self.heartbeat = self._monotonic()
                left = HEARTBEAT_EVERY if deadline is None else min(HEARTBEAT_EVERY, deadline - self.heartbeat)
                if left <= 0 or sel.select(left):
                    break
        drain(self.read_fd)
        self.heartbeat = self._monotonic()

    def beat(self, now: float) -> None:
        self.heartbeat = now

    def close(self) -> None:
        """Once the sleeping thread is gone. The numbers are forgotten first: a late wake() must not write
        into a reused descriptor."""
        fds, self.read_fd, self._write_fd = (self.read_fd, self._write_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
