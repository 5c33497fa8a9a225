"""mailpipe's gateways: the SMTP gateway (and later IMAP/POP3), the `mailpipe` command, the local stack."""
