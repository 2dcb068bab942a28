"""Is the gateway there? One check that ``run`` and ``seed`` make before they start."""

from __future__ import annotations

import urllib.error
import urllib.request

from loadtest.errors import LoadTestError


def check_host(host: str, timeout_s: float = 3.0) -> None:
    """Fail clearly unless ``host`` answers HTTP (any status) on ``/healthz``."""
    if not host.startswith(("http://", "https://")):
        raise LoadTestError(f"--host must be an http:// or https:// URL, got {host!r}")
    url = host.rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LoadTestError(f"cannot reach {host}: {reason}") from None
