"""DKIM signing of the mail mailpipe sends (RFC 6376, with Ed25519 beside RSA as RFC 8463 suggests).

- `keys`: a key pair as stored (one Secrets Manager secret per domain and selector) and its DNS record;
- `store`: the secrets themselves: create, list, rotate, delete;
- `signer`: the DKIM-Signature header fields for a message, with the keys cached per process.

Verification of inbound mail is another package's job; this one only signs.
"""
