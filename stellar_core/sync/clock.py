"""Hybrid logical clock and vector clocks: ordering changes across agents."""

from __future__ import annotations

import threading

from stellar_core.clock import Clock


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
