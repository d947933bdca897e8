"""The lexical arm's query side: how a query becomes terms (the index is written by
``store/fulltext.py``)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# Words that carry no topic: dropping them keeps BM25 OR-queries fast and on topic.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves s t d ll m re ve""".split()  # noqa: SIM905
)


def query_terms(text: str, limit: int = 32) -> list[str]:
    """Distinct lower-cased words of a query, stopwords removed (all kept if nothing is left)."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS]
    return list(dict.fromkeys(kept or words))[:limit]
