"""One error tree for the whole daemon.

Every error a user can meet is a :class:`KoraError` subclass carrying an exit
code (sysexits-style) and a message that says what to do about it.
"""

from __future__ import annotations


class KoraError(Exception):
    """Root of all koradaemon errors."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        out = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageError(KoraError):
    """Bad command-line usage or bad request arguments."""

    exit_code = 64
    code = "usage"


class ConfigError(KoraError):
    """The configuration file is missing, malformed or has bad values."""

    exit_code = 78
    code = "config"


class PathError(KoraError):
    """A path is absolute, contains '..' or NUL, or escapes its root."""

    exit_code = 65
    code = "path"


class DataError(KoraError):
    """Input data is unusable (binary, invalid UTF-8, too large, vanished)."""

    exit_code = 65
    code = "data"


class QueryError(UsageError):
    """A search query cannot be used as typed (empty, only exclusions, too short a prefix, ...)."""

    code = "query"


class QueryTooExpensive(KoraError):
    """A search ran past its time limit and was interrupted (try again with a narrower query)."""

    exit_code = 75
    code = "too_expensive"


class DatabaseError(KoraError):
    """kora_kernel.db cannot be opened, migrated or written."""

    exit_code = 74
    code = "database"


class AuditError(KoraError):
    """The audit log could not be written or read."""

    exit_code = 74
    code = "audit"


class TamperError(AuditError):
    """The audit chain does not verify: an agency goes into lockdown."""

    exit_code = 65
    code = "tamper"

    def __init__(self, message: str, *, seq: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.seq = seq


class LockdownError(KoraError):
    """The agency is in lockdown; its data is refused until an audited unlock."""

    exit_code = 77
    code = "lockdown"


class AuthError(KoraError):
    """A request had no token, a wrong token, or asked for another agency's data."""

    exit_code = 77
    code = "auth"


class VaultError(KoraError):
    """Vault failure: wrong passphrase or corrupted/tampered snapshot (indistinguishable by design)."""

    exit_code = 65
    code = "vault"


class VaultLockedError(VaultError):
    """The vault key is not loaded (locked or never unlocked)."""

    exit_code = 75
    code = "vault_locked"


class SnapshotError(KoraError):
    """A snapshot could not be created, found or restored."""

    exit_code = 74
    code = "snapshot"


class SupervisorError(KoraError):
    """The agent process could not be started or controlled."""

    exit_code = 70
    code = "supervisor"


class ControlError(KoraError):
    """The control socket is unreachable or answered with an error."""

    exit_code = 69
    code = "control"


class ProtocolError(ControlError):
    """A control request was malformed, oversized or named an unknown operation."""

    exit_code = 65
    code = "protocol"


class NotRunningError(ControlError):
    """No daemon is listening on the control socket."""

    exit_code = 69
    code = "not_running"


class BusyError(ControlError):
    """The daemon is up but has no connection slot free for this client right now."""

    exit_code = 75
    code = "busy"
