"""One guarded HTTP GET, shared by the web and API connectors.

Guard (SSRF): a URL is fetched only if it is http(s) with a host, and only if every address
its host resolves to is globally routable, unless the host name or the address is listed in
``web_allow_hosts``. The request then goes to an address that was checked (pinned), so a
DNS answer that changes between the check and the connect (rebinding) cannot slip past it.
Redirects are followed by hand and every hop is checked the same way.

Limits: ``web_timeout_seconds`` for the whole fetch (name lookup, connecting, headers and
body, every redirect), ``web_max_redirects``, and
``web_max_bytes`` of (decompressed) body, refused early on Content-Length.

Errors: ``SourceError`` when asking again cannot help (malformed URL, refused address, 4xx,
wrong content type, too large, not text); ``SourceUnavailable`` when it may (timeouts,
refused or reset connections, DNS failures, 5xx, 408, 429).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from stellar_core.errors import SourceError, SourceUnavailable, StellarError
from stellar_core.settings import Settings
from stellar_core.validation import MAX_SOURCE_URL

__all__ = ["Fetched", "check_url", "fetch"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HOST = re.compile(r"[A-Za-z0-9._-]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


@dataclass(frozen=True)
class Fetched:
    """A successful response, read whole and decoded."""

    url: str  # after redirects
    status: int
    content_type: str  # the media type alone, lower case: "text/html"
    text: str
    etag: str | None = None
    last_modified: str | None = None


def fetch(
    url: str,
    settings: Settings,
    *,
    accept: tuple[str, ...],
    etag: str | None = None,
    last_modified: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Fetched | None:
    """GET ``url`` through the guard; None when the server answers 304 Not Modified.

    ``accept`` lists the media types taken ("application/json"; "+json" for any suffix).
    ``etag`` / ``last_modified`` make the request conditional. ``headers`` (an API token,
    say) are sent to the URL's own origin only, never to another one it redirects to.
    """
    deadline = time.monotonic() + settings.web_timeout_seconds
    allowed = _Allowed.parse(settings.web_allow_hosts)
    origin = _origin(check_url(url))
    base = {
        "User-Agent": settings.web_user_agent,
        "Accept": ", ".join(a for a in accept if "/" in a) or "*/*",
    }
    conditional = {k: v for k, v in {"If-None-Match": etag, "If-Modified-Since": last_modified}.items() if v}
    current = url
    # One connection per hop: a reused connection would skip the check and the TLS name of the
    # next hop. The environment's proxies are ignored: a proxy resolves names the guard never saw.
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    # httpcore's pool, which the transport builds: every socket operation ends by the deadline
    transport._pool._network_backend = _Deadline(transport._pool._network_backend, deadline)
    with httpx.Client(transport=transport, follow_redirects=False, trust_env=False) as client:
        for _ in range(settings.web_max_redirects + 1):
            target = check_url(current)
            own = headers if headers and _origin(target) == origin else {}
            sent = {**base, **own, **conditional}
            with _open(client, current, target, allowed, sent, deadline) as response:
                status = response.status_code
                if status in REDIRECTS:
                    location = response.headers.get("location", "").strip()
                    if not location:
                        raise SourceError(f"{current}: HTTP {status} redirect without a Location")
                    current = str(target.join(location))
                    continue
                if status == 304:
                    if conditional:
                        return None
                    raise SourceError(f"{current}: HTTP 304 to a request that was not conditional")
                _check_status(current, status)
                media = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if not _accepted(media, accept):
                    raise SourceError(
                        f"{current}: unsupported content type {media or '(none)'}; "
                        f"expected {', '.join(accept)}"
                    )
                data = _read(current, response, settings.web_max_bytes, deadline)
                return Fetched(
                    url=current,
                    status=status,
                    content_type=media,
                    text=_decode(current, data, response.charset_encoding, media),
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                )
    raise SourceError(f"{url}: more than {settings.web_max_redirects} redirects")


def check_url(url: str) -> httpx.URL:
    """The parsed URL, if it is one we fetch: http(s), a host, at most 2,000 characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_SOURCE_URL:
        shown = repr(url)[:80] if isinstance(url, str) else type(url).__name__
        raise SourceError(f"malformed URL {shown}: expected an http(s) URL of 1-{MAX_SOURCE_URL} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SourceError(f"malformed URL {url!r}: {exc}") from exc
    host = parsed.raw_host.decode("ascii")  # IDNA: a name in any script is letters and digits here
    ok_host = bool(host) and (_HOST.fullmatch(host) is not None or _ip(host) is not None)
    ok_port = parsed.port is None or 0 < parsed.port < 65536
    if parsed.scheme not in ("http", "https") or not ok_host or not ok_port:
        raise SourceError(f"malformed URL {url!r}: only http and https URLs with a host are fetched")
    return parsed


@contextmanager
def _open(
    client: httpx.Client,
    url: str,
    target: httpx.URL,
    allowed: _Allowed,
    headers: Mapping[str, str],
    deadline: float,
) -> Iterator[httpx.Response]:
    """The streamed response from the first checked address that answers; closed after."""
    port = target.port or (443 if target.scheme == "https" else 80)
    failure: httpx.HTTPError | None = None
    for address in _resolve(url, target, port, allowed, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        request = client.build_request(
            "GET",
            target,
            headers=headers,
            timeout=left,
            # the host's name stays in Host, SNI and the certificate check
            extensions={"sni_hostname": target.raw_host.decode("ascii")},
        )
        request.url = request.url.copy_with(host=str(address))
        try:
            response = client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failure = exc  # try the host's next address, as a browser would
            continue
        except httpx.HTTPError as exc:
            raise _translated(url, exc) from exc
        try:
            yield response
        except httpx.HTTPError as exc:
            raise _translated(url, exc) from exc
        finally:
            response.close()
        return
    if failure is None:
        raise SourceUnavailable(f"{url}: timed out")
    raise _translated(url, failure) from failure


def _resolve(url: str, target: httpx.URL, port: int, allowed: _Allowed, deadline: float) -> list[Address]:
    """The host's addresses, all of them checked; refused if any is not public."""
    host = target.host
    name = target.raw_host.decode("ascii")  # IDNA, as it goes on the wire
    # The resolver has no timeout of ours: it answers in a thread, and the fetch stops
    # waiting at the deadline (the thread ends when the resolver gives up).
    lookup = _RESOLVER.submit(socket.getaddrinfo, name, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError as exc:
        raise SourceUnavailable(f"{url}: resolving {host} timed out") from exc
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, socket.EAI_FAIL):  # the resolver's trouble, not the name's
            raise SourceUnavailable(f"{url}: cannot resolve {host} now: {exc.strerror}") from exc
        raise SourceError(f"{url}: unknown host {host}: {exc.strerror}") from exc
    except (UnicodeError, OSError) as exc:
        raise SourceError(f"{url}: cannot resolve {host}: {exc}") from exc
    addresses: list[Address] = []
    for info in infos:
        found = _ip(str(info[4][0]))
        if found is not None and found not in addresses:
            addresses.append(found)
    if not addresses:
        raise SourceError(f"{url}: {host} has no usable address")
    if allowed.host(host) or allowed.host(name):
        return addresses
    for address in addresses:
        if not _public(address) and not allowed.address(address):
            raise SourceError(
                f"{url}: {host} resolves to {address}, which is not a public address; "
                f"refused: to allow it, add {host!r} to STELLAR_WEB_ALLOW_HOSTS in the environment of "
                "whatever fetches (the agent, or the Prefect worker that runs the flow)"
            )
    return addresses


def _public(address: Address) -> bool:
    """Globally routable: not private, loopback, link-local, reserved, multicast or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast  # is_global does not exclude 224.0.0.0/4
        or address.is_unspecified
    )


class _Deadline(httpcore.NetworkBackend):
    """Network I/O that ends by the fetch's deadline. httpx's timeouts hold per operation: a
    server that sent its headers a byte a second took 174 s against a 10 s limit."""

    def __init__(self, inner: httpcore.NetworkBackend, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _left(deadline: float, timeout: float | None, expired: type[Exception]) -> float:
    """Seconds the next operation may take: its own timeout, cut at the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the fetch's time limit passed")
    return left if timeout is None else min(timeout, left)


_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="stellar-dns")


@dataclass(frozen=True)
class _Allowed:
    """``web_allow_hosts``: host names, addresses and networks fetched although not public."""

    hosts: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> _Allowed:
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().rstrip(".").lower())
        return cls(frozenset(hosts), tuple(networks))

    def host(self, name: str) -> bool:
        return name.rstrip(".").lower() in self.hosts

    def address(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def _check_status(url: str, status: int) -> None:
    if 200 <= status < 300:
        return
    reason = httpx.codes.get_reason_phrase(status) or "error"
    if status in (408, 429) or status >= 500:
        raise SourceUnavailable(f"{url}: HTTP {status} {reason}; try again later")
    raise SourceError(f"{url}: HTTP {status} {reason}")


def _accepted(media: str, accept: tuple[str, ...]) -> bool:
    return any(media == a or (a.startswith("+") and media.endswith(a)) for a in accept)


def _read(url: str, response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The body, refused past ``limit`` bytes (decompressed, so a zip bomb stops too)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SourceError(f"{url}: larger than {limit:,} bytes (Content-Length {int(declared):,})")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise SourceError(f"{url}: larger than {limit:,} bytes")
        if time.monotonic() > deadline:  # a server that trickles bytes would reset every read timeout
            raise SourceUnavailable(f"{url}: timed out while reading")
    return bytes(body)


def _decode(url: str, data: bytes, charset: str | None, media: str) -> str:
    """Text by the declared charset (or an HTML meta tag), else UTF-8; binary refused."""
    if charset is None and "html" in media:
        found = _META_CHARSET.search(data[:4096])
        charset = found.group(1).decode("ascii") if found else None
    for encoding in (charset, "utf-8"):
        if not encoding:
            continue
        try:
            text = data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
        if "\x00" in text:
            break
        return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    raise SourceError(f"{url}: not text (binary, or not in its declared charset {charset or 'UTF-8'})")


def _translated(url: str, exc: httpx.HTTPError) -> StellarError:
    if isinstance(exc, httpx.TimeoutException):
        return SourceUnavailable(f"{url}: timed out ({type(exc).__name__})")
    if _caused_by(exc, ssl.SSLCertVerificationError):  # a bad certificate stays bad
        return SourceError(f"{url}: TLS certificate not valid: {exc}")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return SourceUnavailable(f"{url}: {exc or type(exc).__name__}")
    return SourceError(f"{url}: {exc or type(exc).__name__}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # a chain is short; a cycle must not hang us
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
