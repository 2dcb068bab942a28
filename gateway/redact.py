"""Keep credentials out of answers and logs: URLs are shown without their userinfo.

``nats://user:pass@host:4222`` is shown as ``nats://host:4222``. :func:`redact_url` is for
one URL, :func:`redact` for any text that may quote URLs (exception messages, reasons,
the ``repr`` of a parsed URL). Every problem detail, log line, readiness reason and CLI
message that can carry a URL goes through one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# scheme://userinfo@  (userinfo: anything but white space, '/', '?' or '#', up to the last '@')
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"<>]*(?:@[^\s/?#@'\"<>]*)*@")
# netloc='user:pass@host' in the repr of urllib's SplitResult / ParseResult (nats-py logs them)
_NETLOC = re.compile(r"(?P<pre>netloc=['\"])[^'\"]*@")


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it removed."""
    if "@" not in text:
        return text
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _NETLOC.sub(r"\g<pre>", text)


def redact_url(url: str) -> str:
    """One URL without its userinfo (``nats://u:p@h:4222`` -> ``nats://h:4222``)."""
    if "@" not in url:
        return url
    try:
        u = urlsplit(url)
        netloc = u.netloc.rpartition("@")[2]
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
    except ValueError:
        return redact(url)


def redact_urls(urls: Iterable[str]) -> str:
    """URLs for a message: without userinfo, comma-separated."""
    return ", ".join(redact_url(u) for u in urls)
