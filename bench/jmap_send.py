"""Sending over JMAP against SMTP submission (issue 12): the time until a message is in the spool.

Run by hand from the repository root (never in `make test`):

    .venv/bin/python bench/jmap_send.py              # 30 rounds

It starts the dev stack without its pollers (moto in a process of its own, the submission
gateway, the JMAP function behind tools/mailpipe_tools/local/jmap_http.py), so what is timed is
the path both share up to the spool (S3 PUT + SQS SendMessage), not delivery:

    smtp send    MAIL, RCPT, DATA of one message on a logged-in submission connection (plaintext
                 on loopback)
    jmap send    one POST: EmailSubmission/set of a stored draft, with onSuccessUpdateEmail
                 dropping $draft (what a webmail's Send does once the draft is saved)
    sign-in      GET /jmap/session: what HTTP Basic's argon2id check costs every JMAP request
    identities   Identity/get: the addresses the user may send as (Directory.owned_addresses), in
                 a directory of --directory-users other users and a tenth as many aliases
                 (written straight into the table: no argon2id per user) and one alias of the
                 sender's
    owned        Directory.owned_addresses itself, called in this process: the send-as hints' Query
                 and the aliases' BatchGetItem
    owned scan   the same answer as before the hints: a Scan of the directory's aliases (the
                 baseline, same run)

and prints p50 and p99 of each and JMAP/SMTP, with and without the sign-in's p50.
"""

from __future__ import annotations

import argparse
import contextlib
import smtplib
import statistics
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import DOMAIN, Jmap, dev_stack, jmap_api
from jmap import percentile, timed

from mailpipe.jmap.ids import account_id, mailbox_jmap_id

USER = f"sender@{DOMAIN}"
PASSWORD = "jmap-send-bench-password"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"]
MESSAGE = (
    f"From: {USER}\r\nTo: friend@remote.test\r\nSubject: bench\r\n"
    "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.test>\r\n\r\nhello\r\n"
).encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--directory-users", type=int, default=2000)
    args = parser.parse_args()
    with contextlib.ExitStack() as resources:
        stack = dev_stack(resources, [(USER, PASSWORD)])
        api = jmap_api(resources, stack)
        jmap = Jmap(api.url, USER, PASSWORD, USING)
        post = jmap.post

        directory = stack.directory()
        with directory._table.batch_writer() as batch:
            for n in range(args.directory_users):
                batch.put_item(Item={"pk": DOMAIN, "sk": f"user#filler{n}", "password_hash": "x"})
                if n % 10 == 0:
                    batch.put_item(
                        Item={"pk": DOMAIN, "sk": f"alias#list{n}", "targets": [f"filler{n}@{DOMAIN}"]}
                    )
        directory.add_alias(f"sales@{DOMAIN}", [USER])
        store = stack.mail_store()
        store.ensure_mailboxes(USER)
        account = account_id(USER)
        drafts = store.require_mailbox(USER, "Drafts")
        draft_uid = store.append_message(USER, "Drafts", MESSAGE, flags=("\\Draft",)).message.uid
        email_id = f"E{drafts.mailbox_id}-{draft_uid}"
        identity = post([["Identity/get", {"accountId": account}, "i"]])[0][1]["list"][0]["id"]
        assert mailbox_jmap_id(drafts.mailbox_id)

        def jmap_send() -> None:
            responses = post(
                [
                    [
                        "EmailSubmission/set",
                        {
                            "accountId": account,
                            "create": {"s": {"identityId": identity, "emailId": email_id}},
                            "onSuccessUpdateEmail": {"#s": {"keywords/$draft": None}},
                        },
                        "s",
                    ]
                ]
            )
            assert responses[0][1].get("created"), responses

        smtp = smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=60)
        smtp.login(USER, PASSWORD)
        resources.callback(smtp.quit)

        def smtp_send() -> None:
            assert not smtp.sendmail(USER, ["friend@remote.test"], MESSAGE)

        def sign_in() -> None:
            request = urllib.request.Request(api.url + "/jmap/session", headers={"Authorization": jmap.auth})
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()

        def identities() -> None:
            found = post([["Identity/get", {"accountId": account}, "i"]])[0][1]["list"]
            assert len(found) == 2, found

        def owned() -> None:
            assert directory.owned_addresses(USER) == {USER, f"sales@{DOMAIN}"}

        def owned_scan() -> None:
            assert {a.address for a in directory.list_aliases() if USER in a.targets} == {f"sales@{DOMAIN}"}

        results = {}
        for name, function_ in (
            ("smtp send", smtp_send),
            ("jmap send", jmap_send),
            ("sign-in", sign_in),
            ("identities", identities),
            ("owned", owned),
            ("owned scan", owned_scan),
        ):
            function_()  # warm
            results[name] = timed(function_, args.rounds)
        print(f"{args.rounds} rounds each (seconds)")
        for name, seconds in results.items():
            print(f"  {name:10} p50 {statistics.median(seconds):.4f}  p99 {percentile(seconds, 0.99):.4f}")
        smtp_p50 = statistics.median(results["smtp send"])
        jmap_p50 = statistics.median(results["jmap send"])
        without = max(jmap_p50 - statistics.median(results["sign-in"]), 0.0)
        print(
            f"  send: JMAP/SMTP p50 = {jmap_p50 / smtp_p50:.2f} ({without / smtp_p50:.2f} less the sign-in)"
        )
        identities_p50 = statistics.median(results["identities"])
        print(f"  identities/sign-in p50 = {identities_p50 / statistics.median(results['sign-in']):.2f}")
        owned_ratio = statistics.median(results["owned"]) / statistics.median(results["owned scan"])
        print(f"  owned/owned scan p50 = {owned_ratio:.3f}")


if __name__ == "__main__":
    main()
