"""Message-IDs we generate."""

from __future__ import annotations

import secrets


def new_message_id(domain: str) -> str:
    """`<random@domain>`: unique without telling the world our process id and clock, as
    email.utils.make_msgid does (`<time.pid.random@domain>`)."""
    return f"<{secrets.token_hex(16)}@{domain}>"
