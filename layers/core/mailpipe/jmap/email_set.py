"""Email/set (RFC 8621 4.6): create a message (built with the `email` package and appended, as IMAP
APPEND does), change keywords (the store's flag update, as IMAP STORE), move (copy, then expunge the
original: a moved Email gets a new id, see docs/jmap.md) and destroy (expunge)."""

from __future__ import annotations

import email.policy
import email.utils
import time
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from mailpipe.jmap import parsed, standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.email_view import thread_of
from mailpipe.jmap.errors import SetFailure
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.keywords import flag_of, keyword_of, valid
from mailpipe.jmap.messages import Found, locate_ids, read_blob
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import email_state
from mailpipe.store import Mailbox, NoSuchMailbox

CREATE_PROPERTIES = {
    "mailboxIds",
    "keywords",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "textBody",
    "htmlBody",
    "attachments",
    "bodyValues",
}
ADDRESS_HEADERS = {
    "sender": "Sender",
    "from": "From",
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "replyTo": "Reply-To",
}
ID_HEADERS = {"messageId": "Message-ID", "inReplyTo": "In-Reply-To", "references": "References"}


@method("Email/set", MAIL)
def email_set(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    standard.check_set_size(context, arguments)
    old_state = email_state(context.mailboxes())
    standard.check_if_in_state(arguments, old_state)
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, properties in (arguments.get("create") or {}).items():
        try:
            created[creation_id] = _create(context, properties)
            context.created_ids[creation_id] = created[creation_id]["id"]
        except SetFailure as failure:
            not_created[creation_id] = failure.error
        context.changed()
    updates = {
        context.resolve(k) if k.startswith("#") else k: v for k, v in (arguments.get("update") or {}).items()
    }
    found = locate_ids(context, list(updates))
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for jmap_id, patch in updates.items():
        try:
            if jmap_id not in found:
                raise SetFailure("notFound")
            _update(context, found[jmap_id], patch)
            updated[jmap_id] = None
        except SetFailure as failure:
            not_updated[jmap_id] = failure.error
        context.changed()
    destroy = [context.resolve(i) for i in arguments.get("destroy") or []]
    gone = locate_ids(context, destroy)
    destroyed = [i for i in destroy if i in gone]
    for item in gone.values():
        context.store.expunge(context.owner, item.mailbox.name, [item.message.uid], mailbox=item.mailbox)
    context.changed()
    return {
        "accountId": context.account_id,
        "oldState": old_state,
        "newState": email_state(context.mailboxes()),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": {i: {"type": "notFound"} for i in destroy if i not in gone} or None,
    }


def single_mailbox(context: Context, mailbox_ids: Any) -> Mailbox:
    """The one mailbox of mailboxIds (an Email is in exactly one here: maxMailboxesPerEmail is 1)."""
    if (
        not isinstance(mailbox_ids, dict)
        or not mailbox_ids
        or any(v is not True for v in mailbox_ids.values())
    ):
        raise SetFailure("invalidProperties", "mailboxIds names one mailbox", properties=["mailboxIds"])
    if len(mailbox_ids) > 1:
        raise SetFailure("tooManyMailboxes", "an Email is in one mailbox here", properties=["mailboxIds"])
    (jmap_id,) = mailbox_ids
    mailbox = context.mailbox_by_jmap_id(jmap_id)
    if mailbox is None:
        raise SetFailure("invalidProperties", "no such mailbox", properties=["mailboxIds"])
    return mailbox


def _create(context: Context, properties: Any) -> dict[str, Any]:
    if not isinstance(properties, dict):
        raise SetFailure("invalidProperties", "an Email object is a map")
    unknown = sorted(p for p in properties if p not in CREATE_PROPERTIES and not p.startswith("header:"))
    if unknown:
        raise SetFailure("invalidProperties", "cannot set these", properties=unknown)
    mailbox = single_mailbox(context, properties.get("mailboxIds"))
    keywords = properties.get("keywords", {})
    if not isinstance(keywords, dict) or any(v is not True or not valid(k) for k, v in keywords.items()):
        raise SetFailure("invalidProperties", "keywords map valid keywords to true", properties=["keywords"])
    raw = build_message(context, properties)
    try:
        appended = context.store.append_message(
            context.owner, mailbox.name, raw, flags=sorted({flag_of(k) for k in keywords})
        )
    except NoSuchMailbox:
        raise SetFailure("invalidProperties", "no such mailbox", properties=["mailboxIds"]) from None
    ref = MessageRef(mailbox.mailbox_id, appended.message.uid)
    return {
        "id": ref.email_id(),
        "blobId": ref.blob_id(),
        "threadId": thread_of(ref, appended.message),
        "size": len(raw),
    }


def build_message(context: Context, properties: dict[str, Any]) -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    try:
        for prop, header in ADDRESS_HEADERS.items():
            if properties.get(prop):
                message[header] = [_address(a) for a in properties[prop]]
        for prop, header in ID_HEADERS.items():
            if properties.get(prop):
                message[header] = " ".join(f"<{i}>" for i in properties[prop])
        if properties.get("subject") is not None:
            message["Subject"] = str(properties["subject"])
        sent_at = properties.get("sentAt")
        message["Date"] = (
            email.utils.format_datetime(parsed.datetime.fromisoformat(str(sent_at).replace("Z", "+00:00")))
            if sent_at
            else email.utils.formatdate(time.time(), localtime=False)
        )
        if "Message-ID" not in message:
            domain = context.owner.rpartition("@")[2] or "localhost"
            message["Message-ID"] = email.utils.make_msgid(domain=domain)
        message["MIME-Version"] = "1.0"
        for prop, value in properties.items():
            if prop.startswith("header:"):
                name, form, _ = parsed.parse_header_property(prop) or ("", "", False)
                if (
                    not name
                    or form not in ("asRaw", "asText")
                    or name.lower() in {h.lower() for h in message}
                ):
                    raise SetFailure("invalidProperties", f"cannot set {prop}", properties=[prop])
                message[name] = str(value)
        _bodies(context, message, properties)
    except SetFailure:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise SetFailure("invalidProperties", f"cannot build the message: {exc}") from None
    return message.as_bytes()


def _address(value: Any) -> Address:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        raise SetFailure("invalidProperties", "an EmailAddress has an email")
    return Address(display_name=value.get("name") or "", addr_spec=value["email"])


def _body_text(properties: dict[str, Any], parts: Any, kind: str) -> str | None:
    if not parts:
        return None
    if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], dict):
        raise SetFailure("invalidProperties", f"{kind} is one part", properties=[kind])
    part_id = parts[0].get("partId")
    values = properties.get("bodyValues") or {}
    if part_id not in values or not isinstance(values[part_id].get("value"), str):
        raise SetFailure("invalidProperties", f"{kind} names a partId of bodyValues", properties=[kind])
    return values[part_id]["value"]


