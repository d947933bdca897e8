"""The API connector against a real HTTP server on loopback: items picked by a dotted path
become one memory each; polls are conditional, so a 304 writes nothing; an updated item
replaces its memory; items and responses that cannot be read are reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from stellar_core import StellarMemory
from stellar_core.connectors.api import ApiSource, ingest_api
from stellar_core.errors import SourceError, ValidationError
from tests.sites import Site, reply
from tests.test_connectors_files import all_memories

MemoryFactory = Callable[..., StellarMemory]

LISTING: dict[str, Any] = {
    "data": {
        "count": 3,
        "stations": [
            {
                "meta": {"code": "SKV"},
                "name": "Skarvik",
                "antenna": {"metres": 7.3},
                "notes": "Heated radome.",
            },
            {"meta": {"code": "PAL"}, "name": "Port Alder", "antenna": {"metres": 5.0}, "notes": None},
            {"name": "Unnamed site with no code", "antenna": {"metres": 2.4}},
        ],
    }
}


class Endpoint:
    """A JSON listing with an ETag and a Last-Modified; answers 304 when they still match."""

    def __init__(
        self, body: Any, etag: str = '"v1"', modified: str = "Mon, 01 Jan 2024 00:00:00 GMT"
    ) -> None:
        self.body, self.etag, self.modified = body, etag, modified
        self.not_modified = 0

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == self.etag:
            self.not_modified += 1
            h.send_response(304)
            h.send_header("ETag", self.etag)
            h.end_headers()
            return
        headers = {"ETag": self.etag, "Last-Modified": self.modified}
        reply(json.dumps(self.body), "application/json", headers=headers)(h)


def stations(site: Site, **kwargs: Any) -> ApiSource:
    options: dict[str, Any] = {
        "items": "data.stations",
        "key": "meta.code",
        "fields": ("name", "antenna.metres", "notes"),
        "title": "name",
    }
    return ApiSource(site.url("/stations"), **{**options, **kwargs})


def test_items_picked_by_path_become_one_memory_each(allowed: StellarMemory, site: Site) -> None:
    site.routes["/stations"] = Endpoint(LISTING)
    result = ingest_api(allowed, stations(site), namespace="ops", importance=0.6)

    assert (result.sources, result.new) == (2, 2)
    assert result.skipped == [(f"{site.url('/stations')} item 2", "no 'meta.code' field to identify it")]
    stored = {x.source.url: x for x in all_memories(allowed, "ops") if x.source}
    skv = stored[site.url("/stations") + "#SKV"]
    assert skv.content == "# Skarvik\n\nname: Skarvik\nantenna.metres: 7.3\nnotes: Heated radome."
    assert (
        stored[site.url("/stations") + "#PAL"].content
        == "# Port Alder\n\nname: Port Alder\nantenna.metres: 5.0"
    )
    assert skv.source is not None and skv.source.type == "api"
    assert (skv.metadata["api_url"], skv.metadata["item_key"], skv.importance) == (
        site.url("/stations"),
        "SKV",
        0.6,
    )
    assert site.requests[0][1]["Accept"].startswith("application/json")


def test_a_second_poll_is_conditional_and_a_304_writes_nothing(allowed: StellarMemory, site: Site) -> None:
    endpoint = Endpoint(LISTING)
    site.routes["/stations"] = endpoint
    ingest_api(allowed, stations(site))
    before = {x.id: x.updated_at for x in all_memories(allowed)}

    again = ingest_api(allowed, stations(site))
    sent = site.requests[1][1]
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert endpoint.not_modified == 1
    assert (again.sources, again.unchanged, again.new, again.replaced) == (2, 2, 0, 0)
    assert {x.id: x.updated_at for x in all_memories(allowed)} == before

    ingest_api(allowed, stations(site), namespace="elsewhere")  # remembered per namespace
    assert "If-None-Match" not in site.requests[2][1]
    ingest_api(allowed, stations(site, fields=("name",)))  # read differently: ask afresh
    assert "If-None-Match" not in site.requests[3][1]


def test_an_updated_item_replaces_its_memory(allowed: StellarMemory, site: Site) -> None:
    endpoint = Endpoint(LISTING)
    site.routes["/stations"] = endpoint
    ingest_api(allowed, stations(site))
    pal = next(x for x in all_memories(allowed) if x.metadata.get("item_key") == "PAL")

    updated = json.loads(json.dumps(LISTING))
    updated["data"]["stations"][0]["notes"] = "Heated radome; heater checked every October."
    endpoint.body, endpoint.etag = updated, '"v2"'
    result = ingest_api(allowed, stations(site))

    assert (result.sources, result.new, result.unchanged, result.replaced) == (2, 1, 1, 1)
    by_key = {x.metadata["item_key"]: x for x in all_memories(allowed)}
    assert sorted(by_key) == ["PAL", "SKV"]
    assert by_key["SKV"].content.endswith("notes: Heated radome; heater checked every October.")
    assert by_key["PAL"].id == pal.id  # untouched

    endpoint.body = {"data": {"stations": updated["data"]["stations"][:1]}}  # PAL paginated away
    endpoint.etag = '"v3"'
    assert ingest_api(allowed, stations(site)).unchanged == 1
    assert "PAL" in {x.metadata["item_key"] for x in all_memories(allowed)}  # not forgotten


def test_whole_items_as_json_and_a_single_object(allowed: StellarMemory, site: Site) -> None:
    site.routes["/list"] = reply(json.dumps([{"id": 7, "b": [1, 2], "a": "x"}, "stray"]), "application/json")
    site.routes["/one"] = reply(
        json.dumps({"id": "only", "text": "A single object."}), "application/vnd.api+json"
    )
    listed = ingest_api(allowed, ApiSource(site.url("/list")))
    assert listed.new == 1 and "not a JSON object" in listed.skipped[0][1]
    assert ingest_api(allowed, ApiSource(site.url("/one"), fields=("text",))).new == 1
    contents = sorted(x.content for x in all_memories(allowed))
    pretty = '{\n  "a": "x",\n  "b": [\n    1,\n    2\n  ],\n  "id": 7\n}'  # keys sorted
    assert contents == ["text: A single object.", pretty]


@pytest.mark.parametrize(
    ("body", "items", "message"),
    [
        ('{"data": [1, 2', "", "invalid JSON"),
        (json.dumps(LISTING), "data.missing", "'data.missing' not found"),
        (json.dumps(LISTING), "data.count", "'data.count' is a number, not a list or an object"),
        ("42", "", "the response is a number"),
    ],
)
def test_responses_that_cannot_be_read(
    allowed: StellarMemory, site: Site, body: str, items: str, message: str
) -> None:
    site.routes["/stations"] = reply(body, "application/json")
    with pytest.raises(SourceError, match=message):
        ingest_api(allowed, ApiSource(site.url("/stations"), items=items))
    assert all_memories(allowed) == []


def test_failed_poll_is_not_remembered(allowed: StellarMemory, site: Site) -> None:
    site.routes["/stations"] = reply("{broken", "application/json", headers={"ETag": '"v1"'})
    with pytest.raises(SourceError):
        ingest_api(allowed, stations(site))
    site.routes["/stations"] = Endpoint(LISTING)
    assert ingest_api(allowed, stations(site)).new == 2
    assert "If-None-Match" not in site.requests[1][1]


def test_the_api_goes_through_the_guard_and_checks_content_type(
    mem: StellarMemory, allowed: StellarMemory, site: Site
) -> None:
    site.routes["/stations"] = Endpoint(LISTING)
    with pytest.raises(SourceError, match="not a public address"):
        ingest_api(mem, stations(site))
    assert site.requests == []
    site.routes["/page"] = reply("<html></html>")
    with pytest.raises(SourceError, match="unsupported content type text/html"):
        ingest_api(allowed, ApiSource(site.url("/page")))


def test_bad_arguments_fail_the_call(mem: StellarMemory, site: Site) -> None:
    for source, options in [
        (ApiSource(site.url("/x"), key=""), {}),
        (ApiSource(site.url("/x"), fields="name"), {}),  # type: ignore[arg-type]
        (ApiSource(site.url("/x")), {"importance": 1.5}),
        (ApiSource(site.url("/x")), {"namespace": "no spaces"}),
    ]:
        with pytest.raises(ValidationError):
            ingest_api(mem, source, **options)
    assert site.requests == []


def test_fields_given_as_a_json_list_are_a_tuple() -> None:
    source = ApiSource("http://example.com/api", fields=["name", "notes"])  # type: ignore[arg-type]
    assert source == ApiSource("http://example.com/api", fields=("name", "notes"))
    assert hash(source) == hash(ApiSource("http://example.com/api", fields=("name", "notes")))
