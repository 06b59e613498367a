"""Supervision of the agent process (the OpenClaw gateway) with health probes, backoff and re-injection."""

from __future__ import annotations

from .backoff import Decision, RestartPolicy
from .child import AgentProcess
from .env import agent_env
from .pidfile import GroupRecord, reap_stale
from .probes import Prober, ProbeResult
from .supervisor import EX_CONFIG, AuditFn, RestoreFn, Supervisor

__all__ = [
    "EX_CONFIG",
    "AgentProcess",
    "AuditFn",
    "Decision",
    "GroupRecord",
    "ProbeResult",
    "Prober",
    "RestartPolicy",
    "RestoreFn",
    "Supervisor",
    "agent_env",
    "reap_stale",
]
