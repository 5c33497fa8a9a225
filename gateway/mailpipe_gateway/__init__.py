"""mailpipe's gateways, the container image's package: SMTP (with submission), IMAP and POP3 servers."""
