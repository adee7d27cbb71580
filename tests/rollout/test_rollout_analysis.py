"""Analysis verdicts as pure functions of counter windows: no clock, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.schema import Analysis, Duration
from proxy.observe.counters import RequestCounters
from proxy.observe.window import WindowStats
from proxy.rollout.analysis import Figures, judge, version_stats

BUCKETS = 14  # len(BOUNDS) + 1


def window(requests: int, errors: int = 0, *, bucket: int = 2) -> WindowStats:
    """``requests`` in one latency bucket (2: (2.5ms, 5ms]), ``errors`` of them 500."""
    buckets = [0] * BUCKETS
    buckets[bucket] = requests
    codes = {status: n for status, n in ((200, requests - errors), (500, errors)) if n}
    return WindowStats(30.0, codes, tuple(buckets), 0.0, 0, 0)


SEED = Analysis(
    interval=Duration(30), min_requests=20, max_error_rate=0.05, max_p99=Duration(0.5), failure_limit=3
)


def test_a_healthy_canary_passes():
    verdict = judge(window(100), window(1000), SEED)
    assert (verdict.outcome, verdict.reasons) == ("pass", ())
    assert verdict.canary == Figures(100, 0, 0.0, verdict.canary.p99)


def test_twenty_percent_errors_fail_with_the_reason():
    verdict = judge(window(100, errors=20), window(1000), SEED)
    assert verdict.outcome == "fail"
    assert verdict.reasons == ("error rate 20% >= max_error_rate 5%",)


def test_the_error_limit_is_reached_at_exactly_the_rate():
    assert judge(window(100, errors=5), None, SEED).outcome == "fail"
    assert judge(window(100, errors=4), None, SEED).outcome == "pass"


def test_a_slow_canary_fails_on_p99():
    slow = window(100, bucket=9)  # (0.5s, 1s]
    verdict = judge(slow, window(100), SEED)
    assert verdict.outcome == "fail"
    assert verdict.reasons[0].startswith("p99 ") and "max_p99 500ms" in verdict.reasons[0]


def test_p99_just_under_the_limit_passes():
    # Everything in (0.25s, 0.5s]: the interpolated p99 is 0.4975s.
    assert judge(window(100, bucket=8), None, SEED).outcome == "pass"


def test_both_limits_broken_give_both_reasons():
    verdict = judge(window(100, errors=50, bucket=10), None, SEED)
    assert len(verdict.reasons) == 2


def test_fewer_than_min_requests_is_inconclusive_even_when_all_fail():
    verdict = judge(window(19, errors=19), window(1000), SEED)
    assert verdict.outcome == "inconclusive"
    assert verdict.reasons == ("19 canary requests, fewer than min_requests 20",)


def test_no_canary_traffic_at_all_is_inconclusive():
    assert judge(None, window(1000), SEED).outcome == "inconclusive"


def test_min_requests_zero_judges_an_empty_window_as_passing():
    analysis = Analysis(min_requests=0)
    assert judge(None, None, analysis).outcome == "pass"


RELATIVE = Analysis(min_requests=20, max_error_rate=None, max_error_rate_increase=0.02)


def test_relative_error_limit_compares_with_the_stable_version():
    assert (
        judge(window(100, errors=12), window(1000, errors=100), RELATIVE).outcome == "pass"
    )  # 12% <= 10% + 2%
    verdict = judge(window(100, errors=13), window(1000, errors=100), RELATIVE)
    assert verdict.outcome == "fail"
    assert verdict.reasons == ("error rate 13% > stable 10% + 2%",)


def test_relative_limits_need_enough_stable_traffic():
    # The stable version served too little to compare with: only absolute limits apply (none here).
    assert judge(window(100, errors=50), window(5), RELATIVE).outcome == "pass"


def test_relative_p99_limit():
    analysis = Analysis(min_requests=1, max_error_rate=None, max_p99_increase=Duration(0.1))
    assert judge(window(100, bucket=7), window(100, bucket=7), analysis).outcome == "pass"
    verdict = judge(window(100, bucket=9), window(100, bucket=7), analysis)
    assert verdict.outcome == "fail" and verdict.reasons[0].startswith("p99 ")


def test_no_limits_at_all_pass_with_enough_traffic():
    analysis = Analysis(min_requests=1, max_error_rate=None)
    assert judge(window(10, errors=10), None, analysis).outcome == "pass"


def test_summary_is_json_ready():
    summary = judge(window(100, errors=20), window(1000), SEED).summary()
    assert summary["outcome"] == "fail"
    assert summary["canary"]["requests"] == 100 and summary["canary"]["error_rate"] == pytest.approx(0.2)
    assert summary["stable"]["requests"] == 1000


@given(
    requests=st.integers(0, 500),
    error_share=st.floats(0, 1),
    min_requests=st.integers(0, 100),
    limit=st.floats(0.001, 1),
)
def test_verdict_rules_hold_for_any_window(requests, error_share, min_requests, limit):
    errors = int(requests * error_share)
    analysis = Analysis(min_requests=min_requests, max_error_rate=limit)
    verdict = judge(window(requests, errors), None, analysis)
    if requests < min_requests:
        assert verdict.outcome == "inconclusive"
    elif requests and errors / requests >= limit:
        assert verdict.outcome == "fail"
    else:
        assert verdict.outcome == "pass"
    assert (verdict.outcome == "pass") == (verdict.reasons == ())


# --- version_stats: the window of one route, per version ------------------------------------


def test_version_stats_keeps_one_route_and_adds_nothing_else():
    counters = RequestCounters()
    mine_v1 = counters.slot("shop", "shop", "v1")
    mine_v2 = counters.slot("shop", "shop", "v2")
    other = counters.slot("admin", "shop", "v2")
    counters.record(mine_v2, 500, 0.01, 0, 0)
    older = counters.snapshot(0.0)
    for _ in range(3):
        counters.record(mine_v2, 200, 0.01, 0, 0)
    counters.record(mine_v2, 503, 0.01, 0, 0)
    counters.record(mine_v1, 200, 0.01, 0, 0)
    counters.record(other, 500, 0.01, 0, 0)
    newer = counters.snapshot(30.0)
    stats = version_stats(older, newer, "shop")
    assert set(stats) == {"v1", "v2"}
    assert (stats["v2"].requests, stats["v2"].errors) == (4, 1)  # the 500 before the window is not in it
    assert stats["v1"].requests == 1
    assert stats["v2"].seconds == 30.0


def test_version_stats_sees_slots_created_after_the_older_snapshot():
    counters = RequestCounters()
    older = counters.snapshot(0.0)
    slot = counters.slot("shop", "shop", "v2")
    counters.record(slot, 200, 0.01, 0, 0)
    assert version_stats(older, counters.snapshot(1.0), "shop")["v2"].requests == 1
