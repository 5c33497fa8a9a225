"""Settling a long-running process's heap once it has started, so that the garbage collector
does not walk what start-up made at every full collection.

Python runs a full collection (every tracked object, holding the GIL) whenever the objects made
since the last one exceed a quarter of those that survived it. A server's start-up makes most of
its heap (modules, botocore's models, a restored dev state: hundreds of thousands of objects), so
the first full collections came during the first clients' commands, 100-300 ms each on a 2-core
machine: the "cold" FETCH of 300 bodies after a dev stack restart spent more in the collector of
the moto child and of the gateway than in its 300 GETs (bench/open_mailbox.py, 2026-12-06).

`settle()` collects once, then moves every survivor to the permanent generation (gc.freeze),
which later collections skip. Frozen objects are still freed when their last reference goes;
only a cycle among them that becomes garbage stays (bounded by what start-up made, once). Call
it from a process's own entry point, never from a library or a test process.
"""

from __future__ import annotations

import gc


def settle() -> None:
    gc.collect()
    gc.freeze()
