"""The live event feed: the namespace's changes, newest first, and how this replica syncs.

With sync on (``STELLAR_SYNC_URL``) the feed is pushed from the namespace's stream: a
subscription per session and namespace fills a bounded buffer, which the fragment shows on its
timer; it shows the other replicas' changes as they publish them, before this one has applied
them (and this database's own, read from its log every few seconds, before they are
published). Without sync, or while Redis does not answer, the fragment polls the change log.
Everything is asked as the session's principal.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard.palette import preview
from stellar_core import (
    ChangeEvent,
    Principal,
    StellarError,
    StellarMemory,
    Subscription,
    SyncStatus,
    SyncUnavailable,
)

SHOWN = 100
CHECK_SECONDS = 5.0  # how often a feed asks for the sync status (Redis up?) and this database's log


def details(payload: dict[str, Any]) -> str:
    """What changed, in a line: new content, the fields an update set, a link's target."""
    if "content" in payload:
        return preview(str(payload["content"]), 80)
    if "target_id" in payload:
        return f"{payload.get('kind')} -> {payload['target_id']} ({payload.get('weight')})"
    return ", ".join(f"{k}={v}" for k, v in payload.items() if k not in ("hlc", "vector_clock", "updated_at"))


def table(found: Sequence[ChangeEvent]) -> pd.DataFrame:
    rows = [
        {
            "time": datetime.fromtimestamp(e.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "op": e.op,
            "agent": e.agent,
            "memory": e.memory_id,
            "details": details(e.payload),
            "seq": e.seq or None,  # a pushed event has no seq of this database's log
        }
        for e in found
    ]
    return pd.DataFrame(rows, columns=["time", "op", "agent", "memory", "details", "seq"])


class Feed:
    """A namespace's newest changes as the replicas publish them, and the sync status of
    this replica there, for one session's principal."""

    def __init__(self, mem: StellarMemory, namespace: str, who: Principal) -> None:
        self.mem, self.namespace, self.who = mem, namespace, who
        self.status: SyncStatus | None = None  # None: not asked yet
        self._events: deque[ChangeEvent] = deque(maxlen=SHOWN)
        self._keys: set[tuple[str, str, str, str]] = set()  # of the events held
        self._inbox: deque[ChangeEvent] = deque(maxlen=SHOWN)  # the subscription's thread appends
        self._sub: Subscription | None = None
        self._seq = 0  # the newest of this database's log in the buffer
        self._lock = threading.Lock()
        self._checked = -CHECK_SECONDS

    def live(self) -> bool:
        """Whether the buffer is current: subscribed, and Redis answered when last asked (every
        few seconds). Subscribes when it is not, and adds this database's own changes. Raises
        ``PermissionDenied`` when the principal may no longer read the namespace."""
        with self._lock:
            if time.monotonic() - self._checked >= CHECK_SECONDS:
                self._checked, self.status = time.monotonic(), None
                sync, ns, who = self.mem.sync, self.namespace, self.who
                try:
                    self.status = sync.status(ns, principal=who)[0]
                    if self._sub is None and self.status.connected:
                        self._sub = sync.subscribe(ns, self._inbox.append, principal=who)
                    if self._sub is not None:
                        self._catch_up()
                except SyncUnavailable:  # Redis went away meanwhile: next time
                    pass
                except StellarError:  # refused: nothing more for this principal from here
                    self.close()
                    raise
            return self._sub is not None and self.status is not None and self.status.connected

    def _catch_up(self) -> None:
        """This database's changes since the last look (first: its newest): they reach the
        stream only once published, which may wait for the sync flow. A change that comes both
        ways is kept once."""
        found = self.mem.events(after=self._seq, limit=SHOWN, namespace=self.namespace, principal=self.who)
        for e in reversed(found):
            self._keep(e)
            self._seq = max(self._seq, e.seq)

    def _keep(self, e: ChangeEvent) -> None:
        key = (e.memory_id, e.op, e.hlc, e.agent)  # the same in the log and on the stream
        if key in self._keys:
            return
        if len(self._events) == self._events.maxlen:
            old = self._events[0]
            self._keys.discard((old.memory_id, old.op, old.hlc, old.agent))
        self._events.append(e)
        self._keys.add(key)

    def newest(self) -> list[ChangeEvent]:
        with self._lock:
            while self._inbox:
                self._keep(self._inbox.popleft())
            return sorted(self._events, key=lambda e: (e.created_at, e.hlc), reverse=True)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None


@st.cache_resource(scope="session", max_entries=16, on_release=Feed.close, show_spinner=False)
def feed_of(_mem: StellarMemory, namespace: str, who: Principal, opened: int) -> Feed:
    """This session's feed of a namespace (``opened``: which open memory, ``id(mem)``)."""
    return Feed(_mem, namespace, who)


STATUS = {"connected": "connected", "unpublished": "unpublished", "stream_length": "in the stream",
          "lag_events": "to apply", "lag_s": "lag (s)", "pending": "pending", "consumers": "consumers",
          "held": "held", "conflicts": "conflicts", "needs_bootstrap": "needs bootstrap"}  # fmt: skip


def status_table(s: SyncStatus) -> pd.DataFrame:
    row = asdict(s)
    row["lag_s"] = None if s.lag_ms is None else round(s.lag_ms / 1000, 1)
    return pd.DataFrame([{label: row[k] for k, label in STATUS.items()}])


def stamped(stamp: str) -> str:
    """A version's stamp (``"<hlc> <agent> ..."``) for people: who, and when (UTC)."""
    try:
        hlc, agent = stamp.split()[:2]
        when = datetime.fromtimestamp(int(hlc.split(".")[0]) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp
    return f"by {agent}, {when}"


def conflicts(mem: StellarMemory, namespace: str, who: Principal) -> None:
    """Open conflicts, each with both versions and a button to keep either."""
    for x in mem.sync.conflicts(namespace, principal=who):
        with st.container(border=True):
            st.markdown(f"Memory `{x.memory_id}`: concurrent edits of {', '.join(x.fields)}")
            pick = st.columns(2)
            sides = ((pick[0], "winner", "kept now", x.winner), (pick[1], "loser", "set aside", x.loser))
            for col, side, now, version in sides:
                col.caption(f"{side} ({now}) · {stamped(version['stamp'])}")
                for field, value in version["values"].items():
                    col.text(f"{field}: {preview(str(value), 200)}")
                if col.button(f"Keep the {side}", key=f"keep-{side}-{x.id}"):
                    try:
                        mem.sync.resolve(x.id, keep=side, namespace=namespace, principal=who)
                    except StellarError as exc:  # a reader, say: nothing was changed
                        st.error(f"Not resolved: {exc}")
                    else:
                        st.session_state["events_done"] = f"Kept the {side} of memory {x.memory_id}."
                        st.rerun()


def render(mem: StellarMemory, namespace: str, who: Principal) -> None:
    st.header("Events")
    live = st.toggle("Live", value=True, help="Refresh every few seconds")
    every = mem.settings.dashboard_refresh_seconds if live else None

    @st.fragment(run_every=every)
    def feed() -> None:
        if auth.principal(mem) != who:  # the key was revoked or expired since: to the sign-in
            st.rerun()
        pushed = feed_of(mem, namespace, who, id(mem)) if mem.settings.sync_url else None
        try:  # a fragment's own reruns are outside the app's error handling
            if pushed is not None and pushed.live():
                found = pushed.newest()
                how = "as the replicas publish them, pushed from the sync stream"
            else:
                found = mem.events(limit=SHOWN, namespace=namespace, principal=who)
                how = "from this database's change log"
        except StellarError as exc:
            st.error(str(exc))
            return
        st.caption(f"The newest {len(found)} changes (UTC), from every agent and flow, {how}.")
        st.dataframe(table(found), hide_index=True, width="stretch")
        if pushed is not None:
            sync(mem, namespace, who, pushed)

    feed()


def sync(mem: StellarMemory, namespace: str, who: Principal, pushed: Feed) -> None:
    """This database as a replica of the namespace: its status, and the conflicts to settle."""
    st.subheader("Sync")
    if message := st.session_state.pop("events_done", None):
        st.success(message)
    s = pushed.status
    if s is None:
        return
    if not s.connected:
        st.warning("Redis does not answer: changes wait in the outbox (the feed reads the change log).")
    st.caption(
        f"This database as replica `{s.replica}`: its changes not on the stream yet, the stream's entries "
        "it has not applied (and how long the oldest waits), read but not acknowledged, its live "
        "consumers, events held, open conflicts."
    )
    st.dataframe(status_table(s), hide_index=True)
    if s.conflicts:
        st.caption("Concurrent edits: the merge kept the later one everywhere; keep the other instead?")
        conflicts(mem, namespace, who)
