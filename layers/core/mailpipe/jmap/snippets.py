"""SearchSnippet/get (RFC 8621 5): an Email's subject and preview with the filter's search terms
marked, for a result list.

The terms are the words of the filter's `text`, `subject` and `body` conditions (NOT branches
left out: what must not match is not shown). The subject and the preview (from the summary, as
Email/get gives it: no body is read) are HTML-escaped and each match wrapped in `<mark>`; either is
null when no term is in it, as the RFC asks, so a match deep in a body shows no preview snippet.
"""

from __future__ import annotations

import html
import re
from typing import Any

from mailpipe.jmap import standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.emails import email_get
from mailpipe.jmap.errors import invalid_arguments
from mailpipe.jmap.methods import method

TERM_CONDITIONS = ("text", "subject", "body")
MAX_TERMS = 32
MAX_DEPTH = 16


@method("SearchSnippet/get", MAIL)
def search_snippet_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    email_ids = arguments.get("emailIds")
    if not isinstance(email_ids, list) or not all(isinstance(i, str) for i in email_ids):
        raise invalid_arguments("emailIds must be a list of ids")
    standard.get_ids(context, {"ids": email_ids})  # the maxObjectsInGet limit
    terms = search_terms(arguments.get("filter"))
    got = email_get(
        context, {"accountId": context.account_id, "ids": email_ids, "properties": ["subject", "preview"]}
    )
    pattern = _pattern(terms)
    return {
        "accountId": context.account_id,
        "list": [
            {
                "emailId": email["id"],
                "subject": highlight(email.get("subject") or "", pattern),
                "preview": highlight(email.get("preview") or "", pattern),
            }
            for email in got["list"]
        ],
        "notFound": got["notFound"] or None,
    }


def search_terms(condition: Any, depth: int = 0) -> list[str]:
    if condition is None:
        return []
    if not isinstance(condition, dict) or depth > MAX_DEPTH:
        raise invalid_arguments("filter must be a FilterOperator or FilterCondition")
    terms: list[str] = []
    if "operator" in condition:
        conditions = condition.get("conditions")
        if not isinstance(conditions, list):
            raise invalid_arguments("a FilterOperator has conditions")
        if condition.get("operator") != "NOT":
            for inner in conditions:
                terms += search_terms(inner, depth + 1)
    else:
        for name in TERM_CONDITIONS:
            value = condition.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise invalid_arguments(f"{name} must be a string")
            terms += [word.strip("\"'") for word in value.split()]
    return [t for t in dict.fromkeys(terms) if t][:MAX_TERMS]


def _pattern(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    # Longest first, so "mailpipe" wins over "mail" where both match at one place.
    alternatives = sorted((re.escape(t) for t in terms), key=len, reverse=True)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def highlight(text: str, pattern: re.Pattern[str] | None) -> str | None:
    """`text` HTML-escaped with each match in <mark>; None if nothing matches."""
    if pattern is None or not text:
        return None
    out: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        if match.end() == match.start():
            continue
        out.append(html.escape(text[position : match.start()]))
        out.append("<mark>" + html.escape(match.group()) + "</mark>")
        position = match.end()
    if position == 0:
        return None
    out.append(html.escape(text[position:]))
    return "".join(out)
