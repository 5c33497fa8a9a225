"""The session resource (RFC 8620 2): who is signed in, their account, the capabilities and limits,
and the URLs of the API."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mailpipe.jmap import ids
from mailpipe.jmap.context import CORE, MAIL, SUBMISSION
from mailpipe.jmap.limits import Limits
from mailpipe.jmap.sorting import SORT_PROPERTIES

API_PATH = "/jmap/api"
SESSION_PATHS = ("/.well-known/jmap", "/jmap/session")
DOWNLOAD_PATH = "/jmap/download/"
UPLOAD_PATH = "/jmap/upload/"
EVENTS_PATH = "/jmap/eventsource"
# Where the local HTTP server takes WebSocket upgrades; on AWS the WebSocket API has its own URL.
WEBSOCKET_PATH = "/jmap/ws"
WEBSOCKET = "urn:ietf:params:jmap:websocket"  # RFC 8887


def mail_capability() -> dict[str, Any]:
    return {
        # One stored message is one Email in one mailbox (docs/jmap.md).
        "maxMailboxesPerEmail": 1,
        "maxMailboxDepth": None,
        "maxSizeMailboxName": 255,
        "maxSizeAttachmentsPerEmail": 25 * 1024 * 1024,
        "emailQuerySortOptions": sorted(SORT_PROPERTIES),
        "mayCreateTopLevelMailbox": True,
    }


def submission_capability() -> dict[str, Any]:
    return {"maxDelayedSend": 0, "submissionExtensions": {}}


def session_resource(
    owner: str, base_url: str, limits: Limits, websocket_url: str | None = None
) -> dict[str, Any]:
    account = ids.account_id(owner)
    capabilities: dict[str, Any] = {CORE: limits.core_capability(), MAIL: {}, SUBMISSION: {}}
    if websocket_url:
        capabilities[WEBSOCKET] = {"url": websocket_url, "supportsPush": True}
    body: dict[str, Any] = {
        "capabilities": capabilities,
        "accounts": {
            account: {
                "name": owner,
                "isPersonal": True,
                "isReadOnly": False,
                "accountCapabilities": {MAIL: mail_capability(), SUBMISSION: submission_capability()},
            }
        },
        "primaryAccounts": {CORE: account, MAIL: account, SUBMISSION: account},
        "username": owner,
        "apiUrl": base_url + API_PATH,
        "downloadUrl": base_url + DOWNLOAD_PATH + "{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": base_url + UPLOAD_PATH + "{accountId}/",
        "eventSourceUrl": base_url + EVENTS_PATH + "?types={types}&closeafter={closeafter}&ping={ping}",
    }
    body["state"] = session_state(owner, limits)
    return body


def session_state(owner: str, limits: Limits) -> str:
    """Changes only when what the session object says changes (the limits, the capabilities)."""
    text = json.dumps([owner, limits.core_capability(), mail_capability()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
