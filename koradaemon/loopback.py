"""The one check of a loopback HTTP URL, shared by config validation and the agent's health prober."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError


@dataclass(frozen=True)
class LoopbackURL:
    host: str
    port: int
    prefix: str  # path without a trailing '/'


def parse_loopback_url(url: str) -> LoopbackURL:
    """``http://HOST:PORT[/prefix]`` with HOST exactly loopback: an IPv4 literal in 127.0.0.0/8,
    ``[::1]`` or ``localhost``. No user info, query or fragment; the port is required.

    Plain HTTP only: the prober speaks HTTP to a process on this machine, TLS would add nothing.
    Raises :class:`ConfigError` with a message that does not name the key (the caller adds it)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ConfigError("expected a URL such as http://127.0.0.1:18789")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ConfigError("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"not a valid URL: {exc}") from None
    if parts.scheme != "http":
        raise ConfigError(f"the scheme must be http, got {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise ConfigError("user info ('user@') is not allowed in the health URL")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ConfigError("a query or fragment is not allowed in the health URL")
    host = parts.hostname or ""
    if not _is_loopback_host(host, bracketed=parts.netloc.startswith("[")):
        raise ConfigError(f"the host must be loopback (127.x.y.z, [::1] or localhost), got {host!r}")
    if port is None or port == 0:
        raise ConfigError("the health URL needs an explicit port, e.g. http://127.0.0.1:18789")
    return LoopbackURL(host=host, port=port, prefix=parts.path.rstrip("/"))


def _is_loopback_host(host: str, *, bracketed: bool) -> bool:
    if host == "localhost" and not bracketed:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if addr.version == 6:
        return bracketed and addr == ipaddress.IPv6Address("::1")
    return addr.is_loopback and str(addr) == host
