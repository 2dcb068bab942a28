"""Webhook targets: the catalog's allow-list of callback URLs, per consumer subsystem.

    max_subscriptions_per_client = 16        # top-level; active + dead subscriptions per client

    [[webhook_targets]]
    consumer = "SH/GOV/hrss/employment"      # the subscriber
    url_prefix = "https://hrss.example/exchange/"   # scheme://host[:port]/path-prefix
    allow_http = false                       # true to allow an http:// prefix
    allow_private = false                    # true to allow loopback/private/link-local addresses

A subscription's URL must be under one of its consumer's prefixes: same scheme, host and
(effective) port, and a path equal to the prefix's path or below it, segment by segment.
URLs are parsed with yarl, as the delivering aiohttp client parses them.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import msgspec
from yarl import URL

from gateway.governance.egress import address_class
from gateway.tomlfile import ConfigError

DEFAULT_MAX_SUBSCRIPTIONS = 16
MAX_URL_CHARS = 2048


class WebhookTarget(msgspec.Struct, forbid_unknown_fields=True):
    """One ``[[webhook_targets]]`` entry as written."""

    consumer: str
    url_prefix: str
    allow_http: bool = False
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A checked allow-list entry: what a callback URL is compared with."""

    consumer: str
    scheme: str
    host: str
    port: int
    path: str
    allow_private: bool

    def covers(self, url: URL) -> bool:
        """Whether the (already checked) callback ``url`` is under this prefix."""
        if url.scheme != self.scheme or url.raw_host != self.host or url.port != self.port:
            return False
        path = url.raw_path or "/"
        base = self.path if self.path.endswith("/") else self.path + "/"
        return path == self.path or path.startswith(base)


def parse_url(text: str, *, prefix: bool = False) -> URL | str:
    """The URL as aiohttp will see it, or the reason it is refused.

    Refused: other schemes than http/https, no host, credentials, a fragment, a bad port,
    non-ASCII text, spaces or control characters, backslashes, ``.``/``..`` segments and
    percent-encoded ``.``, ``/`` or ``\\`` in the path (they would be normalised away or
    reach another path than the one compared), legacy numeric IPv4 forms (``127.1``,
    ``2130706433``); a prefix may not carry a query either.
    """
    if len(text) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if not text.isascii() or any(c <= " " or c == "\x7f" for c in text):
        return "must be ASCII without spaces or control characters (write international host names in punycode)"
    if "\\" in text:
        return "must not contain a backslash"
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL"
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        return "must not carry credentials (user:password@)"
    try:
        url = URL(text)
        port = url.port
    except (ValueError, TypeError):
        return "is not a valid URL"
    host = url.raw_host
    if not host:
        return "must name a host"
    if port is None or not 0 < port < 65536:
        return "has a bad port"
    if url.raw_fragment or "#" in text:
        return "must not carry a fragment"
    if prefix and (url.raw_query_string or "?" in text):
        return "must not carry a query"
    raw_path = rest[len(authority):].split("?", 1)[0]
    lowered = raw_path.lower()
    if any(code in lowered for code in ("%2e", "%2f", "%5c")):
        return "must not percent-encode '.', '/' or '\\' in the path"
    if any(seg in (".", "..") for seg in raw_path.split("/")):
        return "must not contain '.' or '..' path segments"
    if _legacy_ipv4(host):
        return f"host {host!r} is not a canonical IP address or a DNS name"
    return url


def _legacy_ipv4(host: str) -> bool:
    """A host that the resolver would read as IPv4 (``127.1``, ``0x7f000001``) but is no dotted quad."""
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


def check_targets(src: str, subsystems: set[str], targets: list[WebhookTarget],
                  max_subscriptions: int) -> dict[str, tuple[Target, ...]]:
    """Check ``[[webhook_targets]]`` and the subscription cap; the targets by consumer.

    Raises ConfigError naming the key."""
    if not 1 <= max_subscriptions <= 100_000:
        raise ConfigError(src, "max_subscriptions_per_client", f"must be between 1 and 100000, got {max_subscriptions}")
    out: dict[str, list[Target]] = {}
    seen: set[tuple[str, str, str, int, str]] = set()
    for i, t in enumerate(targets):
        where = f"webhook_targets[{i}]"
        if t.consumer not in subsystems:
            raise ConfigError(src, f"{where}.consumer", f"unknown subsystem {t.consumer!r}")
        url = parse_url(t.url_prefix, prefix=True)
        if isinstance(url, str):
            raise ConfigError(src, f"{where}.url_prefix", url)
        if url.scheme == "http" and not t.allow_http:
            raise ConfigError(src, f"{where}.url_prefix",
                              "is http://; deliveries of records need https:// unless the entry says allow_http = true")
        host = url.raw_host or ""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            cls = address_class(literal)
            if cls == "forbidden":
                raise ConfigError(src, f"{where}.url_prefix",
                                  f"host {host} is an address webhooks never reach (unspecified, multicast, "
                                  "reserved or cloud metadata)")
            if cls == "private" and not t.allow_private:
                raise ConfigError(src, f"{where}.url_prefix",
                                  f"host {host} is a loopback, private or link-local address; "
                                  "set allow_private = true if that is intended")
        target = Target(t.consumer, url.scheme, host, url.port or 0, url.raw_path or "/", t.allow_private)
        key = (t.consumer, target.scheme, target.host, target.port, target.path)
        if key in seen:
            raise ConfigError(src, where, f"duplicate webhook target {t.url_prefix!r} for {t.consumer!r}")
        seen.add(key)
        out.setdefault(t.consumer, []).append(target)
    return {c: tuple(ts) for c, ts in out.items()}


def match(targets: dict[str, tuple[Target, ...]], consumer: str, url: URL) -> Target | None:
    """The consumer's entry covering ``url`` (the most specific one), or None."""
    best: Target | None = None
    for t in targets.get(consumer, ()):
        if t.covers(url) and (best is None or len(t.path) > len(best.path)):
            best = t
    return best
