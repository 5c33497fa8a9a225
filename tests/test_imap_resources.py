"""Memory a stranger can make the IMAP server hold before login: bounded (issue 8, item 2)."""

from __future__ import annotations

import gc

from imap_hostile_load import hold_largest_literal, push_huge_literal, rss_bytes

CONNECTIONS = 200
BOUND = 20 * 1024 * 1024  # 50 MB for 1,000 in the issue; 10 MB for 200, doubled for a noisy process


def test_pre_login_connections_with_the_largest_literals_cost_little_memory(stack) -> None:
    imap = stack.build_imap()
    stack.loop.run(imap.start())
    held = []
    try:
        for _ in range(5):  # warm up: first connections allocate what every later one reuses
            held.append(hold_largest_literal(imap.port))
        gc.collect()
        before = rss_bytes()
        for n in range(CONNECTIONS):
            if n % 2:
                held.append(hold_largest_literal(imap.port))
            else:
                answers = push_huge_literal(imap.port)
                assert answers[-1] == b"* BYE Too much data\r\n", answers
        after = rss_bytes()
    finally:
        for sock in held:
            sock.close()
        stack.loop.run(imap.stop())
    growth = after - before
    mib = 2**20
    print(
        f"RSS {before / mib:.1f} -> {after / mib:.1f} MiB (+{growth / mib:.1f}) for {CONNECTIONS} connections"
    )
    assert growth <= BOUND
