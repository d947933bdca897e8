"""The dashboard: every view in Streamlit's ``AppTest`` on a real database, edits through the
API, flow runs from a real Prefect API, and the app served to a real headless browser."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import dashboard.state
from dashboard import events, graph, solar
from stellar_core import NotFoundError, Settings, StellarMemory, SystemClock, Zone
from tests.services import Redis, free_port, wait_for_port

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.conftest import MemoryFactory

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
FACTS = [
    ("Ines owns the ground-station rota", 0.95),
    ("The backup window is 02:00-03:00 UTC", 0.7),
    ("Skarvik station is down on Tuesdays for maintenance", 0.5),
    ("The coffee machine on floor 2 is broken", 0.1),
    ("Deploys need two approvals from the release team", 0.8),
    ("The quarterly review moved to Thursday", 0.2),
]


@pytest.fixture(autouse=True)
def keep_main_module() -> Iterator[None]:
    """AppTest runs the app as ``__main__`` and leaves it there: processes spawned later by
    other tests (multiprocessing re-imports the parent's main module) would run the app."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def seeded(open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch) -> StellarMemory:
    """A memory with facts in several zones and a chain of links, served to the app."""
    mem = open_memory(agent="dashboard")
    stored = [mem.store(text, importance=imp) for text, imp in FACTS]
    mem.link(stored[0].id, stored[1].id, kind="related", weight=0.9)
    mem.link(stored[1].id, stored[2].id, kind="supports", weight=0.4)
    mem.reorbit()
    monkeypatch.setattr(dashboard.state, "memory", lambda: mem)
    return mem


def view(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.sidebar.radio[0].set_value(name).run()
    assert not at.exception, at.exception
    return at


def test_solar_system_puts_every_memory_on_its_zones_orbit(seeded: StellarMemory) -> None:
    shown = seeded.memories(limit=100)
    assert len({x.zone for x in shown}) > 1  # the seed spans zones
    bodies = solar.bodies(shown).set_index("id")
    radius = {x.id: math.hypot(bodies.at[x.id, "x"], bodies.at[x.id, "y"]) for x in shown}
    for x in shown:
        assert abs(radius[x.id] - (x.zone.rank + 1)) <= solar.BAND + 1e-9
    for a in shown:  # within a zone, a higher score is nearer the sun
        for b in shown:
            if a.zone == b.zone and a.score > b.score:
                assert radius[a.id] < radius[b.id]
    alone = solar.bodies(shown[:2]).set_index("id")  # a body's place does not depend on the others
    assert (alone[["x", "y"]] == bodies.loc[alone.index, ["x", "y"]]).all().all()

    at = view("Solar system")
    assert "6 of 6 memories" in at.caption[0].value
    assert len(at.get("vega_lite_chart")) == 1


def test_solar_system_draws_at_most_the_configured_sample_per_zone(
    open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = open_memory(settings=Settings(dashboard_orbit_sample=2))
    mem.store_many([f"note number {i} about the launch" for i in range(5)])
    monkeypatch.setattr(dashboard.state, "memory", lambda: mem)
    at = view("Solar system")
    assert "2 of 5 memories: the 2 highest scored" in at.caption[0].value


def test_statistics_show_the_namespaces_counts(seeded: StellarMemory) -> None:
    seeded.forget(seeded.memories(zones=[Zone.CLOUD, Zone.BELT, Zone.OUTER], limit=1)[0].id)
    at = view("Statistics")
    metrics = {m.label: m.value for m in at.metric}
    stats = seeded.stats()
    assert metrics == {
        "Memories": "5",
        "Forgotten": "1",
        "Links": str(stats.links),
        "Threads": "0",
        "Mean score": f"{stats.mean_score:.3f}",
    }
    zones = at.dataframe[0].value.set_index("zone")
    assert zones["memories"].sum() == 5
    assert zones.at["core", "capacity"] == seeded.zone_policy().capacities[Zone.CORE]


def test_browser_searches_edits_and_forgets_through_the_api(seeded: StellarMemory) -> None:
    at = view("Memories")
    assert len(at.dataframe[0].value) == 6  # no query: a page, highest score first
    at.text_input[0].set_value("who is responsible for the rota?").run()
    hits = at.dataframe[0].value
    assert "relevance" in hits and hits["content"].iloc[0] == "Ines owns the ground-station rota"
    target = hits["id"].iloc[0]
    assert at.selectbox[0].value == target
    seeded.flush()
    assert seeded.get(target).recall_count == 0  # an operator's search is not a use of the memory

    at.text_area[0].set_value("Ines and Joao share the ground-station rota")
    at.slider[0].set_value(0.6)
    at.text_input[1].set_value("people, ops")
    at.button[0].click().run()  # the form's Save
    assert not at.exception and at.success[0].value == "Saved."
    x = seeded.get(target)
    assert (x.content, x.importance, x.tags) == (
        "Ines and Joao share the ground-station rota",
        0.6,
        ("ops", "people"),
    )
    assert seeded.events(limit=1)[0].op == "update" and seeded.events(limit=1)[0].agent == "dashboard"

    at.text_area[0].set_value("   ")  # bad input: a clear error, the stored memory untouched
    at.button[0].click().run()
    assert "Not saved" in at.error[0].value
    assert seeded.get(target).content == "Ines and Joao share the ground-station rota"

    button(at, "Forget this memory…").click().run()  # asks first: nothing forgotten yet
    assert "cannot be undone" in at.warning[0].value and seeded.get(target)
    button(at, "Cancel").click().run()
    assert not at.warning and seeded.get(target)
    button(at, "Forget this memory…").click().run()
    button(at, "Forget it").click().run()
    assert at.success[0].value.startswith("Forgotten")
    with pytest.raises(NotFoundError):
        seeded.get(target)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_search_hits_show_their_source_and_the_matching_part(seeded: StellarMemory) -> None:
    seeded.store(
        "# Runbook\n\nIntro text.\n\nThe backup of the archive runs nightly at 04:00 UTC.",
        source={"type": "file", "url": "/srv/docs/runbook.md", "chunk": 2},
        metadata={"file_name": "runbook.md"},
    )
    at = view("Memories")
    at.text_input[0].set_value("when does the archive backup run?").run()
    hits = at.dataframe[0].value.set_index("source")
    assert hits.at["runbook.md #2", "content"] == "…The backup of the archive runs nightly at 04:00 UTC."
    assert hits["relevance"].idxmax() == "runbook.md #2"


def test_event_feed_shows_other_agents_changes_newest_first(
    seeded: StellarMemory, open_memory: MemoryFactory
) -> None:
    other = open_memory(agent="planner-2")
    new = other.store("The antenna in Troll needs a new bearing", importance=0.4)
    at = view("Events")
    feed = at.dataframe[0].value
    assert list(feed.iloc[0][["op", "agent", "memory"]]) == ["store", "planner-2", new.id]
    assert feed.iloc[0]["details"] == "The antenna in Troll needs a new bearing"
    assert list(feed["seq"]) == sorted(feed["seq"], reverse=True)
    assert set(feed["op"]) >= {"store", "link"}
    assert at.toggle[0].value  # live by default


@pytest.fixture
def feeds(open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Events view's feeds asked for the sync status on every run, and closed (their
    subscriptions with them) before the memories are."""
    monkeypatch.setattr(events, "CHECK_SECONDS", 0.0)
    yield
    st.cache_resource.clear()


@pytest.fixture
def replicas(
    feeds: None,
    open_memory: MemoryFactory,
    redis_server: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[StellarMemory, StellarMemory]:
    """The dashboard's memory and another replica (a laptop's), synced through the session's
    Redis on streams of this test only."""
    settings = Settings(sync_url=redis_server.url(), sync_prefix=f"dash-{tmp_path.name}")
    mem = open_memory(tmp_path / "hub.db", agent="dashboard", settings=settings, clock=SystemClock())
    laptop = open_memory(tmp_path / "laptop.db", agent="planner-2", settings=settings, clock=SystemClock())
    monkeypatch.setattr(dashboard.state, "memory", lambda: mem)
    return mem, laptop


def rows_until(at: AppTest, found: Callable[[pd.DataFrame], bool], seconds: float = 30) -> pd.DataFrame:
    """The feed, run again until ``found`` holds for it (the subscription's thread is its own)."""
    deadline = time.monotonic() + seconds
    while True:
        feed = at.dataframe[0].value
        if found(feed):
            return feed
        assert time.monotonic() < deadline, feed
        time.sleep(0.2)
        at.run()


def test_event_feed_is_pushed_from_the_stream_with_the_sync_state(
    replicas: tuple[StellarMemory, StellarMemory],
) -> None:
    mem, laptop = replicas
    mine = mem.store("Ines owns the ground-station rota")
    at = view("Events")
    assert "pushed from the sync stream" in at.caption[0].value
    assert list(at.dataframe[0].value["memory"]) == [mine.id]  # the log's, until the stream has more

    new = laptop.store("The antenna in Troll needs a new bearing", importance=0.4)
    laptop.sync.publish()  # published, not applied here: the feed has it from the stream
    feed = rows_until(at, lambda f: new.id in set(f["memory"]))
    assert list(feed.iloc[0][["op", "agent", "memory"]]) == ["store", "planner-2", new.id]
    with pytest.raises(NotFoundError):
        mem.get(new.id)
    mem.sync.publish()  # its own change comes on the stream too: still shown once
    later = mem.store("The backup window is 02:00-03:00 UTC")  # not published: from the log
    time.sleep(1.5)  # (a subscription reads the stream every second, woken or not)
    feed = rows_until(at, lambda f: later.id in set(f["memory"]))
    assert list(feed["memory"]) == [later.id, new.id, mine.id]
    state = at.dataframe[1].value.iloc[0]  # two on the stream, neither applied by this replica yet
    assert state["connected"] and state["unpublished"] == 1 and state["to apply"] == 2
    assert state["conflicts"] == 0
    assert at.subheader[0].value == "Sync" and not at.button


def test_conflicts_are_settled_from_the_event_view(replicas: tuple[StellarMemory, StellarMemory]) -> None:
    mem, laptop = replicas
    rota = mem.store("Ines owns the ground-station rota")
    mem.sync.publish()
    laptop.sync.pull()
    mem.update(rota.id, content="Ines and Joao share the rota")  # neither has seen the other's edit
    laptop.update(rota.id, content="Joao owns the rota from May")
    laptop.sync.publish()
    assert mem.sync.pull().conflicts == 1
    (found,) = mem.sync.conflicts()
    at = view("Events")
    assert at.dataframe[1].value.iloc[0]["conflicts"] == 1
    button(at, "Keep the loser").click().run()
    assert not at.exception and at.success[0].value == f"Kept the loser of memory {rota.id}."
    assert mem.get(rota.id).content == found.loser["values"]["content"]
    assert not mem.sync.conflicts() and not [b for b in at.button if b.label.startswith("Keep")]
    assert mem.events(limit=1)[0].agent == "dashboard"  # an edit like any other, by the dashboard


def test_event_feed_polls_the_change_log_while_redis_does_not_answer(
    feeds: None, open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(sync_url=f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    mem = open_memory(agent="dashboard", settings=settings)
    mine = mem.store("Ines owns the ground-station rota")
    monkeypatch.setattr(dashboard.state, "memory", lambda: mem)
    at = view("Events")
    assert "from this database's change log" in at.caption[0].value
    assert list(at.dataframe[0].value["memory"]) == [mine.id]
    assert "Redis does not answer" in at.warning[0].value
    assert at.dataframe[1].value.iloc[0]["unpublished"] == 1  # waiting in the outbox, not lost


def test_graph_shows_the_neighbourhood_out_to_the_chosen_hops(seeded: StellarMemory) -> None:
    rota = seeded.recall("ground-station rota", k=1)[0].memory
    at = view("Graph")
    at.text_input[0].set_value("ground-station rota").run()
    at.selectbox[0].set_value(rota.id).run()
    assert at.caption[0].value == "3 memories, 2 links"
    assert set(at.dataframe[0].value["kind"]) == {"related", "supports"}
    assert "Colour: community" in at.caption[1].value
    at.slider[0].set_value(1).run()
    assert at.caption[0].value == "2 memories, 1 links"

    hood = seeded.graph.neighbourhood(rota.id, depth=3, limit=10)
    at = graph.layout(hood)  # the chain rota -> backup -> Skarvik: one ray out of the centre
    (middle, first, second) = (at[i] for i in hood.nodes)
    assert (
        middle == (0.0, 0.0)
        and math.hypot(*first) == pytest.approx(1)
        and math.hypot(*second) == pytest.approx(2)
    )
    assert math.atan2(*first) == pytest.approx(math.atan2(*second))
    capped = seeded.graph.neighbourhood(rota.id, depth=3, limit=1)
    assert len(capped.nodes) == 2 and capped.truncated

    # Colour by community, size by PageRank, of the namespace's whole graph.
    facts = graph.namespace_analytics(seeded, seeded.namespace, seeded.principal)
    assert set(facts.community) == {x.id for x in seeded.memories(limit=100)}
    assert len({facts.community[i] for i in hood.nodes}) == 1  # the linked chain: one community
    spec = graph.chart(hood, facts).to_dict()
    rows = next(d for d in spec["datasets"].values() if d and "community" in d[0])
    assert {r["community"] for r in rows} == {"#1"} and max(r["size"] for r in rows) == 1.0
    best = max(hood.nodes, key=lambda i: facts.rank[i])
    assert next(r for r in rows if r["id"] == best)["size"] == 1.0
    assert any(layer["encoding"].get("color", {}).get("field") == "community" for layer in spec["layer"])


def test_flow_runs_come_from_the_prefect_api(seeded: StellarMemory, prefect_api: str) -> None:
    from prefect import flow

    @flow(name="dashboard-probe")
    def probe() -> int:
        return 1

    probe()
    at = view("Flow runs")
    runs = at.dataframe[0].value
    assert runs.iloc[0]["flow"] == "dashboard-probe" and runs.iloc[0]["state"] == "Completed"


def test_app_reports_a_database_it_cannot_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STELLAR_DATABASE_URL", f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    monkeypatch.setenv("STELLAR_DB_POOL_TIMEOUT", "2")
    dashboard.state.memory.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    dashboard.state.memory.clear()
    assert not at.exception
    assert at.error[0].value.startswith("Cannot open the memory")


@pytest.fixture
def served(seeded: StellarMemory, tmp_path: Path) -> Iterator[str]:
    """``streamlit run`` in its own process on the seeded database, as an operator starts it."""
    with serve(seeded, tmp_path) as url:
        yield url


@contextmanager
def serve(mem: StellarMemory, tmp_path: Path, **settings: str) -> Iterator[str]:
    """``python -m dashboard`` on ``mem``'s database, with more ``STELLAR_*`` settings."""
    mem.flush()
    port = free_port()
    env = {
        **os.environ,
        "STELLAR_DASHBOARD_REFRESH_SECONDS": "1",
        "STELLAR_DATABASE_URL": mem.settings.sqlalchemy_url(),
        "STELLAR_AGENT_ID": "dashboard",
        "STELLAR_DASHBOARD_PORT": str(port),
        **settings,
    }
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"  # no Prefect server there
    cmd = [sys.executable, "-m", "dashboard"]  # what `make dashboard` runs
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, "streamlit", timeout=60)
        assert listening_on(port) == {"127.0.0.1"}  # not offered to the network unless configured
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def listening_on(port: int) -> set[str]:
    """The local addresses with a socket listening on the TCP port (from the kernel's tables)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # host order
                found.add(str(ipaddress.ip_address(words)))
    return found


def settled(page: Page) -> None:
    """Wait for the script run to end: until then Streamlit shows the last run's elements too.
    (Expectations that follow wait for their own state: this only keeps stale ones out.)"""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)


@contextmanager
def chromium() -> Iterator[Page]:
    """A page in the system's headless Chromium."""
    from playwright.sync_api import sync_playwright

    found = shutil.which("chromium")
    assert found, "chromium is missing: `make test` installs it (apt package chromium)"
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=found, args=args)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_dashboard_in_a_real_browser(served: str, seeded: StellarMemory, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(served)
        sidebar = page.get_by_test_id("stSidebar")
        expect(page.get_by_text("6 of 6 memories", exact=False)).to_be_visible(timeout=90_000)
        chart = page.locator(".vega-embed").first
        expect(chart).to_be_visible(timeout=30_000)
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 300
        page.screenshot(path=str(tmp_path / "solar.png"))  # the look: keep it when debugging

        sidebar.get_by_text("Statistics", exact=True).click()
        expect(page.get_by_text("Mean score")).to_be_visible(timeout=30_000)

        sidebar.get_by_text("Memories", exact=True).click()
        search = page.locator('input[aria-label="Search"]')
        search.fill("when is the backup window?")
        search.press("Enter")
        best = "The backup window is 02:00-03:00 UTC"
        hits = page.locator("table", has_text="relevance")  # the search's table, not the page's
        expect(hits.get_by_test_id("glide-cell-1-0")).to_have_text(best, timeout=30_000)  # the top hit
        settled(page)  # the page's own elements are gone once the run ends
        expect(page.locator('input[aria-label="Edit or forget"]')).to_have_value(best)  # chosen to edit
        assert page.get_by_text("Traceback").count() == 0

        sidebar.get_by_text("Events", exact=True).click()  # live: another agent's write shows up
        expect(page.get_by_text("from every agent and flow", exact=False)).to_be_visible(timeout=30_000)
        seeded.store("The antenna in Troll needs a new bearing", principal="planner-2")
        expect(page.locator("td", has_text="The antenna in Troll needs a new bearing")).to_have_count(
            1, timeout=30_000
        )

        sidebar.get_by_text("Flow runs", exact=True).click()  # a dead Prefect API: said, not raised
        expect(page.get_by_text("did not answer", exact=False)).to_be_visible(timeout=60_000)
    assert (tmp_path / "solar.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_a_change_published_by_another_replica_appears_without_a_reload(
    seeded: StellarMemory, open_memory: MemoryFactory, redis_server: Redis, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    sync = {"STELLAR_SYNC_URL": redis_server.url(), "STELLAR_SYNC_PREFIX": f"browser-{tmp_path.name}"}
    settings = Settings(sync_url=sync["STELLAR_SYNC_URL"], sync_prefix=sync["STELLAR_SYNC_PREFIX"])
    laptop = open_memory(tmp_path / "laptop.db", agent="planner-2", settings=settings)
    with serve(seeded, tmp_path, **sync) as url, chromium() as page:
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_text("Events", exact=True).click()
        expect(page.get_by_text("pushed from the sync stream", exact=False)).to_be_visible(timeout=90_000)
        page.evaluate("window.stillThisPage = true")  # gone if the page were loaded again
        new = laptop.store("The antenna in Troll needs a new bearing")
        laptop.sync.publish()
        expect(page.locator("td", has_text="The antenna in Troll needs a new bearing")).to_have_count(
            1, timeout=30_000
        )
        assert page.evaluate("window.stillThisPage") is True
        assert page.get_by_text("Traceback").count() == 0
    with pytest.raises(NotFoundError):  # from the stream: the dashboard's replica has not applied it
        seeded.get(new.id)
