"""IMAP SEARCH over stored messages (mailpipe_gateway.imap.search)."""

from __future__ import annotations

import base64
import calendar
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailpipe.mime import summarize
from mailpipe.mime.lines import crlf_size
from mailpipe.store import StoredMessage
from mailpipe.store.model import pack_summary
from mailpipe_gateway.imap.commands import Contains, Search
from mailpipe_gateway.imap.parser import parse_command
from mailpipe_gateway.imap.reader import Literal, RawCommand
from mailpipe_gateway.imap.search import BadCharset, decode_header_value, needs_body, search

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

# "会議の予定について" in ISO-2022-JP, as a B-encoded word.
SYNTHETIC = (
    b"From: =?UTF-8?Q?Alice_Example?= <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>, carol@example.net\r\n"
    b"Cc: dave@example.com\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCMnE1RCROTT1EaiRLJEQkJCRGGyhC?=\r\n"
    b"Date: Mon, 01 Jan 2024 23:30:00 -0500\r\n"
    b"X-Mailer: Foo\r\n Folded bar\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=E9 au lait, Stra=DFe=\r\n 12\r\n"
    b"--b\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.b64encode(b"secretword inside") + b"\r\n--b--\r\n"
)
BAD_DATE = b"From: x@example.com\r\nSubject: no date\r\nDate: not a date at all\r\n\r\nplain\n"


def day(year: int, month: int, dd: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return calendar.timegm((year, month, dd, hour, minute, second))


def corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"the real-world mail corpus is missing: {path}")
    return path.read_bytes()


def stored(raw: bytes, uid: int, **fields: Any) -> StoredMessage:
    values: dict[str, Any] = {
        "uid": uid,
        "modseq": uid,
        "flags": (),
        "internaldate": day(2024, 2, 1),
        "size": len(raw),
        "blob_key": str(uid),
        "delivery_id": "d",
        "summary": summarize(raw),
        "crlf_size": crlf_size(raw),
    }
    values.update(fields)
    values["packed_summary"] = pack_summary(values.pop("summary"))
    return StoredMessage(**values)


BODIES: dict[str, bytes] = {}


def mailbox() -> list[tuple[int, StoredMessage]]:
    """Eight messages, numbered 1-8, with UIDs 10, 11, 20, 21, 30, 31, 32, 33."""
    raws = [
        (SYNTHETIC, 10, {"flags": ("\\Seen",), "modseq": 5, "internaldate": day(2024, 1, 1, 23, 59, 59)}),
        (corpus("rfc2822/example01.eml"), 11, {"flags": ("\\Flagged", "$Forwarded"), "modseq": 9,
                                               "internaldate": day(2024, 1, 2)}),
        (corpus("rfc2822/example04.eml"), 20, {"flags": ("\\Seen", "\\Deleted"), "modseq": 12,
                                               "internaldate": day(2024, 1, 3)}),
        (corpus("multi_charset/japanese.eml"), 21, {}),
        (corpus("multi_charset/japanese_iso_2022.eml"), 30, {}),
        (corpus("multi_charset/japanese_shift_jis.eml"), 31, {}),
        (corpus("multi_charset/ks_c_5601-1987.eml"), 32, {}),
        (BAD_DATE, 33, {}),
    ]  # fmt: skip
    out = []
    for number, (raw, uid, fields) in enumerate(raws, 1):
        BODIES[str(uid)] = raw
        out.append((number, stored(raw, uid, **fields)))
    return out


ALL = [10, 11, 20, 21, 30, 31, 32, 33]


def loader(loads: list[int] | None = None) -> Callable[[StoredMessage], bytes]:
    def load(message: StoredMessage) -> bytes:
        if loads is not None:
            loads.append(message.uid)
        return BODIES[message.blob_key]

    return load


def run(
    text: str | bytes,
    messages: list[tuple[int, StoredMessage]] | None = None,
    *,
    literal: bytes | None = None,
    saved: list[int] | None = None,
    loads: list[int] | None = None,
) -> list[int]:
    """UIDs of the messages matching ``SEARCH text`` (``literal`` follows text as a literal)."""
    line = b"a SEARCH " + (text.encode() if isinstance(text, str) else text)
    if literal is None:
        raw = RawCommand((line,))
    else:
        raw = RawCommand((line + b"{%d}" % len(literal), b""), (Literal(literal),))
    command = parse_command(raw)
    assert isinstance(command, Search)
    messages = mailbox() if messages is None else messages
    found = search(
        command.criteria,
        command.charset,
        messages,
        loader(loads),
        largest_number=len(messages),
        largest_uid=max((m.uid for _, m in messages), default=0),
        saved=saved,
    )
    return [message.uid for _, message in found]


