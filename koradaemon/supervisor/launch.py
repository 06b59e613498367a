"""Spawning one run of the agent: its folders prepared, its environment built (secrets decrypted at each
spawn, straight into the child's environment), the process started in its own group."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..errors import KoraError, SupervisorError
from .child import AgentProcess
from .env import agent_env

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Launcher:
    """Everything a spawn needs that does not change between runs."""

    command: Sequence[str]
    workdir: Path
    state_dir: Path
    pidfile: Path
    ring_lines: int
    extra_env: Mapping[str, str]
    before_start: Callable[[], Mapping[str, str]] | None  # prepares the agent's folders; returns env
    secret_env: Callable[[], Mapping[str, str]] | None
    run_as: tuple[int, int] | None  # (uid, gid) to drop to, None: the daemon's own

    def launch(self, *, on_exit: Callable[[], None], on_line: Callable[[str, str], None]) -> AgentProcess:
        """Start the agent; raises SupervisorError (already logged) with the line for ``status``."""
        extra = dict(self.extra_env)
        try:
            if self.before_start is not None:
                extra.update(self.before_start())
        except (OSError, KoraError) as exc:
            log.error("agent_prepare_failed", error=str(exc))
            raise SupervisorError(f"preparing the agent's folders failed: {exc}") from exc
        try:
            extra.update(self.secret_env() if self.secret_env is not None else {})
        except KoraError as exc:  # the message names the secret, never a value
            log.error("agent_secrets_unavailable", error=str(exc))
            raise SupervisorError(str(exc)) from exc
        child = AgentProcess(
            command=list(self.command),
            workdir=self.workdir,
            env=agent_env(os.environ, state_dir=self.state_dir, extra=extra),
            pidfile=self.pidfile,
            ring_lines=self.ring_lines,
            on_exit=on_exit,
            on_line=on_line,
            user=self.run_as[0] if self.run_as else None,
            group=self.run_as[1] if self.run_as else None,
        )
        try:
            child.start()
        except SupervisorError as exc:
            log.error("agent_spawn_failed", error=str(exc))
            raise
        return child
