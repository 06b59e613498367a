"""Ready-made handler pieces the daemon wires into the control server."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import AuthError, UsageError
from ..events import EventBus
from .protocol import Request


def require_own_agency(req: Request) -> None:
    """Refuse (as ``AuthError``, which the server reports) a request whose ``args`` name another agency."""
    named = req.args.get("agency_id", req.agency_id)
    if named != req.agency_id:
        raise AuthError(f"agency {req.agency_id!r} may not access data of agency {named!r}")


def int_arg(req: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer argument within ``[low, high]``; ``UsageError`` otherwise."""
    value = req.args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"argument {name!r} must be an integer from {low} to {high}")
    return value


def subscribe_handler(bus: EventBus, *, max_buffer: int = 10_000) -> Callable[[Request], Iterator[Any]]:
    """``subscribe``: stream the agency's live events (``args.buffer`` sets the drop-oldest buffer)."""

    def subscribe(req: Request) -> Iterator[Mapping[str, Any] | None]:
        require_own_agency(req)
        return bus.subscribe(req.agency_id, maxsize=int_arg(req, "buffer", 1000, low=1, high=max_buffer))

    return subscribe
