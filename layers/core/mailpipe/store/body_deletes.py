"""Bodies of expunged messages, deleted from S3 after the EXPUNGE has been answered, in batches.

The index is the truth: once an expunge's transaction commits, nothing points at the message's
body any more, so deleting it can wait. An IMAP EXPUNGE that deleted its bodies itself paid an S3
DeleteObjects (a request, and its botocore CPU) before its tagged OK; under bench/imap.py that was
0.11 of the ~0.9 AWS requests per command. Here a gateway process hands the keys over and one
thread deletes them, up to 1,000 keys per DeleteObjects, BATCH_SECONDS after the first of a batch
came (so the EXPUNGEs of that moment share a request).

Nothing is lost: only keys of committed expunges are ever handed over. Nothing leaks for good:
a chunk that fails is tried again (ATTEMPTS times, backing off), `flush` deletes what is left when
the process stops, and if the process dies first, or S3 keeps failing, the pruning of the
message's tombstone deletes its body (store/pruning.py). Keys waiting are bounded (MAX_WAITING;
past it the oldest are left to pruning, with a warning), so S3 being down costs bounded memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.5  # from the first key of a batch to its DeleteObjects
MAX_KEYS = 1000  # keys per DeleteObjects (S3's limit)
ATTEMPTS = 5  # per chunk, backing off 1, 2, 4, 8 s; then the key is left to pruning
MAX_WAITING = 100_000  # keys waiting at most (~10 MB); older ones are left to pruning


class BodyDeletes:
    """Keys handed over by `later`, deleted by one thread through `delete` (which deletes up to
    MAX_KEYS keys and returns the keys it could not delete)."""

    def __init__(
        self,
        delete: Callable[[list[str]], list[str]],
        *,
        batch_seconds: float = BATCH_SECONDS,
        attempts: int = ATTEMPTS,
    ) -> None:
        self._delete = delete
        self._batch_seconds = batch_seconds
        self._attempts = attempts
        self._waiting: deque[tuple[str, int]] = deque()  # (key, attempts made)
        self._not_before = 0.0  # monotonic time before which a retried key is not tried again
        self._busy = 0  # keys taken by a delete that has not returned yet
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """Keys not deleted yet (waiting, or being deleted now)."""
        with self._changed:
            return len(self._waiting) + self._busy

    def later(self, keys: Iterable[str]) -> None:
        """Delete `keys` soon, on this object's thread."""
        keys = list(keys)
        if not keys:
            return
        with self._changed:
            self._waiting.extend((key, 0) for key in keys)
            dropped = len(self._waiting) - MAX_WAITING
            for _ in range(max(dropped, 0)):
                self._waiting.popleft()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="body-deletes", daemon=True)
                self._thread.start()
            self._changed.notify_all()
        if dropped > 0:
            log.warning("%d message bodies waiting to be deleted: left to pruning", dropped)

    def flush(self, timeout: float = 10.0) -> bool:
        """Delete everything waiting now, in this thread (a process about to stop); whether nothing
        is left. Keys that fail are left to pruning."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._changed:
                if not self._waiting:
                    if not self._busy:
                        return True
                    self._changed.wait(deadline - time.monotonic())
                    continue
                chunk = self._take()
            self._delete_chunk(chunk, retry=False)
        return self.waiting == 0

    def _take(self) -> list[tuple[str, int]]:
        """Up to MAX_KEYS waiting keys (called holding the lock); they count as busy until done."""
        chunk = [self._waiting.popleft() for _ in range(min(MAX_KEYS, len(self._waiting)))]
        self._busy += len(chunk)
        return chunk

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting:
                    self._changed.wait()
            time.sleep(max(self._batch_seconds, self._not_before - time.monotonic()))
            with self._changed:
                chunk = self._take()
            if chunk:
                self._delete_chunk(chunk, retry=True)

    def _delete_chunk(self, chunk: list[tuple[str, int]], *, retry: bool) -> None:
        try:
            failed = set(self._delete([key for key, _ in chunk]))
        except Exception:
            log.exception("deleting %d message bodies failed", len(chunk))
            failed = {key for key, _ in chunk}
        again = [(key, made + 1) for key, made in chunk if key in failed and made + 1 < self._attempts]
        given_up = sum(1 for key, _ in chunk if key in failed) - len(again)
        with self._changed:
            self._busy -= len(chunk)
            if retry and again:
                self._waiting.extendleft(reversed(again))
                self._not_before = time.monotonic() + 2 ** (again[0][1] - 1)
            self._changed.notify_all()
        if given_up or (again and not retry):
            log.warning(
                "could not delete %d message bodies: left to the pruning of their tombstones",
                given_up + (0 if retry else len(again)),
            )
