"""Text from a server or from the database, made safe to show on a terminal.

A terminal obeys control characters: an escape sequence in a model's reply can
write the clipboard (OSC 52), retitle the window, hide a link (OSC 8), clear
the screen or move the cursor. Text that did not come from chatcli itself is
data, so every control character in it is shown visibly instead, in the
notation of `cat -v`: ESC is `^[`, BEL is `^G`, DEL is `^?`, the one-byte CSI
0x9B is `M-^[`. What follows an escape is then plain text, so a sequence split
across two chunks of a stream is as harmless as a whole one: each character is
judged alone, no state is carried between chunks.

Unicode format characters are the other half: bidirectional embeddings,
overrides and isolates reorder what is shown (Trojan Source: a command that
reads as a comment), zero-width characters and tag characters are not shown
at all, U+2028 and U+2029 break lines. Where a character shown as a sign is
`<U+202E>`. How much is shown depends on what the text is:

- `visible`: prose (replies, thinking). Arabic, Hebrew and Persian text and
  emoji need bidi isolates and marks, zero-width joiners and non-joiners, so
  they are kept; embeddings and overrides (U+202A-202E), tag characters and
  the deprecated format characters are shown as signs; U+2028 and U+2029 are
  the line breaks they mean.
- `visible_code`: code blocks, and text that may be run or pasted: every
  format character shown as a sign, newlines and tabs kept.
- `shown`: data on one line (titles, names, file names, table cells): every
  control and format character shown, newline and tab included (`^J`, `^I`),
  so a file name cannot forge a line on stderr.

A carriage return is dropped in prose (a CRLF line end becomes a plain newline,
and a bare CR cannot overwrite the line before it). Standard library only.
"""

from __future__ import annotations

import re
import unicodedata

# C0 controls except tab (09) and newline (0A), then DEL and the C1 controls.
_C0_C1 = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_CONTROL = re.compile(f"[{_C0_C1}]")
# A lone half of a UTF-16 surrogate pair cannot be encoded to UTF-8 at all.
_SURROGATE = re.compile("[\ud800-\udfff]")

# Every Unicode format character (category Cf) and the line and paragraph separators
# (Zl, Zp), as of Unicode 15.1 (a test checks the table against unicodedata), and the
# Hangul fillers, letters that show as nothing (used to forge invisible names).
FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
          "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
          "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
          "\u115f\u1160\u3164\uffa0")
# Of those, what prose shows as signs: embeddings and overrides, the deprecated format
# characters, interlinear annotation, tags (invisible ASCII a model reads but a person does not).
_PROSE_SIGNS = "\u202a-\u202e\u206a-\u206f\ufff9-\ufffb\U000e0001\U000e0020-\U000e007f"

_PROSE = re.compile(f"[{_C0_C1}{_PROSE_SIGNS}\u2028\u2029\ud800-\udfff]")
_CODE = re.compile(f"[{_C0_C1}{FORMAT}\ud800-\udfff]")
_DATA = re.compile(f"[\x00-\x1f\x7f-\x9f{FORMAT}\ud800-\udfff]")
_HIDDEN = re.compile(f"[{FORMAT}]")


def _caret(code: int) -> str:
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return "M-^" + chr(code - 0x80 + 0x40)  # C1: the meta form of the C0 control it mirrors


def sign(char: str) -> str:
    """How a format character is shown: `<U+202E>`."""
    return f"<U+{ord(char):04X}>"


