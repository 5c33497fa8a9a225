"""MIME parsing for the IMAP side: a message's summary (envelope, structure, byte offsets)."""

from mailpipe.mime.summary import summarize

__all__ = ["summarize"]
