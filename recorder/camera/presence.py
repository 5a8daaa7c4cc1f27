"""Whether a camera's source is there: a device camera asks its node finder, other sources always are."""

from __future__ import annotations

from collections.abc import Callable


class SourcePresence:
    """The udev thread tells it (`added`, `removed`); the supervisor thread asks and checks it.

    Both threads write `present` with plain assignments of a bool and each reads it afresh every round: a
    stale read costs one round, never a wrong state for longer.
    """

    def __init__(self, device_node: Callable[[], str | None] | None) -> None:
        self._device_node = device_node  # None for sources that are not devices
        self.present = self.there()
        self._returned = False  # set by the udev thread; taken by the supervisor thread

    def there(self) -> bool:
        """Asks the node finder now, without changing `present`."""
        return self._device_node is None or self._device_node() is not None

    def check(self) -> bool:
        """Asks the node finder and remembers the answer."""
        self.present = self.there()
        return self.present

    def node(self) -> tuple[bool, str | None]:
        """(whether the source is there, its device node); for a non-device source (True, None)."""
        if self._device_node is None:
            return True, None
        node = self._device_node()
        if node is None:
            self.present = False
        return node is not None, node

    def added(self) -> None:
        self.present = True
        self._returned = True

    def removed(self) -> None:
        self.present = False

    def take_return(self) -> bool:
        """True once after the device came back: its next start begins a fresh backoff sequence."""
        returned, self._returned = self._returned, False
        return returned
