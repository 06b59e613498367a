"""The Black Box: per-agency, hash-chained, group-committed audit logs (KBL-1) and lockdown."""

from __future__ import annotations

from .anchor import Anchor, AnchorStore
from .canonical import CanonicalError, canonical_bytes, parse_canonical
from .lockdown import LockdownRegistry
from .manager import AuditManager
from .record import Record
from .report import format_verify_result
from .verify import VerifyResult, verify_log
from .writer import AuditLog, Pending

__all__ = [
    "Anchor",
    "AnchorStore",
    "AuditLog",
    "AuditManager",
    "CanonicalError",
    "LockdownRegistry",
    "Pending",
    "Record",
    "VerifyResult",
    "canonical_bytes",
    "format_verify_result",
    "parse_canonical",
    "verify_log",
]
