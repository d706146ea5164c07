"""Client-supplied text on its way into `kame serve`'s log: control characters escaped (a
client's newline must not start a line that looks like the server's own), secrets cut (query
strings, which may carry ?token=; the values of Authorization, Proxy-Authorization, Cookie and
headers named like a key, token or secret, that aiohttp quotes when it rejects a malformed
request; all of a line or header it quotes as too long to read).

    log.info("closed by the client (%s)", clean(reason))
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line/paragraph separators, lone surrogates (undecodable
# bytes of a path or header: a UTF-8 log stream cannot even write them)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def clean(value, limit: int | None = None) -> str:
    """``value`` (anything a client chose: a path, a close reason, a header) as text for one log
    line: control characters as ``\\n``, ``\\x01``, ``\\u2028``; the rest unchanged; with
    ``limit``, cut to that many characters, then "… (N characters)"."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return _CONTROL.sub(_escape, text)


_QUERY = re.compile(r"\?[^\s'\"]+")  # a query string, up to a space or a quote
# a secret header quoted in an error message (b'Authorization: Bearer X\x01'): its value, to the
# end of the line but for the quote (and bracket, full stop) that close it
# (also any header named like a key, token or secret: X-Api-Key, X-Auth-Token, X-Client-Secret)
_SECRET_HEADER = re.compile(r"\b((?:proxy-)?authorization|cookie|[\w-]*(?:api-?key|token|secret)[\w-]*)[ \t]*:"
                            r".*?(?=['\"]?\)?\.?$)", re.I | re.M)


# aiohttp's LineTooLong, "Got more than 8190 bytes when reading: b'<the first 100 bytes>...'.":
# the bytes may be a header's value alone (no name to tell a secret by): all cut, to the end of
# the line (the quote may itself hold quotes), the length said
_TOO_LONG = re.compile(r"(Got more than \S+ bytes(?: \([^)]*\))? when reading):? *(?:bytearray\()?b?['\"].*$", re.M)
TOO_LONG = "a request line or header (not logged: it may be a secret header's value)"


def cut_query(text: str) -> str:
    """Query strings (which may carry ?token=) cut to ``?…``: the server's log, kame client's errors."""
    return _QUERY.sub("?…", text)


def redact(text: str) -> str:
    """Query strings cut to ``?…``, secret header values to ``…``, the quote of a request line
    or header too long to read (it may be a secret's value, without its header's name) dropped."""
    return _SECRET_HEADER.sub(r"\1: …", cut_query(_TOO_LONG.sub(r"\1 " + TOO_LONG, text)))
