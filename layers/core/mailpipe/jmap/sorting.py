"""The Email/query sort properties this server supports (RFC 8621 4.4.2), shown in the session."""

SORT_PROPERTIES = frozenset(
    {
        "receivedAt",
        "size",
        "from",
        "to",
        "subject",
        "sentAt",
        "hasKeyword",
        "allInThreadHaveKeyword",
        "someInThreadHaveKeyword",
    }
)
