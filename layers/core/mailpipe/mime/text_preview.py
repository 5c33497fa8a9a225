"""How a message's preview is made from its bytes and MIME structure (see mailpipe.mime.preview).

The rule, close to Dovecot's snippets:

- the first text/plain part that is not an attachment, else the first such text/html part with
  its markup, scripts and styles removed (parts inside an attached message/rfc822 do not count);
- its Content-Transfer-Encoding and charset decoded (an unknown charset is read as UTF-8; bytes
  that do not decode become U+FFFD, as a reader would show them);
- whitespace runs (line breaks included) collapsed to one space, control characters dropped;
- at most PREVIEW_CHARS characters (RFC 8970 3: a server MUST NOT return more than 256).

A message without text has the preview ``""``. Only the first MAX_SCANNED bytes of the chosen
part are read, so a huge part costs no more than a small one.
"""

from __future__ import annotations

import binascii
import codecs
import html.parser
import re
from typing import Any

PREVIEW_CHARS = 256
MAX_SCANNED = 64 * 1024  # HTML can open with kilobytes of <style>: read enough to reach the text
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def preview_of(raw: bytes, structure: dict[str, Any]) -> str:
    """The preview of the message ``raw`` whose summary's bodystructure is ``structure``."""
    part = _first_text(structure, "plain") or _first_text(structure, "html")
    if part is None:
        return ""
    text = _decoded(raw, part)
    if part["subtype"] == "html":
        text = html_text(text)
    return collapse(text)


def collapse(text: str) -> str:
    """``text`` as a preview: control characters dropped, whitespace collapsed, cut to length."""
    return " ".join(_CONTROL.sub("", text).split())[:PREVIEW_CHARS].rstrip()


def html_text(markup: str) -> str:
    """The text an HTML document shows: tags, comments, scripts and styles removed, entities read."""
    reader = _TextReader()
    try:
        reader.feed(markup)
        reader.close()
    except Exception:  # html.parser is lenient; whatever it still rejects, keep what was read
        pass
    return " ".join(reader.chunks)


def _first_text(node: dict[str, Any], subtype: str) -> dict[str, Any] | None:
    """The first leaf text/<subtype> part that is not an attachment, depth first."""
    if node.get("type") == "multipart":
        for child in node.get("parts", ()):
            found = _first_text(child, subtype)
            if found is not None:
                return found
        return None
    disposition = node.get("disposition")
    if disposition and str(disposition[0]).lower() == "attachment":
        return None
    if node.get("type") == "text" and node.get("subtype") == subtype:
        return node
    return None


def _decoded(raw: bytes, part: dict[str, Any]) -> str:
    body = raw[part["body_start"] : min(part["end"], part["body_start"] + MAX_SCANNED)]
    encoding = part.get("encoding")
    try:
        if encoding == "base64":
            # Padding and junk dropped, then padded again: a cut or sloppy body still decodes.
            clean = _BASE64_JUNK.sub(b"", body)
            clean = clean[: len(clean) - 1] if len(clean) % 4 == 1 else clean
            body = binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
        elif encoding == "quoted-printable":
            body = binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        pass  # undecodable: show the bytes as they are, as a reader without the decoder would
    charset = next((value for name, value in part.get("params", ()) if name == "charset"), "utf-8")
    try:
        codec = codecs.lookup(charset.strip().strip('"'))
    except (LookupError, ValueError):
        codec = codecs.lookup("utf-8")
    if codec.name == "ascii":  # us-ascii is the default label, often on 8-bit text: UTF-8 reads both
        codec = codecs.lookup("utf-8")
    try:
        return body.decode(codec.name, errors="replace")
    except Exception:  # a codec that is not a text encoding (rot13, zlib ...) named as a charset
        return body.decode("utf-8", errors="replace")


class _TextReader(html.parser.HTMLParser):
    """Collects the shown text of an HTML document, up to a little more than a preview needs."""

    _HIDDEN = frozenset({"script", "style", "head", "title", "template"})
    _ENOUGH = PREVIEW_CHARS * 4

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0
        self._length = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and self._length < self._ENOUGH:
            self.chunks.append(data)
            self._length += len(data)
