"""Passwords in database URLs and conninfo strings, hidden for errors and logs. Pure code: no I/O.

Used by the shard map, the store's ``mask_url`` and the CLI's scrubbing of everything it prints.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus


def mask_passwords(text: str) -> str:
    """Hide the passwords in a database URL, a libpq conninfo string or a message holding either: for logs and
    error messages.

    A URL's user-info password (everything from the ':' after the user name to the last '@', so unencoded
    ``@``, ``/``, ``?`` or spaces in it are hidden too), its query-string ``password=`` / ``sslpassword=`` (and
    an HTTP endpoint's ``token=``, ``api_key=``, ``secret=`` and the like), and
    a conninfo ``password=...`` (quoted or not) become ``***``. Text that starts with a URL is taken as one
    URL; in other text a URL ends at white space. Masking twice changes nothing."""
    out, at = [], 0
    for start, end, _ in _secret_spans(text):
        out += [text[at:start], _MASK]
        at = end
    return "".join([*out, text[at:]])


def password_forms(url: str) -> set[str]:
    """Every form of every password in ``url`` (as :func:`mask_passwords` finds them): as written, percent-decoded,
    unquoted, and, for a user-info password with an unencoded ``@``, each part (SQLAlchemy and libpq read the
    part after the first ``@`` as the host name, which connection errors then print)."""
    found: set[str] = set()
    for start, end, userinfo in _secret_spans(url):
        value = url[start:end]
        forms = {value}
        if len(value) > 1 and value[0] == value[-1] == "'":  # a quoted conninfo value
            forms |= {value[1:-1], re.sub(r"\\(.)", r"\1", value[1:-1])}
        forms |= {decoded for form in forms for decoded in (unquote(form), unquote_plus(form))}
        if userinfo:
            forms |= {part for form in list(forms) for part in form.split("@")}
        found |= forms
    return {form for form in found if form and form != _MASK}


_MASK = "***"
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# In a message, a URL runs to white space or to the next URL.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:(?![A-Za-z][A-Za-z0-9+.-]*://)\S)*")
# Query-string keys whose values are secrets: a database URL's passwords, and the tokens and keys of HTTP
# endpoints (an HTTP service's endpoint is shown by every surface: finejobs.services).
_PASSWORD_KEYS = frozenset({"password", "sslpassword", "pgpassword", "pass", "pwd", "token", "access_token",
                            "auth", "auth_token", "api_key", "apikey", "key", "secret", "client_secret",
                            "signature", "sig"})
# libpq conninfo: keyword = value, the value single-quoted (backslash escapes) or up to white space.
_CONNINFO_PASSWORD = re.compile(r"(?i)(?<![\w%.-])(?:ssl|pg)?password\s*=\s*('(?:\\.|[^'\\])*'?|(?:\\.|\S)*)")
# A value masked already, maybe followed by the punctuation of the message around it.
_MASKED = re.compile(r"\*\*\*[)'\"\]>,;:.]*")


def _secret_spans(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is a user-info password) of each password in ``text``, in order, not overlapping."""
    spans: list[tuple[int, int, bool]] = []
    stripped = text.lstrip()
    if _URL_START.match(stripped):
        urls = [(len(text) - len(stripped), len(text))]
    else:
        urls = [match.span() for match in _URL_IN_TEXT.finditer(text)]
    for start, end in urls:
        spans += _url_secret_spans(text, start, end)
    for match in _CONNINFO_PASSWORD.finditer(text):
        if match.group(1) and not _MASKED.fullmatch(match.group(1)) and not any(
                start <= match.start() < end for start, end in urls):
            spans.append((*match.span(1), False))
    merged: list[tuple[int, int, bool]] = []
    for start, end, userinfo in sorted(spans):
        if merged and start <= merged[-1][1]:
            last = merged.pop()
            start, end, userinfo = last[0], max(last[1], end), last[2] or userinfo
        merged.append((start, end, userinfo))
    return merged


def _url_secret_spans(text: str, start: int, end: int) -> list[tuple[int, int, bool]]:
    """The passwords of the URL ``text[start:end]``: its user-info password and its query-string passwords."""
    scheme = _URL_START.match(text, start)
    assert scheme is not None
    spans: list[tuple[int, int, bool]] = []
    # SQLAlchemy (and libpq) read the user name up to ':' or '/', then the password up to the first '@'.
    colon = scheme.end()
    while colon < end and text[colon] not in ":/":
        colon += 1
    host = scheme.end()
    if colon < end and text[colon] == ":":
        first = text.find("@", colon + 1, end)
        if first != -1:
            # An unencoded '@' in the password: SQLAlchemy and libpq take what follows the first '@' for the
            # host name (and maybe a '/' in it for the database), urllib ends the password at the last '@'
            # before the path. No reading is sure, so hide everything up to the last '@' (a '@' in the query
            # string then hides the host too: better that than part of a password).
            last = text.rfind("@", first, end)
            if last > colon + 1:
                spans.append((colon + 1, last, True))
            host = first + 1
    query = text.find("?", host, end)
    if query != -1:
        position = query + 1
        for part in text[query + 1:end].split("&"):
            key, equals, value = part.partition("=")
            secret = unquote_plus(key).strip().lower() in _PASSWORD_KEYS
            if secret and equals and value and not _MASKED.fullmatch(value):
                spans.append((position + len(key) + 1, position + len(part), False))
            position += len(part) + 1
    return spans
