"""The POP3 gateway (RFC 1939, 2449, 5034, STLS) over the mail store's INBOX."""
