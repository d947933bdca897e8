"""The web connector against real HTTP servers on loopback: a page's main text becomes
memories; re-ingesting adds nothing; the SSRF guard refuses private addresses before any
request, at every redirect hop; limits and failures are errors that say what went wrong."""

from __future__ import annotations

import datetime
import ssl
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from stellar_core import Settings, StellarMemory
from stellar_core.connectors.http import fetch
from stellar_core.connectors.web import ingest_url, ingest_urls
from stellar_core.errors import SourceError, SourceUnavailable, ValidationError
from tests.sites import Handler, Site, reply
from tests.test_connectors_files import all_memories

MemoryFactory = Callable[..., StellarMemory]


def redirect(location: str, status: int = 302) -> Handler:
    return reply(b"", "", status, {"Location": location})


def article(title: str, *paragraphs: str) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"""<!doctype html><html><head><title>{title} | Ops wiki</title></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About the wiki</a></li></ul></nav>
<article><h1>{title}</h1>{body}</article>
<footer><p>Cookie policy. Copyright 2024 Example Corp.</p></footer></body></html>"""


SKARVIK = [
    "Skarvik sees every satellite on almost every orbit; its 7.3 metre antenna tracks them all.",
    "The radome is heated through the polar winter, and the heater is checked every October.",
    "Passes over Skarvik last nine minutes on average, and the crew logs each one by hand.",
]


def test_an_article_becomes_memories_with_its_source_and_title(allowed: StellarMemory, site: Site) -> None:
    site.routes["/old"] = redirect("/skarvik", 301)
    site.routes["/skarvik"] = reply(article("Skarvik station", *SKARVIK))
    result = ingest_url(allowed, site.url("/old"), namespace="ops", importance=0.7)

    assert (result.sources, result.skipped) == (1, [])
    assert result.new == result.chunks >= 1
    stored = sorted(all_memories(allowed, "ops"), key=lambda x: x.position or 0)
    text = "\n\n".join(x.content for x in stored)
    assert text.startswith("# Skarvik station\n\n")
    assert all(p in text for p in SKARVIK)
    assert "Cookie policy" not in text and "About the wiki" not in text  # boilerplate dropped
    for i, x in enumerate(stored):
        assert x.source is not None
        assert (x.source.type, x.source.url, x.source.chunk) == ("web", site.url("/old"), i)
        assert x.metadata["url"] == site.url("/skarvik")  # where the redirect led
        assert x.metadata["title"] == "Skarvik station"
        assert x.importance == 0.7
    hits = allowed.recall("how long is a pass over Skarvik?", k=1, namespace="ops", source_type="web")
    assert hits and hits[0].memory.source and hits[0].memory.source.url == site.url("/old")


def test_plain_text_and_markdown_are_stored_as_they_are(allowed: StellarMemory, site: Site) -> None:
    site.routes["/notes.md"] = reply("## Rota\n\nDmitri is on call.\n", "text/markdown")
    site.routes["/latin.txt"] = reply("Tromsø café".encode("latin-1"), "text/plain; charset=iso-8859-1")
    ingest_url(allowed, site.url("/notes.md"))
    ingest_url(allowed, site.url("/latin.txt"))
    assert sorted(x.content for x in all_memories(allowed)) == [
        "## Rota\n\nDmitri is on call.",
        "Tromsø café",
    ]


def test_an_unchanged_page_adds_nothing_and_a_changed_one_replaces_its_chunks(
    allowed: StellarMemory, site: Site
) -> None:
    site.routes["/p"] = reply(article("Skarvik station", *SKARVIK))
    first = ingest_url(allowed, site.url("/p"))
    again = ingest_url(allowed, site.url("/p"))
    assert (again.sources, again.new, again.unchanged, again.replaced) == (1, 0, 1, 0)
    assert len(all_memories(allowed)) == first.new

    changed = [*SKARVIK[:2], "Skarvik closes for maintenance in March; passes move to Port Alder."]
    site.routes["/p"] = reply(article("Skarvik station", *changed))
    result = ingest_url(allowed, site.url("/p"))
    assert result.replaced >= 1 and result.new >= 1
    text = "\n".join(x.content for x in all_memories(allowed))
    assert "closes for maintenance in March" in text
    assert "nine minutes" not in text  # the old chunk is gone
    assert ingest_url(allowed, site.url("/p")).unchanged == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/p",
        "http://localhost:{port}/p",
        "http://[::ffff:127.0.0.1]:{port}/p",
        "http://2130706433:{port}/p",  # 127.0.0.1 as one number
        "http://10.1.2.3/p",
        "http://192.168.0.1/p",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/p",
        "http://[::1]:{port}/p",
    ],
)
def test_the_guard_refuses_private_addresses_before_any_request(
    mem: StellarMemory, site: Site, url: str
) -> None:
    site.routes["/p"] = reply(article("Secret", *SKARVIK))
    with pytest.raises(SourceError, match="not a public address") as refused:
        ingest_url(mem, url.format(port=site.port))
    assert "add" in str(refused.value) and "to STELLAR_WEB_ALLOW_HOSTS" in str(refused.value)  # what to set
    assert site.requests == []
    assert all_memories(mem) == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/p", "http://169.254.169.254/latest/meta-data/"])
