"""Enhanced status codes (RFC 3463) on every reply, as ENHANCEDSTATUSCODES (RFC 2034) promises.

aiosmtpd's own replies ("501 Syntax: ...", "552 Error: Too much mail data") carry
none; rather than rewrite them all, the protocol adds the code that fits the basic
reply code as the reply goes out. Our handler's replies carry their own.
"""

from __future__ import annotations

import re

_HAS_CODE = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")

# RFC 2034 3: no enhanced code on the greeting, on HELO/EHLO replies, or on
# intermediate replies (354, and 334 AUTH challenges).
_WITHOUT_CODE = {"220", "334", "354"}

_BY_REPLY: dict[str, str] = {
    "211": "2.0.0",
    "214": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.5.0",
    "421": "4.3.2",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}


def with_enhanced_code(reply: str) -> str:
    """`reply` with an enhanced status code after the basic one, unless it has one or takes none."""
    basic = reply[:3]
    if basic in _WITHOUT_CODE or _HAS_CODE.match(reply) or len(reply) < 3 or not basic.isdigit():
        return reply
    code = _BY_REPLY.get(basic, f"{basic[0]}.0.0")
    separator = reply[3:4] or " "
    rest = reply[4:]
    return f"{basic}{separator}{code} {rest}".rstrip()
