"""Input validators shared by the services' request models (pydantic ``AfterValidator``s).

Text that other people see (task titles, display names, descriptions, bios) must not
carry characters that change how the text *around* it is shown: control characters
(CR/LF forge extra lines in logs and single-line UIs, ESC starts terminal escape
sequences) and the Unicode bidirectional overrides and isolates (they reorder what
follows, "Trojan Source"). Such input is a 422, never silently cleaned.
"""

from __future__ import annotations

import re

#: LRE, RLE, PDF, LRO, RLO and LRI, RLI, FSI, PDI. The marks LRM/RLM stay allowed:
#: right-to-left text needs them and they reorder nothing.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Line and paragraph separators: line breaks for Unicode-aware renderers.
LINE_SEPARATORS = frozenset("\u2028\u2029")


def reject_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL, so it is bad input (422) rather than a 500 at insert
    time. For fields nobody else sees (passwords); shown text uses the two below."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F. One regex search, not
#: a Python loop per character: task titles and descriptions are on the write hot path.
_CONTROLS = r"\x00-\x1f\x7f-\x9f"
_OTHERS = "".join(sorted(BIDI_CONTROLS | LINE_SEPARATORS))
_SINGLE_LINE = re.compile(f"[{_CONTROLS}{_OTHERS}]")
_MULTI_LINE = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f{_OTHERS}]")  # all but TAB (09), LF (0a)


def _check(value: str, forbidden: re.Pattern[str], what: str) -> str:
    found = forbidden.search(value)
    if found is not None:
        raise ValueError(f"must not contain {what} or bidirectional override characters "
                         f"(found U+{ord(found.group()):04X})")
    return value


def single_line_text(value: str) -> str:
    """Titles and names: no control character at all (NUL, TAB, CR, LF, ESC, DEL, C1), no
    line separator, no bidi override or isolate."""
    return _check(value, _SINGLE_LINE, "control characters, line breaks")


def multi_line_text(value: str) -> str:
    """Descriptions and bios: like ``single_line_text`` but LF and TAB are kept (CR is not:
    newlines are LF in JSON text)."""
    return _check(value, _MULTI_LINE, "control characters other than LF and TAB")
