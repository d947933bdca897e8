"""The memory function and zone placement: pure functions of values and a time, no I/O.

score = (w_r * frequency + w_f * freshness + w_i * importance [+ w_c * context]) / sum of weights

- frequency: log(1 + recalls) / log(1 + saturation), capped at 1;
- freshness: 0.5 ** (idle days / half-life), half-life = base * (1 + factor * importance);
- importance: as the caller gave it;
- context: similarity to a context vector, only when a reorbit is given one.

The same formula exists twice: in numpy-friendly Python (store time, tests) and as a SQL
expression (set-based reorbit). ``tests/test_scoring.py`` keeps them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import sqlalchemy as sa

from stellar_core.clock import DAY
from stellar_core.models import Zone
from stellar_core.settings import Settings

LN2 = math.log(2.0)
BOUNDED = (Zone.CORE, Zone.INNER, Zone.OUTER, Zone.BELT)  # Cloud is unbounded


@dataclass(frozen=True)
class ZonePolicy:
    """Score thresholds and capacities of the bounded zones of one namespace."""

    thresholds: dict[Zone, float]
    capacities: dict[Zone, int]

    @classmethod
    def from_settings(cls, s: Settings, overrides: dict[str, Any] | None = None) -> ZonePolicy:
        """Settings' defaults, overridden by a namespace's ``{"thresholds":, "capacities":}``."""
        o = overrides or {}
        th = {z: float(getattr(s, f"{z.value}_threshold")) for z in BOUNDED}
        cap = {z: int(getattr(s, f"{z.value}_capacity")) for z in BOUNDED}
        th.update({Zone(k): float(v) for k, v in (o.get("thresholds") or {}).items()})
        cap.update({Zone(k): int(v) for k, v in (o.get("capacities") or {}).items()})
        return cls(th, cap)

    def check(self) -> None:
        """Raise ValueError unless thresholds fall strictly from Core to Belt within (0, 1]."""
        th = [self.thresholds[z] for z in BOUNDED]
        if not all(a > b for a, b in pairwise(th)) or not 0 < th[-1] < th[0] <= 1:
            raise ValueError("zone thresholds must fall strictly from core to belt, within (0, 1]")
        if set(self.thresholds) | set(self.capacities) != set(BOUNDED):
            raise ValueError("only core, inner, outer and belt have thresholds and capacities")
        if any(c < 0 for c in self.capacities.values()):
            raise ValueError("zone capacities must be >= 0")

    def zone_for(self, score: float) -> Zone:
        """Zone by threshold alone (capacities are applied by reorbit)."""
        for zone in BOUNDED:
            if score >= self.thresholds[zone]:
                return zone
        return Zone.CLOUD

    def rank_ends(self, at_or_above: dict[Zone, int]) -> list[int]:
        """Last rank (1-based, by score descending) of each bounded zone.

        Zones fill from the inside: a zone takes the best remaining memories that reach its
        threshold, up to its capacity; whoever does not fit falls one zone outwards, cascading.
        So every zone is a contiguous run of ranks.
        """
        ends, end = [], 0
        for zone in BOUNDED:
            end = max(end, min(end + self.capacities[zone], at_or_above[zone]))
            ends.append(end)
        return ends


def half_life_days(importance: Any, s: Settings) -> Any:
    """Freshness half-life in days; grows with importance."""
    return s.half_life_days * (1.0 + s.half_life_importance_factor * importance)


def forget_after_days(importance: Any, s: Settings) -> Any:
    """Idle days in Cloud before forgetting; grows with importance."""
    return s.forget_after_days * (1.0 + s.forget_importance_factor * importance)


def memory_score(
    recall_count: float,
    idle_days: float,
    importance: float,
    s: Settings,
    context: float | None = None,
) -> float:
    """The memory function for one memory."""
    freq = min(1.0, math.log1p(recall_count) / math.log1p(s.recall_saturation))
    fresh = 0.5 ** (max(0.0, idle_days) / half_life_days(importance, s))
    total = s.weight_recall * freq + s.weight_freshness * fresh + s.weight_importance * importance
    weights = s.weight_recall + s.weight_freshness + s.weight_importance
    if context is not None:
        total += s.weight_context * context
        weights += s.weight_context
    return float(total / weights)


def score_sql(
    table: sa.Table, now: float, s: Settings, context: sa.ColumnElement[float] | None = None
) -> sa.ColumnElement[float]:
    """``memory_score`` as a SQL expression over ``table``'s columns (SQLite and PostgreSQL)."""
    c = table.c
    freq = sa.case(
        (c.recall_count >= s.recall_saturation, 1.0),
        else_=sa.func.ln(1.0 + c.recall_count) / math.log1p(s.recall_saturation),
    )
    idle_days = sa.case((c.last_access_at > now, 0.0), else_=(now - c.last_access_at) / DAY)
    fresh = sa.func.exp(-LN2 * idle_days / half_life_days(c.importance, s))
    total = s.weight_recall * freq + s.weight_freshness * fresh + s.weight_importance * c.importance
    weights = s.weight_recall + s.weight_freshness + s.weight_importance
    if context is not None:
        total = total + s.weight_context * context
        weights += s.weight_context
    return sa.type_coerce(total / weights, sa.Float)
