"""Opening a mailbox: mailpipe's dev stack against Dovecot, one client, the same messages (issue 14).

Run by hand from the repository root (Dovecot from Debian's dovecot-imapd must be installed):

    .venv/bin/python bench/open_mailbox.py                 # N = 1,000 and 10,000: some minutes
    .venv/bin/python bench/open_mailbox.py --sizes 200     # a quick check that it works

For each N it fills the INBOX of a user of its own, on each server, with N corpus messages
(../shared/corpus, cycled) by APPEND, one after another, timed, then once more into another
mailbox by MULTIAPPEND (RFC 3502), 100 messages to a command, timed (--fill multiappend: INBOX
by MULTIAPPEND only, quicker for N = 10,000). mailpipe's dev stack is then restarted on its
saved state, so that nothing of the fill is in the serving process's memory. Then, for each N,
mailpipe and Dovecot in turn, one client on a new connection times EXAMINE (mailpipe's listing,
which also keeps the header blocks in memory) and each of:

    folder open  UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Cc Subject
                 Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type
                 Reply-To)])   -- what Thunderbird sends when it opens a folder
    headers      UID FETCH 1:* (UID BODY.PEEK[HEADER])
    bodies       UID FETCH 1:300 (UID BODY.PEEK[])

each once and once more right after. It prints seconds per command and mailpipe/Dovecot, against
the targets: folder open within 3x Dovecot, body fetches within 10x, APPEND within 5x (the first
runs count). Both servers run on this machine; the client shares its cores. Dovecot gets
plaintext passwords by default (--dovecot-scheme PLAIN): LOGIN is not what is measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/imap.py: the client and the servers

from imap import (
    DOMAIN,
    PASSWORD,
    Client,
    Server,
    corpus_messages,
    dovecot,
    dovecot_version,
    find_dovecot,
    mailpipe_dev,
    quote,
)

FOLDER_OPEN = (
    b"UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID"
    b" Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])"
)
FETCHES = {
    "folder open": FOLDER_OPEN,
    "headers": b"UID FETCH 1:* (UID BODY.PEEK[HEADER])",
    "bodies 1:300": b"UID FETCH 1:300 (UID BODY.PEEK[])",
}
TARGETS = {
    "APPEND": 5.0,
    "MULTIAPPEND": 5.0,
    "EXAMINE": None,
    "folder open": 3.0,
    "headers": 3.0,
    "bodies 1:300": 10.0,
}
MULTIAPPEND_BATCH = 100  # messages per MULTIAPPEND command


@dataclass
class Timings:
    """Seconds per command for one server and one N: the first run, and the one right after."""

    first: dict[str, float] = field(default_factory=dict)
    again: dict[str, float] = field(default_factory=dict)
    responses: dict[str, int] = field(default_factory=dict)
    # CPU seconds of the first runs of the opens: the server's whole process tree, and of that
    # the AWS stand-in's (mailpipe's moto child; None for Dovecot).
    cpu: dict[str, tuple[float, float | None]] = field(default_factory=dict)


async def login(port: int, user: str) -> Client:
    client = await Client.connect(port)
    await client.command(b"LOGIN " + quote(user) + b" " + quote(PASSWORD))
    return client


async def multiappend(client: Client, mailbox: bytes, messages: list[bytes]) -> None:
    """One APPEND of several messages, as non-synchronizing literals (both servers have LITERAL+)."""
    text = b"APPEND " + mailbox
    for message in messages:
        text += b" {%d+}\r\n" % len(message) + message
    await client.command(text)


async def fill(server: Server, user: str, messages: list[bytes], how: str) -> Timings:
    """Puts `messages` into INBOX, timed (and the server's CPU for it): by APPEND one after
    another and then, into a mailbox of its own, by MULTIAPPEND (how="append"); or into INBOX by
    MULTIAPPEND only (how="multiappend": N = 10,000 by single APPENDs takes many minutes on a
    loaded machine)."""
    timings = Timings()
    client = await login(server.port, user)
    try:
        if how == "append":
            began, cpu = time.perf_counter(), _cpu(server)
            for message in messages:
                await client.command(b"APPEND INBOX", message)
            timings.first["APPEND"] = time.perf_counter() - began
            timings.cpu["APPEND"] = _spent(cpu, _cpu(server))
            await client.command(b"CREATE Batch")
        target = b"Batch" if how == "append" else b"INBOX"
        began, cpu = time.perf_counter(), _cpu(server)
        for start in range(0, len(messages), MULTIAPPEND_BATCH):
            await multiappend(client, target, messages[start : start + MULTIAPPEND_BATCH])
        timings.first["MULTIAPPEND"] = time.perf_counter() - began
        timings.cpu["MULTIAPPEND"] = _spent(cpu, _cpu(server))
        await client.command(b"LOGOUT")
    finally:
        client.close()
    return timings


def _cpu(server: Server) -> tuple[float, float | None]:
    return server.cpu(), server.backend_cpu()


def _spent(
    before: tuple[float, float | None], after: tuple[float, float | None]
) -> tuple[float, float | None]:
    backend = None if before[1] is None or after[1] is None else after[1] - before[1]
    return after[0] - before[0], backend


async def open_folder(server: Server, user: str, size: int) -> Timings:
    """One client on a new connection: EXAMINE, then each fetch twice (first, again)."""
    timings = Timings()
    client = await login(server.port, user)
    try:
        began, cpu = time.perf_counter(), _cpu(server)
        selected = b"".join(await client.command(b"EXAMINE INBOX"))
        timings.first["EXAMINE"] = time.perf_counter() - began
        timings.cpu["EXAMINE"] = _spent(cpu, _cpu(server))
        if b"* %d EXISTS" % size not in selected:
            raise RuntimeError(f"{user}: INBOX should hold {size} messages: {selected[:200]!r}")
        for runs in (timings.first, timings.again):
            for name, command in FETCHES.items():
                began, cpu = time.perf_counter(), _cpu(server)
                responses = await client.command(command)
                runs[name] = time.perf_counter() - began
                if runs is timings.first:
                    timings.cpu[name] = _spent(cpu, _cpu(server))
                timings.responses[name] = sum(1 for r in responses if b" FETCH (" in r[:40])
        await client.command(b"LOGOUT")
    finally:
        client.close()
    expected = {name: size for name in FETCHES} | {"bodies 1:300": min(300, size)}
    if timings.responses != expected:
        raise RuntimeError(f"{user}: FETCH responses {timings.responses}, expected {expected}")
    return timings


def report(sizes: list[int], results: dict[str, dict[int, Timings]]) -> bool:
    """Prints the table; True if every target is met (where both servers were measured)."""
    names = list(TARGETS)
    servers = list(results)
    header = f"{'command':<14} {'N':>6}" + "".join(f" {s + ' s':>12} {'again':>7}" for s in servers)
    if len(servers) == 2:
        header += f" {'ratio':>7} {'target':>7}"
    print()
    print(header)
    print("-" * len(header))
    met = True
    for size in sizes:
        for name in names:
            if any(name not in results[server][size].first for server in servers):
                continue  # not measured in this run (APPEND with --fill multiappend)
            line = f"{name:<14} {size:>6}"
            for server in servers:
                timing = results[server][size]
                again = timing.again.get(name)
                line += f" {timing.first[name]:>12.3f} {'' if again is None else f'{again:.3f}':>7}"
            if len(servers) == 2:
                mailpipe, reference = (results[s][size].first[name] for s in ("mailpipe", "Dovecot"))
                ratio = mailpipe / reference if reference else float("inf")
                limit = TARGETS[name]
                ok = limit is None or ratio <= limit
                met &= ok
                target = "" if limit is None else f"<= {limit:g}"
                line += f" {ratio:>7.1f} {target:>7}{'' if ok else '  missed'}"
            print(line)
    return met


def report_cpu(sizes: list[int], results: dict[str, dict[int, Timings]]) -> None:
    """CPU of the fills and of the opens' first runs: where the time went, when the machine is
    shared (the wall-clock ratios then say more about the load than about the servers). The
    fills' CPU is what the servers spent while the client stored (mailpipe's change feed works
    on after the last answer for a moment: not all of its share is counted)."""
    print("\nCPU ms of the fills and of the opens' first runs (the client excluded)")
    header = f"{'command':<14} {'N':>6}"
    if "mailpipe" in results:
        header += f" {'gateway':>9} {'moto':>9} {'per msg':>8}"
    if "Dovecot" in results:
        header += f" {'Dovecot':>9}"
    print(header)
    print("-" * len(header))
    for size in sizes:
        for name in ["APPEND", "MULTIAPPEND", "EXAMINE", *FETCHES]:
            if not any(name in results[server][size].cpu for server in results):
                continue
            line = f"{name:<14} {size:>6}"
            count = min(300, size) if name == "bodies 1:300" else size
            if "mailpipe" in results:
                tree, moto = results["mailpipe"][size].cpu.get(name, (0.0, None))
                gateway = tree - (moto or 0.0)
                line += f" {gateway * 1000:>9.1f} {'-' if moto is None else f'{moto * 1000:.1f}':>9}"
                line += f" {tree * 1000 / count:>8.3f}"
            if "Dovecot" in results:
                line += f" {results['Dovecot'][size].cpu.get(name, (0.0, None))[0] * 1000:>9.1f}"
            print(line)


def preamble(args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"mailpipe open-mailbox bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"vm: {os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}")
    print(f"Dovecot {dovecot_version()}, passwords {args.dovecot_scheme}")
    print(f"N = {', '.join(str(n) for n in args.sizes)} messages in INBOX; one client")


def run(args: argparse.Namespace) -> int:
    wanted = [name for name in ("mailpipe", "Dovecot") if args.only in (None, name)]
    if "Dovecot" in wanted and find_dovecot() is None:
        print("bench/open_mailbox.py: dovecot is not installed (package dovecot-imapd)", file=sys.stderr)
        return 2
    preamble(args)
    corpus = corpus_messages()
    users = {size: f"open{size}@{DOMAIN}" for size in args.sizes}
    results: dict[str, dict[int, Timings]] = {}
    with tempfile.TemporaryDirectory(prefix="open-mailbox-") as workdir, contextlib.ExitStack() as stack:
        print(f"starting {' and '.join(wanted)} ...", flush=True)
        servers: list[Server] = []
        for name in wanted:
            results[name] = {size: Timings() for size in users}
        mailboxes = {size: (corpus * (size // len(corpus) + 1))[:size] for size in users}
        if "Dovecot" in wanted:
            reference = stack.enter_context(
                dovecot(list(users.values()), argon2id=args.dovecot_scheme == "ARGON2ID")
            )
            for size, user in users.items():
                print(f"  Dovecot: filling N = {size} ...", flush=True)
                filled = asyncio.run(fill(reference, user, mailboxes[size], args.fill))
                results["Dovecot"][size].first |= filled.first
                results["Dovecot"][size].cpu |= filled.cpu
            servers.append(reference)
        if "mailpipe" in wanted:
            with mailpipe_dev(list(users.values()), Path(workdir)) as filling:
                for size, user in users.items():
                    print(f"  mailpipe: filling N = {size} ...", flush=True)
                    filled = asyncio.run(fill(filling, user, mailboxes[size], args.fill))
                    results["mailpipe"][size].first |= filled.first
                    results["mailpipe"][size].cpu |= filled.cpu
            # A new process on the same stored state, as a user opening the folder later meets
            # it: nothing of the fill is in its memory (headers, bodies, snapshots).
            print("  mailpipe: restarting the dev stack on its saved state ...", flush=True)
            servers.insert(0, stack.enter_context(mailpipe_dev(list(users.values()), Path(workdir))))
        # The opens interleaved, mailpipe then Dovecot for each N, so load changes hit both alike.
        for size, user in users.items():
            for server in servers:
                print(f"  {server.name}: opening N = {size} ...", flush=True)
                opened = asyncio.run(open_folder(server, user, size))
                timing = results[server.name][size]
                timing.first |= opened.first
                timing.again |= opened.again
                timing.responses |= opened.responses
                timing.cpu |= opened.cpu
    met = report(args.sizes, results)
    report_cpu(args.sizes, results)
    if len(results) == 2:
        print(f"\ntargets: {'all met' if met else 'some missed'}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1000, 10000],
        help="messages in the mailbox, comma-separated (default 1000,10000)",
    )
    parser.add_argument(
        "--dovecot-scheme",
        choices=["ARGON2ID", "PLAIN"],
        default="PLAIN",
        help="how Dovecot stores passwords (default PLAIN: LOGIN is not measured here)",
    )
    parser.add_argument("--only", choices=["mailpipe", "Dovecot"], help="measure one server (no ratio)")
    parser.add_argument(
        "--fill",
        choices=["append", "multiappend"],
        default="append",
        help="fill INBOX by single APPENDs (timed, then MULTIAPPEND into another mailbox) or by"
        " MULTIAPPEND only (quicker for N = 10,000)",
    )
    args = parser.parse_args(argv)
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes: positive numbers, e.g. 200 or 1000,10000")
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # unwind, so that every server started is stopped
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every server the bench started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
