"""A namespace's replicated state, read from another replica's database (the hub, say), as
the events that would rebuild it: for each memory its store (with its current fields and
their stamps), an edit per field written since (so a replica holding an older copy takes the
newer fields), its forget, each replica's recall count, and every link. Merged like any
other events, so bootstrapping is safe to repeat and keeps what the replica wrote itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np
import sqlalchemy as sa

from stellar_core import reads
from stellar_core.models import ChangeEvent, Op
from stellar_core.settings import Settings
from stellar_core.store.database import Database
from stellar_core.store.records import fetch, m, parse_stamp
from stellar_core.store.schema import links, memory_vectors, recall_counts
from stellar_core.sync.wire import Envelope

CHUNK = 500


def snapshot(source: str, namespace: str, settings: Settings) -> Iterator[list[Envelope]]:
    """Events rebuilding ``namespace`` as ``source`` holds it, in chunks of about ``CHUNK``
    memories, from one consistent read."""
    db = Database(source, settings, create=False)
    token = secrets.token_hex(4)
    n = 0

    def envelope(event: ChangeEvent, vector: np.ndarray | None = None, model: str | None = None) -> Envelope:
        nonlocal n
        n += 1
        return Envelope(f"snapshot-{token}:{n}", event, vector, model)

    try:
        with db.read() as conn:
            replica = reads.meta_value(conn, "replica_id") or "unknown"
            model = reads.meta_value(conn, "embedding_model")
            after = 0
            while True:
                found = fetch(
                    conn, (m.namespace == namespace) & (m.seq > after), order_by=[m.seq], limit=CHUNK
                )
                if not found:
                    break
                after = max(found)
                seqs = list(found)
                extra = conn.execute(sa.select(m.seq, m.stamps).where(m.seq.in_(seqs))).all()
                stamps = {seq: s or {} for seq, s in extra}
                v = memory_vectors.c
                vq = sa.select(v.seq, v.embedding).where(v.seq.in_(seqs))
                vectors: dict[int, np.ndarray] = {seq: vec for seq, vec in conn.execute(vq)}
                r = recall_counts.c
                others: dict[str, dict[str, int]] = {}
                ids = [x.id for x in found.values()]
                for mid, rep, count in conn.execute(
                    sa.select(r.memory_id, r.replica, r.count).where(r.memory_id.in_(ids))
                ):
                    others.setdefault(mid, {})[rep] = count
                chunk: list[Envelope] = []
                for seq, x in found.items():
                    whole = x.to_dict() | {"recall_count": 0, "stamps": stamps[seq]}
                    vec = vectors.get(seq)
                    store = ChangeEvent(0, namespace, x.id, Op.STORE, x.origin_agent, x.hlc or _ZERO,
                                        x.created_at,
                                        whole, x.vector_clock)  # fmt: skip
                    chunk.append(envelope(store, None if vec is None else np.asarray(vec, np.float32), model))
                    for field, stamp in stamps[seq].items():  # fields written after the store
                        hlc, agent, _ = parse_stamp(stamp)
                        values = {field: whole[field]}
                        if field == "content":
                            values.update(content_hash=x.content_hash, key_id=x.key_id)
                        edit = ChangeEvent(0, namespace, x.id, Op.UPDATE, agent, hlc, x.updated_at, values,
                                           x.vector_clock)  # fmt: skip
                        chunk.append(
                            envelope(edit, None if vec is None else np.asarray(vec, np.float32), model)
                        )
                    if x.deleted_at is not None:
                        gone = ChangeEvent(0, namespace, x.id, Op.FORGET, x.origin_agent, x.hlc or _ZERO,
                                           x.deleted_at, {"reason": "snapshot"}, x.vector_clock)  # fmt: skip
                        chunk.append(envelope(gone))
                    counts = others.get(x.id, {})
                    counts[replica] = x.recall_count - sum(counts.values())
                    for rep, count in counts.items():
                        if count > 0:
                            p = {"replica": rep, "count": count, "at": x.last_recalled_at}
                            tally = ChangeEvent(0, namespace, x.id, Op.RECALL, x.origin_agent, x.hlc or _ZERO,
                                                x.updated_at, p, {})  # fmt: skip
                            chunk.append(envelope(tally))
                yield chunk
            lk = links.c
            edges = []
            for src, dst, kind, weight, created, stamp in conn.execute(
                sa.select(lk.source_id, lk.target_id, lk.kind, lk.weight, lk.created_at, lk.stamp)
                .where(lk.namespace == namespace)
            ):  # fmt: skip
                hlc, agent, _ = parse_stamp(stamp or f"{_ZERO} {replica} 0")
                p = {"target_id": dst, "kind": kind, "weight": weight}
                edges.append(envelope(ChangeEvent(0, namespace, src, Op.LINK, agent, hlc, created, p, {})))
            for i in range(0, len(edges), CHUNK):
                yield edges[i : i + CHUNK]
    finally:
        db.close()


_ZERO = "0000000000000.00000"  # a stamp older than any (a link written before sync kept stamps)
