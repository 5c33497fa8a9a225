"""Issue 9's end-to-end check: crepes.fr's own signer signs, hamburger.edu's gateway verifies.

Two dev stacks, one loopback DNS server holding crepes.fr's SPF, DMARC and the DKIM records that
`mailpipe dkim keygen` printed: bob's copy says dkim=pass (both signatures), spf=pass, dmarc=pass.
"""

from __future__ import annotations

import pytest
from dns_zone import serving
from dnslib import RR
from test_dkim_end_to_end import mailpipe
from test_two_stacks import submit, two_stacks, wait_for

ZONE = """
crepes.fr.          60 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.crepes.fr.   60 IN TXT "v=DMARC1; p=reject"
"""


@pytest.fixture(scope="module")
def signing_stacks(tmp_path_factory: pytest.TempPathFactory):
    with serving(ZONE) as (port, zone):
        for stacks in two_stacks(tmp_path_factory.mktemp("dkim-stacks"), f"127.0.0.1:{port}"):
            yield (*stacks, zone)


def test_crepes_signs_and_hamburger_verifies(signing_stacks) -> None:
    crepes, hamburger, zone = signing_stacks
    printed = mailpipe(crepes, "dkim", "keygen", "crepes.fr")
    for line in printed.splitlines():
        if " IN TXT " in line:  # publish what keygen printed, as the operator would
            for rr in RR.fromZone(line):
                zone.records.setdefault(str(rr.rname).lower(), []).append(rr)
    sent = submit(crepes, "bob@hamburger.edu", "signed-by-crepes")
    [received] = wait_for(lambda: hamburger.inbox("bob@hamburger.edu"), lambda m: b"signed-by-crepes" in m)
    header = received.split(b"\r\n\r\n", 1)[0]
    results = header[header.index(b"Authentication-Results: mail.hamburger.edu") :]
    results = results[: results.index(b"\r\nReceived: ")] if b"\r\nReceived: " in results else results
    assert results.count(b"dkim=pass") == 2, results  # RSA and Ed25519
    assert b"spf=pass" in results and b"dmarc=pass" in results, results
    assert received.endswith(sent.split(b"\r\n\r\n", 1)[1])
