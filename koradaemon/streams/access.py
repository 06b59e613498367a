"""Who may receive which events on an outside stream: clients, roles, grants (docs/streams.md).

A client is configured as ``name:role:agency[,agency...]`` (``name:admin`` for every agency).
Roles: ``viewer`` receives its agencies' events without file text and without audit records
or secret events; ``auditor`` receives audit records too, still without file text; ``admin``
receives everything of every agency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError
from .schema import TYPES, Event, category, without_text

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
ALL = frozenset(set(TYPES.values()) | {"other"})
ROLE_CATEGORIES: dict[str, frozenset[str]] = {
    "viewer": ALL - {"audit", "secret"},
    "auditor": ALL,
    "admin": ALL,
}


@dataclass(frozen=True)
class Client:
    name: str
    role: str
    agencies: frozenset[str] | None  # None: every agency (admin)

    @property
    def strips_text(self) -> bool:
        return self.role != "admin"

    def may_see(self, agency_id: str) -> bool:
        return self.agencies is None or agency_id in self.agencies


@dataclass(frozen=True)
class Grant:
    """What one connection receives: a client, the agencies it asked for, the categories."""

    client: Client
    agencies: frozenset[str]
    categories: frozenset[str]

    def view(self, agency_id: str, event: Event) -> Event | None:
        """The event as this connection may see it, or None."""
        if agency_id not in self.agencies or category(event) not in self.categories:
            return None
        return without_text(event) if self.client.strips_text else event


class Refused(Exception):
    """A connection asked for more than its client may have (HTTP 403 with this message)."""


def parse_clients(entries: Iterable[str], agencies: Iterable[str]) -> dict[str, Client]:
    known = set(agencies)
    out: dict[str, Client] = {}
    for entry in entries:
        parts = entry.split(":")
        name, role = [*parts, "", ""][:2]
        if not _NAME.fullmatch(name) or role not in ROLE_CATEGORIES or len(parts) > 3:
            raise ConfigError(f"websocket.clients entry {entry!r} must be name:role:agency[,agency...] "
                              "with role viewer, auditor or admin")
        if name in out:
            raise ConfigError(f"websocket.clients: {name!r} is listed twice")
        wanted = [a for a in (parts[2].split(",") if len(parts) == 3 else []) if a]
        if role != "admin" and not wanted:
            raise ConfigError(f"websocket.clients entry {entry!r}: a {role} needs its agencies")
        unknown = [a for a in wanted if a not in known]
        if unknown:
            raise ConfigError(f"websocket.clients entry {entry!r}: unknown agency {unknown[0]!r}")
        out[name] = Client(name, role, frozenset(wanted) if wanted else None)
    return out


def grant(client: Client, asked: list[str], audit: bool, all_agencies: Iterable[str]) -> Grant:
    """The grant for a connection asking for ``asked`` agencies (empty: all of the client's) and,
    with ``audit``, audit records; :class:`Refused` when it asks for more than the client may have."""
    for agency in asked:
        if not client.may_see(agency):
            raise Refused(f"agency {agency!r} is not granted to client {client.name!r}")
    if audit and "audit" not in ROLE_CATEGORIES[client.role]:
        raise Refused(f"role {client.role!r} may not receive audit records")
    agencies = frozenset(asked) if asked else frozenset(a for a in all_agencies if client.may_see(a))
    categories = ROLE_CATEGORIES[client.role] if audit or client.role == "admin" else \
        ROLE_CATEGORIES[client.role] - {"audit"}
    return Grant(client, agencies, categories)