def _bodies(context: Context, message: EmailMessage, properties: dict[str, Any]) -> None:
    text = _body_text(properties, properties.get("textBody"), "textBody")
    html = _body_text(properties, properties.get("htmlBody"), "htmlBody")
    if text is None and html is None:
        text = ""
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    for attachment in properties.get("attachments") or []:
        if not isinstance(attachment, dict) or not isinstance(attachment.get("blobId"), str):
            raise SetFailure("invalidProperties", "an attachment has a blobId", properties=["attachments"])
        content = read_blob(context, context.resolve(attachment["blobId"]))
        if content is None:
            raise SetFailure("blobNotFound", notFound=[attachment["blobId"]])
        maintype, _, subtype = str(attachment.get("type") or "application/octet-stream").partition("/")
        if maintype == "message" or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(
            content, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment.get("name")
        )


def _update(context: Context, found: Found, patch: Any) -> None:
    if not isinstance(patch, dict) or not patch:
        raise SetFailure("invalidPatch", "a patch is a non-empty map")
    add: set[str] = set()
    remove: set[str] = set()
    replace: set[str] | None = None
    target: Mailbox | None = None
    mailbox_ids: dict[str, bool] | None = None  # after mailboxIds/... patches
    for path, value in patch.items():
        if path == "keywords":
            if not isinstance(value, dict) or any(v is not True or not valid(k) for k, v in value.items()):
                raise SetFailure("invalidProperties", properties=["keywords"])
            replace = {flag_of(k) for k in value}
        elif path.startswith("keywords/"):
            keyword = path.removeprefix("keywords/").replace("~1", "/").replace("~0", "~")
            if not valid(keyword) or value not in (True, None):
                raise SetFailure("invalidPatch", f"bad {path}")
            (add if value else remove).add(flag_of(keyword))
        elif path == "mailboxIds":
            target = single_mailbox(context, value)
        elif path.startswith("mailboxIds/"):
            if mailbox_ids is None:
                mailbox_ids = {"M" + found.mailbox.mailbox_id: True}
            jmap_id = context.resolve(path.removeprefix("mailboxIds/"))
            if value is True:
                mailbox_ids[jmap_id] = True
            elif value is None:
                mailbox_ids.pop(jmap_id, None)
            else:
                raise SetFailure("invalidPatch", "mailboxIds/... is true or null")
        else:
            raise SetFailure("invalidProperties", f"{path} cannot be changed", properties=[path])
    if mailbox_ids is not None:
        target = single_mailbox(context, mailbox_ids)
    if replace is not None and (add or remove):
        raise SetFailure("invalidPatch", "keywords and keywords/... together")
    owner, name, uid = context.owner, found.mailbox.name, found.message.uid
    if replace is not None:
        # IMAP flags that are not keywords (\Deleted) stay as they are.
        kept = {f for f in found.message.flags if keyword_of(f) is None}
        context.store.update_flags(owner, name, [uid], "replace", replace | kept, mailbox=found.mailbox)
    if add:
        context.store.update_flags(owner, name, [uid], "add", add, mailbox=found.mailbox)
    if remove:
        context.store.update_flags(owner, name, [uid], "remove", remove, mailbox=found.mailbox)
    if target is not None and target.mailbox_id != found.mailbox.mailbox_id:
        # A move, as IMAP MOVE without the extension: copy, then expunge the original.
        context.store.copy(owner, name, [uid], target.name)
        context.store.expunge(owner, name, [uid])
