"""aiosmtpd's envelope, with each accepted recipient and its DSN parameters kept together."""

from __future__ import annotations

from aiosmtpd.smtp import Envelope as SMTPEnvelope

from mailpipe.spool import EnvelopeRecipient


class MailpipeEnvelope(SMTPEnvelope):
    def __init__(self) -> None:
        super().__init__()
        # What the handler accepted, in RCPT order, as it goes into the spool. aiosmtpd's own
        # `rcpt_tos` is still kept (its DATA refuses a transaction without recipients).
        self.recipients: list[EnvelopeRecipient] = []
