"""JMAP (RFC 8620 core, RFC 8621 mail) over the mail store: see docs/jmap.md."""
