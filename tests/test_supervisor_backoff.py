"""RestartPolicy: pure backoff, jitter, healthy reset and crash-loop detection."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koradaemon.supervisor import RestartPolicy


def policy(**kw: float) -> RestartPolicy:
    params: dict[str, float] = {
        "initial_s": 1.0,
        "max_s": 120.0,
        "healthy_reset_s": 600.0,
        "crash_loop_failures": 5,
        "crash_loop_window_s": 600.0,
        "degraded_retry_s": 300.0,
    }
    params.update(kw)
    return RestartPolicy(**params, rng=random.Random(7))  # type: ignore[arg-type]


def test_base_delay_doubles_from_one_second_to_the_cap() -> None:
    p = policy()
    assert [p.base_delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 120, 120]


def test_delays_are_jittered_below_the_base_and_spaced_out() -> None:
    p = policy(crash_loop_failures=1000)
    t = 0.0
    for attempt in range(1, 12):
        t += 1000.0  # far apart: no crash loop
        d = p.on_failure(t)
        base = p.base_delay(attempt)
        assert not d.degraded
        assert base * (1 - p.jitter) <= d.delay_s <= base


@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=1, max_value=200))
def test_delay_never_exceeds_max(seed: int, attempts: int) -> None:
    p = RestartPolicy(initial_s=0.5, max_s=30.0, crash_loop_failures=10**6, rng=random.Random(seed))
    for i in range(attempts):
        assert 0 < p.on_failure(float(i) * 10_000).delay_s <= 30.0


def test_crash_loop_within_window_degrades_with_slow_retries() -> None:
    p = policy()
    decisions = [p.on_failure(float(t)) for t in range(0, 50, 10)]
    assert [d.degraded for d in decisions] == [False, False, False, False, True]
    assert decisions[-1].delay_s == 300.0
    assert decisions[-1].failures_in_window == 5
    assert p.degraded


def test_failures_outside_the_window_do_not_count() -> None:
    p = policy()
    for t in (0.0, 200.0, 400.0, 700.0, 900.0, 1300.0):
        assert not p.on_failure(t).degraded


def test_healthy_period_resets_attempts_and_degraded() -> None:
    p = policy()
    for t in range(5):
        p.on_failure(float(t))
    assert p.degraded and p.attempt == 5
    assert not p.on_healthy(ready_since=10.0, now=600.0)  # 590 s: not yet
    assert p.on_healthy(ready_since=10.0, now=610.0)
    assert not p.degraded and p.attempt == 0
    assert p.on_failure(2000.0).delay_s <= 1.0


def test_forced_degraded_is_immediate() -> None:
    p = policy()
    d = p.on_failure(0.0, force_degraded=True)
    assert d.degraded and d.delay_s == 300.0


@pytest.mark.parametrize(("initial", "maximum", "jitter"), [(0.0, 1.0, 0.1), (2.0, 1.0, 0.1), (1.0, 2.0, 1.0)])
def test_bad_parameters_are_refused(initial: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(initial_s=initial, max_s=maximum, jitter=jitter)
