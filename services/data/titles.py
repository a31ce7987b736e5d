"""The key popular titles are counted by: trivial variants of a title are one title.

"Buy milk", "buy  MILK " and "Buy milk" in fullwidth letters are the same task to a
person, so they count towards one privacy threshold together: spelling variants never
split a shared title into rarer ones, and a variant is never a title of its own. The key
is a digest of the normalised text (fixed length: NFKC and case folding can make text
longer than the title column).
"""

from __future__ import annotations

import hashlib
import unicodedata

#: Length of ``title_key`` (hex SHA-256).
TITLE_KEY_LENGTH = 64


def normalised_title(title: str) -> str:
    """Compatibility-normalised (NFKC), invisible format characters (zero-width spaces,
    joiners, bidi marks) dropped, case-folded, whitespace runs collapsed to one space."""
    text = unicodedata.normalize("NFKC", title)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = unicodedata.normalize("NFKC", text.casefold())
    return " ".join(text.split())


def title_key(title: str) -> str:
    return hashlib.sha256(normalised_title(title).encode()).hexdigest()
