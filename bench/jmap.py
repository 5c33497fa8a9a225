"""JMAP against IMAP on one mailbox (issue 12): a webmail's list view and a full sync.

Run by hand from the repository root (never in `make test`):

    .venv/bin/python bench/jmap.py                       # 2,000 messages, 30 rounds
    .venv/bin/python bench/jmap.py --messages 10000      # the issue's size: some minutes to fill

It starts the dev stack (moto in a process of its own, the IMAP gateway, the JMAP function behind
tools/mailpipe_tools/local/jmap_http.py), fills one user's INBOX with --messages messages through
the store (as APPEND stores them), then times, --rounds times each, from this process:

    jmap list    one POST: Email/query (inMailbox INBOX, newest first, limit 50) and Email/get of
                 its ids by result reference (from, subject, receivedAt, keywords, size, preview,
                 threadId): what a webmail shows
    imap list    SELECT INBOX, UID FETCH of the newest 50 (UID FLAGS RFC822.SIZE ENVELOPE), on a
                 logged-in connection
    jmap sync    Email/changes from a state before the mailbox had mail: every id, as a new
                 client's first sync (with --messages > 1000, in pages of maxChanges)
    imap sync    SELECT INBOX, UID FETCH 1:* (UID FLAGS)

    sign-in      GET /jmap/session with HTTP Basic: after the first, the verified-credentials cache
                 answers (mailpipe/auth/cache.py), so no argon2id
    token        GET /jmap/session with a session token (POST /jmap/login, Bearer)
    argon2id     the directory's password check itself, called in this process: the baseline,
                 what every Basic request cost before the cache

    push         from a message stored to the StateChange on a JMAP WebSocket with push enabled
                 (stream → relay → @connections → the socket), --rounds // 3 times
    poll         the same change found by asking Email/get's state every 0.5 s: the baseline, what a
                 client without push does

and prints p50 and p99 of each, JMAP/IMAP with and without the sign-in's p50, sign-in/argon2id and
push/poll. Both run against the same store in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import random
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import DOMAIN, MAIL_USING, Jmap, access_token, dev_stack, jmap_api, push_socket  # noqa: E402

from mailpipe.config import ENV_PUSH_ENDPOINT  # noqa: E402
from mailpipe.jmap.ids import account_id, mailbox_jmap_id  # noqa: E402
from mailpipe_tools.local.jmap_http import LocalHttpApi  # noqa: E402

USER = f"bench@{DOMAIN}"
PASSWORD = "jmap-bench-password"


def message(n: int) -> bytes:
    return (
        f"From: Sender {n % 37} <sender{n % 37}@remote.test>\r\nTo: {USER}\r\n"
        f"Subject: message number {n}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{n}@remote.test>\r\n\r\nThe body of message {n}, with some words.\r\n"
    ).encode()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(function: Callable[[], object], rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


POLL_SECONDS = 0.5


def push_and_poll(
    api: LocalHttpApi, jmap: Jmap, append: Callable[[], object], rounds: int
) -> dict[str, list[float]]:
    """Seconds from a stored message to its StateChange over WebSocket, and to a 0.5 s poll seeing it."""
    import websocket  # the test extra's client (websocket-client)

    os.environ[ENV_PUSH_ENDPOINT] = api.url  # the relay posts to this server's @connections
    ws = push_socket(api.url, access_token(api.url, USER, PASSWORD), MAIL_USING)
    account = account_id(USER)

    def state() -> str:
        return str(jmap.post([["Email/get", {"accountId": account, "ids": []}, "s"]])[0][1]["state"])

    phases = random.Random(12)
    try:
        results: dict[str, list[float]] = {"push": [], "poll": []}
        for _ in range(rounds):
            before = state()
            start = time.perf_counter()
            append()
            while True:
                change = json.loads(ws.recv())
                pushed = change.get("changed", {}).get(account, {}).get("Email")
                if pushed and pushed != before:
                    break
            results["push"].append(time.perf_counter() - start)
            before = state()
            start = time.perf_counter()
            append()
            # A poller's next ask comes anywhere in its 0.5 s cycle after the change.
            time.sleep(phases.uniform(0, POLL_SECONDS))
            while state() == before:
                time.sleep(POLL_SECONDS)
            results["poll"].append(time.perf_counter() - start)
            ws.settimeout(0.2)  # drop the poll round's own StateChange before the next push round
            with contextlib.suppress(websocket.WebSocketTimeoutException):
                while True:
                    ws.recv()
            ws.settimeout(60)
        return results
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with contextlib.ExitStack() as resources:
        stack = dev_stack(resources, [(USER, PASSWORD)])
        api = jmap_api(resources, stack)
        store = stack.mail_store()
        account = account_id(USER)
        jmap = Jmap(api.url, USER, PASSWORD)
        empty_state = jmap.post([["Email/get", {"accountId": account, "ids": []}, "s"]])[0][1]["state"]
        start = time.perf_counter()
        for n in range(args.messages):
            store.append_message(USER, "INBOX", message(n), flags=("\\Seen",) if n % 3 else ())
        print(f"filled {args.messages} messages in {time.perf_counter() - start:.1f} s")
        inbox = mailbox_jmap_id(store.require_mailbox(USER, "INBOX").mailbox_id)

        def jmap_list() -> None:
            query = {
                "accountId": account,
                "filter": {"inMailbox": inbox},
                "limit": 50,
                "sort": [{"property": "receivedAt", "isAscending": False}],
            }
            reference = {"resultOf": "q", "name": "Email/query", "path": "/ids"}
            properties = ["from", "subject", "receivedAt", "keywords", "size", "preview", "threadId"]
            responses = jmap.post(
                [
                    ["Email/query", query, "q"],
                    ["Email/get", {"accountId": account, "#ids": reference, "properties": properties}, "g"],
                ]
            )
            assert len(responses[1][1]["list"]) == min(50, args.messages), responses[1][1]

        def jmap_sync() -> None:
            state, count = empty_state, 0
            while True:
                changes = jmap.post([["Email/changes", {"accountId": account, "sinceState": state}, "c"]])[0][
                    1
                ]
                count += len(changes["created"])
                state = changes["newState"]
                if not changes["hasMoreChanges"]:
                    break
            assert count == args.messages, count

        imap = imaplib.IMAP4("127.0.0.1", stack.imap_port)
        imap.login(USER, PASSWORD)
        resources.callback(imap.logout)

        def imap_list() -> None:
            status, data = imap.select("INBOX", readonly=True)
            total = int(data[0])
            first = max(1, total - 49)
            status, data = imap.fetch(f"{first}:{total}", "(UID FLAGS RFC822.SIZE ENVELOPE)")
            assert status == "OK" and len(data) == min(50, total)

        def imap_sync() -> None:
            imap.select("INBOX", readonly=True)
            status, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            assert status == "OK" and len(data) == args.messages

        def sign_in() -> None:
            request = urllib.request.Request(api.url + "/jmap/session", headers={"Authorization": jmap.auth})
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()

        bearer = "Bearer " + access_token(api.url, USER, PASSWORD)

        def token() -> None:
            request = urllib.request.Request(api.url + "/jmap/session", headers={"Authorization": bearer})
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()

        directory = stack.directory()
        stored = directory.stored_login(USER)

        def argon2id() -> None:
            assert directory.check_password(stored, PASSWORD) is not None

        results: dict[str, list[float]] = {}
        for name, function_ in (
            ("jmap list", jmap_list),
            ("imap list", imap_list),
            ("jmap sync", jmap_sync),
            ("imap sync", imap_sync),
            ("sign-in", sign_in),
            ("token", token),
            ("argon2id", argon2id),
        ):
            function_()  # warm: the first run fills caches on both sides alike
            results[name] = timed(function_, args.rounds)
        extra = iter(range(args.messages, args.messages + 10 * args.rounds))
        results |= push_and_poll(
            api,
            jmap,
            lambda: store.append_message(USER, "INBOX", message(next(extra))),
            max(3, args.rounds // 3),
        )
        print(f"{args.messages} messages, {args.rounds} rounds each (push and poll: a third) (seconds)")
        for name, seconds in results.items():
            print(f"  {name:10} p50 {statistics.median(seconds):.4f}  p99 {percentile(seconds, 0.99):.4f}")
        for kind in ("list", "sync"):
            ratio = statistics.median(results[f"jmap {kind}"]) / statistics.median(results[f"imap {kind}"])
            signed_in = statistics.median(results[f"jmap {kind}"]) - statistics.median(results["sign-in"])
            without = max(signed_in, 0.0) / statistics.median(results[f"imap {kind}"])
            print(f"  {kind}: JMAP/IMAP p50 = {ratio:.2f} ({without:.2f} less the sign-in)")
        for kind in ("sign-in", "token"):
            ratio = statistics.median(results[kind]) / statistics.median(results["argon2id"])
            print(f"  {kind}/argon2id p50 = {ratio:.3f}")
        ratio = statistics.median(results["push"]) / statistics.median(results["poll"])
        print(f"  push/poll p50 = {ratio:.2f}")


if __name__ == "__main__":
    main()
