"""Text cleaning shared by ingestion, indexing and queries (one function, used everywhere)."""

from __future__ import annotations

import html
import re
import unicodedata

_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]{1,200}>")


def clean_text(text: str) -> str:
    """Unescape HTML entities, drop tags, normalise Unicode (NFKC) and collapse whitespace.

    >>> clean_text("L&#39;Or&eacute;al  <b>Paris</b>\u3000ＴＶ")
    "L'Oréal Paris TV"
    """
    if text.isascii() and text.isprintable() and "&" not in text and "<" not in text:
        # Fast path, same result: nothing to unescape, strip or normalise in printable ASCII.
        return _SPACE.sub(" ", text).strip()
    # Unescape twice: scraped catalogs often hold doubly escaped text ("&amp;amp;").
    text = html.unescape(html.unescape(text))
    text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\t\n")
    return _SPACE.sub(" ", text).strip()
