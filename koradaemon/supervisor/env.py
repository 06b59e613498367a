"""The agent's environment: the daemon's own, minus service-manager plumbing, plus OPENCLAW_* settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# Variables that belong to the daemon's service manager (systemd, launchd) or to the daemon itself.
# Passing them on would let the agent talk to systemd as if it were the daemon (sd_notify, watchdog),
# claim sockets meant for the daemon, or read the daemon's credentials (the vault passphrase).
SCRUBBED_NAMES = frozenset(
    {
        "NOTIFY_SOCKET",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "MAINPID",
        "MANAGERPID",
        "SYSTEMD_EXEC_PID",
        "CREDENTIALS_DIRECTORY",
        "SERVICE_RESULT",
        "EXIT_CODE",
        "EXIT_STATUS",
        "XPC_SERVICE_NAME",
        "LAUNCH_JOBKEY",
    }
)
SCRUBBED_PREFIXES = ("WATCHDOG_", "LISTEN_", "MONITOR_", "TRIGGER_", "KORA_")


def is_scrubbed(name: str) -> bool:
    return name in SCRUBBED_NAMES or name.startswith(SCRUBBED_PREFIXES)


def agent_env(base: Mapping[str, str], *, state_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Build the child's environment from ``base`` (normally ``os.environ``).

    ``extra`` is applied after scrubbing; the three OPENCLAW_* settings always win, because the
    daemon is the one restarting the agent and the state directory is the one it snapshots.
    """
    env = {k: v for k, v in base.items() if not is_scrubbed(k)}
    if extra:
        env.update(extra)
    env["OPENCLAW_STATE_DIR"] = str(state_dir)
    env["OPENCLAW_NO_RESPAWN"] = "1"
    env["OPENCLAW_DISABLE_BONJOUR"] = "1"
    return env
