"""SnapshotScheduler: auto-timer and settled milestones, driven by explicit clock values."""

from __future__ import annotations

from koradaemon.vault.scheduler import SnapshotScheduler


def test_timer_fires_per_interval_per_agency() -> None:
    s = SnapshotScheduler(interval_s=60, settle_s=5, agencies=["alpha"], clock=lambda: 0.0)
    s.track("beta", now=30)
    assert s.due(now=59) == []
    assert s.due(now=60) == [("alpha", "timer")]
    assert s.due(now=61) == []
    assert s.due(now=90) == [("beta", "timer")]
    assert s.due(now=120) == [("alpha", "timer")]


def test_timer_disabled_with_zero_interval() -> None:
    s = SnapshotScheduler(interval_s=0, settle_s=5, agencies=["alpha"], clock=lambda: 0.0)
    assert s.due(now=10_000) == []


def test_milestone_waits_for_settle_and_restarts_timer() -> None:
    s = SnapshotScheduler(interval_s=100, settle_s=5, agencies=["alpha"], clock=lambda: 0.0)
    s.note_change("alpha", now=10)
    assert s.due(now=14) == []
    s.note_change("alpha", now=14)  # still changing: the settle window restarts
    assert s.due(now=18) == []
    assert s.due(now=19) == [("alpha", "milestone")]
    assert s.due(now=25) == []
    assert s.due(now=100) == []  # the milestone snapshot reset the timer
    assert s.due(now=119) == [("alpha", "timer")]


def test_zero_settle_and_taken() -> None:
    s = SnapshotScheduler(interval_s=50, settle_s=0, clock=lambda: 0.0)
    s.note_change("gamma", now=1)
    assert s.due(now=1) == [("gamma", "milestone")]
    s.taken("gamma", now=40)
    assert s.due(now=60) == []
    assert s.due(now=90) == [("gamma", "timer")]


def test_default_clock_used_when_no_value_given() -> None:
    t = [100.0]
    s = SnapshotScheduler(interval_s=10, settle_s=1, agencies=["alpha"], clock=lambda: t[0])
    t[0] = 110.0
    assert s.due() == [("alpha", "timer")]
