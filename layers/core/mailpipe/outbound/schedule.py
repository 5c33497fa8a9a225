"""When to try a deferred message again, when to warn the sender, when to give up, and how SQS waits.

RFC 5321 4.5.4.1 asks for retries spaced (it suggests at least 30 minutes) and a give-up
time of at least 4-5 days. The default here spans 5 days with intervals doubling from
5 minutes and capped at 4 hours: 5m, 10m, 20m, 40m, 1h20, 2h40, then every 4h. The first
three retries are sooner than 30 minutes on purpose, as Postfix's `minimal_backoff_time`
(300 s) does: most temporary failures (greylisting, a busy server) clear within minutes, and
the growth keeps a failing destination from being hammered. The intervals are configurable.

The clock is always passed in (`now`); nothing here reads the time, so a whole 5-day
schedule can be walked in a test without waiting.

How a 5-day schedule fits SQS
-----------------------------
SQS caps a message's `DelaySeconds` at 900 s (15 min) and a visibility timeout at 12 h, and
a queue keeps a message at most 14 days (4 by default). Waits of hours therefore cannot be
one SQS delay. The delivery function does this instead:

1. A deferred recipient's next attempt time goes into the message body as `not_before`
   (and into the DynamoDB queue state, which `mailpipe queue` shows and steers).
2. The function **re-enqueues a new message** with `DelaySeconds = sqs_delay_plan(wait).delay_seconds`
   (at most 900) and deletes the one it received (by reporting it as processed).
3. A message that arrives before its `not_before` is re-enqueued the same way, with the
   remaining wait, without attempting delivery: a 4-hour wait is 16 hops of 15 minutes,
   each a cheap no-op invocation. Each hop also asks `should_warn`, so the delay warning
   leaves within 15 minutes of `warn_after` rather than at the next real attempt.

Re-enqueueing rather than stretching the visibility timeout (ChangeMessageVisibility, up to
12 h from the receive) is deliberate: every receive of the *same* message raises its
ApproximateReceiveCount, so after `maxReceiveCount` (5 on the queues of template.yaml)
retries SQS would move a perfectly healthy deferred message to the dead-letter queue; and
the same message would age towards the queue's retention period, which by default (4 days)
is shorter than the schedule. A new message starts both counts afresh. The visibility
timeout stays what it is for: hiding a message while one invocation works on it.
`sqs_visibility_plan` is there for a caller that does want the other way (a single wait of
up to 12 h), and says how much is left over.

Standard queues deliver at least once, so a re-enqueue whose delete did not happen yields
two messages; the attempt counter in DynamoDB (a conditional write) makes the second a
no-op. FIFO queues accept no per-message delay, so the outbound queue must be a standard one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

SQS_MAX_DELAY_SECONDS = 900
SQS_MAX_VISIBILITY_TIMEOUT = 12 * 60 * 60

DEFAULT_GIVE_UP_AFTER = timedelta(days=5)
DEFAULT_WARN_AFTER = timedelta(hours=4)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """`90s`, `5m`, `1h20m`, `5d`, `1.5h` or plain seconds (`300`) as a timedelta."""
    compact = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return timedelta(seconds=float(compact))
    parts = _DURATION.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5m, 1h20m, 5d)")
    return timedelta(seconds=sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def format_duration(delta: timedelta) -> str:
    """The inverse of `parse_duration` for whole seconds: `1h20m`, `5d`, `0s`."""
    seconds = int(delta.total_seconds())
    out = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def exponential_intervals(
    first: timedelta = timedelta(minutes=5), factor: float = 2.0, cap: timedelta = timedelta(hours=4)
) -> tuple[timedelta, ...]:
    """`first`, `first*factor`, ... up to and ending with `cap` (which then repeats)."""
    if first <= timedelta(0) or factor <= 1 or cap < first:
        raise ValueError("need first > 0, factor > 1 and cap >= first")
    intervals = [first]
    while intervals[-1] < cap:
        intervals.append(min(intervals[-1] * factor, cap))
    return tuple(intervals)


DEFAULT_INTERVALS = exponential_intervals()


def _require_aware(*moments: datetime) -> None:
    for moment in moments:
        if moment.tzinfo is None:
            raise ValueError("use timezone-aware datetimes (UTC) for queue times")


class RetrySchedule:
    """Retry intervals (the last one repeats), a give-up age and a delay-warning age.

    Ages count from `first_attempt_at`, the first delivery attempt, which for mailpipe is
    when the message was queued (delivery is tried at once).
    """

    def __init__(
        self,
        intervals: Sequence[timedelta] = DEFAULT_INTERVALS,
        *,
        give_up_after: timedelta = DEFAULT_GIVE_UP_AFTER,
        warn_after: timedelta | None = DEFAULT_WARN_AFTER,
    ) -> None:
        if not intervals or any(step <= timedelta(0) for step in intervals):
            raise ValueError("a retry schedule needs at least one positive interval")
        if give_up_after <= timedelta(0):
            raise ValueError("give_up_after must be positive")
        if warn_after is not None and warn_after <= timedelta(0):
            raise ValueError("warn_after must be positive (or None: never warn)")
        self.intervals = tuple(intervals)
        self.give_up_after = give_up_after
        self.warn_after = warn_after

    @classmethod
    def from_text(
        cls, intervals: str = "", give_up_after: str = "", warn_after: str | None = ""
    ) -> RetrySchedule:
        """From configuration strings (`"5m,10m,20m,40m,1h20m,2h40m,4h"`, `"5d"`, `"4h"`).

        Empty strings keep the defaults; `warn_after="never"` or None turns the warning off.
        """
        steps = [parse_duration(part) for part in intervals.replace(" ", "").split(",") if part]
        warn: timedelta | None
        if warn_after is None or warn_after.strip().lower() in ("never", "off", "none"):
            warn = None
        else:
            warn = parse_duration(warn_after) if warn_after.strip() else DEFAULT_WARN_AFTER
        return cls(
            steps or DEFAULT_INTERVALS,
            give_up_after=parse_duration(give_up_after) if give_up_after.strip() else DEFAULT_GIVE_UP_AFTER,
            warn_after=warn,
        )

    def interval(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt (1 = the first attempt failed)."""
        if attempts < 1:
            raise ValueError("attempts counts the attempts made so far, starting at 1")
        return self.intervals[min(attempts, len(self.intervals)) - 1]

    def give_up_at(self, first_attempt_at: datetime) -> datetime:
        """The DSN's Will-Retry-Until: no attempt is made after this moment."""
        return first_attempt_at + self.give_up_after

    def next_attempt(self, first_attempt_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed attempts, the last one failing at `now`; None: give up.

        The wait grows with `attempts`; a wait that would pass the give-up time is cut
        short so the last attempt happens exactly then (the sender gets the full 5 days);
        once `now` has reached the give-up time there is no next attempt and the caller
        sends the failure DSN.
        """
        _require_aware(first_attempt_at, now)
        deadline = self.give_up_at(first_attempt_at)
        if now >= deadline:
            return None
        return min(now + self.interval(attempts), deadline)

    def should_warn(self, first_attempt_at: datetime, now: datetime, *, warned: bool = False) -> bool:
        """Whether to send the delay DSN now: once, after `warn_after`, and only while retries go on."""
        _require_aware(first_attempt_at, now)
        if warned or self.warn_after is None:
            return False
        return first_attempt_at + self.warn_after <= now < self.give_up_at(first_attempt_at)

    def plan(self, first_attempt_at: datetime) -> list[datetime]:
        """Every attempt time if each attempt failed at once: the schedule at a glance (`queue list`)."""
        _require_aware(first_attempt_at)
        times = [first_attempt_at]
        while True:
            following = self.next_attempt(first_attempt_at, len(times), times[-1])
            if following is None:
                return times
            times.append(following)

    def __repr__(self) -> str:
        steps = ",".join(format_duration(step) for step in self.intervals)
        warn = format_duration(self.warn_after) if self.warn_after else "never"
        return f"RetrySchedule({steps}; give up {format_duration(self.give_up_after)}; warn {warn})"


class SqsDelay(NamedTuple):
    """How long SQS itself can hold the message now, and how much of the wait is left after that."""

    delay_seconds: int
    remaining: int


def sqs_delay_plan(delay_seconds: float) -> SqsDelay:
    """Split a wait into the `DelaySeconds` of one `SendMessage` (<= 900) and the rest.

    Rounded up so a message never wakes early by a fraction; `remaining` > 0 means the
    receiver re-enqueues it again (see the module docstring).
    """
    wait = max(0, math.ceil(delay_seconds))
    now = min(wait, SQS_MAX_DELAY_SECONDS)
    return SqsDelay(now, wait - now)


def sqs_delay_until(not_before: datetime, now: datetime) -> SqsDelay:
    """`sqs_delay_plan` for a message that must not be handled before `not_before`."""
    _require_aware(not_before, now)
    return sqs_delay_plan((not_before - now).total_seconds())


def sqs_visibility_plan(delay_seconds: float) -> SqsDelay:
    """The same split for ChangeMessageVisibility (<= 12 h), the alternative the docstring argues against."""
    wait = max(0, math.ceil(delay_seconds))
    now = min(wait, SQS_MAX_VISIBILITY_TIMEOUT)
    return SqsDelay(now, wait - now)
