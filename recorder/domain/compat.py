"""What Python 3.11 added and the code uses, for Python 3.10 (Ubuntu 22.04's system Python)."""

from __future__ import annotations

import enum
import sys
from datetime import timezone

# `datetime.UTC` is 3.11's alias of this very object.
UTC = timezone.utc


class BackportedStrEnum(str, enum.Enum):
    """3.11's `enum.StrEnum` on 3.10: members are strings whose str() and format() are the value.

    Defined on every version so its behaviour is tested wherever the tests run.
    """

    __str__ = str.__str__
    __format__ = str.__format__

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        # As 3.11's: `auto()` gives the member's name in lower case.
        return name.lower()


if sys.version_info >= (3, 11):
    from enum import StrEnum  # novermin (only reached on 3.11+)
else:
    StrEnum = BackportedStrEnum


__all__ = ["UTC", "BackportedStrEnum", "StrEnum"]
