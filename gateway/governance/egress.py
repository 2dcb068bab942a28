"""Where webhook deliveries may connect, and what a failed delivery is called.

Every address a delivery would connect to is classed with :func:`address_class`:

- ``public``: a globally routable unicast address; always allowed.
- ``private``: loopback, RFC 1918, ULA (fc00::/7), link-local (169.254/16, fe80::/10),
  CGNAT (100.64/10) and every other non-global range; allowed only when the webhook
  target says ``allow_private = true``.
- ``forbidden``: unspecified (0.0.0.0/8, ::), multicast, broadcast, reserved (240/4) and
  cloud metadata endpoints; never allowed.

IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible, NAT64 (64:ff9b::/96), 6to4 and Teredo
addresses are classed by the IPv4 address they carry as well (the stricter class wins).

:class:`GuardedResolver` resolves a delivery's host name, checks **every** address and
hands aiohttp exactly those addresses (no second resolution, so no DNS rebinding between
check and connect); the URL's host stays the Host header and the TLS server name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud instance metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, ECS tasks, Alibaba Cloud).
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200"))

_CLASS_RANK = {"public": 0, "private": 1, "forbidden": 2}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_DNS_ERROR = getattr(aiohttp, "ClientConnectorDNSError", ())  # aiohttp >= 3.10.7

#: The values ``last_error`` takes (docs/services.md).
FAILURE_CLASSES = ("refused_address", "dns_failed", "connect_failed", "timeout", "tls_error",
                   "bad_response", "http_3xx", "http_4xx", "http_5xx", "url_not_allowed", "access_revoked")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # NAT64 or deprecated ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _own_class(ip: IPAddress) -> str:
    if ip in METADATA or ip.is_unspecified or ip.is_multicast:
        return "forbidden"
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _THIS_NETWORK or ip.is_reserved):
        return "forbidden"  # 0.0.0.0/8 reaches this host; 240/4 and the broadcast address
    if ip.is_global:
        return "public"
    return "private"


def address_class(ip: IPAddress) -> str:
    """``public``, ``private`` or ``forbidden`` (see the module docstring)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
    cls = _own_class(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_v4(ip)
        if v4 is not None:
            inner = _own_class(v4)
            if _CLASS_RANK[inner] > _CLASS_RANK[cls]:
                cls = inner
    return cls


def allowed(host: str, allow_private: bool) -> bool:
    """Whether a delivery may connect to the numeric address ``host``."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    cls = address_class(ip)
    return cls == "public" or (cls == "private" and allow_private)


def looks_numeric(host: str) -> bool:
    """Hosts that aiohttp connects to without asking the resolver (it takes them for addresses)."""
    return ":" in host or host.replace(".", "").isdigit()


class RefusedAddress(OSError):
    """A delivery's host is or resolves to an address it may not reach."""


class GuardedResolver(AbstractResolver):
    """Resolves with getaddrinfo and answers only when every address is allowed."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        for r in found:
            if not allowed(r["host"], self.allow_private):
                raise RefusedAddress("the host resolves to an address deliveries may not reach")
        if not found:
            raise OSError("no address")
        return found

    async def close(self) -> None:
        await self._inner.close()


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in out and len(out) < 10:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def failure_class(exc: BaseException) -> str:
    """The coarse class of a failed delivery: never the peer's bytes, an address or exception text."""
    chain = _chain(exc)
    if any(isinstance(e, RefusedAddress) for e in chain):  # aiohttp raises it "from" ours
        return "refused_address"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if any(isinstance(e, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError) for e in chain):
        return "tls_error"
    if isinstance(exc, _DNS_ERROR) or any(isinstance(e, socket.gaierror) for e in chain):
        return "dns_failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_failed"
    return "bad_response"


def status_class(status: int) -> str:
    """'' for 2xx, else ``http_3xx`` (redirects are not followed), ``http_4xx``, ``http_5xx``."""
    if 200 <= status < 300:
        return ""
    if 300 <= status < 600:
        return f"http_{status // 100}xx"
    return "bad_response"
