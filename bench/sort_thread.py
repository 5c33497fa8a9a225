"""SORT and THREAD cost per message, against SEARCH ALL over the same messages in the same run.

Run by hand from the repository root::

    PYTHONPATH=layers/core:gateway .venv/bin/python bench/sort_thread.py [--sizes 1000,10000,50000]

Builds mailboxes of synthetic messages (threads of 1-8 replies with full References chains,
"Re:"/"Fwd:" subjects, dates in random order), stored as the gateway holds them (StoredMessage
with its packed summary; header blocks as MailStore.read_headers returns them), then times the
pure work each command does off the event loop: SEARCH ALL (the baseline: what answering any
search of a mailbox already costs), SORT by several keys, THREAD ORDEREDSUBJECT and REFERENCES.
No AWS, no sockets: this measures the algorithms, and that they grow as n log n (the last column
is the time per message, which must stay roughly flat as the mailbox grows).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from mailpipe.mime.lines import crlf_size
from mailpipe.mime.summary import summarize
from mailpipe.store import StoredMessage, model
from mailpipe.store.model import pack_summary
from mailpipe_gateway.imap.commands import And
from mailpipe_gateway.imap.search import search
from mailpipe_gateway.imap.sort import _stored_keys, sort_messages
from mailpipe_gateway.imap.threads import _stored_fields, header_references, thread, threadable_of


def mailbox(size: int, seed: int = 5) -> tuple[list[tuple[int, StoredMessage]], dict[int, bytes]]:
    rng = random.Random(seed)
    messages: list[tuple[int, StoredMessage]] = []
    headers: dict[int, bytes] = {}
    uid = 0
    while uid < size:
        root = f"<t{uid}@bench.test>"
        chain: list[str] = []
        subject = f"Topic {rng.randrange(size // 3 + 1)}"
        for depth in range(min(rng.randrange(1, 9), size - uid)):
            uid += 1
            msg_id = f"<m{uid}@bench.test>" if depth else root
            prefix = "" if not depth else rng.choice(("Re: ", "RE: Re: ", "Fwd: ", "Re: [list] "))
            header = (
                f"From: Person {rng.randrange(500)} <p{rng.randrange(500)}@bench.test>\r\n"
                f"To: list@bench.test\r\nSubject: {prefix}{subject}\r\n"
                f"Date: {rng.randrange(1, 28)} Mar 2025 {rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
                " +0000\r\n"
                f"Message-ID: {msg_id}\r\n"
            )
            if chain:
                header += f"In-Reply-To: {chain[-1]}\r\nReferences: {' '.join(chain)}\r\n"
            raw = (header + "\r\n" + "text " * 40 + "\r\n").encode()
            chain.append(msg_id)
            summary = summarize(raw)
            headers[uid] = raw[: summary["body_start"]]
            message = StoredMessage(
                uid, uid, (), 1_740_000_000 + rng.randrange(10**6), len(raw), f"k{uid}", "d",
                pack_summary(summary), crlf_size=crlf_size(raw),
            )  # fmt: skip
            messages.append((uid, message))
    return messages, headers


def cpu(work: Callable[[], object]) -> float:
    """CPU seconds of one run (the machine is shared: wall time would measure the neighbours)."""
    start = time.process_time()
    work()
    return time.process_time() - start


def cold_and_warm(work: Callable[[], object]) -> tuple[float, float]:
    """The first run with the per-process caches empty, then the best of two more."""
    _stored_keys.cache_clear()
    _stored_fields.cache_clear()
    header_references.cache_clear()
    model._unpacked.cache_clear()
    return cpu(work), min(cpu(work), cpu(work))


def report(size: int) -> None:
    messages, headers = mailbox(size)

    def summary_of(message: StoredMessage) -> dict:
        return message.summary

    def search_all() -> object:
        return search(And(), None, messages, lambda m: b"", largest_number=size, largest_uid=size)

    def threads(algorithm: str) -> object:
        with_headers = algorithm == "REFERENCES"
        found = [
            threadable_of(n, m, summary_of, headers[m.uid] if with_headers else None) for n, m in messages
        ]
        return thread(algorithm, found)

    def sort(*keys: tuple[str, bool]) -> Callable[[], object]:
        return lambda: sort_messages(keys, messages, summary_of)

    baseline = cold_and_warm(search_all)
    runs: list[tuple[str, Callable[[], object]]] = [
        ("SORT (ARRIVAL)", sort(("ARRIVAL", False))),
        ("SORT (SUBJECT)", sort(("SUBJECT", False))),
        ("SORT (REVERSE DATE FROM)", sort(("DATE", True), ("FROM", False))),
        ("THREAD ORDEREDSUBJECT", lambda: threads("ORDEREDSUBJECT")),
        ("THREAD REFERENCES", lambda: threads("REFERENCES")),
    ]
    rows = [("SEARCH ALL (baseline)", baseline)] + [(name, cold_and_warm(work)) for name, work in runs]
    for name, (cold, warm) in rows:
        ratio = warm / baseline[1] if baseline[1] else float("nan")
        print(f"{size:>9} {name:<26} {cold:>7.3f} {warm:>7.3f} {ratio:>14.1f} {warm / size * 1e6:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    columns = ("cold s", "warm s", "warm x SEARCH", "warm us/msg")
    print(
        f"{'messages':>9} {'command':<26} "
        + " ".join(f"{c:>{w}}" for c, w in zip(columns, (7, 7, 14, 12), strict=True))
    )
    for size in args.sizes.split(","):
        report(int(size))


if __name__ == "__main__":
    main()
