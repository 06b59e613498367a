"""The restart decision after a run of the agent ended: how long to wait, and whether the next start
first puts a known-good state back (re-injection level 1). Effects (audit, status) stay with the caller."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .backoff import RestartPolicy
from .reinject import Reinjector


@dataclass(frozen=True)
class Outcome:
    """How one run of the child ended. ``kind``: exited, hung, startup_timeout, spawn_failed, stop,
    pause or restart_requested."""

    kind: str
    returncode: int | None
    was_ready: bool


@dataclass(frozen=True)
class RestartPlan:
    """When and why the next start comes after a failed run."""

    delay_s: float
    reason: str  # the next start's reason: "restore" when re-injection level 1 runs, else the outcome's kind
    level: int  # re-injection level
    degraded: bool
    newly_degraded: bool  # this failure moved the agent into the degraded state
    failures_in_window: int
    attempt: int


def plan_restart(outcome: Outcome, *, policy: RestartPolicy, reinjector: Reinjector,
                 backoff_initial_s: float) -> RestartPlan:
    """Record a failed run with the re-injector and the restart policy; a level-1 restore starts after the
    initial backoff unless the agent is degraded."""
    level, force_degraded = reinjector.on_failure(
        returncode=outcome.returncode, was_ready=outcome.was_ready, spawned=outcome.kind != "spawn_failed"
    )
    was_degraded = policy.degraded
    decision = policy.on_failure(time.monotonic(), force_degraded=force_degraded)
    delay = decision.delay_s
    if level == 1 and not decision.degraded:
        delay = backoff_initial_s
    return RestartPlan(
        delay_s=delay,
        reason="restore" if level == 1 else outcome.kind,
        level=level,
        degraded=decision.degraded,
        newly_degraded=decision.degraded and not was_degraded,
        failures_in_window=decision.failures_in_window,
        attempt=policy.attempt,
    )
