"""The dashboard under access control: nothing before an API key signs the session in, then
every call as the key's principal (a reader cannot edit), and the audit log for admins; in
Streamlit's ``AppTest`` on a real database, and served to a real headless browser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

import dashboard.state
from dashboard import events
from stellar_core import PermissionDenied, Principal, Settings, StellarMemory
from tests.test_dashboard import (
    APP,
    button,
    chromium,
    feeds,  # noqa: F401  (the fixture)
    keep_main_module,  # noqa: F401  (autouse: AppTest leaves __main__ changed)
    serve,
    settled,
)

if TYPE_CHECKING:
    from stellar_core import SteppingClock
    from tests.conftest import MemoryFactory
    from tests.services import Redis

ROOT = Principal("root")
TEAM = ["The team's stand-up is at 09:30", "The team deploys on Wednesdays only"]
PRIVATE = "Root's private note: the vault code changed"


@dataclass
class Guarded:
    mem: StellarMemory  # opened as the dashboard is: its own agent, which holds no grant
    alice: str  # API keys: a reader of "team"
    root: str  # an admin everywhere (the admins setting)
    team: list[str]  # ids of team's memories


def guard(mem: StellarMemory) -> Guarded:
    """Team's memories and root's private one; alice reads team; a key for each of them."""
    team = [mem.store(text, namespace="team", principal=ROOT).id for text in TEAM]
    mem.store(PRIVATE, namespace="private", principal=ROOT)
    mem.security.grant("alice", "team", "reader", principal=ROOT)
    alice = mem.security.create_api_key("alice", label="alice's laptop", principal=ROOT)
    root = mem.security.create_api_key("root", principal=ROOT)
    return Guarded(mem, alice, root, team)


def guarded_settings(**more: float) -> Settings:
    return Settings(access_control=True, admins=["root"], audit_log=True, **more)


@pytest.fixture
def guarded(open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch) -> Guarded:
    # Keys are checked again on every run (a revoked one must stop at once here).
    settings = guarded_settings(grants_refresh_seconds=1e-6)
    g = guard(open_memory(agent="dashboard", settings=settings))
    monkeypatch.setattr(dashboard.state, "memory", lambda: g.mem)
    return g


def signed_in(key: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input[0].set_value(key)
    button(at, "Sign in").click().run()
    assert not at.exception, at.exception
    return at


def test_nothing_is_shown_before_a_key_signs_in(guarded: Guarded) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert [t.label for t in at.text_input] == ["API key"] and not at.sidebar.selectbox
    assert not at.dataframe and not at.get("vega_lite_chart") and not at.error

    for wrong in ("stk_0123456789abcdef_not-the-secret", "hunter2"):
        at.text_input[0].set_value(wrong)
        button(at, "Sign in").click().run()
        assert not at.exception and at.error[0].value.startswith("Not signed in:")
        assert [t.label for t in at.text_input] == ["API key"] and not at.dataframe
    assert "unknown API key" in at.error[0].value or "not an API key" in at.error[0].value
    assert "auth_key" not in at.session_state  # the bad key is not kept


def test_a_reader_sees_its_namespaces_and_cannot_change_them(guarded: Guarded) -> None:
    at = signed_in(guarded.alice)
    assert at.sidebar.selectbox[0].options == ["team"]  # not "private", not the default
    assert "Audit" not in at.sidebar.radio[0].options
    assert "Signed in as `alice`" in [c.value for c in at.sidebar.caption]
    at.sidebar.radio[0].set_value("Memories").run()
    page = at.dataframe[0].value
    assert set(page["content"]) == set(TEAM) and PRIVATE not in set(page["content"])

    at.text_input[0].set_value("when do we deploy?").run()  # a recall, as alice
    target = at.dataframe[0].value["id"].iloc[0]
    button(at, "Forget this memory…").click().run()
    button(at, "Forget it").click().run()
    assert not at.exception and not at.success
    assert "Not forgotten" in at.error[0].value and "'alice' may not forget" in at.error[0].value
    at.text_area[0].set_value("The team deploys whenever it likes")
    button(at, "Save").click().run()
    assert "Not saved" in at.error[0].value and "'alice' may not update" in at.error[0].value
    kept = guarded.mem.get(target, namespace="team", principal=ROOT)
    assert kept.content == "The team deploys on Wednesdays only"

    at.sidebar.radio[0].set_value("Statistics").run()  # every view reads as alice
    assert not at.error and at.dataframe[-1].value["namespace"].tolist() == ["team"]
    for name in ("Solar system", "Graph", "Events"):
        at.sidebar.radio[0].set_value(name).run()
        assert not at.exception and not at.error, name

    button(at, "Sign out").click().run()
    assert [t.label for t in at.text_input] == ["API key"] and not at.sidebar.selectbox
    assert "auth_key" not in at.session_state


def test_a_key_revoked_or_expired_meanwhile_ends_the_session(guarded: Guarded, clock: SteppingClock) -> None:
    at = signed_in(guarded.alice)
    key_id = guarded.alice.split("_")[1]
    guarded.mem.security.revoke_api_key(key_id, principal=ROOT)
    at.sidebar.radio[0].set_value("Statistics").run()
    assert at.error[0].value == f"Not signed in: API key {key_id} was revoked."
    assert not at.sidebar.selectbox and not at.metric

    brief = guarded.mem.security.create_api_key("alice", expires_days=1, principal=ROOT)
    at = signed_in(brief)
    assert at.sidebar.selectbox[0].options == ["team"]
    clock.advance(days=2)
    at.sidebar.radio[0].set_value("Statistics").run()
    assert at.error[0].value.startswith("Not signed in:") and "expired" in at.error[0].value


def test_an_admin_reads_the_audit_log_and_verifies_its_chain(guarded: Guarded) -> None:
    alice = signed_in(guarded.alice)
    alice.sidebar.radio[0].set_value("Memories").run()
    alice.text_input[0].set_value("stand-up").run()

    at = signed_in(guarded.root)
    assert at.sidebar.selectbox[0].options == ["private", "team"]
    at.sidebar.radio[0].set_value("Audit").run()
    log = at.dataframe[0].value
    by_alice = log[log["principal"] == "alice"]
    assert {"authenticate", "get", "recall"} <= set(by_alice["action"])
    assert set(by_alice[by_alice["action"] == "recall"]["namespace"]) == {"team"}
    assert list(log["seq"]) == sorted(log["seq"], reverse=True)  # newest first
    assert not any(text in " ".join(map(str, log.to_numpy().ravel())) for text in TEAM)  # no content
    at.selectbox[0].set_value("alice").run()  # one principal's records
    assert set(at.dataframe[0].value["principal"]) == {"alice"}

    button(at, "Verify chain").click().run()
    assert at.success[0].value.startswith("The chain is intact")
    first = int(log["seq"].min())
    with sa.create_engine(guarded.mem.settings.sqlalchemy_url()).begin() as conn:  # tamper with one
        conn.execute(sa.text("UPDATE audit_log SET outcome = 'denied' WHERE seq = :s"), {"s": first})
    button(at, "Verify chain").click().run()
    assert at.error[0].value == f"Record {first} breaks the chain: it was edited."


def test_without_access_control_the_audit_view_is_the_dashboards_own(
    open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for audit_log in (False, True):
        mem = open_memory(
            tmp_path / f"{audit_log}.db", agent="dashboard", settings=Settings(audit_log=audit_log)
        )
        mem.store("The backup window is 02:00-03:00 UTC")
        monkeypatch.setattr(dashboard.state, "memory", lambda mem=mem: mem)
        at = AppTest.from_file(APP, default_timeout=120).run()  # no sign-in
        assert not at.text_input and "Acting as agent `dashboard`" in [c.value for c in at.sidebar.caption]
        at.sidebar.radio[0].set_value("Audit").run()
        assert not at.exception
        if audit_log:
            assert set(at.dataframe[0].value["principal"]) == {"dashboard"}
            button(at, "Verify chain").click().run()
            assert at.success[0].value.startswith("The chain is intact")
        else:
            assert "STELLAR_AUDIT_LOG=true" in at.info[0].value
        mem.close()


@pytest.mark.usefixtures("feeds")
def test_the_pushed_feed_and_the_sync_state_are_read_as_the_signed_in_principal(
    open_memory: MemoryFactory, redis_server: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's own agent holds no grant: alice's feed is pushed all the same, as alice;
    a reader cannot settle a conflict, and a revoked grant ends her feed at once."""
    sync = {"sync_url": redis_server.url(), "sync_prefix": f"guarded-{tmp_path.name}"}
    settings = Settings(access_control=True, admins=["root"], grants_refresh_seconds=1e-6, **sync)
    g = guard(open_memory(tmp_path / "hub.db", agent="dashboard", settings=settings))
    hub = open_memory(tmp_path / "hub.db", agent="root", settings=settings)  # syncs as an admin
    laptop = open_memory(tmp_path / "laptop.db", agent="planner-2", settings=Settings(**sync))
    monkeypatch.setattr(dashboard.state, "memory", lambda: g.mem)
    hub.sync.publish()
    laptop.sync.pull(["team"])
    hub.update(g.team[0], content="The stand-up moved to 10:00", namespace="team")
    laptop.update(g.team[0], content="The stand-up is cancelled this week", namespace="team")
    laptop.sync.publish()
    assert hub.sync.pull(["team"]).conflicts == 1

    at = signed_in(g.alice)
    at.sidebar.radio[0].set_value("Events").run()
    assert not at.error and "pushed from the sync stream" in at.caption[0].value
    assert g.team[0] in set(at.dataframe[0].value["memory"])
    assert at.dataframe[1].value.iloc[0]["conflicts"] == 1
    button(at, "Keep the loser").click().run()
    assert "Not resolved" in at.error[0].value and "'alice' may not update" in at.error[0].value
    assert len(hub.sync.conflicts("team")) == 1

    feed = events.Feed(g.mem, "team", Principal("alice"))  # as a fragment's timer reruns it
    assert feed.live() and feed.newest()
    g.mem.security.revoke("alice", "team", principal=ROOT)
    with pytest.raises(PermissionDenied, match="'alice' may not"):
        feed.live()  # and closed: nothing more of the stream for her
    with pytest.raises(PermissionDenied):
        feed.live()
    at.run()
    assert not at.dataframe and "No namespace that `alice` may read" in at.info[0].value


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_access_control_in_a_real_browser(open_memory: MemoryFactory, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    g = guard(open_memory(agent="dashboard", settings=guarded_settings()))
    g.mem.security.flush()
    env = {"STELLAR_ACCESS_CONTROL": "true", "STELLAR_ADMINS": '["root"]', "STELLAR_AUDIT_LOG": "true"}
    with serve(g.mem, tmp_path, **env) as url, chromium() as page:
        page.goto(url)
        sidebar = page.get_by_test_id("stSidebar")
        key = page.locator('input[aria-label="API key"]')

        def sign_in(secret: str) -> None:
            key.fill(secret)
            page.get_by_role("button", name="Sign in").click()
            settled(page)

        expect(key).to_be_visible(timeout=90_000)  # (1) a key first, and nothing else
        assert page.get_by_test_id("stDataFrame").count() == 0 and sidebar.count() == 0
        assert page.get_by_text("stand-up", exact=False).count() == 0

        sign_in("stk_0123456789abcdef_not-the-secret")  # (2) a wrong key
        expect(page.get_by_text("Not signed in: unknown API key")).to_be_visible(timeout=30_000)
        expect(key).to_be_visible()

        sign_in(g.alice)  # (3) alice: team's memories, no other namespace
        expect(sidebar.get_by_text("Signed in as alice")).to_be_visible(timeout=30_000)
        namespace = sidebar.locator('input[aria-label="Namespace"]')
        expect(namespace).to_have_value("team")
        namespace.click()
        expect(page.get_by_role("option")).to_have_text(["team"])
        page.keyboard.press("Escape")
        expect(sidebar.get_by_text("Audit", exact=True)).to_have_count(0)
        sidebar.get_by_text("Memories", exact=True).click()
        search = page.locator('input[aria-label="Search"]')
        search.fill("when do we deploy?")
        search.press("Enter")
        hits = page.locator("table", has_text="relevance")
        expect(hits.get_by_test_id("glide-cell-1-0")).to_have_text(TEAM[1], timeout=30_000)
        settled(page)
        page.get_by_role("button", name="Forget this memory…").click()
        page.get_by_role("button", name="Forget it").click()
        expect(page.get_by_text("'alice' may not forget in namespace 'team'", exact=False)).to_be_visible(
            timeout=30_000
        )
        assert g.mem.get(g.team[1], namespace="team", principal=ROOT).content == TEAM[1]
        assert g.alice not in page.url and page.get_by_text("Traceback").count() == 0

        sidebar.get_by_role("button", name="Sign out").click()  # (4) root: the audit log
        expect(key).to_be_visible(timeout=30_000)
        sign_in(g.root)
        sidebar.get_by_text("Audit", exact=True).click()
        chosen = page.locator('input[aria-label="Principal"]')
        chosen.click()
        page.get_by_role("option", name="alice", exact=True).click()
        log = page.locator("table", has_text="principal")
        expect(log.locator("td", has_text="recall").first).to_be_attached(timeout=30_000)
        expect(log.locator("td", has_text="denied").first).to_be_attached()  # the forget
        expect(log.locator("td", has_text="root")).to_have_count(0)
        page.get_by_role("button", name="Verify chain").click()
        expect(page.get_by_text("The chain is intact", exact=False)).to_be_visible(timeout=30_000)
    actions = {(r["principal"], r["action"]) for r in g.mem.security.audit(limit=500, principal=ROOT)}
    assert {("alice", "recall"), ("alice", "get"), ("alice", "forget")} <= actions
    logged = (tmp_path / "streamlit.log").read_text()
    assert g.alice not in logged and g.root not in logged  # the keys are never logged
