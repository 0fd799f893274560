"""One proxy URL grammar for the whole gateway: the pool's validator, the forms and the transport.

`scheme://[user:pass@]host:port` with `http`, `https` (HTTP CONNECT, kiro-ops §7), `socks5` or
`socks5h` (SOCKS5, the name resolved by the proxy with `socks5h`). SOCKS4 is refused
everywhere, with the same message: the transport speaks SOCKS5 and HTTP CONNECT only, and a
proxy it cannot use must be refused when it is entered, not fail every request later.
"""

from __future__ import annotations

from typing import Final

import httpx

SCHEMES: Final = ("http", "https", "socks5", "socks5h")
DEFAULT_PORTS: Final = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
SOCKS4_REFUSED: Final = (
    "socks4 is not supported: the gateway speaks SOCKS5 and HTTP CONNECT; "
    "use socks5:// or socks5h://"
)


class UnusableProxy(httpx.ProxyError):
    """A proxy URL the transport cannot use (an attempt fails over to another credential)."""


def proxy_url_problem(url: str) -> str | None:
    """Say what is wrong with a proxy URL, or None."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return "expected scheme://[user:pass@]host:port"
    scheme = scheme.lower()
    if scheme in ("socks4", "socks4a"):
        return SOCKS4_REFUSED
    if scheme not in SCHEMES:
        return "the scheme must be http, https, socks5 or socks5h"
    hostport = rest.rpartition("@")[2].split("/", 1)[0]
    host, colon, port = hostport.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "host:port is required"
    return None
