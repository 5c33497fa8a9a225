"""Which handler runs each command, and in which states it may (RFC 9051 6)."""

from __future__ import annotations

from mailpipe_gateway.imap import append as appending
from mailpipe_gateway.imap import compress, notify
from mailpipe_gateway.imap import mailbox_commands as mailboxes
from mailpipe_gateway.imap import message_commands as messages
from mailpipe_gateway.imap import sort_commands as sorting
from mailpipe_gateway.imap.session import IMAPSession
from mailpipe_gateway.imap.state import Entry, State

ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTHENTICATED = frozenset({State.NOT_AUTHENTICATED})
AUTHENTICATED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


HANDLERS: dict[str, Entry] = {
    "CAPABILITY": Entry(IMAPSession.cmd_capability, ANY),
    "NOOP": Entry(IMAPSession.cmd_noop, ANY),
    "LOGOUT": Entry(IMAPSession.cmd_logout, ANY),
    "ID": Entry(IMAPSession.cmd_id, ANY),
    "STARTTLS": Entry(IMAPSession.cmd_starttls, NOT_AUTHENTICATED),
    "LOGIN": Entry(IMAPSession.cmd_login, NOT_AUTHENTICATED),
    "AUTHENTICATE": Entry(IMAPSession.cmd_authenticate, NOT_AUTHENTICATED),
    "ENABLE": Entry(IMAPSession.cmd_enable, AUTHENTICATED),
    "COMPRESS": Entry(compress.cmd_compress, AUTHENTICATED),
    "NAMESPACE": Entry(IMAPSession.cmd_namespace, AUTHENTICATED),
    "IDLE": Entry(IMAPSession.cmd_idle, AUTHENTICATED),
    "SELECT": Entry(mailboxes.cmd_select, AUTHENTICATED),
    "EXAMINE": Entry(mailboxes.cmd_select, AUTHENTICATED),
    "CREATE": Entry(mailboxes.cmd_create, AUTHENTICATED),
    "DELETE": Entry(mailboxes.cmd_delete, AUTHENTICATED),
    "RENAME": Entry(mailboxes.cmd_rename, AUTHENTICATED),
    "SUBSCRIBE": Entry(mailboxes.cmd_subscribe, AUTHENTICATED),
    "UNSUBSCRIBE": Entry(mailboxes.cmd_unsubscribe, AUTHENTICATED),
    "LIST": Entry(mailboxes.cmd_list, AUTHENTICATED),
    "LSUB": Entry(mailboxes.cmd_list, AUTHENTICATED),
    "STATUS": Entry(mailboxes.cmd_status, AUTHENTICATED),
    "GETQUOTAROOT": Entry(mailboxes.cmd_getquotaroot, AUTHENTICATED),
    "GETQUOTA": Entry(mailboxes.cmd_getquota, AUTHENTICATED),
    "SETQUOTA": Entry(mailboxes.cmd_setquota, AUTHENTICATED),
    "APPEND": Entry(appending.cmd_append, AUTHENTICATED),
    "CHECK": Entry(messages.cmd_check, SELECTED),
    "CLOSE": Entry(messages.cmd_close, SELECTED),
    "UNSELECT": Entry(messages.cmd_close, SELECTED),
    "EXPUNGE": Entry(messages.cmd_expunge, SELECTED),
    "COPY": Entry(messages.cmd_copy, SELECTED),
    "MOVE": Entry(messages.cmd_copy, SELECTED),
    "STORE": Entry(messages.cmd_store, SELECTED),
    "FETCH": Entry(messages.cmd_fetch, SELECTED),
    "SEARCH": Entry(messages.cmd_search, SELECTED),
    "SORT": Entry(sorting.cmd_sort, SELECTED),
    "THREAD": Entry(sorting.cmd_thread, SELECTED),
    "CANCELUPDATE": Entry(sorting.cmd_cancelupdate, SELECTED),
    "NOTIFY": Entry(notify.cmd_notify, AUTHENTICATED),
}
