"""mailpipe's IMAP4rev2/IMAP4rev1 server, built in layers: wire grammar, session, mailbox access."""
