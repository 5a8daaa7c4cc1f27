"""Which errors are the machine's passing conditions rather than faults of the recordings folder or a bug."""

from __future__ import annotations

import errno

# Out of descriptors (per process, system-wide), memory, processes or buffers: they come back by
# themselves, so what failed is retried, and nothing is concluded about the folder or the camera.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS})


def is_resource_error(exc: BaseException) -> bool:
    """Out of descriptors, memory or processes: a condition of the machine that passes by itself."""
    return isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS)
