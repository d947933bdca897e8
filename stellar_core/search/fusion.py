"""Combining the lexical and vector arms, and the bounded zone/recency boosts.

Min-max normalised score fusion, not reciprocal-rank fusion: on the LoCoMo development split
RRF scored R@10 0.687 against 0.754, and its near-equal scores for adjacent ranks would let the
zone boost outrank relevance (docs/decisions/0004-fusion.md).
"""

from __future__ import annotations

from collections.abc import Mapping


def minmax(scores: Mapping[int, float], asked: int = 0) -> dict[int, float]:
    """Scores rescaled to 0..1 within one arm: the best is 1, the weakest of the ``asked``
    candidates 0. An arm that found fewer than it was asked for found every match there is;
    its weakest is still a match, so it is scaled from 0 (a small namespace's hits would
    otherwise show relevance 0.00). Measured: the same LoCoMo figures either way."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if len(scores) < asked:
        lo = min(lo, 0.0)
    span = hi - lo
    return {k: (v - lo) / span if span > 0 else 1.0 for k, v in scores.items()}


def fuse_scores(
    lexical: Mapping[int, float], vector: Mapping[int, float], w_lex: float, w_vec: float, asked: int = 0
) -> dict[int, float]:
    """Weighted sum of min-max normalised scores; an arm that missed a candidate adds 0."""
    lex, vec = minmax(lexical, asked), minmax(vector, asked)
    total = (w_lex + w_vec) or 1.0
    return {k: (w_lex * lex.get(k, 0.0) + w_vec * vec.get(k, 0.0)) / total for k in lex.keys() | vec.keys()}


def boost(
    relevance: float, zone_rank: int, freshness: float, zone_boost: float, recency_boost: float
) -> float:
    """Relevance times at most (1 + zone_boost + recency_boost): relevance still decides.

    ``zone_rank`` is 0 (Core) .. 4 (Cloud); ``freshness`` is 1 for a just-accessed memory.
    """
    return relevance * (1.0 + zone_boost * (4 - zone_rank) / 4 + recency_boost * freshness)
