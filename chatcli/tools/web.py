"""fetch_url: an http(s) page as text, bounded, HTML reduced to its readable text.

Standard library only (urllib honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY). Any other
scheme (file:, ftp:, data:) is refused.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from chatcli.tools import ToolError

SKIPPED = {"script", "style", "noscript", "template", "svg", "head"}
BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
          "pre", "blockquote", "table", "ul", "ol", "header", "footer", "main"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in SKIPPED:
            self._skip += 1
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED and self._skip:
            self._skip -= 1
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def fetch(url: Any, limit: int, *, timeout: float) -> str:
    import urllib.error
    import urllib.request

    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError("only http:// and https:// URLs can be fetched")
    request = urllib.request.Request(url, headers={"User-Agent": "chatcli fetch_url"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(limit + 1)
            kind = response.headers.get_content_type()
            charset = response.headers.get_content_charset() or "utf-8"
            status = response.status
    except urllib.error.HTTPError as exc:
        raise ToolError(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ToolError(f"cannot fetch {url}: {reason}") from None
    more = len(data) > limit
    if not kind.startswith("text/") and kind not in ("application/json", "application/xml",
                                                      "application/xhtml+xml"):
        raise ToolError(f"{url} is {kind}, not text")
    text = data[:limit].decode(charset, "replace")
    if kind in ("text/html", "application/xhtml+xml"):
        text = html_text(text)
    return f"[{status} {kind}]\n{text}" + ("\n[only the first 2 MB was read]" if more else "")
