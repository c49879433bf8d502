"""Text from a server or from the database, made safe to show on a terminal.

A terminal obeys control characters: an escape sequence in a model's reply can
write the clipboard (OSC 52), retitle the window, hide a link (OSC 8), clear
the screen or move the cursor. Text that did not come from chatcli itself is
data, so every control character in it is shown visibly instead, in the
notation of `cat -v`: ESC is `^[`, BEL is `^G`, DEL is `^?`, the one-byte CSI
0x9B is `M-^[`. What follows an escape is then plain text, so a sequence split
across two chunks of a stream is as harmless as a whole one: each character is
judged alone, no state is carried between chunks.

Newline and tab are kept; a carriage return is dropped (a CRLF line end
becomes a plain newline, and a bare CR cannot overwrite the line before it).
Standard library only.
"""

from __future__ import annotations

import re

# C0 controls except tab (09) and newline (0A), then DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A lone half of a UTF-16 surrogate pair cannot be encoded to UTF-8 at all.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _notation(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0D:
        return ""
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    low = code - 0x80  # C1: the meta form of the C0 control it mirrors
    return "M-^" + chr(low + 0x40)


def visible(text: str) -> str:
    """`text` with every control character but newline and tab shown as `^X` (CR dropped)."""
    if _CONTROL.search(text) is None and _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(_notation, text))


def without_controls(text: str) -> str:
    """`text` with its control characters (but newline and tab) removed: for the clipboard,
    where `^[` would corrupt the text and a raw ESC [201~ could end a bracketed paste."""
    return mend_surrogates(_CONTROL.sub("", text))


def is_plain(text: str) -> bool:
    """True when `text` holds no control character at all (not even a newline)."""
    return _CONTROL.search(text) is None and "\n" not in text and "\t" not in text


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
