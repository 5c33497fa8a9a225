"""The webmail's live updates (issue 12: "within a second or two of new mail"), in a real browser.

Run by hand from the repository root (never in `make test`; needs Debian's chromium and
chromium-driver, as tests/test_webmail.py):

    .venv/bin/python bench/webmail_push.py              # 20 rounds
    .venv/bin/python bench/webmail_push.py --rounds 50

It starts the dev stack with its HTTP server (what `mailpipe dev --http-port` runs: the webmail
and the JMAP function, push endpoint included), signs a user in in headless chromium, and also
opens a JMAP WebSocket from this process with push enabled. Then, --rounds times, it stores a
message in the user's INBOX (through the store, as delivery does) and times from there:

    socket   to the StateChange on this process's WebSocket: the server's part (stream → relay →
             @connections), the baseline
    page     to the message's subject in the open page's list: the same push, plus the page's
             refresh (Mailbox/get + Email/changes, then the list's query) and drawing

and prints p50 and p99 of each and page/socket. The page is watched from here every 20 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import DOMAIN, access_token, dev_stack, push_socket

from mailpipe.jmap.ids import account_id

USER = f"webmail@{DOMAIN}"
PASSWORD = "webmail-bench-password"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WATCH_SECONDS = 0.02
GIVE_UP_SECONDS = 30


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def browser(profile: str) -> Any:  # a selenium WebDriver (the test extra)
    os.environ["SE_OFFLINE"] = "true"  # selenium must fetch nothing
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking",
                     f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.perf_counter() + GIVE_UP_SECONDS
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(WATCH_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    import websocket  # the test extra's client (websocket-client)
    from selenium.webdriver.common.by import By

    with contextlib.ExitStack() as resources:
        stack = dev_stack(resources, [(USER, PASSWORD)], http=True)
        assert stack.http is not None
        url = stack.http.url
        store = stack.mail_store()
        store.ensure_mailboxes(USER)

        driver = browser(resources.enter_context(tempfile.TemporaryDirectory()))
        resources.callback(driver.quit)
        driver.get(url + "/")
        driver.find_element(By.ID, "login-user").send_keys(USER)
        driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-submit").click()
        until(lambda: driver.execute_script("return document.body.dataset.live") == "push", "push")

        ws = push_socket(url, access_token(url, USER, PASSWORD), ["urn:ietf:params:jmap:core"])
        resources.callback(ws.close)
        account = account_id(USER)

        def shown(subject: str) -> bool:
            return bool(
                driver.execute_script(
                    "return [...document.querySelectorAll('#message-list .subject')]"
                    ".some(s => s.textContent === arguments[0])",
                    subject,
                )
            )

        results: dict[str, list[float]] = {"socket": [], "page": []}
        for n in range(args.rounds):
            subject = f"round {n}"
            raw = f"From: bench@{DOMAIN}\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\nhello {n}\r\n".encode()
            start = time.perf_counter()
            store.append_message(USER, "INBOX", raw)
            while json.loads(ws.recv()).get("changed", {}).get(account) is None:
                pass
            results["socket"].append(time.perf_counter() - start)
            until(lambda: shown(subject), subject)  # noqa: B023 (called at once)
            results["page"].append(time.perf_counter() - start)
            # Let this round's refresh finish before the next one starts.
            until(
                lambda: driver.execute_script("return document.getElementById('status').textContent") == "",
                "quiet",
            )
            with contextlib.suppress(websocket.WebSocketTimeoutException):
                ws.settimeout(0.3)
                while True:
                    ws.recv()
            ws.settimeout(60)

        print(f"{args.rounds} rounds, from a stored message (seconds)")
        for name, values in results.items():
            print(f"  {name:7s} p50 {statistics.median(values):.3f}  p99 {percentile(values, 0.99):.3f}")
        ratio = statistics.median(results["page"]) / statistics.median(results["socket"])
        print(f"  page/socket p50 = {ratio:.2f}")


if __name__ == "__main__":
    main()