def test_a_redirect_to_a_private_address_is_refused(
    open_memory: MemoryFactory, site: Site, target: str
) -> None:
    mem = open_memory(settings=Settings(web_allow_hosts=["localhost"]))  # the name, not its address
    with Site() as inner:
        inner.routes["/p"] = reply(article("Secret", *SKARVIK))
        site.routes["/go"] = redirect(target.format(port=inner.port))
        with pytest.raises(SourceError, match="not a public address"):
            ingest_url(mem, site.url("/go", host="localhost"))
        assert site.paths == ["/go"]
        assert inner.requests == []


def test_allow_list_takes_networks(open_memory: MemoryFactory, site: Site) -> None:
    mem = open_memory(settings=Settings(web_allow_hosts=["127.0.0.0/8"]))
    site.routes["/p"] = reply("Allowed by network.", "text/plain")
    assert ingest_url(mem, site.url("/p")).new == 1


def test_redirects_are_limited(open_memory: MemoryFactory, site: Site) -> None:
    mem = open_memory(settings=Settings(web_allow_hosts=["127.0.0.1"], web_max_redirects=3))
    site.routes["/loop"] = redirect("/loop")
    with pytest.raises(SourceError, match="more than 3 redirects"):
        ingest_url(mem, site.url("/loop"))
    assert site.paths == ["/loop"] * 4

    strict = open_memory(settings=Settings(web_allow_hosts=["127.0.0.1"], web_max_redirects=0))
    site.routes["/once"] = redirect("/p")
    site.routes["/p"] = reply("Moved here.", "text/plain")
    with pytest.raises(SourceError, match="more than 0 redirects"):
        ingest_url(strict, site.url("/once"))
    site.routes["/ftp"] = redirect("ftp://example.com/file")
    with pytest.raises(SourceError, match="malformed URL"):
        ingest_url(mem, site.url("/ftp"))


def test_a_closed_port_is_unavailable(allowed: StellarMemory) -> None:
    closed = Site()  # bound, then closed without serving: nothing listens on its port
    closed.server.server_close()
    with pytest.raises(SourceUnavailable, match="refused"):
        ingest_url(allowed, closed.url("/p"))


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (404, SourceError, "404 Not Found"),
        (410, SourceError, "410 Gone"),
        (403, SourceError, "403 Forbidden"),
        (500, SourceUnavailable, "500"),
        (503, SourceUnavailable, "try again later"),
        (429, SourceUnavailable, "429"),
    ],
)
def test_http_errors(
    allowed: StellarMemory, site: Site, status: int, error: type[Exception], message: str
) -> None:
    site.routes["/p"] = reply("no", "text/plain", status)
    with pytest.raises(error, match=message):
        ingest_url(allowed, site.url("/p"))


def test_content_that_is_not_text_is_refused(allowed: StellarMemory, site: Site) -> None:
    site.routes["/img"] = reply(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png")
    site.routes["/none"] = reply(b"what am I", "")
    site.routes["/blob"] = reply(b"\x00\x01\x02binary" * 20, "text/plain")
    site.routes["/latin"] = reply("Tromsø".encode("latin-1"), "text/plain")  # no charset: UTF-8
    site.routes["/empty"] = reply("<html><head><title>T</title></head><body><script>1</script></body></html>")
    with pytest.raises(SourceError, match="unsupported content type image/png"):
        ingest_url(allowed, site.url("/img"))
    with pytest.raises(SourceError, match=r"unsupported content type \(none\)"):
        ingest_url(allowed, site.url("/none"))
    for path in ("/blob", "/latin"):
        with pytest.raises(SourceError, match="not text"):
            ingest_url(allowed, site.url(path))
    with pytest.raises(SourceError, match="no main text"):
        ingest_url(allowed, site.url("/empty"))
    assert all_memories(allowed) == []


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "streamed"])
def test_an_oversized_response_is_refused(open_memory: MemoryFactory, site: Site, length: bool) -> None:
    mem = open_memory(settings=Settings(web_allow_hosts=["127.0.0.1"], web_max_bytes=1_000))
    site.routes["/big"] = reply("word " * 1_000, "text/plain", length=length)
    site.routes["/fits"] = reply("word " * 150, "text/plain", length=length)
    with pytest.raises(SourceError, match="larger than 1,000 bytes"):
        ingest_url(mem, site.url("/big"))
    assert ingest_url(mem, site.url("/fits")).new == 1


@pytest.mark.parametrize(
    "url",
    [
        "htp://x",
        "http://",
        "not a url",
        "",
        "http:///path",
        "http://x:99999/",
        "http://exa mple.com/",
        "http://example.com/" + "x" * 2_000,
    ],
)
def test_malformed_urls(mem: StellarMemory, url: str) -> None:
    with pytest.raises(SourceError, match="malformed URL"):
        ingest_url(mem, url)


