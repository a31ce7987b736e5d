"""Input validators shared by the services' request models (pydantic ``AfterValidator``s).

Text that other people see (task titles, display names, descriptions, bios) must not
carry characters that change how the text *around* it is shown: control characters
(CR/LF forge extra lines in logs and single-line UIs, ESC starts terminal escape
sequences) and the Unicode bidirectional overrides and isolates (they reorder what
follows, "Trojan Source"). Such input is a 422, never silently cleaned.
"""

from __future__ import annotations

import unicodedata

#: LRE, RLE, PDF, LRO, RLO and LRI, RLI, FSI, PDI. The marks LRM/RLM stay allowed:
#: right-to-left text needs them and they reorder nothing.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Line and paragraph separators: line breaks for Unicode-aware renderers.
LINE_SEPARATORS = frozenset("\u2028\u2029")
#: What a multi-line field may keep of the characters rejected elsewhere.
MULTI_LINE_ALLOWED = frozenset("\n\t")


def reject_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL, so it is bad input (422) rather than a 500 at insert
    time. For fields nobody else sees (passwords); shown text uses the two below."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _first_forbidden(value: str, allowed: frozenset[str]) -> str | None:
    for char in value:
        if char in allowed:
            continue
        if unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS or char in LINE_SEPARATORS:
            return char
    return None


def _check(value: str, allowed: frozenset[str], what: str) -> str:
    char = _first_forbidden(value, allowed)
    if char is not None:
        raise ValueError(f"must not contain {what} or bidirectional override characters "
                         f"(found U+{ord(char):04X})")
    return value


def single_line_text(value: str) -> str:
    """Titles and names: no control character at all (NUL, TAB, CR, LF, ESC, DEL, C1), no
    line separator, no bidi override or isolate."""
    return _check(value, frozenset(), "control characters, line breaks")


def multi_line_text(value: str) -> str:
    """Descriptions and bios: like ``single_line_text`` but LF and TAB are kept (CR is not:
    newlines are LF in JSON text)."""
    return _check(value, MULTI_LINE_ALLOWED, "control characters other than LF and TAB")
