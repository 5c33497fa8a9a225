"""Logging in, for every gateway that takes passwords: submission, IMAP and POP3."""
