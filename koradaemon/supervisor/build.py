"""Mapping the `agent:` config section onto the supervisor, with vault-backed re-injection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from ..config_model import Config
from ..errors import ConfigError, KoraError
from ..service.tokens import TokenStore
from ..vault.service import SnapshotService
from .identity import TOKEN_RELPATH, AgentIdentity
from .openclaw import mcp_entry, prepare_config
from .supervisor import AuditFn, Supervisor

log = structlog.get_logger(__name__)


def _daemon_paths(cfg: Config) -> list[Path]:
    """The daemon's own folders and files: never handed to the agent."""
    return [cfg.path(cfg.index.database), cfg.path(cfg.log.file).parent, cfg.path(cfg.audit.dir),
            cfg.path(cfg.vault.dir), cfg.tokens_path(), cfg.socket_path().parent, cfg.path("secrets")]


def _check_agent_dirs(cfg: Config, own: list[Path]) -> None:
    root = cfg.data_root.resolve()
    for folder in own:
        resolved = folder.resolve()
        if resolved == root or resolved in root.parents:
            raise ConfigError(f"agent folder {folder} is the data root or above it", hint="use e.g. agent/state")
        for mine in _daemon_paths(cfg):
            if resolved == mine.resolve() or resolved in mine.resolve().parents:
                raise ConfigError(f"agent folder {folder} holds the daemon's {mine}", hint="use e.g. agent/state")


def build_supervisor(cfg: Config, *, audit: AuditFn, snapshots: SnapshotService,
                     secret_env: Callable[[], Mapping[str, str]] | None = None) -> Supervisor:
    a = cfg.agent
    workdir = cfg.path(a.workdir)
    state_dir = cfg.path(a.state_dir)
    identity = AgentIdentity.resolve(a.user, a.group, cfg.path(a.home))
    own = [workdir, state_dir, identity.home]
    _check_agent_dirs(cfg, own)
    try:  # again before every start; a failure here shows in status then, instead of stopping the daemon
        identity.prepare(cfg.data_root, own)
    except (OSError, KoraError) as exc:
        log.error("agent_prepare_failed", error=str(exc))
    tokens = TokenStore(cfg.tokens_path())

    def before_start() -> dict[str, str]:
        """Each start: the agent owns its folders (a restore wrote them as the daemon), gets its token."""
        if a.openclaw:  # a fresh gateway needs a config; every gateway gets the MCP server registered
            entry = mcp_entry(a.agency_id, cfg.socket_path(), identity.home / TOKEN_RELPATH)
            prepare_config(state_dir, port=urlsplit(a.health_url).port or 80, entry=entry)
        identity.prepare(cfg.data_root, own)
        identity.grant_socket(cfg.data_root, cfg.socket_path())
        token = tokens.ensure(a.agency_id)
        token_file = identity.write_token(cfg.data_root, token)
        return {**a.env, **identity.env(), "KORA_AGENCY": a.agency_id, "KORA_SOCKET": str(cfg.socket_path()),
                "KORA_TOKEN": token, "KORA_TOKEN_FILE": str(token_file)}

    sup = Supervisor(
        agency_id=a.agency_id,
        command=list(a.command),
        workdir=workdir,
        state_dir=state_dir,
        run_dir=cfg.path("run"),
        health_url=a.health_url,
        probe_interval_s=a.probe_interval_s,
        probe_timeout_s=a.probe_timeout_s,
        hung_after_failures=a.hung_after_failures,
        startup_timeout_s=a.startup_timeout_s,
        drain_s=a.drain_s,
        backoff_initial_s=a.backoff_initial_s,
        backoff_max_s=a.backoff_max_s,
        healthy_reset_s=a.healthy_reset_s,
        crash_loop_failures=a.crash_loop_failures,
        crash_loop_window_s=a.crash_loop_window_s,
        degraded_retry_s=a.degraded_retry_s,
        audit=audit,
        restore_state=snapshots.restore_good_agent_state,
        good_after_s=a.good_after_s,
        before_start=before_start,
        on_control_ready=lambda path: identity.grant_socket(cfg.data_root, path),
        run_as=(identity.uid, identity.gid) if identity.switches and identity.uid is not None
        and identity.gid is not None else None,
        secret_env=secret_env,
    )
    snapshots.agent_health = sup.health
    return sup
