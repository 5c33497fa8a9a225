"""Inbound mail authentication: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489), ARC (RFC 8617)
and the Authentication-Results header (RFC 8601) that reports them.

Each check is a module of its own; `dns.py` is their one way to DNS (asynchronous, bounded in time,
errors sorted into "nothing there" and "try again later").
"""
