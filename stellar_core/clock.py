"""Clocks: time sources (scoring and lifecycle code takes a clock instead of calling
time.time()), and the hybrid logical and vector clocks that order changes across agents."""

from __future__ import annotations

import threading
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


class HybridLogicalClock:
    """Timestamps that follow the wall clock yet never repeat or go backwards in one agent.

    Encoded as ``"<ms:013d>.<counter:05d>"`` so that string order is time order.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._ms = 0
        self._counter = 0
        self._lock = threading.Lock()

    def tick(self) -> str:
        """A new timestamp, later than every earlier one of this clock."""
        with self._lock:
            ms = int(self._clock.now() * 1000)
            if ms > self._ms:
                self._ms, self._counter = ms, 0
            else:
                self._counter += 1
            return f"{self._ms:013d}.{self._counter:05d}"

    def observe(self, stamp: str) -> None:
        """Move past a timestamp seen elsewhere (another process, a stored change)."""
        try:
            ms, counter = (int(x) for x in stamp.split("."))
        except ValueError:  # not a stamp (imports check theirs): nothing to move past
            return
        with self._lock:
            if (ms, counter) > (self._ms, self._counter):
                self._ms, self._counter = ms, counter


def bump(vector_clock: dict[str, int], agent: str) -> dict[str, int]:
    """The vector clock after one more change by ``agent``."""
    out = dict(vector_clock)
    out[agent] = out.get(agent, 0) + 1
    return out


def merged(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """The vector clock that has seen what both have (element-wise max)."""
    out = dict(a)
    for agent, n in b.items():
        out[agent] = max(out.get(agent, 0), n)
    return out


def dominated(a: dict[str, int], b: dict[str, int]) -> bool:
    """Whether ``b`` has seen every change ``a`` has (a <= b)."""
    return all(n <= b.get(agent, 0) for agent, n in a.items())


def concurrent(a: dict[str, int], b: dict[str, int]) -> bool:
    """Neither saw the other: two edits made without knowing of each other."""
    return not dominated(a, b) and not dominated(b, a)
