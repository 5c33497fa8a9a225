"""`mailpipe status`: listeners, queue depths and dead letters, and the directory's size, at a glance.

The probing and counting are in the core (mailpipe.status); this module parses and prints.
Exits 1 when a dead-letter queue holds messages, so a cron job or a check can use it as is.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailpipe import aws, status
from mailpipe.config import Resources


def register(commands: Any) -> None:
    """Adds `status` to the `mailpipe` parser's sub-commands."""
    p = commands.add_parser(
        "status", help="which mail ports answer here, queue depths, dead letters, users and domains"
    )
    p.add_argument("--host", default="127.0.0.1", help="where to look for listeners (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="probe this port instead of the dev stack's and the standard ones, e.g. imap=1143 (repeatable)",
    )
    p.set_defaults(run=_status)


def _ports(specs: list[str]) -> list[tuple[str, int]]:
    if not specs:
        both = [*status.DEV_PORTS.items(), *status.STANDARD_PORTS.items()]
        return sorted(set(both), key=lambda item: item[1])
    ports = []
    for spec in specs:
        name, sep, number = spec.partition("=")
        if not sep or not number.isdigit() or not 0 < int(number) < 65536:
            raise ValueError(f"--port wants NAME=PORT, e.g. imap=1143; got {spec!r}")
        ports.append((name, int(number)))
    return ports


def _status(args: argparse.Namespace) -> int:
    from mailpipe.services import directory

    resources = Resources.from_env()  # before probing: a missing environment is the first thing to say
    listeners = [status.probe(name, args.host, port) for name, port in _ports(args.port)]
    answering = [found for found in listeners if found.greeting is not None]
    print(f"listeners on {args.host}: {len(answering)} of {len(listeners)} ports answer")
    for found in answering:
        said = found.greeting or "(TLS: no greeting before the handshake)"
        print(f"  {found.name:<12} {found.port:>5}  {said}")
    closed = [f"{found.name} {found.port}" for found in listeners if found.greeting is None]
    if closed:
        print(f"  not answering: {', '.join(closed)}")

    sqs = aws.client("sqs")
    queues = {"inbound": resources.inbound_queue_url, "outbound": resources.outbound_queue_url}
    queues["ses-events"] = status.ses_events_queue(sqs, resources.inbound_queue_url)
    print("queues")
    dead = 0
    for name, url in queues.items():
        if not url:
            print(f"  {name:<12} (none)")
            continue
        depth = status.queue_depth(sqs, name, url)
        dead += depth.dead_letters or 0
        dlq = "no dead-letter queue" if depth.dead_letters is None else f"dead letters {depth.dead_letters}"
        counts = f"waiting {depth.waiting}  in flight {depth.in_flight}  delayed {depth.delayed}"
        print(f"  {name:<12} {counts}  {dlq}")

    sizes = status.directory_counts(directory())
    print(
        f"directory: {sizes.domains} domains, {sizes.users} users ({sizes.disabled} disabled), "
        f"{sizes.aliases} aliases"
    )
    if dead:
        print(f"mailpipe: {dead} dead-lettered messages (see `mailpipe queue redrive`)", file=sys.stderr)
        return 1
    return 0
