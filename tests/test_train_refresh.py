"""How often a training run publishes its weights to the window (app/train/run.py):
the interval adapts so that showing the snapshots costs at most REFRESH_BUDGET of the time."""

import pytest

from cnnplay.app.train.run import PUBLISH_SECONDS, PUBLISH_SECONDS_MAX, REFRESH_BUDGET, refresh_interval


def test_an_expensive_refresh_is_shown_less_often():
    # 4 refreshes a second costing 40 ms each: 16 % of the time, so the interval grows,
    # halfway (geometrically) toward the 0.8 s at which they would cost 5 %
    cur = 0.25
    nxt = refresh_interval(cur, cost=0.16, wall=1.0, budget=0.05)
    assert nxt == pytest.approx((0.25 * 0.8) ** 0.5)
    # measured again at that rate (the same 40 ms a refresh), it converges on 0.8 s
    for _ in range(30):
        cur = refresh_interval(cur, cost=0.04 / cur, wall=1.0, budget=0.05)
    assert cur == pytest.approx(0.8, rel=1e-3)


def test_bounds_a_cheap_or_a_hopeless_refresh():
    assert refresh_interval(1.0, cost=0.001, wall=1.0) == PUBLISH_SECONDS  # cheap: 4 a second
    assert refresh_interval(1.5, cost=0.9, wall=1.0) == PUBLISH_SECONDS_MAX  # never slower than every 2 s
    assert REFRESH_BUDGET <= 0.1  # the live refresh's share stays within issue 13's 10 %


def test_a_measurement_without_time_keeps_the_interval():
    assert refresh_interval(0.7, cost=0.1, wall=0.0) == 0.7
    assert refresh_interval(0.7, cost=-1.0, wall=1.0) == 0.7