def _prose_sign(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code == 0x0D:
        return ""
    if code <= 0x9F:
        return _caret(code)
    if code in (0x2028, 0x2029):
        return "\n"
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else sign(char)


def _strict_sign(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code <= 0x9F:
        return _caret(code)
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else sign(char)


def _code_sign(match: re.Match[str]) -> str:
    return "" if match.group() == "\r" else _strict_sign(match)


def visible(text: str) -> str:
    """Prose as a terminal may show it: control characters as `^X` (CR dropped), embeddings,
    overrides and tags as `<U+XXXX>`, U+2028/2029 as line breaks; isolates, marks and
    joiners kept (Arabic, Hebrew and emoji need them)."""
    if _PROSE.search(text) is None:
        return text
    return _PROSE.sub(_prose_sign, text)


def visible_code(text: str) -> str:
    """Code, or anything that may be run or pasted: every control and format character shown
    (`^X`, `<U+XXXX>`; CR dropped), newline and tab kept."""
    if _CODE.search(text) is None:
        return text
    return _CODE.sub(_code_sign, text)


def shown(text: str) -> str:
    """Data on one line (a title, a name, a file name): every control and format character
    shown, newline and tab too (`^J`, `^I`), so nothing in it can start a line of its own."""
    if _DATA.search(text) is None:
        return text
    return _DATA.sub(_strict_sign, text)


def hidden_characters(text: str) -> list[tuple[int, int, str]]:
    """The format characters in `text` (bidi controls, zero-width and tag characters,
    separators), as (line, column, character), both counted from 1."""
    found = []
    for match in _HIDDEN.finditer(text):
        start = match.start()
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        found.append((line, column, match.group()))
    return found


def describe_hidden(found: list[tuple[int, int, str]], *, limit: int = 3) -> str:
    """`U+202E at line 3, column 5; U+200B at line 4, column 1 (and 2 more)`."""
    listed = "; ".join(f"{sign(char)[1:-1]} at line {line}, column {column}"
                       for line, column, char in found[:limit])
    return listed + (f" (and {len(found) - limit} more)" if len(found) > limit else "")


def without_hidden(text: str) -> str:
    """`text` without its format characters (for code saved or copied: the code as shown)."""
    return _HIDDEN.sub("", text)


def without_prose_signs(text: str) -> str:
    """`text` without what prose shows as signs (embeddings, overrides, tags), its separators
    turned into the line breaks they mean: a reply copied whole, as it was shown."""
    return re.sub(f"[{_PROSE_SIGNS}]", "", text).replace("\u2028", "\n").replace("\u2029", "\n")


def without_controls(text: str) -> str:
    """`text` with its control characters (but newline and tab) removed: for the clipboard,
    where `^[` would corrupt the text and a raw ESC [201~ could end a bracketed paste."""
    return mend_surrogates(_CONTROL.sub("", text))


def is_plain(text: str) -> bool:
    """True when `text` holds no control or format character at all (not even a newline)."""
    return _DATA.search(text) is None


def non_ascii(text: str, *, limit: int = 6) -> list[str]:
    """The distinct non-ASCII characters of `text`, each with its code point and name
    (`а U+0430 CYRILLIC SMALL LETTER A`; a CJK ideograph, whose name says no more, `报 U+62A5`),
    in order of first appearance, at most `limit`."""
    seen: dict[str, None] = {}
    for char in text:
        if ord(char) > 0x7E and char not in seen:
            seen[char] = None
            if len(seen) == limit:
                break
    named = [(char, unicodedata.name(char, "")) for char in seen]
    return [f"{char} U+{ord(char):04X}" + ("" if name.startswith("CJK UNIFIED") or not name else f" {name}")
            for char, name in named]


def mend_surrogates(text: str) -> str:
    """Lone surrogates (invalid in UTF-8) replaced with U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


_JSON_UNSAFE = re.compile("[\x7f-\x9f\ud800-\udfff]")


def json_safe(text: str) -> str:
    """JSON text with DEL, C1 controls and lone surrogates written as \\u escapes.

    json.dumps(ensure_ascii=False) escapes C0 controls but leaves these as they
    are; inside a JSON document they can only occur within strings, where the
    escape means the same character, so the document's meaning is unchanged.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Redactor:
    """The secrets this process knows (the key, configured header values), removed from
    text before it is shown: by value, not by what a key usually looks like, and in the
    forms an error message quotes them (as they are, stripped, or escaped like Python
    shows a str or bytes value)."""

    def __init__(self, *secrets: str) -> None:
        self._forms: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        forms = set(self._forms)
        for secret in secrets:
            for form in (secret, secret.strip(), repr(secret)[1:-1],
                         repr(secret.encode("utf-8", "replace"))[2:-1]):
                if len(form.strip()) >= 4:
                    forms.add(form)
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, "***")
        return text


# A query value in a URL is taken for a credential when its name says so, or when it is long
# enough to be a token (`?api-version=2024-02-01` stays readable; `?key=...` does not).
_SECRET_NAMES = re.compile(r"key|token|secret|sig|pass|auth|cred|session|code|jwt|bearer", re.I)
_TOKEN_LENGTH = 24


def _secret_query(name: str, value: str) -> bool:
    return bool(value) and (bool(_SECRET_NAMES.search(name)) or len(value) >= _TOKEN_LENGTH)


def url_secrets(url: str) -> list[str]:
    """What in a URL is a credential: the password before the host (`https://user:pass@host`),
    or the user when it comes alone (`https://TOKEN@host`), and query values that look like one
    (`?token=...`), each as written and decoded."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    found = [password or user] if password or user else []
    found += [value for name, _, value in (item.partition("=") for item in parts.query.split("&"))
              if _secret_query(name, value)]
    return sorted({*found, *(unquote(value) for value in found)})


def url_shown(url: str) -> str:
    """`url` with its credentials (see url_secrets) shown as ***: `https://***@host/v1?token=***`,
    `https://user:***@host/v1`."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    query = "&".join(f"{name}={'***' if _secret_query(name, value) else value}" if sep else name
                     for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item))
    netloc = f"{user}:***@{host}" if colon else f"***@{host}" if at else host
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_host(url: str) -> str:
    """The host (and port) of `url`, without the credentials that may come before it."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).netloc.rpartition("@")[2] or url_shown(url)
    except ValueError:
        return url_shown(url)
