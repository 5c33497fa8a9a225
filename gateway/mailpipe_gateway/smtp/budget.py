"""How many bytes of message data one gateway's sessions hold in memory at once.

aiosmtpd hands a message to the handler whole, so every session in DATA holds what it has
received so far: up to SIZE (40 MB) each, and a hostile client opening many sessions could
take all the memory there is. Sessions take their bytes from this budget as they keep them;
one that finds it spent is refused with a temporary 452 at the end of its DATA, and its
client retries later. Everything runs on the gateway's event loop: no lock is needed.
"""

from __future__ import annotations

DEFAULT_DATA_MEMORY = 256 * 1024 * 1024


class MemoryBudget:
    def __init__(self, limit: int = DEFAULT_DATA_MEMORY) -> None:
        self._limit = limit
        self._used = 0

    def take(self, size: int) -> bool:
        """Take `size` bytes; False (and nothing taken) if that would exceed the limit."""
        if self._used + size > self._limit:
            return False
        self._used += size
        return True

    def give_back(self, size: int) -> None:
        self._used -= size

    @property
    def used(self) -> int:
        return self._used
