"""Mapping the `agent:` config section onto the supervisor, with vault-backed re-injection."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..config_model import Config
from .supervisor import AuditFn, RestoreFn, Supervisor


def build_supervisor(cfg: Config, *, audit: AuditFn, restore_state: RestoreFn,
                     secret_env: Callable[[], Mapping[str, str]] | None = None) -> Supervisor:
    a = cfg.agent
    workdir = cfg.path(a.workdir)
    state_dir = cfg.path(a.state_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    return Supervisor(
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
        restore_state=restore_state,
        secret_env=secret_env,
    )
