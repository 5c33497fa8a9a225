"""LIST patterns (RFC 9051 6.3.9): ``*`` matches anything, ``%`` anything but the delimiter ``/``.

A regex built from the pattern backtracks: ``*a*a*a*a*a*a*a*a*a*aZ`` against a name of 40 ``a``
took 11 s, with the event loop (every SMTP, IMAP and POP3 session) stalled. Here the pattern is a
nondeterministic automaton whose set of live states is one integer, a bit per pattern position
(bit-parallel "shift-and"): each character of the name costs a fixed handful of integer
operations, whatever the pattern, so matching a name of n characters takes n steps.

Patterns come from clients and may be 64 KiB long (or a literal of megabytes); nothing is built
from a pattern until a name is long enough for its literal characters to fit, so the automaton
never has more bits than twice the longest name that reaches it.
"""

from __future__ import annotations

import re

DELIMITER = "/"
_PIECES = re.compile(r"[*%]+|[^*%]+")


class Wildcard:
    """One LIST pattern; ``matches(name)`` says whether it matches the whole of ``name``.

    ``steps`` counts the work done so far (pattern positions compiled plus name characters
    read), for tests that check matching stays linear.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        # Characters that must each match one character of the name (counted in C, not looped over).
        self.fixed = len(pattern) - pattern.count("*") - pattern.count("%")
        self.steps = 0
        self._automaton: _Automaton | None = None
        self._folded: Wildcard | None = None

    def matches(self, name: str) -> bool:
        if self._match(name):
            return True
        # INBOX is case-insensitive: "inbox" or "Inbox%" in a pattern still finds it.
        if name == "INBOX" and self.fixed <= len(name):
            if self._folded is None:
                self._folded = Wildcard(self.pattern.upper())
            found = self._folded._match(name)
            self.steps += self._folded.steps
            self._folded.steps = 0
            return found
        return False

    def _match(self, name: str) -> bool:
        if self.fixed > len(name):
            return False  # more characters to match than the name has: no backtracking needed to see it
        if self._automaton is None:
            self._automaton = _Automaton(self.pattern)
            self.steps += self._automaton.size
        matched, steps = self._automaton.run(name)
        self.steps += steps
        return matched


class _Automaton:
    """Bit i of a state set: the first i pattern positions have matched what was read so far."""

    def __init__(self, pattern: str) -> None:
        positions: list[str] = []
        for piece in _PIECES.findall(pattern):
            if piece[0] in "*%":
                # A run of wildcards is one: "*" if it holds one (it covers "%"), else "%".
                positions.append("*" if "*" in piece else "%")
            else:
                positions.extend(piece)
        self.size = len(positions)
        self.accept = 1 << self.size
        self.star = self.percent = 0
        self.literal: dict[str, int] = {}
        for i, ch in enumerate(positions):
            bit = 1 << i
            if ch == "*":
                self.star |= bit
            elif ch == "%":
                self.percent |= bit
            else:
                self.literal[ch] = self.literal.get(ch, 0) | bit
        self.wild = self.star | self.percent
        # No two wildcards are adjacent, so one step of closure covers a wildcard matching nothing.
        self.start = self._close(1)

    def _close(self, states: int) -> int:
        return states | ((states & self.wild) << 1)

    def run(self, name: str) -> tuple[bool, int]:
        """Whether the pattern matches all of ``name``, and the characters read to know it."""
        states = self.start
        steps = 0
        for ch in name:
            steps += 1
            stay = self.star if ch == DELIMITER else self.wild  # "%" does not cross a level
            states = self._close(((states & self.literal.get(ch, 0)) << 1) | (states & stay))
            if not states:
                return False, steps
        return bool(states & self.accept), steps
