"""Time sources. Scoring and lifecycle code takes a clock instead of calling time.time()."""

from __future__ import annotations

import time
from typing import Protocol

DAY = 86_400.0


class Clock(Protocol):
    """Anything with ``now()`` returning seconds since the epoch (UTC)."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()


class SteppingClock:
    """A clock that moves only when told to: deterministic tests and simulations."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, *, days: float = 0.0, seconds: float = 0.0) -> float:
        """Move forward and return the new time."""
        self._now += days * DAY + seconds
        return self._now
