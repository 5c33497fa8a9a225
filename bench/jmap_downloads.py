"""Large JMAP downloads (jmap/downloads.py): what a large attachment costs, first and again, against
a whole message of the same size, which is an S3 object already (the baseline, same run).

Run by hand from the repository root (never in `make test`):

    .venv/bin/python bench/jmap_downloads.py              # 10 rounds, a 5 MB attachment

It starts the dev stack without its pollers (moto in a process of its own, the JMAP function
behind tools/mailpipe_tools/local/jmap_http.py) and stores one message carrying --size bytes as
a base64 attachment. Each timing is one GET of the download URL, the presigned redirect followed
to moto's S3 and the body read:

    whole message   the message's own object (the baseline)
    part first      the attachment with no decoded copy yet (deleted before each round, not timed):
                    read the message, decode the part, PUT the copy, then the redirect
    part again      the attachment with its copy in place: a HeadObject, then the redirect
    link only       the same with ?redirect=json (what the webmail asks): the function's answer,
                    no bytes; and the same for the whole message

and prints p50 and p99 of each, and each against the whole message's p50.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import urllib.request
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jmap import percentile, timed
from processes import moto_in_own_process

from mailpipe import aws
from mailpipe.jmap.downloads import DOWNLOADS_PREFIX
from mailpipe.jmap.ids import account_id
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevOptions, DevStack

DOMAIN = "example.test"
USER = f"reader@{DOMAIN}"
PASSWORD = "jmap-downloads-bench-password"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--size", type=int, default=5 * 1024 * 1024, help="attachment bytes")
    args = parser.parse_args()
    with contextlib.ExitStack() as resources:
        endpoint = resources.enter_context(moto_in_own_process())
        state_dir = Path(resources.enter_context(tempfile.TemporaryDirectory()))
        stack = DevStack(
            DevOptions(
                smtp_port=0,
                submission_port=0,
                pop3_port=0,
                imap_port=0,
                aws_port=0,
                domains=[DOMAIN],
                users=[(USER, PASSWORD)],
                state_dir=state_dir,
                aws_endpoint=endpoint,
                run_pollers=False,
                resolver="127.0.0.1:9",
            )
        )
        stack.start()
        resources.callback(stack.stop)
        function = stack.functions["JmapFunction"]
        api = LocalHttpApi(function.handler, function.name)
        api.start()
        resources.callback(api.stop)
        auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        def get(path: str) -> bytes:
            request = urllib.request.Request(api.url + path, headers={"Authorization": auth})
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.read()  # type: ignore[no-any-return]

        def post(calls: list[list[object]]) -> list[list[object]]:
            request = urllib.request.Request(
                api.url + "/jmap/api",
                data=json.dumps({"using": USING, "methodCalls": calls}).encode(),
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.loads(response.read())["methodResponses"]  # type: ignore[no-any-return]

        data = secrets.token_bytes(args.size)
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "a@remote.test", USER, "large"
        mail.set_content("see attached\n")
        mail.add_attachment(data, maintype="application", subtype="octet-stream", filename="large.bin")
        store = stack.mail_store()
        store.ensure_mailboxes(USER)
        store.append_message(USER, "INBOX", mail.as_bytes())
        account = account_id(USER)
        query = {"accountId": account}
        email_id = post([["Email/query", query, "q"]])[0][1]["ids"][0]  # type: ignore[index]
        got = {"accountId": account, "ids": [email_id], "properties": ["blobId", "size", "attachments"]}
        email = post([["Email/get", got, "g"]])[0][1]["list"][0]  # type: ignore[index]
        part = email["attachments"][0]["blobId"]
        whole_path = f"/jmap/download/{account}/{email['blobId']}/m.eml"
        part_path = f"/jmap/download/{account}/{part}/large.bin"
        s3, bucket = aws.client("s3"), stack.resources.mail_bucket
        copy_key = f"{DOWNLOADS_PREFIX}{account}/{part}"

        def whole() -> None:
            assert len(get(whole_path)) == email["size"]

        def part_again() -> None:
            assert get(part_path) == data

        firsts = []
        for _ in range(args.rounds + 1):
            s3.delete_object(Bucket=bucket, Key=copy_key)
            firsts += timed(part_again, 1)
        results = {"whole message": [], "part first": firsts[1:]}  # the first round warms
        whole()
        results["whole message"] = timed(whole, args.rounds)
        part_again()
        results["part again"] = timed(part_again, args.rounds)
        results["link only, whole"] = timed(lambda: get(whole_path + "?redirect=json"), args.rounds)
        results["link only, part"] = timed(lambda: get(part_path + "?redirect=json"), args.rounds)
        print(f"{args.rounds} rounds each, a {args.size:,}-byte attachment (seconds)")
        baseline = statistics.median(results["whole message"])
        for name, seconds in results.items():
            p50 = statistics.median(seconds)
            print(
                f"  {name:17} p50 {p50:.4f}  p99 {percentile(seconds, 0.99):.4f}  "
                f"/ whole message p50 = {p50 / baseline:.2f}"
            )


if __name__ == "__main__":
    main()