def others(*uids: int) -> list[int]:
    return [uid for uid in ALL if uid not in uids]


# --- flags, sets, sizes, MODSEQ -------------------------------------------------------------------


def test_flags_present_and_absent() -> None:
    assert run("SEEN") == [10, 20]
    assert run("UNSEEN") == others(10, 20)
    assert run("FLAGGED") == [11]
    assert run("UNFLAGGED") == others(11)
    assert run("DELETED") == [20]
    assert run("UNDELETED") == others(20)
    assert run("ANSWERED") == []
    assert run("DRAFT") == []


def test_keywords_compare_without_case() -> None:
    assert run("KEYWORD $Forwarded") == [11]
    assert run("KEYWORD $FORWARDED") == [11]
    assert run("UNKEYWORD $forwarded") == others(11)
    assert run("KEYWORD $Junk") == []


def test_recent_is_never_set() -> None:
    assert run("RECENT") == []
    assert run("NEW") == []
    assert run("OLD") == ALL


def test_message_number_sets() -> None:
    assert run("2:3") == [11, 20]
    assert run("3:2,8") == [11, 20, 33]
    assert run("*") == [33]
    assert run("7:*") == [32, 33]
    assert run("100:*") == [33]  # * is the largest number, and 100:* is *:100
    assert run("ALL") == ALL
    assert run("1:*") == ALL


def test_uid_sets() -> None:
    assert run("UID 11:20") == [11, 20]
    assert run("UID *") == [33]
    assert run("UID 31:*") == [31, 32, 33]
    assert run("UID 1000:*") == [33]
    assert run("UID 12:19") == []
    assert run("UID 1,21,30:31") == [21, 30, 31]


def test_saved_result() -> None:
    assert run("$", saved=[20, 30]) == [20, 30]
    assert run("UID $", saved=[20, 30]) == [20, 30]
    assert run("NOT $", saved=[20, 30]) == others(20, 30)
    assert run("$") == []
    assert run("$", saved=[]) == []


def test_sizes_use_the_crlf_size() -> None:
    raw = corpus("plain_emails/basic_email_lf.eml")
    message = stored(raw, 5)
    BODIES["5"] = raw
    messages = [(1, message)]
    size = message.crlf_size
    assert size > len(raw)
    assert run(f"LARGER {len(raw)}", messages) == [5]
    assert run(f"LARGER {size}", messages) == []
    assert run(f"LARGER {size - 1}", messages) == [5]
    assert run(f"SMALLER {size}", messages) == []
    assert run(f"SMALLER {size + 1}", messages) == [5]


def test_modseq() -> None:
    assert run("MODSEQ 9") == [11, 20, 21, 30, 31, 32, 33]
    assert run("MODSEQ 5") == ALL
    assert run("MODSEQ 34") == []
    assert run('MODSEQ "/flags/\\\\draft" all 12') == [20, 21, 30, 31, 32, 33]


# --- dates ----------------------------------------------------------------------------------------


def test_internal_dates_around_midnight_utc() -> None:
    # 10: 1 Jan 2024 23:59:59 UTC; 11: 2 Jan 00:00:00; 20: 3 Jan; the rest 1 Feb.
    assert run("ON 1-Jan-2024") == [10]
    assert run("ON 2-Jan-2024") == [11]
    assert run("BEFORE 2-Jan-2024") == [10]
    assert run("BEFORE 1-Jan-2024") == []
    assert run("SINCE 2-Jan-2024") == others(10)
    assert run("SINCE 3-Jan-2024") == others(10, 11)
    assert run("SINCE 2-Jan-2024 BEFORE 3-Jan-2024") == [11]


def test_sent_dates_use_the_date_header_in_its_own_zone() -> None:
    # 10: "Mon, 01 Jan 2024 23:30:00 -0500" (2 Jan in UTC); 11: 21 Nov 1997; 20: 13 Feb 1969;
    # 21 and 30 have no Date; 31 and 32: 28 May 2014; 33's Date cannot be parsed.
    assert run("SENTON 1-Jan-2024") == [10]
    assert run("SENTON 2-Jan-2024") == []
    assert run("SENTSINCE 1-Jan-2024") == [10]
    assert run("SENTBEFORE 1-Jan-1998") == [11, 20]
    assert run("SENTBEFORE 13-Feb-1969") == []
    assert run("SENTON 13-Feb-1969") == [20]
    assert run("SENTSINCE 1-Jan-1900") == [10, 11, 20, 31, 32]
    assert run("NOT SENTSINCE 1-Jan-1900") == [21, 30, 33]  # no (usable) Date: only NOT matches


