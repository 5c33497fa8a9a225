"""What SEARCH, SORT and THREAD (and the searches CONTEXT keeps up to date) match: one rule for all.

They answer from the session's view as its client knows it (imap/view.py, `searchable`): every
message by the number the client was told, as this session shows it (\\Recent where it claimed
the message), without the messages it knows another session expunged but may not announce yet
(RFC 9051 7.5.1: no EXPUNGE during SEARCH, SORT, THREAD by number, so numbers must not shift
either). Messages that arrived after the client's last EXISTS are not in the view yet.

A message another session expunged that this view does not know of yet is still a candidate, and
matches what its item and stored summary answer (SEARCH ALL, SORT ARRIVAL); where a key needs its
bytes (HEADER, BODY, TEXT, or any envelope key of a message without a complete stored summary)
and they are gone from S3 (loading.BodyGone), it matches nothing: SEARCH leaves it out, and so do
SORT and THREAD, instead of failing the command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mailpipe.store import StoredMessage
from mailpipe_gateway.imap import loading
from mailpipe_gateway.imap import search as searching
from mailpipe_gateway.imap.commands import SearchKey

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

Targets = list[tuple[int, StoredMessage]]


def matcher(session: IMAPSession, criteria: SearchKey, charset: str | None) -> Callable[[], Targets]:
    """The search of the selected mailbox for `criteria`, over the view as it is now (taken here,
    on the event loop); returns the blocking part, to run off the loop. That raises
    search.BadCharset for a charset it does not know."""
    view = session.st.view
    assert view is not None
    store = session.ctx.store
    candidates = view.searchable()
    load_body: searching.BodyLoader = store.read_body
    if searching.needs_body(criteria):
        load_body = loading.BodiesAhead(store, [m for _, m in candidates])
    load_body = loading.gone_aware(load_body)
    largest_number, largest_uid = view.exists, view.largest_uid
    saved = list(session.st.saved_search)
    return lambda: searching.search(
        criteria,
        charset,
        candidates,
        load_body,
        largest_number=largest_number,
        largest_uid=largest_uid,
        saved=saved,
    )
