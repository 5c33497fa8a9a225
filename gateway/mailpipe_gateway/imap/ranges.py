"""Sets of numbers given as ranges (a resolved sequence set), looked up without a scan per number.

A sequence set in a 64 KiB command line can hold some 13,000 ranges; testing each message of a
large mailbox against each range was quadratic work on the event loop. Merged and sorted once,
the ranges answer "is n in the set?" by bisection and "which of these sorted numbers?" by one
bisection per range.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges (each low <= high) sorted, with overlapping and adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            if high > out[-1][1]:
                out[-1] = (out[-1][0], high)
        else:
            out.append((low, high))
    return out


def contains(ranges: Sequence[tuple[int, int]], value: int) -> bool:
    """Whether ``value`` lies in one of ``ranges``, which ``merged`` made."""
    index = bisect.bisect_right(ranges, (value, float("inf"))) - 1
    return index >= 0 and ranges[index][1] >= value


def indexes_within(numbers: Sequence[int], ranges: Sequence[tuple[int, int]]) -> list[int]:
    """The positions in the sorted ``numbers`` of those within ``ranges`` (from ``merged``), in order."""
    out: list[int] = []
    for low, high in ranges:
        out.extend(range(bisect.bisect_left(numbers, low), bisect.bisect_right(numbers, high)))
    return out


def uid_set(uids: list[int]) -> str:
    """UIDs as a compact sequence set: 1:3,7,9:10."""
    return ordered_set(sorted(uids))


def ordered_set(values: list[int]) -> str:
    """``values`` as a sequence set that keeps their order: ascending runs become ranges."""
    out: list[str] = []
    start = previous = None
    for value in values:
        if previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            out.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = value
    if start is not None:
        out.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(out)
