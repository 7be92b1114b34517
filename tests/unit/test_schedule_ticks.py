"""Which cron ticks fire after downtime, by catch-up policy (pure logic of engine/schedules.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowstudio.engine.schedules import ScheduleError, due_ticks, first_fire, next_tick

UTC = timezone.utc
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_on_time_tick_fires_once_and_moves_on() -> None:
    fire, nxt = due_ticks("*/5 * * * *", "UTC", T0, T0 + timedelta(seconds=3), "latest", 100)
    assert fire == [T0] and nxt == T0 + timedelta(minutes=5)


@pytest.mark.parametrize(("policy", "count"), [("all", 7), ("latest", 1), ("skip", 0)])
def test_missed_ticks_after_downtime(policy: str, count: int) -> None:
    now = T0 + timedelta(minutes=32)  # the last tick (12:30) is 2 min old: too late for `skip`
    fire, nxt = due_ticks("*/5 * * * *", "UTC", T0, now, policy, 100)
    assert len(fire) == count
    if policy == "latest":
        assert fire == [T0 + timedelta(minutes=30)]
    assert nxt == T0 + timedelta(minutes=35)


def test_skip_still_fires_the_tick_that_is_on_time() -> None:
    now = T0 + timedelta(minutes=30, seconds=20)
    fire, _ = due_ticks("*/5 * * * *", "UTC", T0, now, "skip", 100)
    assert fire == [T0 + timedelta(minutes=30)]


def test_all_is_capped_by_max_catchup() -> None:
    fire, _ = due_ticks("* * * * *", "UTC", T0, T0 + timedelta(hours=5), "all", 10)
    assert len(fire) == 10 and fire[-1] == T0 + timedelta(hours=5)


def test_time_zone_is_honoured() -> None:
    tick = next_tick("0 9 * * *", "Europe/Berlin", T0)  # 09:00 Berlin = 08:00 UTC in January
    assert tick.astimezone(UTC) == datetime(2026, 1, 2, 8, 0, tzinfo=UTC)
    assert first_fire("0 12 * * *", "UTC", T0) == T0


def test_bad_cron_and_zone_are_refused() -> None:
    with pytest.raises(ScheduleError):
        next_tick("every day", "UTC", T0)
    with pytest.raises(ScheduleError):
        next_tick("* * * * *", "Mars/Olympus", T0)
