"""Connection slots of the control server: who may hold a connection, and how many.

Three kinds of slot, so no single local process can starve the others:

- a small shared **pre-auth** pool for connections that have not yet sent a request with a valid
  token. When it is full, a new connection evicts the oldest one that has sent nothing at all,
  else the oldest one with nothing waiting to be read (half a line, or only refused requests):
  idle or dribbling connections cost the attacker, not the next client, who sends a whole
  request at once. Only if every one has a request waiting is the newcomer refused. Operator
  peers have a reserve of their own here too.
- **agency** slots: once a connection authenticates, it moves to the slots of the agency it named
  first. Each agency has its own count, so one agency (or someone holding its token) can fill
  only its own slots.
- **operator** slots: an operator peer (root or the daemon's user, the agent excluded) whose
  agency's slots are full takes one of these, so ``koradaemon status`` gets through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import BusyError

C = TypeVar("C")


@dataclass(frozen=True)
class SlotLimits:
    preauth: int = 16
    per_agency: int = 16
    operator: int = 4


class Slots(Generic[C]):
    """Thread-safe slot accounting for connections of type ``C``."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._preauth: list[C] = []  # oldest first
        self._preauth_op: list[C] = []
        self._agency: dict[str, set[C]] = {}
        self._operator: set[C] = set()
        self._where: dict[C, str] = {}

    def admit(self, conn: C, *, operator: bool, eviction_rank: Callable[[C], int | None]) -> C | None:
        """Give a new connection a pre-auth slot; returns the connection evicted for it, if any.

        When the pool is full, the oldest connection of the lowest ``eviction_rank`` makes room
        (0: has sent nothing; 1: sent something, nothing waiting to be read; None: a request of
        it waits to be read, never evicted). Raises :class:`BusyError` when none can go.
        """
        with self._lock:
            if len(self._preauth) < self.limits.preauth:
                self._add_preauth(conn, self._preauth, "preauth")
                return None
            if operator and len(self._preauth_op) < self.limits.operator:
                self._add_preauth(conn, self._preauth_op, "preauth_op")
                return None
            victim = _pick_victim(self._preauth, eviction_rank)
            if victim is None:
                raise BusyError("too many unauthenticated connections", hint="try again later")
            self._preauth.remove(victim)
            del self._where[victim]
            self._add_preauth(conn, self._preauth, "preauth")
            return victim

    def claim(self, conn: C, agency_id: str, *, operator: bool) -> str:
        """Move an authenticated connection from pre-auth to its agency's slots (or the operator's).

        Returns the kind of slot; raises :class:`BusyError` (the connection then holds no slot).
        """
        with self._lock:
            self._drop(conn)
            members = self._agency.setdefault(agency_id, set())
            if len(members) < self.limits.per_agency:
                members.add(conn)
                self._where[conn] = f"agency:{agency_id}"
                return "agency"
            if not members:
                del self._agency[agency_id]
            if operator and len(self._operator) < self.limits.operator:
                self._operator.add(conn)
                self._where[conn] = "operator"
                return "operator"
        raise BusyError(f"too many connections for agency {agency_id!r}", hint="close idle clients or try later")

    def release(self, conn: C) -> None:
        with self._lock:
            self._drop(conn)

    def authenticated(self, conn: C) -> bool:
        with self._lock:
            return self._where.get(conn, "").startswith(("agency:", "operator"))

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {"preauth": len(self._preauth) + len(self._preauth_op), "operator": len(self._operator)}
            for agency, members in self._agency.items():
                out[f"agency:{agency}"] = len(members)
            return out

    def agency_count(self, agency_id: str) -> int:
        with self._lock:
            return len(self._agency.get(agency_id, ()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._where)

    def _add_preauth(self, conn: C, pool: list[C], where: str) -> None:
        pool.append(conn)
        self._where[conn] = where

    def _drop(self, conn: C) -> None:
        where = self._where.pop(conn, None)
        if where == "preauth":
            self._preauth.remove(conn)
        elif where == "preauth_op":
            self._preauth_op.remove(conn)
        elif where == "operator":
            self._operator.discard(conn)
        elif where is not None:
            agency = where.split(":", 1)[1]
            members = self._agency.get(agency)
            if members is not None:
                members.discard(conn)
                if not members:
                    del self._agency[agency]


def _pick_victim(pool: list[C], eviction_rank: Callable[[C], int | None]) -> C | None:
    """The oldest connection of the lowest rank; stops looking at the first rank-0 one."""
    best: tuple[int, C] | None = None
    for conn in pool:  # oldest first
        rank = eviction_rank(conn)
        if rank == 0:
            return conn
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, conn)
    return best[1] if best else None


class HeavyGate:
    """At most ``per_agency`` heavy operations (searches, snapshots, full verifies) of one agency run
    at once; more wait up to ``wait_s`` for their turn, then get :class:`BusyError`.

    So one agency's expensive requests use a bounded share of the CPU, and light requests
    (``status``, ``ping``) of everyone still find a core to run on.
    """

    def __init__(self, per_agency: int, wait_s: float) -> None:
        self.per_agency = per_agency
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._running: dict[str, int] = {}

    def running(self, agency_id: str) -> int:
        with self._cond:
            return self._running.get(agency_id, 0)

    def enter(self, agency_id: str, cancelled: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self._running.get(agency_id, 0) >= self.per_agency:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or cancelled():
                    raise BusyError(
                        f"{self.per_agency} heavy operations of agency {agency_id!r} are running already",
                        hint="try again when they are done",
                    )
                self._cond.wait(min(remaining, 0.5))
            self._running[agency_id] = self._running.get(agency_id, 0) + 1

    def leave(self, agency_id: str) -> None:
        with self._cond:
            left = self._running.get(agency_id, 0) - 1
            if left > 0:
                self._running[agency_id] = left
            else:
                self._running.pop(agency_id, None)
            self._cond.notify_all()
