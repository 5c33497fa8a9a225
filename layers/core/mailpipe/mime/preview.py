"""A message's preview: the first words of its text, as IMAP PREVIEW (RFC 8970) and JMAP show them.

Computed once, at delivery and APPEND, by summarize (mailpipe.mime.summary) and kept in the
message's summary as ``summary["preview"]``, so servers answer from memory; ``preview(raw)`` is
the same for a message at hand. The rule is text_preview's: the first text/plain part (else
text/html stripped to its text), decoded, whitespace collapsed, at most 256 characters.
"""

from __future__ import annotations

from mailpipe.mime.summary import summarize
from mailpipe.mime.text_preview import PREVIEW_CHARS

__all__ = ["PREVIEW_CHARS", "preview"]


def preview(raw: bytes) -> str:
    """The preview of the message ``raw`` ("" when it has no text)."""
    return str(summarize(raw)["preview"])