def test_a_server_slower_than_the_timeout_is_unavailable(open_memory: MemoryFactory, site: Site) -> None:
    mem = open_memory(settings=Settings(web_allow_hosts=["127.0.0.1"], web_timeout_seconds=0.3))

    def slow(h: BaseHTTPRequestHandler) -> None:
        time.sleep(1.0)
        reply("Too late.", "text/plain")(h)

    def trickle(h: BaseHTTPRequestHandler) -> None:  # each read is quick; the whole is not
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.end_headers()
        for _ in range(10):
            h.wfile.write(b"drip ")
            h.wfile.flush()
            time.sleep(0.1)

    def drip_headers(h: BaseHTTPRequestHandler) -> None:  # no read waits long; the headers never end
        for byte in b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Filler: " + b"x" * 10_000:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.05)

    site.routes["/slow"] = slow
    site.routes["/trickle"] = trickle
    site.routes["/drip-headers"] = drip_headers
    for path in ("/slow", "/trickle", "/drip-headers"):
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="timed out"):
            ingest_url(mem, site.url(path))
        assert time.monotonic() - started < 0.9


def test_ingest_urls_reports_failures_and_keeps_what_was_stored(allowed: StellarMemory, site: Site) -> None:
    site.routes["/a"] = reply(article("Skarvik station", *SKARVIK))
    site.routes["/b"] = reply("Port Alder: radome icing in winter.", "text/plain")
    ingest_urls(allowed, [site.url("/a"), site.url("/b")])
    before = {x.id for x in all_memories(allowed)}

    site.routes["/b"] = reply("down", "text/plain", 503)  # was ingested; its memories must stay
    site.routes["/c"] = reply("Cabo Fría is rented by the pass.", "text/plain")
    urls = [site.url("/a"), site.url("/b"), site.url("/c"), site.url("/gone"), "htp://x", "http://10.0.0.1/"]
    result = ingest_urls(allowed, urls)

    assert (result.sources, result.new, result.unchanged) == (2, 1, 1)
    reasons = dict(result.skipped)
    assert list(reasons) == urls[1:2] + urls[3:]
    assert "503" in reasons[site.url("/b")]
    assert "404" in reasons[site.url("/gone")]
    assert "malformed URL" in reasons["htp://x"]
    assert "not a public address" in reasons["http://10.0.0.1/"]
    after = {x.id: x.content for x in all_memories(allowed)}
    assert before < set(after)
    assert "Cabo Fría is rented by the pass." in after.values()


def test_bad_arguments_fail_the_call(mem: StellarMemory, site: Site) -> None:
    with pytest.raises(ValidationError):
        ingest_urls(mem, [site.url("/a")], importance=2.0)
    with pytest.raises(ValidationError):
        ingest_urls(mem, [site.url("/a")], namespace="no spaces allowed")
    with pytest.raises(ValidationError):
        ingest_url(mem, site.url("/a"), importance=-1)
    assert site.requests == []


def test_fetch_sends_its_user_agent_and_keeps_caller_headers_on_their_origin(site: Site) -> None:
    settings = Settings(web_allow_hosts=["127.0.0.1", "localhost"], web_user_agent="stellar-test/1")
    with Site() as other:
        other.routes["/p"] = reply("Elsewhere.", "text/plain")
        site.routes["/go"] = redirect(other.url("/p", host="localhost"))
        page = fetch(
            site.url("/go"), settings, accept=("text/plain",), headers={"Authorization": "Bearer s3"}
        )
        assert (
            page is not None and page.text == "Elsewhere." and page.url == other.url("/p", host="localhost")
        )
        first, second = site.requests[0][1], other.requests[0][1]
    assert first["User-Agent"] == second["User-Agent"] == "stellar-test/1"
    assert first["Authorization"] == "Bearer s3"
    assert "Authorization" not in second  # a token is not handed to another origin
    assert second["Host"] == f"localhost:{other.port}"


def test_an_invalid_certificate_is_a_source_error(tmp_path: Path) -> None:
    """Over TLS the request goes to the checked address but the certificate is checked for the
    name; a self-signed one is refused for good (retrying cannot help)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    site = Site()
    site.server.socket = context.wrap_socket(site.server.socket, server_side=True)
    site.routes["/p"] = reply("Secret.", "text/plain")
    settings = Settings(web_allow_hosts=["localhost"])
    with site, pytest.raises(SourceError, match="TLS certificate not valid"):
        fetch(f"https://localhost:{site.port}/p", settings, accept=("text/plain",))


def test_a_name_that_takes_too_long_to_resolve_is_unavailable(
    open_memory: MemoryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver is the internet's part: a slow one stands in for it here."""
    import socket

    def slow_resolver(*args: object, **kwargs: object) -> list[object]:
        time.sleep(3)
        return []

    mem = open_memory(settings=Settings(web_timeout_seconds=0.5))
    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"resolving example\.org timed out"):
        ingest_url(mem, "http://example.org/page")
    assert time.monotonic() - started < 1.5
