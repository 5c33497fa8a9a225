"""The retry schedule, walked through its whole 5 days with an injected clock, and its SQS split."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from mailpipe.outbound.schedule import (
    DEFAULT_INTERVALS,
    SQS_MAX_DELAY_SECONDS,
    RetrySchedule,
    SqsDelay,
    exponential_intervals,
    format_duration,
    parse_duration,
    sqs_delay_plan,
    sqs_delay_until,
    sqs_visibility_plan,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)


class Clock:
    """The only time the simulated delivery function sees."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, delta: timedelta) -> None:
        assert delta >= timedelta(0)
        self.now += delta


def test_default_intervals_double_from_5_minutes_to_a_4_hour_cap() -> None:
    assert DEFAULT_INTERVALS == (5 * M, 10 * M, 20 * M, 40 * M, 80 * M, 160 * M, 4 * H)
    schedule = RetrySchedule()
    assert [schedule.interval(n) for n in range(1, 10)] == [*DEFAULT_INTERVALS, 4 * H, 4 * H]
    assert schedule.give_up_after == timedelta(days=5)
    assert schedule.warn_after == 4 * H
    assert repr(schedule) == "RetrySchedule(5m,10m,20m,40m,1h20m,2h40m,4h; give up 5d; warn 4h)"


def test_plan_of_the_default_schedule() -> None:
    plan = RetrySchedule().plan(T0)
    offsets = [moment - T0 for moment in plan]
    assert offsets[:8] == [timedelta(0), 5 * M, 15 * M, 35 * M, 75 * M, 155 * M, 315 * M, 315 * M + 4 * H]
    assert offsets[-1] == timedelta(days=5), "the last attempt is at the give-up time"
    assert offsets[-2] == 315 * M + 28 * 4 * H
    assert len(plan) == 36
    gaps = [later - earlier for earlier, later in itertools.pairwise(plan)]
    assert all(gap > timedelta(0) for gap in gaps)
    assert max(gaps) == 4 * H
    # RFC 5321 4.5.4.1: retries at least 30 minutes apart (from the 4th retry on; the first three
    # are sooner on purpose) and a give-up time of at least 4-5 days.
    assert all(gap >= 30 * M for gap in gaps[3:-1])
    assert plan[-1] - plan[0] >= timedelta(days=4)


def test_whole_five_days_walked_with_sqs_hops() -> None:
    """What the delivery function does: attempt, fail, warn once, re-enqueue in <=15 min hops, give up."""
    schedule = RetrySchedule()
    clock = Clock(T0)
    first = clock.now
    attempts: list[datetime] = []
    warnings: list[datetime] = []
    hops = 0
    attempt_takes = timedelta(seconds=30)

    def maybe_warn() -> None:
        if schedule.should_warn(first, clock.now, warned=bool(warnings)):
            warnings.append(clock.now)

    while True:
        attempts.append(clock.now)
        clock.advance(attempt_takes)  # the remote server answers 451 after 30 s
        maybe_warn()
        not_before = schedule.next_attempt(first, len(attempts), clock.now)
        if not_before is None:
            gave_up = clock.now
            break
        assert not_before > clock.now
        while clock.now < not_before:  # every wake-up before not_before is a no-op re-enqueue
            delay = sqs_delay_until(not_before, clock.now)
            assert 0 < delay.delay_seconds <= SQS_MAX_DELAY_SECONDS
            clock.advance(timedelta(seconds=delay.delay_seconds))
            hops += 1
            maybe_warn()
        assert clock.now == not_before, "never handled before not_before, never late either"

    deadline = first + timedelta(days=5)
    assert attempts[-1] == deadline
    assert gave_up == deadline + attempt_takes
    assert all(moment <= deadline for moment in attempts)
    for n, (earlier, later) in enumerate(list(itertools.pairwise(attempts))[:-1], start=1):
        assert later - earlier == schedule.interval(n) + attempt_takes
    assert len(warnings) == 1
    assert first + 4 * H <= warnings[0] <= first + 4 * H + timedelta(seconds=SQS_MAX_DELAY_SECONDS)
    # a 4-hour wait is 16 hops of 15 minutes; the whole 5 days about 5*24*4 hops
    assert 450 < hops < 5 * 24 * 4 + len(attempts)