# --- header keys ----------------------------------------------------------------------------------


def test_address_keys() -> None:
    assert run("FROM alice") == [10]
    assert run('FROM "ALICE example <alice@"') == [10]  # the encoded name is decoded
    assert run("FROM jdoe@machine.example") == [11]
    assert run("FROM example") == [10, 11, 20, 32, 33]
    assert run("TO carol") == [10]
    assert run("TO c@a.test") == [20]  # a group member
    assert run('TO "A Group"') == [20]
    assert run("TO bob") == [10]
    assert run("CC dave") == [10]
    assert run("CC undisclosed") == [20]
    assert run("BCC dave") == []
    assert run("FROM missing_domain") == []


def test_address_key_with_an_encoded_name() -> None:
    assert run("CHARSET UTF-8 TO ", literal="みける".encode()) == [21, 30]


def test_subject() -> None:
    assert run('SUBJECT "saying HELLO"') == [11]
    assert run("SUBJECT hello") == [11]
    assert run('SUBJECT ""') == others(20)  # every message that has a Subject
    assert run("CHARSET UTF-8 SUBJECT ", literal="まみむめも".encode()) == [21, 30]


def test_iso_2022_jp_subject_matches_a_utf8_search() -> None:
    word = "予定".encode()
    assert run("CHARSET UTF-8 SUBJECT ", literal=word) == [10]
    assert run("SUBJECT ", literal=word) == [10]  # IMAP4rev2: UTF-8 without CHARSET
    assert run("CHARSET UTF-8 HEADER Subject ", literal=word) == [10]
    assert run("CHARSET UTF-8 TEXT ", literal=word) == [10]
    assert run("CHARSET UTF-8 SUBJECT ", literal="予約".encode()) == []


def test_header_key() -> None:
    assert run('HEADER X-Mailer "foo folded BAR"') == [10]  # unfolded
    assert run('HEADER x-mailer ""') == [10]
    assert run('HEADER X-Absent ""') == []
    assert run("HEADER Message-ID 1234@local") == [11]
    assert run('HEADER Message-ID ""') == [11, 20, 31, 32]
    assert run("HEADER Subject hello") == [11]
    assert run("HEADER Received 2008") == []


def test_utf8_header_bytes() -> None:
    raw = corpus("rfc6532/utf8_headers.eml")
    messages = [(1, stored(raw, 7))]
    BODIES["7"] = raw
    assert run("CHARSET UTF-8 SUBJECT ", messages, literal="SÄYING".encode()) == [7]
    assert run("CHARSET UTF-8 FROM ", messages, literal="jöhn doe <jdöe@".encode()) == [7]
    assert run("CHARSET UTF-8 HEADER To ", messages, literal="märy".encode()) == [7]


def test_decode_header_value() -> None:
    assert decode_header_value("=?UTF-8?B?44G+44G/?= =?UTF-8?B?44KA?=") == "まみむ"
    # A character split over two words decodes, words in different charsets do not merge.
    split = "あ".encode()
    first, second = (base64.b64encode(part).decode() for part in (split[:2], split[2:]))
    assert decode_header_value(f"=?utf-8?b?{first}?=\r\n =?utf-8?b?{second}?=") == "あ"
    assert decode_header_value("a =?iso-8859-1?q?caf=E9?= b") == "a café b"
    assert decode_header_value("=?x-unknown?q?abc?=") == "abc"
    assert decode_header_value("=?utf-8*en?q?hi?=") == "hi"
    assert decode_header_value("caf\xc3\xa9") == "café"  # raw UTF-8 bytes
    assert decode_header_value("caf\xe9") == "caf\xe9"  # raw Latin-1


# --- body keys -----------------------------------------------------------------------------------