def test_next_attempt_edges() -> None:
    schedule = RetrySchedule([10 * M, 1 * H], give_up_after=3 * H, warn_after=None)
    assert schedule.next_attempt(T0, 1, T0) == T0 + 10 * M
    assert schedule.next_attempt(T0, 2, T0 + 10 * M) == T0 + 70 * M
    assert schedule.next_attempt(T0, 3, T0 + 70 * M) == T0 + 130 * M
    assert schedule.next_attempt(T0, 4, T0 + 130 * M) == T0 + 3 * H, "cut short to the give-up time"
    assert schedule.next_attempt(T0, 5, T0 + 3 * H) is None
    assert schedule.next_attempt(T0, 5, T0 + 5 * H) is None
    assert schedule.give_up_at(T0) == T0 + 3 * H
    with pytest.raises(ValueError):
        schedule.interval(0)


def test_should_warn_once_after_warn_after_and_never_at_the_end() -> None:
    schedule = RetrySchedule()
    assert not schedule.should_warn(T0, T0 + 4 * H - timedelta(seconds=1))
    assert schedule.should_warn(T0, T0 + 4 * H)
    assert schedule.should_warn(T0, T0 + 3 * timedelta(days=1))
    assert not schedule.should_warn(T0, T0 + 5 * H, warned=True)
    assert not schedule.should_warn(T0, T0 + timedelta(days=5)), "a failure DSN goes out instead"
    never = RetrySchedule(warn_after=None)
    assert not never.should_warn(T0, T0 + timedelta(days=1))
    custom = RetrySchedule(warn_after=timedelta(hours=24))
    assert not custom.should_warn(T0, T0 + 23 * H)
    assert custom.should_warn(T0, T0 + 24 * H)


def test_from_text() -> None:
    schedule = RetrySchedule.from_text("15m, 30m,1h", give_up_after="2d", warn_after="1h30m")
    assert schedule.intervals == (15 * M, 30 * M, H)
    assert schedule.give_up_after == timedelta(days=2)
    assert schedule.warn_after == 90 * M
    defaults = RetrySchedule.from_text()
    assert (defaults.intervals, defaults.give_up_after, defaults.warn_after) == (
        DEFAULT_INTERVALS,
        timedelta(days=5),
        4 * H,
    )
    assert RetrySchedule.from_text(warn_after="never").warn_after is None
    assert RetrySchedule.from_text(warn_after=None).warn_after is None


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("300", timedelta(seconds=300)),
        ("90s", timedelta(seconds=90)),
        ("5m", 5 * M),
        ("1h20m", 80 * M),
        ("1H 20M", 80 * M),
        ("2h40m", 160 * M),
        ("5d", timedelta(days=5)),
        ("1.5h", 90 * M),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "h", "5x", "5m10", "-5m", "m5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for delta in (*DEFAULT_INTERVALS, timedelta(days=5), timedelta(days=1, seconds=61), timedelta(0)):
        assert parse_duration(format_duration(delta)) == delta


def test_exponential_intervals() -> None:
    assert exponential_intervals(M, 3, 10 * M) == (M, 3 * M, 9 * M, 10 * M)
    assert exponential_intervals(H, 2, H) == (H,)
    for bad in ((timedelta(0), 2, H), (M, 1, H), (H, 2, M)):
        with pytest.raises(ValueError):
            exponential_intervals(*bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"intervals": []},
        {"intervals": [M, timedelta(0)]},
        {"give_up_after": timedelta(0)},
        {"warn_after": timedelta(seconds=-1)},
    ],
)
def test_bad_schedules_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetrySchedule(**kwargs)  # type: ignore[arg-type]


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2025, 3, 1, 12, 0)
    with pytest.raises(ValueError):
        RetrySchedule().next_attempt(naive, 1, naive)
    with pytest.raises(ValueError):
        sqs_delay_until(naive, T0)


@pytest.mark.parametrize(
    ("wait", "plan"),
    [
        (0, SqsDelay(0, 0)),
        (-30, SqsDelay(0, 0)),
        (0.2, SqsDelay(1, 0)),
        (300, SqsDelay(300, 0)),
        (900, SqsDelay(900, 0)),
        (900.5, SqsDelay(900, 1)),
        (4 * 3600, SqsDelay(900, 4 * 3600 - 900)),
    ],
)
def test_sqs_delay_plan(wait: float, plan: SqsDelay) -> None:
    assert sqs_delay_plan(wait) == plan


def test_sqs_delay_until_and_visibility_plan() -> None:
    assert sqs_delay_until(T0 + 10 * M, T0) == SqsDelay(600, 0)
    assert sqs_delay_until(T0, T0 + 10 * M) == SqsDelay(0, 0), "already due: send without delay"
    assert sqs_visibility_plan(3600) == SqsDelay(3600, 0)
    assert sqs_visibility_plan(13 * 3600) == SqsDelay(12 * 3600, 3600)