def test_body_decodes_transfer_encoding_and_charset() -> None:
    assert run("CHARSET UTF-8 BODY ", literal="CAFÉ".encode()) == [10]
    assert run("BODY STRASSE") == [10]  # casefold: ß is ss
    assert run("CHARSET UTF-8 BODY ", literal="straße 12".encode()) == [10]  # a soft line break
    assert run("BODY secretword") == []  # attachments are not text
    assert run("BODY ", literal="すみません".encode()) == [30]
    assert run("BODY ", literal="テスト".encode()) == [31]
    assert run("BODY ", literal="스티해".encode()) == [32]
    assert run("BODY ", literal="かきくえこ".encode()) == [21]  # base64 UTF-8


def test_body_and_text() -> None:
    assert run('BODY "say hello"') == [11]
    assert run('BODY "Saying Hello"') == []  # only in the header
    assert run('TEXT "Saying Hello"') == [11]
    assert run('TEXT "say hello"') == [11]
    assert run('TEXT "x-mailer: foo"') == [10]
    assert run("BODY plain") == [33]
    assert run('BODY ""') == ALL


def test_body_sees_the_header_of_an_attached_message() -> None:
    raw = corpus("attachment_emails/attachment_message_rfc822.eml")
    messages = [(1, stored(raw, 8))]
    BODIES["8"] = raw
    assert run('BODY "Another PDF"', messages) == [8]
    assert run('SUBJECT "Another PDF"', messages) == []
    assert run("BODY attaching", messages) == [8]


# --- structure, charset, laziness -------------------------------------------------------------------


def test_nesting() -> None:
    assert run("OR SEEN FLAGGED") == [10, 11, 20]
    assert run("NOT (OR SEEN FLAGGED)") == others(10, 11, 20)
    assert run("OR (SEEN NOT DELETED) UID 31:32") == [10, 31, 32]
    assert run("NOT NOT SEEN") == [10, 20]
    assert run("(SEEN FROM alice) OR 2 3") == []
    assert run("(SEEN FROM alice) OR 1 3") == [10]
    assert run("OR OR 1 2 (KEYWORD $Forwarded FLAGGED)") == [10, 11]
    assert run("NOT (1:3 SEEN)") == others(10, 20)


def test_charsets() -> None:
    assert run("CHARSET US-ASCII SUBJECT hello") == [11]
    assert run("CHARSET UTF-8 SUBJECT hello") == [11]
    with pytest.raises(BadCharset) as error:
        run("CHARSET ISO-8859-1 SUBJECT hello")
    assert error.value.charset == "ISO-8859-1"
    messages = mailbox()
    key = Contains("SUBJECT", b"hello")
    found = search(key, "utf-8", messages, loader(), largest_number=8, largest_uid=33)
    assert [m.uid for _, m in found] == [11]
    with pytest.raises(BadCharset):
        search(key, "KOI8-R", [], loader(), largest_number=0, largest_uid=0)  # even on no messages


def test_needs_body() -> None:
    def key(text: str) -> Any:
        command = parse_command(RawCommand((b"a SEARCH " + text.encode(),)))
        assert isinstance(command, Search)
        return command.criteria

    for text in ("SEEN", "FROM a SUBJECT b TO c CC d BCC e", "SENTON 1-Jan-2020 ON 1-Jan-2020", "1:* UID 5"):
        assert not needs_body(key(text)), text
    for text in ("BODY x", "TEXT x", "HEADER X-Y z", "OR SEEN NOT (FLAGGED BODY x)"):
        assert needs_body(key(text)), text


def test_bodies_are_loaded_only_when_needed_and_once() -> None:
    loads: list[int] = []
    run("FROM alice SUBJECT hello SENTON 1-Jan-2024", loads=loads)
    assert loads == []
    run("BODY nothing SEEN", loads=loads)  # the flag is tried first
    assert loads == [10, 20]
    loads.clear()
    run("OR SEEN BODY nothing", loads=loads)
    assert loads == others(10, 20)
    loads.clear()
    run("SUBJECT hello BODY a", loads=loads)  # the envelope rules out all but one
    assert loads == [11]
    loads.clear()
    run("OR BODY a OR TEXT b HEADER c d", loads=loads)  # three keys need it: one read each
    assert loads == ALL


def test_too_large_summary_is_recomputed_for_envelope_keys() -> None:
    messages = [(number, stored(BODIES[message.blob_key], message.uid, summary={"too_large": True}))
                for number, message in mailbox()]  # fmt: skip
    loads: list[int] = []
    assert run("FROM alice", messages, loads=loads) == [10]
    assert loads == ALL
    assert run("SENTON 1-Jan-2024", messages) == [10]
    assert run("BODY STRASSE", messages) == [10]
